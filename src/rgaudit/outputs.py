"""The one output policy of every rgaudit command: never overwrite what rgaudit did not write.

Rules (``docs/design.md``, "Output policy"):

* A **run folder** (``--out`` of ``diagnose``, ``ising``, ``relu-scaling``, ``clone-attack``;
  the run folders ``audit`` makes under its ``--out``) is marked by a file :data:`MARKER` written
  when rgaudit creates or adopts it. :func:`prepare_out` accepts a missing folder, an empty one,
  or one holding the marker; any other existing path is refused with
  :class:`~rgaudit.errors.OutputExistsError` unless ``force`` (``--force``), and a path that is a
  file, or a folder inside an rgaudit model, is refused even then.
* A **result file** (``protect --out FILE``) may replace only a JSON result rgaudit wrote
  (``schema_version`` and ``kind`` keys) unless ``force``; never a file inside a model folder.
* Both are checked **before** the work starts, and the output stays **locked** (``fcntl.flock``
  on a lock file, released and removed when the command ends, released by the kernel if the
  process dies) so that a second writer is refused with
  :class:`~rgaudit.errors.OutputBusyError` instead of silently winning the race.
* Model folders (``train --out``) follow :mod:`rgaudit.nets.io`: an rgaudit model may be replaced,
  anything else never; :func:`lock_path` locks them the same way.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from rgaudit.errors import OutputBusyError, OutputExistsError

#: Marker file of a folder rgaudit created (or was allowed to adopt with ``--force``).
MARKER = ".rgaudit-run.json"
LOCK_SUFFIX = ".rgaudit-lock"
_MODEL_FORMAT = "rgaudit-deeprbm"


class Lock:
    """An exclusive ``flock`` on ``path``; the file is removed when released.

    The lock is taken with ``LOCK_NB``: a held lock raises :class:`OutputBusyError` at once
    naming the holder's pid. A lock file left by a killed process holds no lock (the kernel
    dropped it) and is simply taken over, so stale locks need no clean-up.
    """

    def __new__(cls, path: Path, what: str) -> Lock:
        for held in _HELD:  # re-entrant within one process (a command, then save_model)
            if held.path == path:
                held.depth += 1
                return held
        return super().__new__(cls)

    def __init__(self, path: Path, what: str) -> None:
        if getattr(self, "fd", None) is not None:
            return  # an already-held lock, returned by __new__
        self.path = path
        self.depth = 1
        self.fd: int | None = None
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OutputBusyError(
                        f"another rgaudit run (pid {holder}) is writing {what}; wait for it to "
                        "finish or choose another --out") from None
                raise
            # the file may have been removed by its previous holder between open and flock
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self.fd = fd
        _HELD.append(self)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self.fd is None:
            return
        self.depth -= 1
        if self.depth > 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None
            if self in _HELD:
                _HELD.remove(self)


_HELD: list[Lock] = []


@atexit.register
def release_all() -> None:
    """Release every lock this process holds (at exit, and at the end of a CLI command)."""
    for lock in list(_HELD):
        lock.depth = 1
        lock.release()


def _release_with_command(lock: Lock) -> None:
    """Release ``lock`` when the running click command ends, or at interpreter exit."""
    try:
        from typer._click.globals import get_current_context

        ctx = get_current_context(silent=True)
    except ImportError:  # pragma: no cover - typer always vendors click
        ctx = None
    if ctx is not None:
        ctx.call_on_close(lock.release)


def lock_path(target: str | os.PathLike, what: str | None = None) -> Lock:
    """Lock ``target`` (a file or folder, existing or not) through ``.NAME.rgaudit-lock`` beside it.

    Held until the running command ends (or :meth:`Lock.release`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = Lock(target.with_name(f".{target.name}{LOCK_SUFFIX}"), what or f"--out {target}")
    _release_with_command(lock)
    return lock


def inside_model_folder(path: Path) -> Path | None:
    """The rgaudit model folder that contains ``path`` (or is ``path``), if any."""
    for folder in (path, *path.parents):
        cfg = folder / "config.json"
        try:
            if cfg.is_file() and (folder / "weights.safetensors").exists():
                doc = json.loads(cfg.read_text())
                if isinstance(doc, dict) and doc.get("format") == _MODEL_FORMAT:
                    return folder
        except (OSError, ValueError, RecursionError):
            continue
    return None


def refuse_inside_model_folder(path: Path, where: Path, why: str, option: str = "--out") -> None:
    """Raise :class:`OutputExistsError` if ``where`` lies inside (or is) an rgaudit model folder.

    Parameters
    ----------
    path : Path
        What the user passed (named in the message).
    where : Path
        The folder checked: ``path`` itself for an output folder, its parent for a file.
    why : str
        Why nothing may be written there (the message's middle part).
    option : str
        The CLI option that took ``path``.
    """
    model = inside_model_folder(where)
    if model is not None:
        raise OutputExistsError(f"{option} {path} lies inside the rgaudit model folder {model}; "
                                f"{why}: choose another {option}")


def is_rgaudit_run(folder: Path) -> bool:
    """Whether ``folder`` carries the marker of a run folder rgaudit made."""
    return (folder / MARKER).is_file()


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as an rgaudit run folder of ``kind``."""
    from rgaudit import __version__
    from rgaudit.report.io import atomic_write_text

    doc = {"kind": kind, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "rgaudit_version": __version__}
    atomic_write_text(folder / MARKER, json.dumps(doc) + "\n")


def prepare_out(out: str | os.PathLike, *, kind: str, force: bool = False) -> Path:
    """Check, create, mark and lock the run folder ``out`` before any work is done.

    Parameters
    ----------
    out : path-like
        The command's ``--out`` folder.
    kind : str
        The command, recorded in the marker (``"diagnose"``, ``"ising"``, …).
    force : bool, default False
        ``--force``: adopt an existing non-empty folder rgaudit did not make (the files the
        command writes are replaced; nothing else in the folder is touched).

    Returns
    -------
    Path
        The folder, existing, marked and locked until the command ends.

    Raises
    ------
    OutputExistsError
        ``out`` is a file, lies inside a model folder, or is a non-empty folder without the
        marker and ``force`` is false.
    OutputBusyError
        Another rgaudit process is writing into ``out``.
    """
    out = Path(out)
    refuse_inside_model_folder(out, out, "results never go into a model")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} is an existing file, not a folder; choose "
                                "another --out")
    out.mkdir(parents=True, exist_ok=True)
    lock = Lock(out / f"{MARKER}{LOCK_SUFFIX}", f"into --out {out}")
    _release_with_command(lock)
    try:
        others = [p.name for p in out.iterdir() if p.name not in (MARKER, lock.path.name)]
        if others and not is_rgaudit_run(out) and not force:
            shown = ", ".join(sorted(others)[:3]) + (", …" if len(others) > 3 else "")
            raise OutputExistsError(
                f"--out {out} exists and was not written by rgaudit (it holds {shown}); "
                "rgaudit never overwrites what it did not write: choose a new or empty folder, "
                "or pass --force to write this command's files into it")
        if not is_rgaudit_run(out):
            write_marker(out, kind)
    except BaseException:
        lock.release()
        raise
    return out


def prepare_out_file(out: str | os.PathLike, *, kind: str, force: bool = False) -> Path:
    """Check and lock a single result file ``out`` (``protect --out FILE``) before the work.

    A missing file is fine; an existing one must be an rgaudit JSON result of the same
    ``kind`` unless ``force``. Files inside a model folder and folders are always refused.

    Raises
    ------
    OutputExistsError, OutputBusyError
    """
    out = Path(out)
    refuse_inside_model_folder(out, out.parent, "writing there would break the model")
    if out.is_dir():
        raise OutputExistsError(f"--out {out} is a folder; give a file name such as "
                                f"{out / (kind + '.json')}")
    lock = lock_path(out, f"--out {out}")
    try:
        if out.exists() and not force:
            try:
                doc = json.loads(out.read_text())
                ours = isinstance(doc, dict) and "schema_version" in doc and doc.get("kind") == kind
            except (OSError, ValueError, RecursionError):
                ours = False
            if not ours:
                raise OutputExistsError(
                    f"--out {out} exists and is not an rgaudit {kind} file; rgaudit never "
                    "overwrites what it did not write: choose another --out, or pass --force")
    except BaseException:
        lock.release()
        raise
    return out
