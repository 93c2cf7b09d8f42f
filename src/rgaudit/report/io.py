"""Writing results: JSON with a schema version, atomic files, named run folders."""

from __future__ import annotations

import json
import math
import os
import tempfile
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


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    """Create ``root/<kind>-YYYYmmdd-HHMMSS[-n]`` and return it."""
    root = Path(root)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        cand = root / (f"{kind}-{stamp}" + (f"-{n}" if n else ""))
        try:
            cand.mkdir(parents=True, exist_ok=False)
            return cand
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {root}")
