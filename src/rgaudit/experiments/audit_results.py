"""The parts of an audit result shared by the RBM audit (:mod:`rgaudit.experiments.audit`) and
the audit of any classifier (:mod:`rgaudit.experiments.audit_any`): quartiles of the minimal
flipping ε, the audited inputs, the MCRG diagnosis, the record of where a model came from.
Light: torch only (scipy on use).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Quartiles:
    """Quartiles of per-input minimal ε over all inputs, unflipped ones (``inf``) counted as
    above every finite value; ``n_flipped`` of ``n`` inputs flipped."""

    q1: float
    median: float
    q3: float
    n_flipped: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        if self.n_flipped == 0:  # the key order the JSON has always had for this case
            return {"median": self.median, "q1": self.q1, "q3": self.q3, "n_flipped": 0,
                    "n": self.n}
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Quartiles:
        """From :meth:`to_dict` or its JSON (where ``null`` is ``inf``: not flipped)."""
        return cls(inf_from_json(d["q1"]), inf_from_json(d["median"]), inf_from_json(d["q3"]),
                   int(d["n_flipped"]), int(d["n"]))


def inf_from_json(v: Any) -> float:
    """A minimal flipping ε read back from JSON: ``null`` was ``inf`` (not flipped)."""
    return float("inf") if v is None else float(v)


def nan_from_json(v: Any) -> float:
    """A number read back from JSON: ``null`` was a non-finite number, NaN here."""
    return float("nan") if v is None else float(v)


def inf_list_from_json(v: list[Any]) -> list[float]:
    """:func:`inf_from_json` of each entry."""
    return [inf_from_json(a) for a in v]


def censored_quartiles(v: Tensor) -> Quartiles:
    """:class:`Quartiles` of per-input minimal ε ``v`` of shape (n,), ``inf`` = not flipped."""
    from rgaudit.stats import censored_quantiles

    v = v.to(torch.float64)
    fin = v[torch.isfinite(v)]
    if fin.numel() == 0:
        return Quartiles(float("inf"), float("inf"), float("inf"), 0, int(v.numel()))
    # medians over all inputs, counting unflipped (inf) ones as above every finite value
    qs = censored_quantiles(v.cpu().numpy(), (0.25, 0.5, 0.75))
    return Quartiles(qs[0], qs[1], qs[2], int(fin.numel()), int(v.numel()))


_quartiles = censored_quartiles


@dataclass
class AuditInputs:
    """The audited inputs: test-set ``indices`` of the first correctly classified ones among
    the first ``pool``, the judge's ``pool_accuracy``, up to four ``images``, all ``labels``
    and the inputs' ``norm_l2`` (None until an audit records them; left out of the JSON
    then: the RBM audit records images and labels, the audit of any model labels and
    norms)."""

    indices: list[int]
    pool: int
    pool_accuracy: float
    images: list[list[float]] | None = None
    labels: list[int] | None = None
    norm_l2: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ModelRecord:
    """Where an audited model and its test data came from, as the commands that load an
    rgaudit model folder record it (``commands/_model_data.load_model_and_data``): the folder
    (``models/default`` for the default model), the data set spec, the train/test split seed
    and where that seed came from, and the accuracy the model's config records (None if
    none)."""

    path: str
    dataset: str
    split_seed: int
    split_seed_source: str
    accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelRecord:
        return cls(str(d["path"]), str(d["dataset"]), int(d["split_seed"]),
                   str(d["split_seed_source"]), d.get("accuracy"))


@dataclass(frozen=True)
class PairDiagnosis:
    """Fisher-normalised stability spectra of one layer pair, per diagnosed input."""

    pair: str
    n_ops: list[int]
    fisher_sv: list[list[float]]
    fisher_sv_err: list[list[float]]
    n_kept_fisher_1: list[int]
    regularised: bool
    max_cond: float
    unestimated: list[int]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d = {("n_kept_fisher~1" if k == "n_kept_fisher_1" else k): v for k, v in d.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairDiagnosis:
        return cls(**{("n_kept_fisher_1" if k == "n_kept_fisher~1" else k): v
                      for k, v in d.items()})


@dataclass(frozen=True)
class Diagnosis:
    """The MCRG diagnosis: one :class:`PairDiagnosis` per layer pair, in ``basis``."""

    basis: str
    pairs: list[PairDiagnosis]

    def to_dict(self) -> dict[str, Any]:
        return {"basis": self.basis, "pairs": [p.to_dict() for p in self.pairs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnosis:
        return cls(d["basis"], [PairDiagnosis.from_dict(p) for p in d["pairs"]])
