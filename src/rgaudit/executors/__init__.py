"""Run independent units of work locally or on a Ray cluster, with identical results.

``make_executor("local" | "ray", address=None)`` returns an object with
``map(fn, units, *, seed, shared=None, store=None) -> MapReport``; see :mod:`.base`.
"""

from rgaudit.executors.base import (
    Executor,
    MapReport,
    Outcome,
    Unit,
    make_executor,
    unit_seed_sequence,
)
from rgaudit.executors.store import UnitStore

__all__ = ["Executor", "MapReport", "Outcome", "Unit", "UnitStore", "make_executor",
           "unit_seed_sequence"]
