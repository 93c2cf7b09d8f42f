"""Save and load a :class:`DeepRBM` as safetensors weights plus a JSON config. No pickle.

A model is a folder::

    MODEL/
      weights.safetensors   tensors "layers.{i}.W", "layers.{i}.a", "layers.{i}.b"
      config.json           {"format": "rgaudit-deeprbm", "format_version": 1, "widths": …,
                             "tied": …, "weights_sha256": …, "training": {…}, "dataset": …,
                             "seed": …, "accuracy": {…}, "rgaudit_version": …}

Saving writes into a temporary sibling folder and swaps it into place atomically
(``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, repaired on the next load if killed
between them), so a failed or killed save never leaves a half-written model or none at all.
Loading checks the hash, the tensor names and every shape against the
config and raises :class:`~rgaudit.errors.ModelFileError` naming the problem.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import tempfile
import warnings
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
#: A model's config.json is a few KiB; anything far larger is not one.
MAX_CONFIG_BYTES = 16 * 2**20
DTYPES = ("float16", "bfloat16", "float32", "float64")   # names of torch dtypes
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_TMP_TAG = ".rgaudit-tmp-"
_OLD_TAG = ".rgaudit-old-"
AT_FDCWD = -100
RENAME_EXCHANGE = 2


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the call is unavailable (no glibc symbol, old kernel, a file system
    without support); the caller then falls back to two renames.
    """
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _between_renames() -> None:
    """Test hook: called between the two renames of the fallback swap (a kill lands here)."""


def _leftovers(path: Path, tag: str) -> list[Path]:
    """Siblings ``.NAME<tag>*`` that an earlier, killed save of ``path`` left behind."""
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}{tag}"
    return sorted((p for p in path.parent.iterdir() if p.name.startswith(prefix)),
                  key=lambda p: p.stat().st_mtime)


def recover_model(path: str | os.PathLike) -> list[str]:
    """Repair what a killed :func:`save_model` left beside ``path``; return what was done.

    * No model at ``path`` but a previous one parked in ``.NAME.rgaudit-old-*`` (a kill
      between the two renames of the fallback swap): the newest complete one is moved back.
    * ``.NAME.rgaudit-tmp-*`` / ``.NAME.rgaudit-old-*`` siblings holding only model files are
      removed (nothing else ever has those names; folders with other files are reported, not
      touched).

    Call it only while holding the model's lock (:func:`save_model` does) or from a load.
    """
    path = Path(path)
    notes: list[str] = []
    olds = [p for p in _leftovers(path, _OLD_TAG) if _is_model_folder(p)]
    if not path.exists() and olds:
        olds[-1].rename(path)
        notes.append(f"recovered the previous model from {olds[-1].name} (a save was killed "
                     "between its renames)")
    for p in _leftovers(path, _TMP_TAG) + _leftovers(path, _OLD_TAG):
        if p.is_dir() and all(q.name in (WEIGHTS, CONFIG) for q in p.iterdir()):
            shutil.rmtree(p, ignore_errors=True)
            notes.append(f"removed {p.name}, left by a killed save")
        elif p.exists():
            notes.append(f"left {p} alone: it holds files rgaudit did not write")
    return notes


def check_model_out(path: str | os.PathLike) -> Path:
    """Refuse a model ``--out`` that is not an rgaudit model folder, before any training.

    A missing path, an empty folder or an rgaudit model (which is replaced) are accepted.

    Raises
    ------
    OutputExistsError
        ``path`` is a file, a non-empty folder that is not an rgaudit model, or lies inside one.
    """
    from rgaudit.errors import OutputExistsError
    from rgaudit.outputs import refuse_inside_model_folder

    path = Path(path)
    refuse_inside_model_folder(path, path.parent, "a model never goes into another model")
    if path.exists():
        if not path.is_dir():
            raise OutputExistsError(f"--out {path} is a file, not a model folder; choose "
                                    "another --out")
        if any(path.iterdir()) and not _is_model_folder(path):
            raise OutputExistsError(
                f"--out {path} exists and is not an rgaudit model folder; rgaudit replaces only "
                "its own models: choose another --out or remove that folder yourself")
    return path


def save_model(net: DeepRBM, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
               *, overwrite: bool = True) -> Path:
    """Write ``net`` to the folder ``path`` atomically.

    The model is written into a temporary sibling ``.NAME.rgaudit-tmp-*`` and swapped into place
    with one atomic ``renameat2(RENAME_EXCHANGE)`` where the system has it; elsewhere with two
    renames through ``.NAME.rgaudit-old-*``, and a kill between them is repaired on the next
    load or save (:func:`recover_model`). The model is locked (``.NAME.rgaudit-lock``) for the
    duration, so a concurrent save of the same path is refused.

    Parameters
    ----------
    net : DeepRBM
    path : path-like
        Target folder (created; replaced if it is an rgaudit model and ``overwrite``).
    metadata : dict, optional
        Extra JSON-serialisable entries (training settings, dataset, seed, accuracies).

    Returns
    -------
    Path
        The model folder.

    Raises
    ------
    OutputExistsError
        ``path`` exists and is not an rgaudit model folder (or exists and not ``overwrite``).
    OutputBusyError
        Another process is saving to ``path``.
    """
    from rgaudit.errors import OutputExistsError
    from rgaudit.outputs import lock_path

    path = Path(path)
    check_model_out(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; choose another --out or allow overwriting")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(path, f"the model {path}")
    try:
        recover_model(path)
        check_model_out(path)  # again, under the lock
        return _save_locked(net, path, metadata)
    finally:
        lock.release()


def _save_locked(net: DeepRBM, path: Path, metadata: dict[str, Any] | None) -> Path:
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{_TMP_TAG}", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    old: Path | None = None
    try:
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700: give the model ordinary permissions
        stored = [net.layer(i + 1) for i in range(len(net.layers))]  # one RBM if tied
        tensors = {f"layers.{i}.{n}": p.detach().to("cpu").contiguous()
                   for i, layer in enumerate(stored) for n, p in
                   (("W", layer.W), ("a", layer.a), ("b", layer.b))}
        save_file(tensors, str(tmp / WEIGHTS))
        cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, **net.config(),
               "weights_sha256": _sha256(tmp / WEIGHTS), "rgaudit_version": __version__}
        for key, value in (metadata or {}).items():
            if key in cfg:
                raise ValueError(f"metadata key {key!r} clashes with a reserved config key")
            cfg[key] = value
        from rgaudit.report.io import atomic_write_text

        atomic_write_text(tmp / CONFIG, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        for f in (tmp / WEIGHTS, tmp / CONFIG):
            f.chmod(0o666 & ~umask)
        with open(tmp / WEIGHTS, "rb+") as fh:
            os.fsync(fh.fileno())
        if path.exists():
            if _renameat2_exchange(tmp, path):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous model
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}{_OLD_TAG}", dir=path.parent))
                old.rmdir()  # a unique name, never a user's folder
                path.rename(old)
                _between_renames()
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
    except (OSError, ValueError, RecursionError):
        return False
    allowed = {WEIGHTS, CONFIG}
    return (isinstance(cfg, dict) and cfg.get("format") == FORMAT
            and all(p.name in allowed for p in path.iterdir()))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a model folder's ``config.json``."""
    path = Path(path)
    if not path.exists() and _leftovers(path, _OLD_TAG):
        for note in recover_model(path):
            warnings.warn(f"{path}: {note}", stacklevel=2)
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a model folder (expected {WEIGHTS} and {CONFIG}); "
                             "train one with `rgaudit train`")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise ModelFileError(f"{cfg_path} is missing: the model folder is incomplete")
    cfg = _parse_config(cfg_path)
    _check_config(cfg, cfg_path)
    return cfg


def _parse_config(cfg_path: Path) -> dict[str, Any]:
    """``config.json`` as an rgaudit DeepRBM config of this format version (size, JSON,
    ``format``, ``format_version`` checked)."""
    if cfg_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{cfg_path} is {cfg_path.stat().st_size} bytes, over the "
                             f"{MAX_CONFIG_BYTES} bytes a model config may have")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{cfg_path} is not valid JSON ({err}): corrupted") from err
    except RecursionError as err:
        raise ModelFileError(f"{cfg_path} is nested too deeply to be a model config: "
                             "corrupted or not an rgaudit config") from err
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ModelFileError(f"{cfg_path} is not an rgaudit DeepRBM config (format != {FORMAT!r})")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{cfg_path} has format_version {cfg.get('format_version')!r}; "
                             f"this rgaudit reads version {FORMAT_VERSION}")
    return cfg


def _check_config(cfg: dict[str, Any], cfg_path: Path) -> None:
    """The config's required keys, ``widths``, ``tied`` and ``dtype``."""
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
    dtype = cfg.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        shown = repr(dtype) if len(repr(dtype)) < 80 else f"a {type(dtype).__name__}"
        raise ModelFileError(f"{cfg_path}: 'dtype' must be one of {sorted(DTYPES)}, "
                             f"found {shown}")


def _check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]],
                   wpath: Path, widths: list[int]) -> None:
    """The stored tensors are exactly the ``expected`` names, shapes, floating point."""
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        raise ModelFileError(f"{wpath} does not match widths {widths}: missing "
                             f"{missing}, unexpected {extra}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ModelFileError(f"tensor {name} has shape {tuple(tensors[name].shape)} but "
                                 f"widths {widths} need {shape}")
        if not tensors[name].is_floating_point():
            raise ModelFileError(f"tensor {name} has dtype {tensors[name].dtype}; weights must "
                                 f"be floating point ({', '.join(DTYPES)}): the file was not "
                                 "written by rgaudit or was altered")


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

    from rgaudit.guards import check_memory, network_parameters
    from rgaudit.nets.deep_rbm import DeepRBM

    path = Path(path)
    cfg = read_config(path)
    wpath = path / WEIGHTS
    if not wpath.is_file():
        raise ModelFileError(f"{wpath} is missing: the model folder is incomplete")
    # sizes from the config are checked against the file and the memory budget before any
    # tensor is allocated (a config may claim widths of 1e18)
    n_params = network_parameters(cfg["widths"])
    stored_size = _ITEMSIZE[cfg.get("dtype", "float32")]
    check_memory(n_params * (stored_size + 8), what=f"loading the model {path} "
                 f"(widths {cfg['widths']})")
    if wpath.stat().st_size < n_params * stored_size:
        raise ModelFileError(f"{CONFIG} claims widths {cfg['widths']} ({n_params:,} parameters, "
                             f"{n_params * stored_size:,} bytes) but {WEIGHTS} holds only "
                             f"{wpath.stat().st_size:,} bytes: the config does not belong to "
                             "these weights")
    if _sha256(wpath) != cfg["weights_sha256"]:
        raise ModelFileError(f"{wpath} does not match the hash in {CONFIG}: the weights are "
                             "truncated, corrupted or from another model")
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{wpath} cannot be read as safetensors: {err}") from err
    stored_dtype = getattr(torch, cfg.get("dtype", "float32"))
    net = DeepRBM(cfg["widths"], tied=bool(cfg["tied"]), dtype=stored_dtype)
    stored = [net.layer(i + 1) for i in range(len(net.layers))]  # one RBM if tied
    expected = {f"layers.{i}.{n}": tuple(p.shape) for i, layer in enumerate(stored)
                for n, p in (("W", layer.W), ("a", layer.a), ("b", layer.b))}
    _check_tensors(tensors, expected, wpath, cfg["widths"])
    state = {f"layers.{k}": v for k, v in tensors.items()}
    state = {k.replace("layers.layers.", "layers."): v for k, v in state.items()}
    net.load_state_dict(state)  # casts to the config's dtype
    if dtype is not None:
        net = net.to(dtype=dtype)
    # checked after every cast: float64 weights of 1e300 become inf in float32
    for name, param in net.named_parameters():
        if not torch.isfinite(param).all():
            raise ModelFileError(f"tensor {name} of {wpath} contains NaN or inf in "
                                 f"{param.dtype} (values beyond that type's range become inf "
                                 "when cast); the weights are unusable")
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
            if n > min(wpath.stat().st_size - 8, MAX_CONFIG_BYTES):  # never read a bogus size
                raise ValueError(f"header size {n} does not fit the file")
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error) as err:
        raise ModelFileError(f"{wpath} cannot be read as safetensors: {err}") from err
    shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    expected = expected_shapes(cfg["widths"], bool(cfg["tied"]))
    if shapes != expected:
        raise ModelFileError(f"{wpath} does not match widths {cfg['widths']}: tensors "
                             f"{sorted(shapes)} with shapes that differ from the config's")
    return cfg
