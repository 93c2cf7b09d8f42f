"""The executor's account of a run (``--executor local|ray``) as a typed record.

:meth:`rgaudit.executors.base.MapReport.summary` hands it over as plain data;
:meth:`ExecutionSummary.from_dict` types it and :meth:`ExecutionSummary.to_dict` gives the same
object back (same keys, same order), which the cloning and diagnose JSON record under
``settings.execution`` and the zoo's JSON under ``execution`` (with ``summary_text``, the
lines of :meth:`MapReport.summary_text`, last). :class:`PerInputExecution` is the RBM audit's
record of an ``--executor`` run (its JSON ``config`` holds the three fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_FIELDS = ("executor", "workers", "units", "computed", "cached", "failed", "wall_seconds",
           "startup_seconds", "unit_seconds_total", "unit_seconds_median", "unit_seconds_max",
           "utilisation", "stage_seconds_total", "slowest", "workers_used")


@dataclass(frozen=True)
class ExecutionSummary:
    """Where the time of an executor run went.

    Attributes
    ----------
    executor : str
        ``"local"`` or ``"ray"``.
    workers, units, computed, cached, failed : int
        Workers; units in all, computed now, resumed from the run folder, failed.
    wall_seconds, startup_seconds : float
    unit_seconds_total, unit_seconds_median, unit_seconds_max : float
        Compute time of the computed units.
    utilisation : float
        Unit compute time over wall time × workers.
    stage_seconds_total : dict of str to float
        Seconds per stage the units reported (keyed by the units' own stage names).
    slowest : list of (str, float)
        Key and seconds of the slowest units.
    workers_used : list of str
        ``host:pid`` of the workers that computed units.
    extra : dict
        What a particular executor adds (``MapReport.extra``), recorded as is.
    summary_text : str or None
        The summary as a few human-readable lines (:meth:`MapReport.summary_text`), where a
        study records them (the zoo); written last, left out when None.
    """

    executor: str
    workers: int
    units: int
    computed: int
    cached: int
    failed: int
    wall_seconds: float
    startup_seconds: float
    unit_seconds_total: float
    unit_seconds_median: float
    unit_seconds_max: float
    utilisation: float
    stage_seconds_total: dict[str, float] = field(default_factory=dict)
    slowest: list[tuple[str, float]] = field(default_factory=list)
    workers_used: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    summary_text: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecutionSummary:
        """From :meth:`MapReport.summary` (or the JSON it was written to; ``summary_text``
        included)."""
        kw = {k: d[k] for k in _FIELDS}
        kw["slowest"] = [(str(k), float(s)) for k, s in d["slowest"]]
        extra = {k: v for k, v in d.items() if k not in _FIELDS and k != "summary_text"}
        return cls(**kw, extra=extra, summary_text=d.get("summary_text"))

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in _FIELDS}
        d["stage_seconds_total"] = dict(self.stage_seconds_total)
        d["slowest"] = [[k, s] for k, s in self.slowest]
        d["workers_used"] = list(self.workers_used)
        text = {} if self.summary_text is None else {"summary_text": self.summary_text}
        return {**d, **self.extra, **text}


@dataclass(frozen=True)
class PerInputExecution:
    """How a per-input (``--executor``) audit or diagnose run was executed.

    Attributes
    ----------
    executor : str
        ``"local"`` or ``"ray"``.
    per_input_generators : str
        How each input's generators were seeded (``rgaudit.executors.base.UNIT_STREAMS``).
    execution : ExecutionSummary
        (The plain data of :meth:`~rgaudit.executors.base.MapReport.summary` is accepted and
        typed on construction.)
    """

    executor: str
    per_input_generators: str
    execution: ExecutionSummary

    def __post_init__(self) -> None:
        # The executor's plain summary (MapReport.summary()) is typed here.
        if isinstance(self.execution, dict):
            object.__setattr__(self, "execution", ExecutionSummary.from_dict(self.execution))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerInputExecution:
        return cls(d["executor"], d["per_input_generators"],
                   ExecutionSummary.from_dict(d["execution"]))

    def to_dict(self) -> dict[str, Any]:
        return {"executor": self.executor, "per_input_generators": self.per_input_generators,
                "execution": self.execution.to_dict()}
