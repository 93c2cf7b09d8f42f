"""Attack study: the Fisher/RG attack's best shot against the field's strongest baselines.

For one model (a DeepRBM judged on its stochastic network, or a torch classifier judged on its
softmax) and ``n_inputs`` correctly classified test inputs, per budget norm (L2, L∞):

- baselines from adv-lib (DDN, FMN, Carlini–Wagner L2, FAB) used as directions, APGD and PGD
  re-run at every ε of the search, and ART's DeepFool and FGM; Gaussian random directions;
- the Fisher/RG attacks: the top eigenvector of the RG-chain FIM and of the autograd FIM (both
  signs, the judge's preferred one kept), the Fisher walk with each FIM re-estimated per step,
  and DDN restricted to the top-k FIM eigenspace against k random directions (L2 only);
- for every method and input the minimal flipping ε (bisection; nominal and applied after
  clipping), repeated for every judge seed; paired comparisons against the best baseline (sign
  test, Wilcoxon signed-rank); seconds per input;
- the fraction of DDN's and FAB's minimal L2 perturbation in the top-k FIM eigenspace, against
  k/d for a random k-space.

No file I/O: :meth:`AttackStudyResult.to_dict` is plain data; ``rgaudit.report.attack_report``
renders it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch

from rgaudit.attacks.base import Norm, unit_step
from rgaudit.attacks.search import Search, SoftmaxJudge, minimal_eps_along, minimal_eps_rerun
from rgaudit.choices import ATTACK_NORMS
from rgaudit.experiments.audit_results import (
    AuditInputs,
    Quartiles,
    censored_quartiles,
    inf_from_json,
    inf_list_from_json,
    nan_from_json,
)
from rgaudit.random import torch_generator
from rgaudit.threads import check_threads_option, limit_threads

Tensor = torch.Tensor
Progress = Callable[[str], None]

BASELINES = ("ddn", "fmn", "cw-l2", "fab", "apgd", "pgd", "deepfool", "fgm")
FISHER = ("fim-rg", "fim-autograd", "walk-rg", "walk-autograd", "subspace")
REFERENCE = ("random",)
ALL_METHODS = BASELINES + FISHER + REFERENCE


def _is_seed(v: object) -> bool:
    """Whether ``v`` is a non-negative integer (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


@dataclass(frozen=True)
class AttackStudyConfig:
    """Settings of the attack study (defaults: the documented run on the default model).

    Attributes
    ----------
    n_inputs : int
        Correctly classified test inputs (the first ones in test-set order).
    judge_samples : int
        Chains per stochastic judgement (DeepRBM only).
    judge_seeds : tuple of int
        Judge seeds; the first is the main one (adversarial inputs, timings), the others re-run
        every search to measure the spread over judge noise. Each judge draws from stream
        ``"judge"`` of its seed, so judge seed ``s`` is the judge of ``rgaudit audit --seed s``.
    eps_max_l2, eps_max_linf : float
        Top of the bisection bracket.
    bisect_steps : int
        Bisection steps along a direction (resolution ``eps_max / 2^steps``).
    rerun_steps : int
        Bisection steps of the fixed-budget attacks re-run at every ε.
    norms : tuple of str
    methods : tuple of str
        Subset of :data:`ALL_METHODS`.
    subspace_k : tuple of int
        Subspace dimensions of the restricted DDN.
    fraction_k : tuple of int
        Eigenspace dimensions of the eigenspace-fraction curve.
    rg_samples, walk_rg_samples : int
        Chains per input of the RG-chain FIM (one-shot direction; each step of the walk).
    walk_step : float
        L2 step of the Fisher walk.
    walk_max_steps : int
    ddn_steps, cw_iterations, apgd_iter, pgd_iter : int
    seed : int
        Seeds every draw of the study: the FIM sampling, the random directions and APGD's
        random start (named streams, :mod:`rgaudit.random`).
    mlp_seed : int
        Training seed of the small torch MLP the documented ``mlp`` run attacks
        (:func:`train_torch_mlp`): a *model identity*, like a DeepRBM's training seed, not a
        stream of ``seed`` (docs/design.md, "Random streams"); recorded here so the JSON
        names the model. Unused when the study is given a model.
    threads : int or None
        Torch CPU threads (restored afterwards).
    """

    n_inputs: int = 50
    judge_samples: int = 2000
    judge_seeds: tuple[int, ...] = (1, 2, 3)
    eps_max_l2: float = 2.0
    eps_max_linf: float = 0.5
    bisect_steps: int = 9
    rerun_steps: int = 8
    norms: tuple[str, ...] = ATTACK_NORMS
    methods: tuple[str, ...] = ALL_METHODS
    subspace_k: tuple[int, ...] = (1, 2, 4, 8, 16)
    fraction_k: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    rg_samples: int = 4000
    walk_rg_samples: int = 1000
    walk_step: float = 0.05
    walk_max_steps: int = 60
    ddn_steps: int = 200
    cw_iterations: int = 1000
    apgd_iter: int = 100
    pgd_iter: int = 20
    seed: int = 0
    mlp_seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        checks = (
            (self.n_inputs >= 2, f"--inputs must be ≥ 2 (paired tests), got {self.n_inputs}"),
            (self.judge_samples >= 1, f"--judge-samples must be ≥ 1, got {self.judge_samples}"),
            (bool(self.judge_seeds), "--judge-seeds needs at least one seed"),
            (all(int(s) >= 0 for s in self.judge_seeds),
             f"--judge-seeds must be ≥ 0, got {list(self.judge_seeds)}"),
            (all(e > 0 and math.isfinite(e) for e in (self.eps_max_l2, self.eps_max_linf)),
             "--eps-max-l2 and --eps-max-linf must be positive and finite"),
            (self.bisect_steps >= 1 and self.rerun_steps >= 1,
             "--bisect-steps and --rerun-steps must be ≥ 1"),
            (bool(self.norms) and set(self.norms) <= set(ATTACK_NORMS),
             f"--norms must be among {ATTACK_NORMS}, got {self.norms}"),
            (set(self.methods) <= set(ALL_METHODS),
             f"--methods: unknown {[m for m in self.methods if m not in ALL_METHODS]}; choose "
             f"from {ALL_METHODS}"),
            (all(k >= 1 for k in self.subspace_k + self.fraction_k),
             "--subspace-k and --fraction-k must be positive"),
            (min(self.rg_samples, self.walk_rg_samples) >= 32,
             "--rg-samples must be ≥ 32 (16 jackknife blocks of ≥ 2 chains)"),
            (self.walk_step > 0 and self.walk_max_steps >= 1,
             "--walk-step must be positive and --walk-max-steps ≥ 1"),
            (_is_seed(self.seed), f"--seed must be an integer ≥ 0, got {self.seed!r}"),
            (_is_seed(self.mlp_seed),
             f"--mlp-seed must be an integer ≥ 0, got {self.mlp_seed!r}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_threads_option(self.threads)

    def eps_max(self, norm: str) -> float:
        return self.eps_max_l2 if norm == "l2" else self.eps_max_linf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WalkInfo:
    """The Fisher walk of a ``walk-*`` row: steps taken per input (None when the walk recorded
    none) and its L2 step size."""

    steps: list[int] | None
    step_size: float


@dataclass
class MethodRow:
    """One method under one norm.

    Attributes
    ----------
    name, family : str
        ``family`` is "baseline", "fisher" or "reference".
    search : str
        How the minimal ε was found ("bisection along the direction", "re-run at every ε", …).
    resolution : float
        Bracket width of the nominal ε.
    eps, applied : list of float, per input (main judge seed)
        Nominal ε and applied norm (in the budget's norm) at the flip; ``inf`` = not flipped.
    applied_l2, applied_linf : list of float
    applied_by_seed : list of list of float
        Applied norms per judge seed (seed order of the config).
    seconds : float
        Attack (direction/FIM) plus main-seed search, all inputs.
    sign : list of int or None
        ``fim-*`` rows: the sign of the top eigenvector the judge preferred, per input.
    walk : WalkInfo or None
        ``walk-*`` rows.
    """

    name: str
    family: str
    search: str
    resolution: float
    eps: list[float]
    applied: list[float]
    applied_l2: list[float]
    applied_linf: list[float]
    applied_by_seed: list[list[float]]
    seconds: float
    sign: list[int] | None = None
    walk: WalkInfo | None = None

    @property
    def extra(self) -> dict[str, Any]:
        """The method-specific data as the JSON's ``extra`` object."""
        out: dict[str, Any] = {}
        if self.sign is not None:
            out["sign"] = self.sign
        if self.walk is not None:
            out.update(steps=self.walk.steps, step_size=self.walk.step_size)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in _ROW_FIELDS}
        d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodRow:
        ex = d.get("extra") or {}
        walk = WalkInfo(ex.get("steps"), ex["step_size"]) if "step_size" in ex else None
        kw = {f: d[f] for f in _ROW_FIELDS}
        for f in ("eps", "applied", "applied_l2", "applied_linf"):
            kw[f] = _inf_list(d[f])
        kw["applied_by_seed"] = [_inf_list(a) for a in d["applied_by_seed"]]
        return cls(**kw, sign=ex.get("sign"), walk=walk)


_ROW_FIELDS = ("name", "family", "search", "resolution", "eps", "applied", "applied_l2",
               "applied_linf", "applied_by_seed", "seconds")


# JSON numbers back in memory (``null``: ``inf`` for a minimal ε, NaN elsewhere)
_inf, _nan, _inf_list = inf_from_json, nan_from_json, inf_list_from_json
_quartiles_back = Quartiles.from_dict


@dataclass
class StudyInputs(AuditInputs):
    """The study's inputs: the audit's :class:`AuditInputs` (``indices``, ``pool``,
    ``pool_accuracy``) plus how many the judge got right but the surrogate wrong, and the
    selection rule."""

    surrogate_disagrees: int = 0
    selection: str = "judge and surrogate both correct, test-set order"


@dataclass(frozen=True)
class StudyModel:
    """The attacked model as the study saw it.

    Attributes
    ----------
    kind : str
        ``"deep-rbm"``, or the classifier's ``kind``.
    judge, surrogate : str
        What decides a flip, and what the attacks differentiate.
    n_features, n_classes : int
    record : dict
        The caller's ``model_info`` (path, depth, accuracy, …), recorded as is: a free-form
        record of the caller, not read by rgaudit.
    widths : list of int or None
        Layer widths of a DeepRBM.
    """

    kind: str
    judge: str
    surrogate: str
    n_features: int
    n_classes: int
    record: dict[str, Any] = field(default_factory=dict)
    widths: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "judge": self.judge, "surrogate": self.surrogate,
             "n_features": self.n_features, "n_classes": self.n_classes, **self.record}
        if self.widths is not None:
            d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudyModel:
        own = ("kind", "judge", "surrogate", "n_features", "n_classes", "widths")
        return cls(d["kind"], d["judge"], d["surrogate"], d["n_features"], d["n_classes"],
                   {k: v for k, v in d.items() if k not in own}, d.get("widths"))


@dataclass(frozen=True)
class MethodSummary:
    """One method's row of the minimal-ε table.

    Attributes
    ----------
    applied, nominal : Quartiles
        Of the applied norm and of the nominal ε (main judge seed).
    median_by_seed : list of float
        Median applied norm per judge seed.
    seed_sd : float
        Standard deviation of the finite ``median_by_seed`` (0 with fewer than two).
    resolution : float
    family, search : str
    seconds_per_input : float
    """

    applied: Quartiles
    nominal: Quartiles
    median_by_seed: list[float]
    seed_sd: float
    resolution: float
    family: str
    search: str
    seconds_per_input: float

    @property
    def error(self) -> float:
        """Error of the quoted median: the larger of the judge-seed spread and the
        resolution."""
        return max(self.seed_sd, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.applied), "nominal": asdict(self.nominal),
                "median_by_seed": self.median_by_seed, "seed_sd": self.seed_sd,
                "resolution": self.resolution, "family": self.family, "search": self.search,
                "seconds_per_input": self.seconds_per_input}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodSummary:
        return cls(_quartiles_back(d), _quartiles_back(d["nominal"]),
                   _inf_list(d["median_by_seed"]), d["seed_sd"], d["resolution"], d["family"],
                   d["search"], d["seconds_per_input"])


@dataclass(frozen=True)
class PairedTest:
    """A method against the best baseline, per input (smaller applied norm wins): two-sided
    sign test and Wilcoxon signed-rank p-values, median over inputs of method/best (NaN when
    no input flipped under both)."""

    wins: int
    losses: int
    ties: int
    p_sign: float
    p_wilcoxon: float
    median_ratio: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairedTest:
        return cls(d["wins"], d["losses"], d["ties"], d["p_sign"], d["p_wilcoxon"],
                   _nan(d["median_ratio"]))


@dataclass(frozen=True)
class PairedComparison:
    """The paired comparisons of one norm: the best baseline (None without baselines) and
    every other method against it (keyed by method name)."""

    best_baseline: str | None
    vs: dict[str, PairedTest] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"best_baseline": self.best_baseline,
                "vs": {k: asdict(t) for k, t in self.vs.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairedComparison:
        return cls(d["best_baseline"], {k: PairedTest.from_dict(t) for k, t in d["vs"].items()})


@dataclass(frozen=True)
class FractionStats:
    """Fraction of a minimal perturbation in a k-dimensional subspace, per ``k``: quartiles
    and mean ± standard error over inputs, the random expectation ``k/d``, and the per-input
    curves (n, K)."""

    k: list[int]
    random_expected: list[float]
    median: list[float]
    q1: list[float]
    q3: list[float]
    mean: list[float]
    se: list[float]
    per_input: list[list[float]]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FractionStats:
        def col(f: str) -> list[float]:
            return [_nan(v) for v in d[f]]
        return cls(list(d["k"]), col("random_expected"), col("median"), col("q1"), col("q3"),
                   col("mean"), col("se"), [[_nan(v) for v in row] for row in d["per_input"]])


@dataclass(frozen=True)
class StudyTimings:
    """Wall time of the study, seconds of each FIM at the clean inputs (keyed by estimator),
    ``/proc/loadavg`` at start and end, torch threads and CPU count."""

    total_seconds: float
    fim_seconds: dict[str, float]
    loadavg_start: str
    loadavg_end: str
    threads: int | None
    cpu_count: int | None


@dataclass
class AttackStudyResult:
    """Typed result of :func:`run_attack_study`; :meth:`to_dict` is ``attack_study.json``.

    Dicts here are keyed by a variable set of names and hold typed values: ``rows``,
    ``summary`` and ``paired`` by norm (then ``summary`` by method name), ``fraction`` by
    ``"<perturbation>|<subspace>"`` (``ddn|rg``, ``fab|random``, …).

    Attributes
    ----------
    config : AttackStudyConfig
    model : StudyModel
    inputs : StudyInputs
    rows : dict of str to list of MethodRow
    summary : dict of str to dict of str to MethodSummary
    paired : dict of str to PairedComparison
    fraction : dict of str to FractionStats
    timings : StudyTimings
    adversarial : dict of str to Tensor
        Main-seed adversarial inputs, keyed ``"<norm>/<method>"`` (not in the JSON).
    """

    config: AttackStudyConfig
    model: StudyModel
    inputs: StudyInputs
    rows: dict[str, list[MethodRow]]
    summary: dict[str, dict[str, MethodSummary]]
    paired: dict[str, PairedComparison]
    fraction: dict[str, FractionStats]
    timings: StudyTimings
    adversarial: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (without the adversarial tensors; non-finite numbers as
        None)."""
        return _plain({
            "config": self.config.to_dict(), "model": self.model.to_dict(),
            "inputs": self.inputs.to_dict(),
            "rows": {n: [r.to_dict() for r in rs] for n, rs in self.rows.items()},
            "summary": {n: {m: s.to_dict() for m, s in per.items()}
                        for n, per in self.summary.items()},
            "paired": {n: p.to_dict() for n, p in self.paired.items()},
            "fraction": {k: asdict(f) for k, f in self.fraction.items()},
            "timings": asdict(self.timings)})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttackStudyResult:
        """The result back from its JSON (``to_dict``; nulls become ``inf`` for ε, NaN
        elsewhere), without the adversarial tensors."""
        c: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in d["config"].items()}
        cfg = AttackStudyConfig(**c)
        i = d["inputs"]
        inputs = StudyInputs(list(i["indices"]), i["pool"], i["pool_accuracy"],
                             surrogate_disagrees=i["surrogate_disagrees"],
                             selection=i["selection"])
        t = d["timings"]
        return cls(cfg, StudyModel.from_dict(d["model"]), inputs,
                   {n: [MethodRow.from_dict(r) for r in rs] for n, rs in d["rows"].items()},
                   {n: {m: MethodSummary.from_dict(s) for m, s in per.items()}
                    for n, per in d["summary"].items()},
                   {n: PairedComparison.from_dict(p) for n, p in d["paired"].items()},
                   {k: FractionStats.from_dict(f) for k, f in d["fraction"].items()},
                   StudyTimings(t["total_seconds"], dict(t["fim_seconds"]), t["loadavg_start"],
                                t["loadavg_end"], t["threads"], t["cpu_count"]))


def _plain(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, Tensor):
        return _plain(o.tolist())
    if isinstance(o, float):
        return o if math.isfinite(o) else None     # JSON: null = not flipped within eps_max
    return o


# ---------------------------------------------------------------------------------- statistics

def quartiles(v: Tensor | list[float]) -> Quartiles:
    """Median and quartiles over inputs, unflipped (inf) counted above every finite value (the
    audit's :func:`~rgaudit.experiments.audit_results.censored_quartiles` of a list)."""
    return censored_quartiles(torch.as_tensor(v, dtype=torch.float64))


def paired_test(a: list[float], b: list[float], *, cap: float) -> PairedTest:
    """Per-input paired comparison of method ``a`` against method ``b`` (smaller wins).

    Unflipped inputs (inf) rank above every flipped one (replaced by ``cap``, larger than any
    finite value) and two unflipped ones tie. Sign test (``scipy.stats.binomtest`` on the
    non-tied inputs) and Wilcoxon signed-rank (``scipy.stats.wilcoxon``, zero differences
    dropped), both two-sided.
    """
    from scipy.stats import binomtest, wilcoxon

    ta = torch.as_tensor(a, dtype=torch.float64)
    tb = torch.as_tensor(b, dtype=torch.float64)
    ca = torch.where(torch.isfinite(ta), ta, torch.full_like(ta, cap))
    cb = torch.where(torch.isfinite(tb), tb, torch.full_like(tb, cap))
    diff = ca - cb
    wins, losses = int((diff < 0).sum()), int((diff > 0).sum())
    ties = int(diff.numel()) - wins - losses
    n = wins + losses
    p_sign = float(binomtest(wins, n, 0.5).pvalue) if n else 1.0
    nz = diff[diff != 0]
    p_w = float(wilcoxon(nz.numpy()).pvalue) if nz.numel() >= 1 else 1.0
    both = torch.isfinite(ta) & torch.isfinite(tb) & (tb > 0)
    ratio = float((ta[both] / tb[both]).median()) if both.any() else float("nan")
    return PairedTest(wins, losses, ties, p_sign, p_w, ratio)


def eigenspace_fraction_stats(frac: Tensor, ks: list[int], d: int) -> FractionStats:
    """Quartiles and mean ± standard error over inputs of a fraction curve (n, K)."""
    cols: dict[str, list[float]] = {key: [] for key in ("median", "q1", "q3", "mean", "se")}
    for j in range(len(ks)):
        f = frac[:, j]
        f = f[torch.isfinite(f)]
        q = torch.quantile(f, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
        cols["q1"].append(float(q[0]))
        cols["median"].append(float(q[1]))
        cols["q3"].append(float(q[2]))
        cols["mean"].append(float(f.mean()))
        cols["se"].append(float(f.std() / math.sqrt(f.numel())) if f.numel() > 1
                          else float("nan"))
    return FractionStats(k=list(ks), random_expected=[k / d for k in ks], **cols,
                         per_input=frac.tolist())


# ------------------------------------------------------------------------------------- models

def _is_rbm(model: Any) -> bool:
    return getattr(model, "rbm", None) is not None or hasattr(model, "predict_proba_chains")


def _rbm(model: Any) -> Any:
    r = getattr(model, "rbm", None)
    return r if r is not None else model


def _autograd_fim(model: Any) -> Callable[[Tensor], Tensor]:
    """The exact FIM of the differentiable surrogate (autograd), inputs (m, d) → (m, d, d)."""
    from rgaudit.fisher.autograd import dense_fim, mean_field_fim

    if _is_rbm(model):
        net = _rbm(model)
        return lambda z: mean_field_fim(net, z)
    module = model.module if hasattr(model, "module") else model

    def f(z: Tensor) -> Tensor:
        p = next(module.parameters())
        return dense_fim(module, z.to(p.dtype), "softmax").to(torch.float64)
    return f


def _rg_fim(net: Any, samples: int, gen: torch.Generator) -> Callable[[Tensor], Tensor]:
    """The RG-chain FIM (singles basis), re-estimated at every call."""
    from rgaudit.fisher.chain import fim_from_mcrg
    from rgaudit.rg.mcrg import mcrg_network

    W1 = net.layer(1).W.detach()

    def f(z: Tensor) -> Tensor:
        res = mcrg_network(net, z.to(net.dtype), "singles", samples, generator=gen)
        return fim_from_mcrg(res, W1).fim.to(torch.float64)
    return f


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().strip()
    except OSError:
        return "unavailable"


# ---------------------------------------------------------------------------------- the study

def run_attack_study(model: Any, X_test: Tensor, y_test: Tensor,
                     cfg: AttackStudyConfig | None = None, *, model_info: dict | None = None,
                     progress: Progress | None = None) -> AttackStudyResult:
    """Run the attack study on ``model``.

    Parameters
    ----------
    model : DeepRBM, RBMClassifier or TorchClassifier
        A DeepRBM is attacked through its mean-field surrogate and judged on its stochastic
        network; any other classifier is attacked and judged on its own softmax.
    X_test : Tensor of shape (n_test, d)
    y_test : Tensor of shape (n_test,)
    cfg : AttackStudyConfig, optional
    model_info : dict, optional
    progress : callable, optional

    Returns
    -------
    AttackStudyResult
    """
    cfg = cfg or AttackStudyConfig()
    with limit_threads(cfg.threads):
        return _run(model, X_test, y_test, cfg, model_info or {}, progress or (lambda s: None))


def _judges(model: Any, cfg: AttackStudyConfig, ids: list[int]) -> list[Any]:
    from rgaudit.attacks.evaluate import StochasticJudge

    if _is_rbm(model):
        return [StochasticJudge(_rbm(model), n_samples=cfg.judge_samples, seed=s).for_inputs(ids)
                for s in cfg.judge_seeds]
    return [SoftmaxJudge(model.log_proba)]


def surrogate_pred(model: Any, x: Tensor) -> Tensor:
    """Arg-max class of the differentiable surrogate the attacks act on."""
    from rgaudit.attacks.minimal_norm import surrogate_of

    sur = surrogate_of(model)
    return sur(x.to(next(sur.parameters()).dtype)).argmax(-1)


def _select(model: Any, X: Tensor, y: Tensor, cfg: AttackStudyConfig
            ) -> tuple[Tensor, Tensor, StudyInputs]:
    from rgaudit.attacks.evaluate import StochasticJudge

    pool = min(X.shape[0], max(4 * cfg.n_inputs, cfg.n_inputs + 20))
    if _is_rbm(model):
        j: Any = StochasticJudge(_rbm(model), n_samples=cfg.judge_samples,
                                 seed=cfg.judge_seeds[0]).for_inputs(range(pool))
    else:
        j = SoftmaxJudge(model.log_proba)
    pred = j(X[:pool]).cpu()
    with torch.no_grad():
        sur = surrogate_pred(model, X[:pool]).cpu()
    # both the judge and the attacked surrogate must be right: an input the surrogate already
    # misclassifies gives the surrogate attacks nothing to do (zero perturbation)
    good = (pred == y[:pool].cpu()) & (sur == y[:pool].cpu())
    ok = torch.nonzero(good).flatten()[: cfg.n_inputs]
    if ok.numel() < 2:
        raise ValueError("the model classifies fewer than 2 of the test inputs correctly; check "
                         "the data set matches the model")
    acc = float((pred == y[:pool].cpu()).double().mean())
    disagree = int(((pred == y[:pool].cpu()) & (sur != y[:pool].cpu())).sum())
    return X[ok], y[ok], StudyInputs(ok.tolist(), pool, acc, surrogate_disagrees=disagree)


@dataclass
class _Study:
    """What every step of one study run shares: the model (a float64 DeepRBM, or the torch
    classifier), the selected inputs, the judges (one per judge seed) and the FIMs at the clean
    inputs with their top eigenvectors (``eig[key]`` of shape (n, d, kmax))."""

    model: Any
    net: Any
    cfg: AttackStudyConfig
    progress: Progress
    x: Tensor
    y: Tensor
    sel: StudyInputs
    judges: list[Any]
    n_classes: int
    methods: set[str]
    fim_seconds: dict[str, float]
    eig: dict[str, Tensor]
    rows: dict[str, list[MethodRow]] = field(default_factory=dict)
    adversarial: dict[str, Tensor] = field(default_factory=dict)
    fraction: dict[str, Tensor] = field(default_factory=dict)
    walks: dict[str, Any] = field(default_factory=dict)
    walk_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def d(self) -> int:
        return int(self.x.shape[1])

    @property
    def rbm(self) -> bool:
        return self.net is not None


class _NormRows:
    """The rows of one budget norm: a method's searches (one per judge seed) become a
    :class:`MethodRow`, its main-seed adversarials go to ``study.adversarial``."""

    def __init__(self, st: _Study, norm: Norm) -> None:
        self.st, self.norm, self.emax = st, norm, st.cfg.eps_max(norm)
        self.out: list[MethodRow] = []

    def add(self, name: str, family: str, how: str, searches: list[Search],
            secs: float) -> MethodRow:
        """The row of a method's searches (appended; the caller may set ``sign``/``walk``)."""
        s0 = searches[0]
        row = MethodRow(
            name, family, how, s0.resolution, s0.eps.tolist(), s0.applied(self.norm).tolist(),
            s0.applied_l2.tolist(), s0.applied_linf.tolist(),
            [s.applied(self.norm).tolist() for s in searches], secs)
        self.out.append(row)
        self.st.adversarial[f"{self.norm}/{name}"] = s0.adversarial.detach().cpu()
        return row

    def along(self, step: Tensor) -> list[Search]:
        """Bisection along ``step`` under every judge."""
        st = self.st
        return [minimal_eps_along(j, st.x, st.y, step, eps_max=self.emax,
                                  steps=st.cfg.bisect_steps) for j in st.judges]

    def direction(self, name: str, family: str, atk: Any, how: str) -> Any:
        """A method searched along its own direction (or perturbation); returns the attack."""
        st = self.st
        st.progress(f"{self.norm}: {name}")
        t0 = time.perf_counter()
        step = attack_unit(atk, st.x, st.y, self.norm)
        t_dir = time.perf_counter() - t0
        res = self.along(step)
        self.add(name, family, how, res, t_dir + _main_seconds(res, t0, t_dir))
        return atk


def attack_unit(atk: Any, x: Tensor, y: Tensor, norm: Norm) -> Tensor:
    """An attack's unit step: its own (minimal-norm attacks) or its direction's."""
    if hasattr(atk, "unit"):
        return atk.unit(x, y)
    return unit_step(atk.cached_direction(x, y), norm).to(x.dtype)


def _run(model: Any, X_test: Tensor, y_test: Tensor, cfg: AttackStudyConfig,
         model_info: dict[str, Any], progress: Progress) -> AttackStudyResult:
    t_all = time.perf_counter()
    load0 = _loadavg()
    st = _prepare(model, X_test, y_test, cfg, progress)
    for norm_name in cfg.norms:
        rr = _NormRows(st, cast(Norm, norm_name))
        _baseline_rows(st, rr)
        _fisher_rows(st, rr)
        _reference_rows(st, rr)
        st.rows[rr.norm] = rr.out
    summary, paired = _summaries(st.rows, cfg)
    timings = StudyTimings(time.perf_counter() - t_all, st.fim_seconds, load0, _loadavg(),
                           cfg.threads, os.cpu_count())
    return AttackStudyResult(cfg, _model_record(st, model_info), st.sel, st.rows,
                             summary, paired, _fractions(st), timings, st.adversarial)


def _prepare(model: Any, X_test: Tensor, y_test: Tensor, cfg: AttackStudyConfig,
             progress: Progress) -> _Study:
    """Inputs, judges, the surrogate's class count, the methods that apply, and the FIMs at
    the clean inputs (shared by the one-shot, subspace and fraction measurements)."""
    from rgaudit.attacks.minimal_norm import surrogate_of
    from rgaudit.fisher.eig import top_eigenpairs

    rbm = _is_rbm(model)
    net = _rbm(model).to(torch.float64) if rbm else None
    if net is not None:
        model = net
    dtype = torch.float64 if rbm else next(model.module.parameters()).dtype
    x, y, sel = _select(model, X_test.to(dtype), y_test, cfg)
    judges = _judges(model, cfg, sel.indices)
    sur = surrogate_of(model)
    n_classes = int(sur(x[:1].to(next(sur.parameters()).dtype)).shape[-1])
    meth = set(cfg.methods)
    if not rbm:
        meth -= {"fim-rg", "walk-rg"}
    fims: dict[str, Tensor] = {}
    fim_seconds: dict[str, float] = {}
    progress("autograd FIM")
    t0 = time.perf_counter()
    fims["autograd"] = _autograd_fim(model)(x)
    fim_seconds["autograd"] = time.perf_counter() - t0
    if rbm and ({"fim-rg", "subspace"} & meth):
        progress("RG-chain FIM")
        t0 = time.perf_counter()
        fims["rg"] = _rg_fim(net, cfg.rg_samples, torch_generator(cfg.seed, "fim"))(x)
        fim_seconds["rg"] = time.perf_counter() - t0
    kmax = min(x.shape[1], max(cfg.fraction_k + cfg.subspace_k))
    eig = {k: top_eigenpairs(F, kmax).vectors for k, F in fims.items()}     # (n, d, kmax)
    return _Study(model, net, cfg, progress, x, y, sel, judges, n_classes, meth, fim_seconds,
                  eig)


RERUN = "bisection on ε, the attack re-run at every ε"


def _baseline_rows(st: _Study, rr: _NormRows) -> None:
    """adv-lib's minimal-norm attacks as directions, APGD and PGD re-run at every ε, ART's
    DeepFool and FGM; DDN's and FAB's L2 perturbations are kept for the eigenspace fraction."""
    cfg, norm = st.cfg, rr.norm
    how_dir = "bisection along the method's perturbation direction"
    table = (("ddn", "ddn", how_dir), ("fmn", f"fmn-{norm}", how_dir),
             ("cw-l2", "cw-l2", how_dir), ("fab", f"fab-{norm}", how_dir),
             ("apgd", "apgd", RERUN), ("pgd", "pgd", RERUN),
             ("deepfool", "deepfool", "bisection along DeepFool's perturbation (ART)"),
             ("fgm", "fgm" if norm == "l2" else "fgsm", "bisection along the loss gradient (ART)"))
    for method, name, how in table:
        if method not in st.methods or (method in ("ddn", "cw-l2") and norm != "l2"):
            continue
        if how == RERUN:
            st.progress(f"{norm}: {method} re-run at every ε")
        atk = make_attack(method, st.model, norm, st.x, seed=cfg.seed, cfg=cfg)
        if how == RERUN:
            t0 = time.perf_counter()
            res = [minimal_eps_rerun(j, atk, st.x, st.y, eps_max=rr.emax,
                                     steps=cfg.rerun_steps) for j in st.judges]
            rr.add(atk.name, "baseline", RERUN, res, _main_seconds(res, t0, 0.0))
            continue
        rr.direction(name, "baseline", atk, how)
        if method in ("ddn", "fab") and norm == "l2":
            st.fraction[name] = atk.cached_direction(st.x, st.y)


def _fisher_rows(st: _Study, rr: _NormRows) -> None:
    """The top FIM eigenvector (both signs), the Fisher walks and the subspace DDN."""
    from rgaudit.attacks.fisher_best import both_signs

    cfg, norm, x, y = st.cfg, rr.norm, st.x, st.y
    for key, label in (("rg", "fim-rg"), ("autograd", "fim-autograd")):
        if label not in st.methods or key not in st.eig:
            continue
        st.progress(f"{norm}: {label} (both signs)")
        t0 = time.perf_counter()
        step = unit_step(st.eig[key][..., 0], norm).to(x.dtype)
        pairs = [both_signs(j, x, y, step, norm=norm, eps_max=rr.emax, steps=cfg.bisect_steps)
                 for j in st.judges]
        secs = st.fim_seconds[key] + _main_seconds([p[0] for p in pairs], t0, 0.0)
        rr.add(label, "fisher", "bisection along ±(top FIM eigenvector), judge-preferred sign",
               [p[0] for p in pairs], secs).sign = pairs[0][1].tolist()
    for key, label in (("rg", "walk-rg"), ("autograd", "walk-autograd")):
        if label in st.methods:
            _walk_row(st, rr, key, label)
    if "subspace" in st.methods and norm == "l2":
        _subspace_rows(st, rr)


def _walk_row(st: _Study, rr: _NormRows, key: str, label: str) -> None:
    """The Fisher walk (in L2, computed once; its chord serves both norms)."""
    from rgaudit.attacks.fisher_best import FisherWalk

    cfg, x, y = st.cfg, st.x, st.y
    st.progress(f"{rr.norm}: {label} (Fisher walk)")
    if label not in st.walks:
        ffn = (_rg_fim(st.net, cfg.walk_rg_samples, torch_generator(cfg.seed, "walk"))
               if key == "rg" else _autograd_fim(st.model))
        st.walks[label] = FisherWalk(model=st.model, fim_fn=ffn, step_size=cfg.walk_step,
                                     max_steps=cfg.walk_max_steps, norm=rr.norm, name=label)
        t0 = time.perf_counter()
        st.walks[label].cached_direction(x, y)
        st.walk_seconds[label] = time.perf_counter() - t0
    walk = st.walks[label]
    walk.norm = rr.norm
    t0 = time.perf_counter()
    res = rr.along(walk.unit(x, y))
    row = rr.add(label, "fisher", "Fisher walk to the surrogate's boundary, then bisection "
                 "along its chord", res, st.walk_seconds[label] + _main_seconds(res, t0, 0.0))
    row.walk = WalkInfo(walk.steps_taken.tolist() if walk.steps_taken is not None else None,
                        cfg.walk_step)


def _subspace_rows(st: _Study, rr: _NormRows) -> None:
    """DDN restricted to the top-k FIM eigenspace against k random directions (L2)."""
    from rgaudit.attacks.fisher_best import SubspaceDDN, random_orthonormal

    d, src = st.d, ("rg" if "rg" in st.eig else "autograd")
    for k in st.cfg.subspace_k:
        if k > d:
            continue
        for kind in ("fim", "random"):
            g = torch_generator(st.cfg.seed, "attack.subspace", k)

            def basis(z: Tensor, _k: int = k, _g: torch.Generator = g,
                      _kind: str = kind) -> Tensor:
                if _kind == "fim":
                    return st.eig[src][..., :_k]
                return random_orthonormal(z.shape[0], d, _k, _g)
            name = f"subspace-{kind}-k{k}"
            space = f"top-k {src} FIM eigenspace" if kind == "fim" else "random k-space"
            rr.direction(name, "fisher" if kind == "fim" else "reference",
                         SubspaceDDN(model=st.model, basis=basis, steps=st.cfg.ddn_steps,
                                     name=name),
                         f"DDN restricted to the {space}, bisection along it")


def _reference_rows(st: _Study, rr: _NormRows) -> None:
    """Gaussian random directions (stream ``"attack.random"``)."""
    if "random" in st.methods:
        rr.direction("random", "reference",
                     make_attack("random", st.model, rr.norm, st.x, seed=st.cfg.seed),
                     "bisection along a Gaussian direction")


def _fractions(st: _Study) -> dict[str, FractionStats]:
    """The fraction of DDN's and FAB's minimal L2 perturbation in the top-k eigenspace of each
    FIM and of a random k-space (stream ``"fraction"``)."""
    from rgaudit.attacks.fisher_best import eigenspace_fraction, random_orthonormal

    out: dict[str, FractionStats] = {}
    n, d = st.x.shape
    ks = [k for k in st.cfg.fraction_k if k <= d]
    for att, delta in st.fraction.items():
        for key, U in st.eig.items():
            f = eigenspace_fraction(delta, U[..., : max(ks)])[:, [k - 1 for k in ks]]
            out[f"{att}|{key}"] = eigenspace_fraction_stats(f, ks, d)
        R = random_orthonormal(n, d, max(ks), torch_generator(st.cfg.seed, "fraction"))
        f = eigenspace_fraction(delta, R)[:, [k - 1 for k in ks]]
        out[f"{att}|random"] = eigenspace_fraction_stats(f, ks, d)
    return out


def _model_record(st: _Study, model_info: dict[str, Any]) -> StudyModel:
    cfg = st.cfg
    return StudyModel(
        kind="deep-rbm" if st.rbm else getattr(st.model, "kind", "torch"),
        judge=(f"stochastic network, {cfg.judge_samples} chains, seeds "
               f"{list(cfg.judge_seeds)}" if st.rbm else "softmax arg-max (deterministic)"),
        surrogate="mean-field network" if st.rbm else "the model itself",
        n_features=st.d, n_classes=st.n_classes, record=dict(model_info),
        widths=list(st.net.widths) if st.net is not None else None)


def make_attack(method: str, model: Any, norm: Norm, x: Tensor, *, seed: int = 0,
                cfg: AttackStudyConfig | None = None) -> Any:
    """One attack by its ``rgaudit attack --method`` name (not ``fim``/``walk``, which need
    FIMs), for the study and for :func:`search_one`.

    adv-lib's DDN, FMN, Carlini–Wagner L2 and FAB and the re-run APGD/PGD act on the model's
    differentiable surrogate, with the steps and iterations of ``cfg`` (default: those of
    ``AttackStudyConfig()``, which are the attacks' own defaults); ART's FGM and DeepFool on the
    surrogate wrapped for ART; random directions from stream ``"attack.random"`` of ``seed``,
    APGD's random start from stream ``"attack.apgd"``.
    ``x`` (n, d): the inputs, for the input width and the surrogate's class count.
    """
    from rgaudit.attacks.baselines import FGM, DeepFool, RandomDirection, art_classifier
    from rgaudit.attacks.minimal_norm import (
        APGD,
        DDN,
        FAB,
        FMN,
        CarliniWagnerL2,
        PGDEachEps,
        surrogate_of,
    )
    from rgaudit.random import child_seed

    if method in ("ddn", "cw-l2") and norm != "l2":
        raise ValueError(f"{method} is an L2 attack: use --norm l2")
    cfg = cfg or AttackStudyConfig()
    sur = surrogate_of(model)
    n_features = int(x.shape[1])
    n_classes = int(sur(x[:1].to(next(sur.parameters()).dtype)).shape[-1])
    if method == "ddn":
        return DDN(model=model, norm=norm, steps=cfg.ddn_steps)
    if method == "fmn":
        return FMN(model=model, norm=norm, steps=cfg.ddn_steps)
    if method == "cw-l2":
        return CarliniWagnerL2(model=model, norm=norm, max_iterations=cfg.cw_iterations)
    if method == "fab":
        return FAB(model=model, norm=norm)
    if method == "apgd":
        return APGD(model=model, norm=norm, n_iter=cfg.apgd_iter,
                    seed=child_seed(seed, "attack.apgd"))
    if method == "pgd":
        return PGDEachEps(model=model, norm=norm, max_iter=cfg.pgd_iter, n_classes=n_classes,
                          n_features=n_features)
    if method in ("fgm", "deepfool"):
        clf = art_classifier(sur, n_features, n_classes)
        return (FGM if method == "fgm" else DeepFool)(classifier=clf, norm=norm)
    if method == "random":
        return RandomDirection(generator=torch_generator(seed, "attack.random"), norm=norm)
    raise ValueError(f"no attack named {method!r}")


def _main_seconds(res: list[Search], t0: float, t_dir: float) -> float:
    """Seconds of the attack plus its main-seed search (the other seeds' searches excluded)."""
    total = time.perf_counter() - t0 - t_dir
    return total / max(len(res), 1)


def _summaries(rows: dict[str, list[MethodRow]], cfg: AttackStudyConfig
               ) -> tuple[dict[str, dict[str, MethodSummary]], dict[str, PairedComparison]]:
    summary: dict[str, dict[str, MethodSummary]] = {}
    paired: dict[str, PairedComparison] = {}
    for norm, rs in rows.items():
        per: dict[str, MethodSummary] = {}
        for r in rs:
            med_by_seed = [quartiles(a).median for a in r.applied_by_seed]
            fin = [m for m in med_by_seed if math.isfinite(m)]
            sd = float(torch.tensor(fin, dtype=torch.float64).std()) if len(fin) > 1 else 0.0
            per[r.name] = MethodSummary(quartiles(r.applied), quartiles(r.eps), med_by_seed, sd,
                                        r.resolution, r.family, r.search,
                                        r.seconds / max(len(r.eps), 1))
        base = [r for r in rs if r.family == "baseline"]
        best = min(base, key=lambda r: (per[r.name].applied.median,
                                        per[r.name].applied.q3)) if base else None
        cap = 1e6 * cfg.eps_max(norm)
        vs: dict[str, PairedTest] = {}
        if best is not None:
            for r in rs:
                if r.name != best.name:
                    vs[r.name] = paired_test(r.applied, best.applied, cap=cap)
        summary[norm] = per
        paired[norm] = PairedComparison(best.name if best else None, vs)
    return summary, paired


# --------------------------------------------------------------------------- non-RBM model

def train_torch_mlp(dataset: Any, *, hidden: int = 64, epochs: int = 60, seed: int = 0) -> Any:
    """A small torch MLP (d-hidden-classes, ReLU) trained on ``dataset`` with Adam.

    ``seed`` (the attack study's ``mlp_seed``) seeds one ``torch.Generator`` for the initial
    weights and the batch order: it names the model, like a DeepRBM's training seed, and is
    recorded in ``meta``.

    Returns
    -------
    rgaudit.models.base.TorchClassifier
        Wrapping the trained float64 module; ``meta`` records the test accuracy.
    """
    from rgaudit.models.base import TorchClassifier

    g = torch.Generator().manual_seed(seed)
    d, C = dataset.n_features, dataset.n_classes
    lin1, lin2 = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, C)
    with torch.no_grad():
        for lin in (lin1, lin2):
            b = 1 / math.sqrt(lin.in_features)
            lin.weight.copy_(torch.empty_like(lin.weight).uniform_(-b, b, generator=g))
            lin.bias.zero_()
    module = torch.nn.Sequential(lin1, torch.nn.ReLU(), lin2).to(torch.float64)
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    Xtr, ytr = dataset.X_train.to(torch.float64), dataset.y_train
    for _ in range(int(epochs)):
        perm = torch.randperm(Xtr.shape[0], generator=g)
        for i in range(0, Xtr.shape[0], 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(Xtr[idx]), ytr[idx]).backward()
            opt.step()
    module.eval()
    with torch.no_grad():
        acc = float((module(dataset.X_test.to(torch.float64)).argmax(-1) == dataset.y_test)
                    .double().mean())
    side = math.isqrt(d)
    shape = (side, side) if side * side == d else (d,)
    return TorchClassifier(module, shape, C, meta={"test_accuracy": acc, "hidden": hidden,
                                                   "epochs": epochs, "seed": seed})


# ----------------------------------------------------------------------------------- runner

def main(argv: list[str] | None = None) -> None:
    """``python -m rgaudit.experiments.attack_study WHICH OUT [options]`` (documented runs).

    WHICH: ``default`` (models/default, trained if absent), ``mlp`` (a small torch MLP trained
    here on digits) or ``depth`` (DeepRBMs of depth 2–6, trained as in the depth study).
    """
    import argparse

    from rgaudit.data import load_dataset
    from rgaudit.report.attack_report import write_attack_report
    from rgaudit.report.io import new_run_dir

    ap = argparse.ArgumentParser(prog="attack_study")
    ap.add_argument("which", choices=("default", "mlp", "depth"))
    ap.add_argument("out")
    ap.add_argument("--inputs", type=int, default=50)
    ap.add_argument("--judge-samples", type=int, default=1000)
    ap.add_argument("--judge-seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    ap.add_argument("--subspace-k", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--bisect-steps", type=int, default=9)
    ap.add_argument("--rerun-steps", type=int, default=8)
    ap.add_argument("--methods", nargs="+", default=list(ALL_METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mlp-seed", type=int, default=0)
    a = ap.parse_args(argv)
    cfg = AttackStudyConfig(n_inputs=a.inputs, judge_samples=a.judge_samples,
                            judge_seeds=tuple(a.judge_seeds), subspace_k=tuple(a.subspace_k),
                            bisect_steps=a.bisect_steps, rerun_steps=a.rerun_steps,
                            methods=tuple(a.methods), seed=a.seed, mlp_seed=a.mlp_seed)
    ds = load_dataset("digits", seed=0)
    t0 = time.perf_counter()

    def prog(s: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {s}", flush=True)

    jobs: list[tuple[str, Any, dict[str, Any]]] = []
    if a.which == "default":
        from rgaudit.experiments.train_default import ensure_default_model

        net, info = ensure_default_model()
        jobs.append(("default digits DeepRBM", net, {"path": "models/default"}))
    elif a.which == "mlp":
        mlp = train_torch_mlp(ds, seed=cfg.mlp_seed)
        jobs.append(("torch MLP 64-64-10 (non-RBM)", mlp, dict(mlp.meta)))
    else:
        from rgaudit.experiments.depth import DepthConfig, train_depth

        dc = DepthConfig()
        for depth in a.depths:
            prog(f"training depth {depth}")
            net, rep = train_depth(ds, depth, dc)
            jobs.append((f"depth {depth} DeepRBM", net,
                         {"depth": depth, "accuracy": rep.get("accuracy")}))
    for title, model, info in jobs:
        prog(title)
        res = run_attack_study(model, ds.X_test, ds.y_test, cfg, model_info=info,
                               progress=prog)
        run = new_run_dir(a.out, "attack-study")
        try:
            paths = write_attack_report(res, run, title=title)
        except Exception:                          # keep the numbers if rendering fails
            import json

            (run / "raw.json").write_text(json.dumps(res.to_dict()))
            raise
        prog(f"wrote {paths['md']}")


if __name__ == "__main__":
    main()
