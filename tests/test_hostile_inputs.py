"""Hostile inputs end in one clear message and the documented exit status, within seconds.

Each case is one command line run through ``rgaudit.cli.main`` (the real entry point, so the
exit-status mapping is tested too) with a memory budget of 1 GiB (``RGAUDIT_MAX_MEMORY``), so the
memory refusals do not depend on the test machine. Exit statuses (docs/design.md): 1 bad input
found while working, 2 usage error (a bad option, or a MODEL/--data/--out that cannot be used),
3 refused resources, 130 interrupted. Every case asserts a fragment of the message; before issue
14 each one printed a traceback, was killed, hung or crashed.
"""

from __future__ import annotations

import gzip
import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import save_model

USAGE, INPUT, RESOURCE = 2, 1, 3


def _model(folder: Path, widths: list[int], spec: str = "bars:4") -> Path:
    net = DeepRBM.random(widths, generator=torch.Generator().manual_seed(0), scale=1.0,
                         dtype=torch.float32)
    return save_model(net, folder, metadata={"dataset_spec": spec,
                                             "dataset": {"name": spec, "split_seed": 0}})


def _edit_config(model: Path, **changes: object) -> Path:
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(changes)
    (model / "config.json").write_text(json.dumps(cfg))
    return model


def _npy_member(shape: tuple[int, ...], payload: bytes = b"", dtype: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + payload


def _npz_bomb(tmp: Path) -> str:
    """A zip bomb: 20 MB of zeros deflate to ~20 KB; the header claims 10^5 × 10^5 floats."""
    path = tmp / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("X.npy", _npy_member((100_000, 100_000), bytes(20_000_000)))
        zf.writestr("y.npy", _npy_member((100_000,), dtype="<i8"))
    return f"npz:{path}"


def _npy_huge_header(tmp: Path) -> str:
    path = tmp / "header.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", _npy_member((2**40, 2**20)))
        zf.writestr("y.npy", _npy_member((2**40,), dtype="<i8"))
    return f"npz:{path}"


def _npz_huge_label(tmp: Path) -> str:
    path = tmp / "labels.npz"
    y = np.arange(40) % 2
    y[3] = 5_000_000_000
    np.savez(path, X=np.full((40, 4), 0.5), y=y)
    return f"npz:{path}"


def _idx_gzip_bomb(tmp: Path) -> str:
    folder = tmp / "idx"
    folder.mkdir()
    dims = (10**6, 1000, 1000)
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + bytes(5_000_000)))
    lab = (0x801).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(2)
    img = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2, 2, 2)) \
        + bytes(8)
    (folder / "train-labels-idx1-ubyte").write_bytes(lab)
    (folder / "t10k-images-idx3-ubyte").write_bytes(img)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(lab)
    return f"idx:{folder}"


# Each case: (id, argv builder(tmp) -> list[str], exit status, message fragment).
Case = tuple[str, Callable[[Path], list[str]], int, str]


def _m(tmp: Path) -> str:
    return str(_model(tmp / "model", [16, 8, 2]))


CASES: list[Case] = [
    # --- item 8: memory bombs, refused from headers/options before any allocation ---
    ("npz-zip-bomb", lambda t: ["train", "--data", _npz_bomb(t), "--out", str(t / "o")],
     RESOURCE, "needs about"),
    ("npy-huge-shape", lambda t: ["train", "--data", _npy_huge_header(t), "--out", str(t / "o")],
     RESOURCE, "over the limit of 1 GiB"),
    ("idx-gzip-bomb", lambda t: ["train", "--data", _idx_gzip_bomb(t), "--out", str(t / "o")],
     RESOURCE, "its header claims (1000000, 1000, 1000)"),
    ("bars-1000", lambda t: ["train", "--data", "bars:1000", "--out", str(t / "o")],
     RESOURCE, "bars:1000:2000"),
    ("ops-full-100-units", lambda t: ["diagnose", str(_model(t / "m", [16, 100, 2])), "--ops",
                                      "full", "--out", str(t / "o")],
     RESOURCE, "100-unit layer"),
    ("widths-3e7", lambda t: ["train", "--widths", "64,30000000,10", "--out", str(t / "o")],
     RESOURCE, "training --widths 64,30000000,10"),
    ("config-widths-1e18", lambda t: ["diagnose", str(_edit_config(
        _model(t / "m", [16, 8, 2]), widths=[16, 10**18, 2])), "--out", str(t / "o")],
     RESOURCE, "loading the model"),
    # info reads only the config and the safetensors header (no tensor is allocated), so the
    # claimed widths are refused as not matching the weights rather than as a memory bomb
    ("config-widths-3e7", lambda t: ["info", str(_edit_config(
        _model(t / "m", [16, 8, 2]), widths=[16, 30_000_000, 2]))],
     USAGE, "does not match widths"),
    ("ising-L-65536", lambda t: ["ising", "--L", "65536", "--out", str(t / "o")],
     RESOURCE, "--L 65536"),
    ("relu-dims-range", lambda t: ["relu-scaling", "--dims", "2-300000000", "--out",
                                   str(t / "o")], USAGE, "over the bound of 10,000"),
    ("max-memory-option", lambda t: ["train", "--max-memory", "100K", "--data", "bars:4",
                                     "--out", str(t / "o")], RESOURCE,
     "over the limit of 100 KiB"),
    ("max-memory-bad", lambda t: ["train", "--max-memory", "lots", "--out", str(t / "o")],
     USAGE, "give a size such as 4G"),
    # --- item 9: absurd counts ---
    ("diagnose-samples", lambda t: ["diagnose", _m(t), "--samples", "1000000000"], USAGE,
     "--samples"),
    ("train-eval-samples", lambda t: ["train", "--eval-samples", "1000000000"], USAGE,
     "--eval-samples"),
    ("train-k", lambda t: ["train", "--k", "1000000000"], USAGE, "--k"),
    ("train-epochs", lambda t: ["train", "--epochs", "1000000000"], USAGE, "--epochs"),
    ("attack-judge-samples", lambda t: ["attack", _m(t), "--eps", "0.5", "--judge-samples",
                                        "1000000000"], USAGE, "--judge-samples"),
    ("audit-judge-samples", lambda t: ["audit", "--judge-samples", "1000000000"], USAGE,
     "--judge-samples"),
    ("ising-thermal", lambda t: ["ising", "--thermal", "1000000000"], USAGE, "--thermal"),
    ("relu-n-nets", lambda t: ["relu-scaling", "--n-nets", "1000000000"], USAGE, "--n-nets"),
    ("clone-epochs", lambda t: ["clone-attack", _m(t), "--epochs", "1000000000", "--out",
                                str(t / "o")], USAGE, "--epochs"),
    ("ising-levels", lambda t: ["ising", "--levels", "1000000000"], USAGE, "--levels"),
    # --- item 10: tracebacks become one message ---
    ("threads-1e6", lambda t: ["train", "--threads", "1000000"], USAGE, "--threads"),
    ("ising-threads", lambda t: ["ising", "--threads", "1000000"], USAGE, "CPU threads"),
    ("device-meta", lambda t: ["train", "--device", "meta"], USAGE, "cpu, cuda, cuda:N or auto"),
    ("device-mps", lambda t: ["diagnose", _m(t), "--device", "mps"], USAGE,
     "CPU and CUDA only"),
    ("relu-device-meta", lambda t: ["relu-scaling", "--device", "meta"], USAGE, "--device"),
    ("eps-1e308", lambda t: ["attack", _m(t), "--eps", "1e308"], USAGE,
     "exceeds the diameter of the input box"),
    ("depths-1e10", lambda t: ["relu-scaling", "--depths", "1-10000000000", "--out",
                               str(t / "o")], USAGE, "--depths"),
    ("chains-1e9", lambda t: ["ising", "--chains", "1000000000", "--out", str(t / "o")],
     RESOURCE, "--chains 1000000000"),
    ("config-dtype-dict", lambda t: ["diagnose", str(_edit_config(
        _model(t / "m", [16, 8, 2]), dtype={"x": 1})), "--out", str(t / "o")], USAGE,
     "'dtype' must be one of"),
    ("config-dtype-list", lambda t: ["info", str(_edit_config(
        _model(t / "m", [16, 8, 2]), dtype=["float32"]))], USAGE, "'dtype' must be one of"),
    ("config-deeply-nested", lambda t: ["info", str(_nested_config(t))], USAGE,
     "nested too deeply"),
    ("npz-rich-markup", lambda t: ["train", "--data", "npz:[/oops]", "--out", str(t / "o")],
     USAGE, "npz:[/oops]"),
    ("diagnose-npz-markup", lambda t: ["diagnose", _m(t), "--data", "npz:[/oops]", "--out",
                                       str(t / "o")], USAGE, "[/oops]"),
    # --- item 11: messages that name the right thing ---
    ("eps-0", lambda t: ["attack", _m(t), "--eps", "0"], USAGE, "must be a finite number > 0"),
    ("seed-2-64", lambda t: ["train", "--seed", str(2**64), "--out", str(t / "o")], USAGE,
     "--seed"),
    ("seed-negative-ising", lambda t: ["ising", "--seed", "-1"], USAGE, "seeds are integers"),
    ("ops-pairs-negative", lambda t: ["diagnose", _m(t), "--ops", "pairs:-5", "--out",
                                      str(t / "o")], USAGE, "must be a positive integer"),
    ("model-records-bars-100000", lambda t: ["diagnose", str(_model(
        t / "m", [16, 8, 2], spec="bars:100000")), "--out", str(t / "o")], RESOURCE,
     "bars:100000"),
    ("npz-label-5e9", lambda t: ["train", "--data", _npz_huge_label(t), "--out", str(t / "o")],
     USAGE, "at most 65,536"),
]


def _nested_config(tmp: Path) -> Path:
    model = _model(tmp / "nested", [16, 8, 2])
    text = (model / "config.json").read_text()
    (model / "config.json").write_text(text[:-2] + ', "deep": ' + "[" * 100_000
                                       + "]" * 100_000 + "}\n")
    return model


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``rgaudit ARGV`` in-process; return its exit status and its whitespace-folded output."""
    from rgaudit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).replace("│", " ").split())
    return int(exc.value.code or 0), text


@pytest.mark.parametrize("name, argv, status, fragment", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(name: str, argv: Callable[[Path], list[str]], status: int, fragment: str,
                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RGAUDIT_MAX_MEMORY", "1G")
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("RGAUDIT_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)  # default --out folders land here
    args = argv(tmp_path)
    start = time.perf_counter()
    code, text = run_main(args, capsys)
    elapsed = time.perf_counter() - start
    assert code == status, text
    assert fragment in text, text
    assert "Traceback" not in text, text
    assert elapsed < 30, f"{name} took {elapsed:.1f} s"  # fails fast (loaded 2-core CI)
