"""Append-only JSONL query log, rotated by size (the standard library's rotating handler)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import threading
import time
from pathlib import Path
from typing import Any

from rgaudit.errors import OutputExistsError


class QueryLog:
    """One JSON object per line, for forensics: time, client, rows, status, latency, and a
    SHA-256 digest per input row (not the inputs themselves).

    The file is opened in append mode and never rewritten; when it reaches ``max_bytes`` it is
    renamed ``<name>.1`` (older ones shifted, ``backups`` kept) and a new file is started.

    Parameters
    ----------
    path : Path
    max_bytes : int
    backups : int

    Raises
    ------
    OutputExistsError
        ``path`` or one of the files rotation would rename over (``<name>.1`` …) exists and is
        not an rgaudit query log, or ``path`` lies inside a model folder: rgaudit never
        overwrites a file it did not write.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        check_log_path(self.path, backups)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(
            self.path, mode="a", maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._lock = threading.Lock()

    def write(self, **record: Any) -> None:
        """Append one record (plain JSON data) with a UTC timestamp."""
        line = json.dumps({"time": time.time(), **record}, separators=(",", ":"),
                          allow_nan=False, default=str)
        rec = logging.LogRecord("rgaudit.serve.querylog", logging.INFO, "", 0, line, None, None)
        with self._lock:
            self._handler.emit(rec)
            self._handler.flush()

    def close(self) -> None:
        self._handler.close()


def _is_query_log(path: Path) -> bool:
    """Whether ``path``'s first line is a record this class writes (a JSON object with
    ``time``); an empty file counts as one."""
    with path.open("rb") as fh:
        first = fh.readline(1 << 16)
    if not first.strip():
        return True
    try:
        rec = json.loads(first)
    except ValueError:
        return False
    return isinstance(rec, dict) and "time" in rec


def check_log_path(path: Path, backups: int) -> None:
    """Refuse a ``--log`` whose file, or a file its rotation would replace, is not ours."""
    from rgaudit.outputs import inside_model_folder

    model = inside_model_folder(path)
    if model is not None:
        raise OutputExistsError(f"--log {path} lies inside the rgaudit model folder {model}; "
                                "choose another --log")
    for p in [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1)]:
        if p.exists() and (not p.is_file() or not _is_query_log(p)):
            raise OutputExistsError(
                f"--log {path}: {p} exists and is not an rgaudit query log (rotation would "
                "append to or replace it); choose another --log or move that file")
