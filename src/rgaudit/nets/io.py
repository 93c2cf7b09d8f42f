"""Save and load a :class:`DeepRBM` as safetensors weights plus a JSON config. No pickle.

A model is a folder::

    MODEL/
      weights.safetensors   tensors "layers.{i}.W", "layers.{i}.a", "layers.{i}.b"
      config.json           {"format": "rgaudit-deeprbm", "format_version": 1, "widths": …,
                             "tied": …, "weights_sha256": …, "training": {…}, "dataset": …,
                             "seed": …, "accuracy": {…}, "rgaudit_version": …}

Saving writes into a temporary sibling folder and renames it into place, so a failed save never
leaves a half-written model. Loading checks the hash, the tensor names and every shape against the
config and raises :class:`~rgaudit.errors.ModelFileError` naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rgaudit import __version__
from rgaudit.errors import ModelFileError

if TYPE_CHECKING:  # torch is imported where it is used: `rgaudit info` reads configs only
    import torch

    from rgaudit.nets.deep_rbm import DeepRBM

FORMAT = "rgaudit-deeprbm"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
DTYPES = ("float16", "bfloat16", "float32", "float64")   # names of torch dtypes


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(net: DeepRBM, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
               *, overwrite: bool = True) -> Path:
    """Write ``net`` to the folder ``path`` atomically.

    Parameters
    ----------
    net : DeepRBM
    path : path-like
        Target folder (created; replaced if it exists and ``overwrite``).
    metadata : dict, optional
        Extra JSON-serialisable entries (training settings, dataset, seed, accuracies).

    Returns
    -------
    Path
        The model folder.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; choose another --out or allow overwriting")
        if not path.is_dir():
            raise FileExistsError(f"{path} is a file, not a model folder; choose another --out")
        if any(path.iterdir()) and not _is_model_folder(path):
            raise FileExistsError(
                f"{path} exists and is not an rgaudit model folder; rgaudit replaces only its "
                "own models: choose another --out or remove that folder yourself")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    old: Path | None = None
    try:
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700: give the model ordinary permissions
        tensors = {f"layers.{i}.{n}": p.detach().to("cpu").contiguous()
                   for i, layer in enumerate(net.layers) for n, p in
                   (("W", layer.W), ("a", layer.a), ("b", layer.b))}
        save_file(tensors, str(tmp / WEIGHTS))
        cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, **net.config(),
               "weights_sha256": _sha256(tmp / WEIGHTS), "rgaudit_version": __version__}
        for key, value in (metadata or {}).items():
            if key in cfg:
                raise ValueError(f"metadata key {key!r} clashes with a reserved config key")
            cfg[key] = value
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        for f in (tmp / WEIGHTS, tmp / CONFIG):
            f.chmod(0o666 & ~umask)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
            old = None
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not path.exists():
            old.rename(path)  # put the previous model back
        raise
    return path


def _is_model_folder(path: Path) -> bool:
    """Whether ``path`` holds an rgaudit model config (so that replacing it loses no user data)."""
    try:
        cfg = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    allowed = {WEIGHTS, CONFIG}
    return (isinstance(cfg, dict) and cfg.get("format") == FORMAT
            and all(p.name in allowed for p in path.iterdir()))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a model folder's ``config.json``."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a model folder (expected {WEIGHTS} and {CONFIG}); "
                             "train one with `rgaudit train`")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise ModelFileError(f"{cfg_path} is missing: the model folder is incomplete")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{cfg_path} is not valid JSON ({err}): corrupted") from err
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ModelFileError(f"{cfg_path} is not an rgaudit DeepRBM config (format != {FORMAT!r})")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{cfg_path} has format_version {cfg.get('format_version')!r}; "
                             f"this rgaudit reads version {FORMAT_VERSION}")
    for key in ("widths", "tied", "weights_sha256"):
        if key not in cfg:
            raise ModelFileError(f"{cfg_path} lacks the required key {key!r}")
    widths = cfg["widths"]
    if (not isinstance(widths, list) or len(widths) < 2
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)):
        raise ModelFileError(f"{cfg_path}: 'widths' must be a list of at least two positive "
                             f"integers, found {widths!r}; the config was edited or corrupted")
    if not isinstance(cfg["tied"], bool):
        raise ModelFileError(f"{cfg_path}: 'tied' must be true or false, found {cfg['tied']!r}")
    if cfg["tied"] and len(set(widths)) != 1:
        raise ModelFileError(f"{cfg_path}: a weight-tied model needs equal widths, found {widths}")
    if cfg.get("dtype", "float32") not in DTYPES:
        raise ModelFileError(f"{cfg_path}: 'dtype' must be one of {sorted(DTYPES)}, "
                             f"found {cfg.get('dtype')!r}")
    return cfg


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> tuple[DeepRBM, dict[str, Any]]:
    """Load a model folder written by :func:`save_model`.

    Returns
    -------
    net : DeepRBM
    config : dict
        The parsed ``config.json``.

    Raises
    ------
    ModelFileError
        Missing files, bad JSON, hash mismatch (truncated or altered weights), missing or
        unexpected tensors, or shapes that do not match the config.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from rgaudit.nets.deep_rbm import DeepRBM

    path = Path(path)
    cfg = read_config(path)
    wpath = path / WEIGHTS
    if not wpath.is_file():
        raise ModelFileError(f"{wpath} is missing: the model folder is incomplete")
    if _sha256(wpath) != cfg["weights_sha256"]:
        raise ModelFileError(f"{wpath} does not match the hash in {CONFIG}: the weights are "
                             "truncated, corrupted or from another model")
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{wpath} cannot be read as safetensors: {err}") from err
    stored_dtype = getattr(torch, cfg.get("dtype", "float32"))
    net = DeepRBM(cfg["widths"], tied=bool(cfg["tied"]), dtype=stored_dtype)
    expected = {f"layers.{i}.{n}": tuple(p.shape) for i, layer in enumerate(net.layers)
                for n, p in (("W", layer.W), ("a", layer.a), ("b", layer.b))}
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        raise ModelFileError(f"{wpath} does not match widths {cfg['widths']}: missing "
                             f"{missing}, unexpected {extra}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ModelFileError(f"tensor {name} has shape {tuple(tensors[name].shape)} but "
                                 f"widths {cfg['widths']} need {shape}")
        if not torch.isfinite(tensors[name]).all():
            raise ModelFileError(f"tensor {name} contains NaN or inf")
    state = {f"layers.{k}": v for k, v in tensors.items()}
    state = {k.replace("layers.layers.", "layers."): v for k, v in state.items()}
    net.load_state_dict(state)
    if dtype is not None:
        net = net.to(dtype=dtype)
    return net.to(device), cfg


def expected_shapes(widths: list[int], tied: bool) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape of a model folder's weights (``layers.{i}.W/a/b``)."""
    pairs = [(widths[0], widths[0])] if tied else list(zip(widths[:-1], widths[1:], strict=True))
    out: dict[str, tuple[int, ...]] = {}
    for i, (n_in, n_out) in enumerate(pairs):
        out.update({f"layers.{i}.W": (n_out, n_in), f"layers.{i}.a": (n_out,),
                    f"layers.{i}.b": (n_in,)})
    return out


def inspect_model(path: str | os.PathLike) -> dict[str, Any]:
    """Check a model folder without importing torch; return its config.

    Checks what :func:`load_model` checks except the tensor values: the config, the weights'
    hash, and the tensor names and shapes read from the safetensors header (plain JSON).

    Raises
    ------
    ModelFileError
        As :func:`load_model`.
    """
    path = Path(path)
    cfg = read_config(path)
    wpath = path / WEIGHTS
    if not wpath.is_file():
        raise ModelFileError(f"{wpath} is missing: the model folder is incomplete")
    if _sha256(wpath) != cfg["weights_sha256"]:
        raise ModelFileError(f"{wpath} does not match the hash in {CONFIG}: the weights are "
                             "truncated, corrupted or from another model")
    try:
        with open(wpath, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error) as err:
        raise ModelFileError(f"{wpath} cannot be read as safetensors: {err}") from err
    shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    expected = expected_shapes(cfg["widths"], bool(cfg["tied"]))
    if shapes != expected:
        raise ModelFileError(f"{wpath} does not match widths {cfg['widths']}: tensors "
                             f"{sorted(shapes)} with shapes that differ from the config's")
    return cfg
