"""The local executor: units one after another in this process (the reference path)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rgaudit.executors.base import MapReport, Unit, UnitFn, UnitLedger, progress_bar, run_unit
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
        t0 = time.perf_counter()
        ledger = UnitLedger(units, store)
        with progress_bar(len(units), len(units) - len(ledger.todo), "units", progress) as advance:
            for u in ledger.todo:
                err: BaseException | None = None
                for _ in range(self.max_retries + 1):
                    try:
                        value, secs, worker = run_unit(fn, u, seed, shared)
                    except Exception as e:  # noqa: BLE001 - reported, never swallowed
                        err = e
                        continue
                    ledger.done(u, value, secs, worker)
                    break
                else:
                    assert err is not None
                    ledger.failed(u, err)
                advance(1)
        return ledger.report("local", time.perf_counter() - t0, 1)

    def close(self) -> None:
        """Nothing to release."""
