"""The executor interface: independent units, generators keyed by identity, retries, resume.

A *unit* is one independent piece of work (one input of an audit, one cell of a clone-attack
grid, one network of the zoo) named by a stable ``key``. ``Executor.map(fn, units, seed=...)``
calls ``fn(unit, seed_sequence, shared)`` for every unit, where

- ``seed_sequence`` is the named stream ``rgaudit.random.seed_sequence(seed, "unit", key)``
  (:func:`unit_seed_sequence`): the random numbers of a unit depend on its identity only, never
  on the worker that runs it or on the order units finish, so a Ray run gives the same results as
  a local one, unit by unit. A unit names its own streams below it by role, never by position
  (``rgaudit.random.torch_generator(ss, "fim")``, ``child_seed(ss, "unit.attacks")``, ...);
- ``shared`` is one read-only object every unit needs (a network, a data set): the local
  executor passes it as is, the Ray executor puts it in the object store once and ships a
  reference (each worker process deserialises it once per task that uses it).

A unit that raises is retried ``max_retries`` times and then reported as failed in the
:class:`MapReport`; the other units are not lost. With a :class:`~.store.UnitStore`, every
finished unit is written to the run folder at once (one JSON file per unit, atomically) and
skipped when the run is restarted, so an interrupted run resumes where it stopped. Results must
therefore be JSON-ready (``dict``/``list``/``float``/``int``/``str``/``None``); Python's JSON
writes floats with ``repr``, so a result read back from the store is bit-identical.
"""

from __future__ import annotations

import hashlib
import os
import socket
import statistics
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rgaudit.choices import EXECUTORS as EXECUTORS
from rgaudit.random import seed_sequence

if TYPE_CHECKING:
    from rgaudit.executors.store import UnitStore

UnitFn = Callable[["Unit", np.random.SeedSequence, Any], Any]

#: How a unit's random numbers are named (recorded in executor results).
UNIT_STREAMS = "named roles below stream ('unit', unit key) of the seed (rgaudit.random)"


@dataclass(frozen=True)
class Unit:
    """One independent piece of work.

    Attributes
    ----------
    key : str
        Stable identity (e.g. ``"input-17"``, ``"rbm-d3-w64-long-wd0"``): keys the unit's random
        numbers and its file in the run folder. Unique within one ``map``.
    payload : Any
        The unit's own (small, picklable) arguments.
    """

    key: str
    payload: Any = None


def key_hash(key: str) -> int:
    """Stable 128-bit hash of a unit key (SHA-256; Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:16], "little")


def unit_seed_sequence(seed: int, key: str) -> np.random.SeedSequence:
    """The unit's root stream: ``rgaudit.random.seed_sequence(seed, "unit", key)``.

    A pure function of the run seed and the unit key (BLAKE2b, not the salted ``hash``), so
    every executor and every worker gives a unit the same numbers; the unit derives its
    sub-streams from it by role (:func:`rgaudit.random.seed_sequence` accepts it as the seed).
    """
    return seed_sequence(seed, "unit", key)


@dataclass
class Outcome:
    """What became of one unit.

    Attributes
    ----------
    key : str
    ok : bool
    value : Any
        ``fn``'s result (None when failed).
    error : str or None
        Last exception with its traceback, when failed.
    seconds : float
        Wall time of the successful attempt inside the worker (0 for cached units).
    cached : bool
        Read back from the run folder instead of computed.
    worker : str
        ``host:pid`` of the process that computed it.
    """

    key: str
    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False
    worker: str = ""


@dataclass
class MapReport:
    """All outcomes of one ``map`` (in the order of the units) and where the time went."""

    executor: str
    outcomes: list[Outcome]
    wall_seconds: float
    workers: int
    startup_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> list[Any]:
        """Results in unit order (None for failed units)."""
        return [o.value for o in self.outcomes]

    @property
    def failures(self) -> dict[str, str]:
        """Key → error of every failed unit."""
        return {o.key: o.error or "" for o in self.outcomes if not o.ok}

    def raise_on_failure(self, what: str = "units") -> None:
        """Raise a RuntimeError naming the failed units (after all others finished)."""
        if self.failures:
            first = next(iter(self.failures.items()))
            raise RuntimeError(f"{len(self.failures)} of {len(self.outcomes)} {what} failed "
                               f"after retries ({', '.join(self.failures)}); the finished ones "
                               f"are kept. First error ({first[0]}):\n{first[1]}")

    def summary(self) -> dict[str, Any]:
        """Where the time went: start-up, computing, idle/overhead, slowest units."""
        done = [o for o in self.outcomes if o.ok and not o.cached]
        secs = [o.seconds for o in done]
        busy = sum(secs)
        stages: dict[str, float] = {}
        for o in done:
            t = o.value.get("timings") if isinstance(o.value, dict) else None
            if isinstance(t, dict):
                for k, v in t.items():
                    if isinstance(v, int | float):
                        stages[k] = stages.get(k, 0.0) + float(v)
        capacity = self.wall_seconds * max(self.workers, 1)
        slow = sorted(done, key=lambda o: -o.seconds)[:3]
        return {
            "executor": self.executor, "workers": self.workers,
            "units": len(self.outcomes), "computed": len(done),
            "cached": sum(o.cached for o in self.outcomes),
            "failed": len(self.failures),
            "wall_seconds": self.wall_seconds, "startup_seconds": self.startup_seconds,
            "unit_seconds_total": busy,
            "unit_seconds_median": statistics.median(secs) if secs else 0.0,
            "unit_seconds_max": max(secs) if secs else 0.0,
            "utilisation": busy / capacity if capacity > 0 else 0.0,
            "stage_seconds_total": stages,
            "slowest": [[o.key, o.seconds] for o in slow],
            "workers_used": sorted({o.worker for o in done}),
            **self.extra,
        }

    def summary_text(self) -> str:
        """The summary as a few human-readable lines."""
        s = self.summary()
        lines = [f"{s['executor']} executor, {s['workers']} worker(s): {s['units']} units "
                 f"({s['computed']} computed, {s['cached']} resumed from the run folder, "
                 f"{s['failed']} failed) in {s['wall_seconds']:.1f} s wall "
                 f"(start-up {s['startup_seconds']:.1f} s)",
                 f"unit compute {s['unit_seconds_total']:.1f} s in total, median "
                 f"{s['unit_seconds_median']:.2f} s, max {s['unit_seconds_max']:.2f} s; "
                 f"worker utilisation {100 * s['utilisation']:.0f}%"]
        if s["stage_seconds_total"]:
            tot = sum(s["stage_seconds_total"].values()) or 1.0
            parts = ", ".join(f"{k} {v:.1f} s ({100 * v / tot:.0f}%)" for k, v in
                              sorted(s["stage_seconds_total"].items(), key=lambda kv: -kv[1]))
            lines.append(f"stages: {parts}")
        return "\n".join(lines)


def run_unit(fn: UnitFn, unit: Unit, seed: int, shared: Any) -> tuple[Any, float, str]:
    """Call ``fn`` on one unit with its keyed seed sequence; returns (value, seconds, worker).

    Exceptions propagate (the executor retries and reports them).
    """
    t0 = time.perf_counter()
    value = fn(unit, unit_seed_sequence(seed, unit.key), shared)
    return value, time.perf_counter() - t0, f"{socket.gethostname()}:{os.getpid()}"


class UnitLedger:
    """The bookkeeping every executor's ``map`` shares: which units are left, what became of each.

    Construction checks the keys and reads the units a previous run finished back from
    ``store``; :meth:`done` and :meth:`failed` record an outcome (a finished unit is written to
    the store at once); :meth:`report` lists the outcomes in unit order.

    Parameters
    ----------
    units : sequence of Unit
    store : UnitStore, optional
    """

    def __init__(self, units: Sequence[Unit], store: UnitStore | None) -> None:
        check_units(units)
        self.units, self.store = list(units), store
        cached = store.load_all([u.key for u in units]) if store is not None else {}
        self.outcomes = {k: Outcome(k, True, v, cached=True) for k, v in cached.items()}
        #: Units still to run, in order.
        self.todo = [u for u in units if u.key not in cached]

    def done(self, unit: Unit, value: Any, seconds: float, worker: str) -> None:
        """Record (and store) a finished unit."""
        if self.store is not None:
            self.store.save(unit.key, value)
        self.outcomes[unit.key] = Outcome(unit.key, True, value, seconds=seconds, worker=worker)

    def failed(self, unit: Unit, err: BaseException) -> None:
        """Record a unit that raised on its last attempt."""
        self.outcomes[unit.key] = Outcome(unit.key, False, error=format_error(err))

    def report(self, executor: str, wall_seconds: float, workers: int,
               startup_seconds: float = 0.0) -> MapReport:
        """The :class:`MapReport` of every unit, in unit order."""
        return MapReport(executor, [self.outcomes[u.key] for u in self.units], wall_seconds,
                         workers, startup_seconds=startup_seconds)


class Executor(Protocol):
    """``map(fn, units, *, seed, shared=None, store=None, progress=False) -> MapReport``."""

    name: str

    def map(self, fn: UnitFn, units: Sequence[Unit], *, seed: int, shared: Any = None,
            store: UnitStore | None = None, progress: bool = False) -> MapReport: ...

    def close(self) -> None: ...


def check_units(units: Sequence[Unit]) -> None:
    """Raise ValueError on duplicate keys (a key names a unit's random numbers and file)."""
    seen: set[str] = set()
    dup = [u.key for u in units if u.key in seen or seen.add(u.key)]  # type: ignore[func-returns-value]
    if dup:
        raise ValueError(f"unit keys must be unique; repeated: {sorted(set(dup))[:5]}")


def format_error(err: BaseException) -> str:
    """One exception with its traceback, as text."""
    return "".join(traceback.format_exception(type(err), err, err.__traceback__)).strip()


@contextmanager
def progress_bar(total: int, done: int, description: str, enabled: bool
                 ) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (with ETA) over finished units; yields ``advance(n)``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import Progress

    from rgaudit.report.progress import progress_columns

    with Progress(*progress_columns(), transient=False) as bar:
        task = bar.add_task(description, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def make_executor(name: str = "local", *, address: str | None = None,
                  num_cpus: int | None = None, max_retries: int = 2) -> Executor:
    """The executor called ``name`` (``--executor``): ``local`` or ``ray``.

    Parameters
    ----------
    name : {"local", "ray"}
    address : str, optional
        Ray cluster address (``--address``; e.g. ``ray://head:10001`` or ``auto``); without it a
        local Ray instance is started (and shut down when the executor is closed).
    num_cpus : int, optional
        CPUs of a locally started Ray instance (default: all).
    max_retries : int
        Attempts after the first for a unit that raises.
    """
    if name == "local":
        if address is not None:
            raise ValueError("--address only applies to --executor ray")
        from rgaudit.executors.local import LocalExecutor

        return LocalExecutor(max_retries=max_retries)
    if name == "ray":
        from rgaudit.executors.ray_executor import RayExecutor

        return RayExecutor(address=address, num_cpus=num_cpus, max_retries=max_retries)
    raise ValueError(f"unknown executor {name!r}; use --executor local or --executor ray")
