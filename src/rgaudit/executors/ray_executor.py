"""The Ray executor: one Ray task per unit, on a local Ray instance or a cluster.

What travels: ``fn`` (pickled by reference to its module, so rgaudit must be importable on every
node: installed there, or shipped with Ray's ``runtime_env={"py_modules": [...]}``), the unit
(key and its small payload), the seed, and one reference to ``shared`` (put into Ray's object
store once, fetched by each node once and then read from shared memory). Results come back to the
driver, which writes them to the run folder, so the store needs no shared file system.

Tasks that raise are retried by Ray (``max_retries`` with ``retry_exceptions=True``; a crashed
worker process is retried too) and then reported as failed; the others are collected as they
finish (``ray.wait``), which drives the progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rgaudit.errors import RGAuditError
from rgaudit.executors.base import MapReport, Unit, UnitFn, UnitLedger, progress_bar, run_unit
from rgaudit.executors.store import UnitStore

INSTALL_HINT = "the Ray executor needs Ray: pip install 'rgaudit[ray]'"


class MissingRayError(RGAuditError, ImportError):
    """``--executor ray`` without Ray installed (the CLI prints the message, no traceback)."""


def import_ray() -> Any:
    """Import ray, or raise :class:`MissingRayError` saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise MissingRayError(INSTALL_HINT) from err
    return ray


class RayExecutor:
    """Run units as Ray tasks (one CPU each).

    Parameters
    ----------
    address : str, optional
        Cluster to join (``ray.init(address=...)``). Without it, an already initialised Ray
        (e.g. started by the caller) is used, else a local instance is started with
        ``num_cpus`` CPUs and shut down by :meth:`close`.
    num_cpus : int, optional
    max_retries : int, default 2
        Retries of a task that raises or whose worker dies.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_retries: int = 2) -> None:
        self.ray = import_ray()
        self.max_retries = int(max_retries)
        t0 = time.perf_counter()
        self.owns = False
        if address is not None:
            self.ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        elif not self.ray.is_initialized():
            self.ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            self.owns = True
        self.startup_seconds = time.perf_counter() - t0
        self._remote = self.ray.remote(num_cpus=1)(run_unit).options(
            max_retries=self.max_retries, retry_exceptions=True)

    @property
    def workers(self) -> int:
        """CPUs of the cluster (the number of tasks that run at once)."""
        return int(self.ray.cluster_resources().get("CPU", 1))

    def map(self, fn: UnitFn, units: Sequence[Unit], *, seed: int, shared: Any = None,
            store: UnitStore | None = None, progress: bool = False) -> MapReport:
        """See :class:`rgaudit.executors.base.Executor`."""
        ray = self.ray
        t0 = time.perf_counter()
        ledger = UnitLedger(units, store)
        shared_ref = ray.put(shared)
        pending = {self._remote.remote(fn, u, int(seed), shared_ref): u for u in ledger.todo}
        with progress_bar(len(units), len(units) - len(pending), "units (ray)", progress
                          ) as advance:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    u = pending.pop(ref)
                    try:
                        value, secs, worker = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - reported, never swallowed
                        ledger.failed(u, e)
                    else:
                        ledger.done(u, value, secs, worker)
                    advance(1)
        return ledger.report("ray", time.perf_counter() - t0, self.workers,
                             startup_seconds=self.startup_seconds)

    def close(self) -> None:
        """Shut down the Ray instance if this executor started it."""
        if self.owns and self.ray.is_initialized():
            self.ray.shutdown()
            self.owns = False
