"""Finished units kept in the run folder: one JSON file per unit, written atomically.

Layout: ``<run>/units/.rgaudit-units.json`` (what wrote the folder and the run's signature: the
settings that determine every unit's result) and ``<run>/units/<key>.json`` (one per finished
unit). A restarted run with the same signature skips the units found there; a different
signature is refused (the stored results would not belong to this run), and so is a ``units``
folder rgaudit did not write.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from rgaudit.executors.base import key_hash

MARKER = ".rgaudit-units.json"


def _file_name(key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", key)[:80]
    return f"{safe}-{key_hash(key) % 16**8:08x}.json"


class UnitStore:
    """Per-unit results of one run, for resuming.

    Parameters
    ----------
    folder : path
        The run folder; units go to ``folder/units``.
    signature : dict
        JSON-ready settings that determine the units' results (seed, configuration, code
        version…). Resuming requires the same signature.
    """

    def __init__(self, folder: str | os.PathLike[str], signature: dict[str, Any]) -> None:
        self.dir = Path(folder) / "units"
        self.signature = json.loads(json.dumps(signature))
        marker = self.dir / MARKER
        if self.dir.exists():
            if not marker.is_file():
                raise FileExistsError(f"{self.dir} exists but was not written by rgaudit (no "
                                      f"{MARKER}); choose another --out folder")
            old = json.loads(marker.read_text())
            if old.get("signature") != self.signature:
                raise ValueError(f"{self.dir} holds units of a run with other settings; "
                                 f"resume with the same settings or choose another --out "
                                 f"folder (stored: {old.get('signature')}, now: "
                                 f"{self.signature})")
        else:
            self.dir.mkdir(parents=True)
            _atomic_write(marker, {"written_by": "rgaudit", "signature": self.signature})

    def path(self, key: str) -> Path:
        """File of the unit ``key``."""
        return self.dir / _file_name(key)

    def load(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` if the unit finished in an earlier run, else ``(False, None)``."""
        p = self.path(key)
        if not p.is_file():
            return False, None
        rec = json.loads(p.read_text())
        if rec.get("key") != key:
            return False, None
        return True, rec["value"]

    def load_all(self, keys: list[str]) -> dict[str, Any]:
        """Stored values of those ``keys`` that finished earlier."""
        out = {}
        for k in keys:
            ok, v = self.load(k)
            if ok:
                out[k] = v
        return out

    def save(self, key: str, value: Any) -> None:
        """Store one finished unit (temporary file + rename: never a half-written file)."""
        _atomic_write(self.path(key), {"key": key, "value": value})


def _atomic_write(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        umask = os.umask(0)          # mkstemp makes 0600: give the file open()'s permissions
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
