"""The minimal-norm and fixed-budget attacks of adv-lib (Rony et al.), imported safely.

adv-lib (``pip install adv-lib``, maintained by the author of DDN and co-author of FMN) holds the
reference PyTorch implementations of DDN, FMN, FAB, APGD and Carlini–Wagner L2. Its package
``adv_lib.attacks/__init__`` also imports perceptual-colour attacks that need torchvision's
compiled operators, which are absent beside the CPU build of torch that rgaudit installs. The
attacks rgaudit uses do not need torchvision, so this module loads their submodules without
running that ``__init__``: it registers an empty ``adv_lib.attacks`` package object whose
``__path__`` is the real folder, then imports the submodules normally. No code is patched.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path

_SUBMODULES: dict[str, tuple[str, str]] = {
    "ddn": ("adv_lib.attacks.decoupled_direction_norm", "ddn"),
    "fmn": ("adv_lib.attacks.fast_minimum_norm", "fmn"),
    "fab": ("adv_lib.attacks.fast_adaptive_boundary.fast_adaptive_boundary", "fab"),
    "apgd": ("adv_lib.attacks.auto_pgd", "apgd"),
    "cw_l2": ("adv_lib.attacks.carlini_wagner.l2", "carlini_wagner_l2"),
    "pgd_linf": ("adv_lib.attacks.projected_gradient_descent", "pgd_linf"),
}


def _attacks_package() -> None:
    """Register ``adv_lib.attacks`` as a bare namespace over its folder (see module doc)."""
    if "adv_lib.attacks" in sys.modules:
        return
    spec = importlib.util.find_spec("adv_lib")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("adv-lib is not installed: run `make test` (or `pip install adv-lib`)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "attacks"
    pkg = types.ModuleType("adv_lib.attacks")
    pkg.__path__ = [str(folder)]
    pkg.__package__ = "adv_lib.attacks"
    sys.modules["adv_lib.attacks"] = pkg


@cache
def attack_fn(name: str) -> Callable[..., object]:
    """The adv-lib attack function called ``name`` (one of :data:`NAMES`)."""
    if name not in _SUBMODULES:
        raise ValueError(f"unknown adv-lib attack {name!r}; choose from {sorted(_SUBMODULES)}")
    _attacks_package()
    module, attr = _SUBMODULES[name]
    return getattr(importlib.import_module(module), attr)


NAMES: tuple[str, ...] = tuple(_SUBMODULES)
