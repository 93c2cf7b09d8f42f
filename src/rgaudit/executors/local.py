"""The local executor: units one after another in this process (the reference path)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rgaudit.executors.base import (
    MapReport,
    Outcome,
    Unit,
    UnitFn,
    check_units,
    format_error,
    progress_bar,
    run_unit,
)
from rgaudit.executors.store import UnitStore


class LocalExecutor:
    """Run every unit in this process, in order; retry a unit that raises ``max_retries`` times.

    Parameters
    ----------
    max_retries : int, default 2
    """

    name = "local"

    def __init__(self, max_retries: int = 2) -> None:
        self.max_retries = int(max_retries)

    def map(self, fn: UnitFn, units: Sequence[Unit], *, seed: int, shared: Any = None,
            store: UnitStore | None = None, progress: bool = False) -> MapReport:
        """See :class:`rgaudit.executors.base.Executor`."""
        check_units(units)
        t0 = time.perf_counter()
        cached = store.load_all([u.key for u in units]) if store is not None else {}
        out: dict[str, Outcome] = {k: Outcome(k, True, v, cached=True) for k, v in cached.items()}
        todo = [u for u in units if u.key not in cached]
        with progress_bar(len(units), len(cached), "units", progress) as advance:
            for u in todo:
                err: BaseException | None = None
                for _ in range(self.max_retries + 1):
                    try:
                        value, secs, worker = run_unit(fn, u, seed, shared)
                    except Exception as e:  # noqa: BLE001 - reported, never swallowed
                        err = e
                        continue
                    if store is not None:
                        store.save(u.key, value)
                    out[u.key] = Outcome(u.key, True, value, seconds=secs, worker=worker)
                    break
                else:
                    assert err is not None
                    out[u.key] = Outcome(u.key, False, error=format_error(err))
                advance(1)
        return MapReport("local", [out[u.key] for u in units], time.perf_counter() - t0, 1)

    def close(self) -> None:
        """Nothing to release."""
