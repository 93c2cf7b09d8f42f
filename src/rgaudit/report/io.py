"""Writing results: JSON with a schema version, atomic files, named run folders."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

SCHEMA_VERSION = 1


def to_plain(obj: Any) -> Any:
    """Convert tensors, arrays, numpy scalars, dataclasses (via ``to_dict``) and paths to JSON.

    Non-finite floats become ``None`` (JSON has no NaN), so a reader never meets a bare NaN.
    """
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_plain(obj.to_dict())
    if isinstance(obj, torch.Tensor):
        return to_plain(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return [to_plain(v) for v in obj.tolist()] if obj.ndim else to_plain(obj.item())
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it onto ``path``.

    The one atomic writer of rgaudit: :func:`atomic_write_text`, :func:`atomic_write_bytes` and
    the figure writer use it. A reader sees the old file or the complete new one, never a part;
    the data and the rename are flushed to disk (``fsync``) before it returns. On an error the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                                    dir=path.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        os.close(fd)
        fd = -1
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_result(path: str | os.PathLike, kind: str, payload: dict[str, Any]) -> Path:
    """Write a result as JSON ``{"schema_version": 1, "kind": kind, …payload}`` atomically."""
    doc = {"schema_version": SCHEMA_VERSION, "kind": kind,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           **to_plain(payload)}
    return atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def read_result(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read a result written by :func:`write_result`, checking schema version and kind."""
    doc = json.loads(Path(path).read_text())
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {doc.get('schema_version')!r} is not "
                         f"{SCHEMA_VERSION}")
    if kind is not None and doc.get("kind") != kind:
        raise ValueError(f"{path}: expected a {kind!r} result, found {doc.get('kind')!r}")
    return doc


def new_run_dir(root: str | os.PathLike, kind: str) -> Path:
    """Create ``root/<kind>-YYYYmmdd-HHMMSS[-n]``, mark it as rgaudit's and return it.

    The folder is new (never an existing one) and carries :data:`rgaudit.outputs.MARKER`.
    """
    from rgaudit.outputs import inside_model_folder, write_marker

    root = Path(root)
    model = inside_model_folder(root)
    if model is not None:
        from rgaudit.errors import OutputExistsError

        raise OutputExistsError(f"--out {root} lies inside the rgaudit model folder {model}; "
                                "choose another --out")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        cand = root / (f"{kind}-{stamp}" + (f"-{n}" if n else ""))
        try:
            cand.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        write_marker(cand, kind)
        return cand
    raise RuntimeError(f"could not create a run folder under {root}")
