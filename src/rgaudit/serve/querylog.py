"""Append-only JSONL query log, rotated by size (the standard library's rotating handler)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import threading
import time
from pathlib import Path
from typing import Any


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
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
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
