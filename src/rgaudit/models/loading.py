"""Load any supported model file or folder as a :class:`~rgaudit.models.base.Classifier`.

Today: rgaudit DeepRBM folders. Further adapters (``torch.export`` ``.pt2`` files, safetensors
state dicts with a named factory, skops scikit-learn RBM pipelines) register here, so every
command that takes a model (audit, attack, serve, clone-attack, zoo) calls only
:func:`load_classifier`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rgaudit.errors import ModelFileError
from rgaudit.models.base import Classifier, RBMClassifier


def _input_shape(cfg: dict[str, Any], n_features: int) -> tuple[int, ...]:
    """The image shape a model config records, else a square if ``n_features`` is one."""
    shape = (cfg.get("dataset") or {}).get("shape")
    if isinstance(shape, list) and shape and math.prod(int(s) for s in shape) == n_features:
        return tuple(int(s) for s in shape)
    side = math.isqrt(n_features)
    return (side, side) if side * side == n_features else (n_features,)


def load_classifier(path: str | os.PathLike, *, device: str = "cpu") -> tuple[Classifier, dict]:
    """Load the model at ``path`` through the adapter its format needs.

    Parameters
    ----------
    path : str or path-like
        An rgaudit model folder (``config.json`` + ``weights.safetensors``).
    device : str
        Torch device for the model's parameters.

    Returns
    -------
    classifier : Classifier
    config : dict
        What the adapter knows of the model (for an rgaudit folder, its ``config.json``).

    Raises
    ------
    ModelFileError
        ``path`` is not a model any adapter can load; the message lists the supported formats.
    """
    from rgaudit.nets.io import CONFIG, load_model

    p = Path(path)
    if p.is_dir() and (p / CONFIG).is_file():
        net, cfg = load_model(p, device=device)
        return RBMClassifier(net, _input_shape(cfg, int(net.widths[0])), meta=cfg), cfg
    raise ModelFileError(
        f"{p} is not a model rgaudit can load; supported: an rgaudit model folder "
        "(config.json + weights.safetensors)")
