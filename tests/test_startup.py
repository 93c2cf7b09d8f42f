"""Start-up: `rgaudit --help`, `--version` and `info` import no heavy module (torch, numpy,
sklearn, matplotlib, ART); `python -m rgaudit` works."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rgaudit import __version__

HEAVY = ("torch", "numpy", "sklearn", "matplotlib", "art", "scipy", "numba")

PROBE = """
import sys
sys.argv = ["rgaudit", *{args!r}]
from rgaudit.cli import main
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
heavy = [m for m in {heavy!r} if m in sys.modules]
assert not heavy, heavy
"""


def _probe(*args: str) -> str:
    res = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args), heavy=HEAVY)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("audit", "--help")])
def test_light_commands_import_nothing_heavy(args):
    _probe(*args)


def test_info_imports_nothing_heavy(tmp_path):
    from rgaudit.nets.deep_rbm import DeepRBM
    from rgaudit.nets.io import save_model

    net = DeepRBM.random([6, 4, 3], generator=torch.Generator().manual_seed(0))
    save_model(net, tmp_path / "m")
    assert "widths" in _probe("info", str(tmp_path / "m"))


def test_info_refuses_shapes_that_do_not_match_the_config(tmp_path):
    import json

    from rgaudit.errors import ModelFileError
    from rgaudit.nets.deep_rbm import DeepRBM
    from rgaudit.nets.io import inspect_model, save_model

    save_model(DeepRBM.random([6, 4, 3], generator=torch.Generator().manual_seed(0)),
               tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["widths"] = [6, 5, 3]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="does not match widths"):
        inspect_model(tmp_path / "m")


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "rgaudit", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == __version__
