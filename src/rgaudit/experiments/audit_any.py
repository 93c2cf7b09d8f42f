"""The audit of any classifier (a :class:`~rgaudit.models.base.Classifier`): what is defined for
every model whose output distribution and input gradient we can compute.

Steps (:func:`run_any_audit`):

1. check the data against the model (feature count, value range, class labels) and pick the
   first ``n_inputs`` test inputs the model classifies correctly (deterministic argmax);
2. input Fisher information of the softmax output, ``F = Jᵀ(diag p − p pᵀ)J``, by autograd:
   dense for ``d ≤ dense_max_features``, matrix-free Lanczos otherwise
   (:mod:`rgaudit.fisher.autograd`); top eigenvalues per input;
3. attacks along directions: the top FIM eigenvector (signed to lower the true class), the
   loss gradient (FGM), DeepFool and PGD (ART, on the model's log-probabilities) and random
   directions; flip rate per budget and minimal flipping ε by bisection along each direction,
   judged by the model's own argmax;
4. the verdict: the smallest median flipping L2 perturbation over methods, absolute and as a
   fraction of ‖x‖, and the adversarial examples at that budget (best method and FIM direction).

The layerwise MCRG diagnosis needs a stochastic RBM-family network (``classifier.rbm``); for
other models the result says so instead of pretending. No file I/O here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from rgaudit.attacks.base import Attack, DirectionAttack, Norm, clip_box, unit_step
from rgaudit.attacks.evaluate import Verdict, minimal_eps
from rgaudit.experiments.audit_results import (
    AuditInputs,
    Diagnosis,
    Quartiles,
    censored_quartiles,
)
from rgaudit.models.base import Classifier
from rgaudit.random import child_seed
from rgaudit.train.progress import Progress, no_progress

Tensor = torch.Tensor

MCRG_NOTE = ("The layerwise MCRG diagnosis (stability matrices, RG-chain FIM) needs a "
             "stochastic RBM-family network; this model ({kind}) is not one, so the audit "
             "reports the input Fisher information of its softmax output and the attacks only.")


@dataclass(frozen=True)
class AnyAuditConfig:
    """Settings of the audit of any classifier.

    Attributes
    ----------
    n_inputs : int
        Correctly classified test inputs to attack (``--inputs``).
    eps_l2, eps_linf : tuple of float
        Budget grids (increasing, positive); the largest is the bisection's upper end.
    bisect_steps : int
        Bisection steps of the minimal flipping ε (bracket ``eps_max / 2^steps``).
    pgd_iter : int
    fim_top_k : int
        Top FIM eigenvalues reported per input.
    dense_max_features : int
        Above this input size the FIM is never formed (matrix-free Lanczos).
    n_diagnose : int
        Inputs of the MCRG diagnosis (RBM-family networks only; 0 skips it).
    mcrg_samples : int
        Chains per input of the MCRG diagnosis (≥ 32: 16 jackknife blocks of ≥ 2).
    seed : int
        Root seed (``--seed``); the random directions, the Lanczos start vectors and the MCRG
        chains get independent named streams of it (:mod:`rgaudit.random`).
    """

    n_inputs: int = 20
    eps_l2: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
    eps_linf: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
    bisect_steps: int = 10
    pgd_iter: int = 20
    fim_top_k: int = 5
    dense_max_features: int = 4096
    n_diagnose: int = 3
    mcrg_samples: int = 4000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_inputs < 1:
            raise ValueError(f"--inputs must be ≥ 1, got {self.n_inputs}")
        for name, grid in (("eps_l2", self.eps_l2), ("eps_linf", self.eps_linf)):
            g = [float(e) for e in grid]
            if not g or any(not math.isfinite(e) or e <= 0 for e in g) or g != sorted(g):
                raise ValueError(f"{name} must be increasing positive finite budgets, got {grid}")
        if self.bisect_steps < 1 or self.pgd_iter < 1 or self.fim_top_k < 1:
            raise ValueError("bisect_steps, pgd_iter and fim_top_k must be ≥ 1")
        if self.n_diagnose < 0 or self.mcrg_samples < 32:
            raise ValueError("n_diagnose must be ≥ 0 and mcrg_samples ≥ 32")

    def streams(self) -> dict[str, int]:
        """Independent seeds by role: the named streams of ``seed`` (:mod:`rgaudit.random`)."""
        return {"random-directions": child_seed(self.seed, "attack.random"),
                "lanczos": child_seed(self.seed, "lanczos"), "mcrg": child_seed(self.seed, "mcrg")}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(v: float) -> float | None:
    """A finite value, or None (JSON null: not flipped / undefined)."""
    return v if math.isfinite(v) else None


def _json_quartiles(q: Quartiles) -> dict[str, Any]:
    """The any-model audit's JSON of :class:`Quartiles`: ``null`` for a quartile among the
    unflipped inputs, always in the order q1, median, q3, n_flipped, n."""
    return {"q1": _num(q.q1), "median": _num(q.median), "q3": _num(q.q3),
            "n_flipped": q.n_flipped, "n": q.n}


class _JsonItems:
    """``part["key"]`` is ``part.to_dict()["key"]``: the JSON value, as before the result was
    typed (``result.verdict["text"]`` in older examples). Prefer the attributes."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


@dataclass(frozen=True)
class ModelInfo(_JsonItems):
    """What the audit records of the model: its interface, plus the caller's ``extra``
    (path, format, image shape) recorded as is."""

    kind: str
    input_shape: list[int]
    n_classes: int
    bounds: list[float]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "input_shape": self.input_shape, "n_classes": self.n_classes,
                "bounds": self.bounds, **self.extra}


@dataclass(frozen=True)
class InputFimInfo(_JsonItems):
    """The softmax input FIM: ``method`` (dense autograd or matrix-free Lanczos), top
    eigenvalues per input (n, k) and the median of the largest."""

    method: str
    output: str
    top_eigs: list[list[float]]
    top_eig_median: float
    note: str = "exact and deterministic: no sampling error"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AnyAttackRow(_JsonItems):
    """One attack under one norm, judged by the model's argmax.

    ``min_eps`` (nominal) and ``min_eps_actual`` (applied norm after clipping) per input,
    ``inf`` where the input did not flip within the largest budget (``flipped`` False; the
    JSON writes null); quartiles as the RBM audit's (:class:`Quartiles`), and of the applied
    L2 over ‖x‖₂ (L2) or the applied L∞ (L∞). ``bracket``: bisection resolution.
    """

    epsilons: list[float]
    flip_rate: list[float]
    flipped: list[bool]
    min_eps: list[float]
    min_eps_summary: Quartiles
    min_eps_actual: list[float]
    min_eps_actual_summary: Quartiles
    min_eps_fraction_of_norm_summary: Quartiles
    bracket: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        def per_input(v: list[float]) -> list[float | None]:
            return [e if f else None for e, f in zip(v, self.flipped, strict=True)]

        return {"epsilons": self.epsilons, "flip_rate": self.flip_rate, "flipped": self.flipped,
                "min_eps": per_input(self.min_eps),
                "min_eps_summary": _json_quartiles(self.min_eps_summary),
                "min_eps_actual": per_input(self.min_eps_actual),
                "min_eps_actual_summary": _json_quartiles(self.min_eps_actual_summary),
                "min_eps_fraction_of_norm_summary": _json_quartiles(
                    self.min_eps_fraction_of_norm_summary),
                "bracket": self.bracket, "seconds": self.seconds}


#: attacks[norm][method]
AnyAttackTable = dict[str, dict[str, AnyAttackRow]]


@dataclass(frozen=True)
class AnyVerdict(_JsonItems):
    """The smallest median flipping L2 perturbation over methods (random directions excluded),
    absolute and as a fraction of ‖x‖₂, in plain words (``text``); ``best_method`` None when
    no method flipped the median input. ``relevant_directions``: what the FIM direction
    needed (None, and absent from the JSON, without a best method)."""

    best_method: str | None
    median_l2: float | None
    median_fraction: float | None
    n_flipped: int
    n: int
    text: str
    relevant_directions: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()
                if k != "relevant_directions" or v is not None}


@dataclass(frozen=True)
class AnyDiagnosis(_JsonItems):
    """The layerwise MCRG diagnosis, or why there is none (``available`` False, ``note``).

    ``spectra`` reuses the RBM audit's :class:`Diagnosis` (singles basis, one
    :class:`PairDiagnosis` per layer pair); ``samples`` chains per input, ``n_inputs``.
    """

    available: bool
    note: str
    spectra: Diagnosis | None = None
    samples: int | None = None
    n_inputs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.spectra is None:
            return {"available": self.available, "note": self.note}
        return {"available": self.available, "basis": self.spectra.basis,
                "samples": self.samples, "n_inputs": self.n_inputs,
                "pairs": [p.to_dict() for p in self.spectra.pairs], "note": self.note}


@dataclass(frozen=True)
class AdversarialExamples(_JsonItems):
    """Adversarial examples of one method at each input's minimal flipping L2 budget.

    ``x`` and ``x_adv`` (arrays of shape (n, n_features)) go to ``examples.npz``, the rest to
    the JSON; ``eps_l2``: the applied ‖δ‖₂, None where the input did not flip (then the
    largest budget is shown); predicted classes and top probabilities, clean and adversarial.
    """

    method: str
    x: np.ndarray = field(repr=False)
    x_adv: np.ndarray = field(repr=False)
    eps_l2: list[float | None]
    flipped: list[bool]
    pred_clean: list[int]
    pred_adv: list[int]
    proba_clean: list[float]
    proba_adv: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "eps_l2": self.eps_l2, "pred_clean": self.pred_clean,
                "pred_adv": self.pred_adv, "proba_clean": self.proba_clean,
                "proba_adv": self.proba_adv, "flipped": self.flipped}


@dataclass
class AnyAuditResult:
    """Typed result of :func:`run_any_audit`; ``to_dict`` is the JSON the CLI writes.

    Attributes
    ----------
    config : AnyAuditConfig
    model : ModelInfo
    inputs : AuditInputs
        As the RBM audit's, with ``labels`` and ``norm_l2`` (no images).
    fim : InputFimInfo
    attacks : dict of str to dict of str to AnyAttackRow
        By norm (``l2``, ``linf``), then method.
    verdict : AnyVerdict
    diagnosis : AnyDiagnosis
    timings : dict of str to float
    examples : dict of str to AdversarialExamples
        ``best`` (the verdict's method) and ``fim``; their arrays are saved next to the JSON
        (``examples.npz``), not in it.

    The nested parts also answer ``part["key"]`` with their JSON value (older examples).
    """

    config: AnyAuditConfig
    model: ModelInfo
    inputs: AuditInputs
    fim: InputFimInfo
    attacks: AnyAttackTable
    verdict: AnyVerdict
    diagnosis: AnyDiagnosis
    timings: dict[str, float] = field(default_factory=dict)
    examples: dict[str, AdversarialExamples] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "model": self.model.to_dict(),
                "inputs": self.inputs.to_dict(), "fim": self.fim.to_dict(),
                "attacks": {n: {m: r.to_dict() for m, r in per.items()}
                            for n, per in self.attacks.items()},
                "verdict": self.verdict.to_dict(), "diagnosis": self.diagnosis.to_dict(),
                "timings": dict(self.timings),
                "examples": {k: v.to_dict() for k, v in self.examples.items()}}


class ArgmaxJudge:
    """Judge of a deterministic classifier: the argmax of ``answer``; ``gap_z`` is the
    probability gap between the top two classes (every decision is "confident", z = 0)."""

    z = 0.0

    def __init__(self, clf: Classifier) -> None:
        self.clf = clf

    def verdict(self, x: Tensor) -> Verdict:
        p = self.clf.answer(x)
        top2 = p.topk(2, dim=-1).values
        return Verdict(p.argmax(-1), top2[:, 0] - top2[:, 1], p)

    def __call__(self, x: Tensor) -> Tensor:
        return self.clf.answer(x).argmax(-1)


class LogProbaModule(torch.nn.Module):
    """A classifier's ``log_proba`` as an ``nn.Module`` (ART and autograd take modules)."""

    def __init__(self, clf: Classifier) -> None:
        super().__init__()
        self.clf = clf
        inner = getattr(clf, "module", None) or getattr(clf, "net", None)
        if isinstance(inner, torch.nn.Module):
            self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.clf.log_proba(x)


class _FixedDirection(DirectionAttack):
    def __init__(self, v: Tensor, *, norm: Norm, name: str) -> None:
        super().__init__(norm=norm)
        self.v, self.name = v, name

    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        return self.v


def check_data(clf: Classifier, X: Tensor, y: Tensor, what: str = "--data") -> None:
    """Clear errors when the data does not fit the model (width, value range, labels)."""
    if X.dim() != 2 or X.shape[1] != clf.n_features:
        raise ValueError(f"{what}: inputs have {tuple(X.shape[1:])} features per row but the "
                         f"model takes {clf.n_features} (input shape {clf.input_shape}); pass "
                         "the data set the model was trained on")
    lo, hi = clf.bounds
    if float(X.min()) < lo or float(X.max()) > hi:
        raise ValueError(f"{what}: input values span [{float(X.min()):.3g}, "
                         f"{float(X.max()):.3g}] but the model's valid range is [{lo}, {hi}]; "
                         "scale the data as the model was trained")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= clf.n_classes):
        raise ValueError(f"{what}: labels span {int(y.min())}..{int(y.max())} but the model "
                         f"has {clf.n_classes} classes (0..{clf.n_classes - 1})")


def fim_top(clf: Classifier, x: Tensor, k: int, dense_max: int, seed: int
            ) -> tuple[Tensor, Tensor, str]:
    """Top-k eigenvalues (n, k) and top eigenvectors (n, d) of the softmax input FIM."""
    from rgaudit.fisher.autograd import dense_fim, top_fim_eigs

    model = LogProbaModule(clf)       # log-softmax logits: same softmax, same FIM
    d = x.shape[1]
    k = min(k, d - 1) if d > 1 else 1
    if d <= dense_max:
        F = dense_fim(model, x.detach().to(torch.float64 if _is_f64(clf) else x.dtype),
                      "softmax").to(torch.float64)
        w, V = torch.linalg.eigh(F)
        return w.flip(-1)[:, :k], V[..., -1], "dense autograd"
    vals, vecs = [], []
    for i in range(x.shape[0]):
        # one input of shape (d,): top_fim_eigs batches it as (1, d) itself
        e = top_fim_eigs(model, x[i], k, "softmax", seed=child_seed(seed, "lanczos", i))
        vals.append(e.values)
        vecs.append(e.vectors[:, 0])
    return torch.stack(vals), torch.stack(vecs), "matrix-free Lanczos"


def _is_f64(clf: Classifier) -> bool:
    net = clf.rbm
    return net is not None and net.dtype == torch.float64


def _true_class_grad(clf: Classifier, x: Tensor, y: Tensor) -> Tensor:
    z = x.detach().clone().requires_grad_(True)
    lp = clf.log_proba(z)
    (g,) = torch.autograd.grad(lp.gather(1, y.view(-1, 1)).sum(), z)
    return g.detach()


def _attacks(clf: Classifier, x: Tensor, y: Tensor, norm: Norm, fim_v: Tensor, grad: Tensor,
             cfg: AnyAuditConfig) -> list[Attack]:
    from rgaudit.attacks.baselines import PGD, DeepFool, RandomDirection, art_classifier

    # FIM direction: the top eigenvector, signed to lower the true class's probability
    s = torch.sign((fim_v * grad.to(fim_v.dtype)).sum(-1, keepdim=True))
    s = torch.where(s == 0, torch.ones_like(s), s)
    atks: list[Attack] = [
        _FixedDirection(-(fim_v * s).to(x.dtype), norm=norm, name="fim"),
        _FixedDirection(-grad.to(x.dtype), norm=norm, name="gradient (FGM)"),
    ]
    art = art_classifier(LogProbaModule(clf), clf.n_features, clf.n_classes)
    atks.append(DeepFool(classifier=art, norm=norm))
    atks.append(PGD(classifier=art, norm=norm, max_iter=cfg.pgd_iter))
    seed = cfg.streams()["random-directions"]
    atks.append(RandomDirection(generator=torch.Generator().manual_seed(seed),
                                norm=norm))
    return atks


def run_any_audit(clf: Classifier, X_test: Tensor, y_test: Tensor,
                  cfg: AnyAuditConfig | None = None, *, model_info: dict[str, Any] | None = None,
                  progress: Progress = no_progress) -> AnyAuditResult:
    """Audit any classifier on test data.

    Parameters
    ----------
    clf : Classifier
    X_test : Tensor of shape (n_test, n_features)
        Flat inputs in ``clf.bounds``.
    y_test : Tensor of shape (n_test,)
        Labels ``0 … n_classes-1``.
    cfg : AnyAuditConfig, optional
    model_info : dict, optional
        Recorded as is (path, format, data set).
    progress : Progress
        ``progress(stage, done, total)`` after every step.

    Returns
    -------
    AnyAuditResult
    """
    cfg = cfg or AnyAuditConfig()
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    judge = ArgmaxJudge(clf)
    x, y, inputs = _select_inputs(clf, judge, torch.as_tensor(X_test),
                                  torch.as_tensor(y_test).long(), cfg.n_inputs)
    steps = 1 + 2 * 5
    progress("input Fisher information", 0, steps)
    t0 = time.perf_counter()
    evals, evec, fim_method = fim_top(clf, x, cfg.fim_top_k, cfg.dense_max_features,
                                      cfg.streams()["lanczos"])
    grad = _true_class_grad(clf, x, y)
    timings["fim"] = time.perf_counter() - t0
    progress("input Fisher information", 1, steps)
    t0 = time.perf_counter()
    attacks, found = _run_attacks(
        clf, x, y, lambda norm: _attacks(clf, x, y, norm, evec, grad, cfg), cfg,
        lambda stage, done: progress(stage, done, steps))
    timings["attacks"] = time.perf_counter() - t0
    progress("done", steps, steps)
    verdict = _verdict(attacks["l2"])
    examples = {key: _examples(clf, x, name, *found[name], cfg.eps_l2[-1])
                for key, name in (("best", verdict.best_method), ("fim", "fim"))
                if name is not None}
    diagnosis = AnyDiagnosis(False, MCRG_NOTE.format(kind=clf.kind))
    net = clf.rbm
    if net is not None and cfg.n_diagnose > 0:
        progress("MCRG diagnosis", steps, steps)
        t0 = time.perf_counter()
        diagnosis = mcrg_diagnosis(net, x[: cfg.n_diagnose], cfg.mcrg_samples,
                                   cfg.streams()["mcrg"])
        timings["mcrg"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    return AnyAuditResult(
        config=cfg,
        model=ModelInfo(clf.kind, list(clf.input_shape), clf.n_classes, list(clf.bounds),
                        dict(model_info or {})),
        inputs=inputs,
        fim=InputFimInfo(fim_method, "softmax", evals.tolist(), float(evals[:, 0].median())),
        attacks=attacks, verdict=verdict, diagnosis=diagnosis, timings=timings,
        examples=examples)


def _select_inputs(clf: Classifier, judge: ArgmaxJudge, X: Tensor, y_all: Tensor, n: int
                   ) -> tuple[Tensor, Tensor, AuditInputs]:
    """The first ``n`` test inputs (in order) the model classifies correctly, among the first
    ``max(4n, n + 20)``; the data is checked against the model first."""
    check_data(clf, X, y_all)
    pool = min(X.shape[0], max(4 * n, n + 20))
    with torch.no_grad():
        pred = judge(X[:pool])
    ok = torch.nonzero(pred == y_all[:pool]).flatten()[:n]
    if ok.numel() == 0:
        raise ValueError("the model classifies none of the first test inputs correctly; check "
                         "that --data (and its scaling) is what the model was trained on")
    x, y = X[ok], y_all[ok]
    return x, y, AuditInputs(ok.tolist(), pool, float((pred == y_all[:pool]).double().mean()),
                             labels=y.tolist(), norm_l2=x.to(torch.float64).norm(dim=1).tolist())


def _run_attacks(clf: Classifier, x: Tensor, y: Tensor,
                 attacks_for: Callable[[Norm], list[Attack]], cfg: AnyAuditConfig,
                 progress: Callable[[str, int], None]
                 ) -> tuple[AnyAttackTable, dict[str, tuple[Tensor, Any]]]:
    """Every attack (``attacks_for(norm)``) under both norms, judged by the model's argmax;
    also each L2 method's direction and minimal-ε search (for the adversarial examples)."""
    judge = ArgmaxJudge(clf)
    xnorm = x.to(torch.float64).norm(dim=1)
    attacks: AnyAttackTable = {}
    found: dict[str, tuple[Tensor, Any]] = {}
    done = 1
    grids: tuple[tuple[Norm, tuple[float, ...]], ...] = (("l2", cfg.eps_l2),
                                                          ("linf", cfg.eps_linf))
    for norm, grid in grids:
        per: dict[str, AnyAttackRow] = {}
        for atk in attacks_for(norm):
            progress(f"attack {atk.name} ({norm})", done)
            t1 = time.perf_counter()
            res = atk(x, y, epsilons=list(grid), judge=judge)
            v = (atk.cached_direction(x, y) if isinstance(atk, DirectionAttack)
                 else atk.direction(x, y, reference_eps=float(grid[-1])))
            # ArgmaxJudge has the verdict/z/__call__ interface minimal_eps uses; there is no
            # judge protocol yet (StochasticJudge is the annotated type)
            me = minimal_eps(judge, x, y, v, norm=norm, eps_max=float(grid[-1]),  # type: ignore[arg-type]
                             steps=cfg.bisect_steps)
            actual = me.actual_l2 if norm == "l2" else me.actual_linf
            per[atk.name] = AnyAttackRow(
                epsilons=list(grid), flip_rate=res.flip_rate.tolist(),
                flipped=torch.isfinite(me.eps).tolist(),
                min_eps=[float(e) for e in me.eps.tolist()],
                min_eps_summary=censored_quartiles(me.eps),
                min_eps_actual=[float(e) for e in actual.tolist()],
                min_eps_actual_summary=censored_quartiles(actual),
                min_eps_fraction_of_norm_summary=censored_quartiles(
                    me.actual_l2 / xnorm if norm == "l2" else actual),
                bracket=float(grid[-1]) / 2 ** cfg.bisect_steps,
                seconds=time.perf_counter() - t1)
            if norm == "l2":
                found[atk.name] = (v, me)
            done += 1
        attacks[norm] = per
    return attacks, found


def _examples(clf: Classifier, x: Tensor, name: str, direction: Tensor, me: Any,
              eps_max: float) -> AdversarialExamples:
    """The adversarial inputs of one L2 method at each input's minimal flipping budget (the
    largest budget where the input did not flip)."""
    step = unit_step(direction, "l2").to(x.dtype)
    eps = torch.where(torch.isfinite(me.eps), me.eps, torch.full_like(me.eps, eps_max))
    x_adv = clip_box(x + eps.to(x.dtype).unsqueeze(-1) * step)
    with torch.no_grad():
        pc, pa = clf.answer(x), clf.answer(x_adv)
    return AdversarialExamples(
        method=name, x=x.detach().cpu().numpy(), x_adv=x_adv.detach().cpu().numpy(),
        eps_l2=[_num(float(e)) for e in me.actual_l2.tolist()],
        flipped=torch.isfinite(me.eps).tolist(),
        pred_clean=pc.argmax(-1).tolist(), pred_adv=pa.argmax(-1).tolist(),
        proba_clean=pc.max(-1).values.tolist(), proba_adv=pa.max(-1).values.tolist())


def mcrg_diagnosis(net: Any, x: Tensor, n_samples: int, seed: int) -> AnyDiagnosis:
    """Fisher-normalised stability spectra of every layer pair (singles basis, MCRG).

    The spectra describe the *stochastic* network with the model's weights: hidden units
    sampled from the layer conditionals ``σ(W h + a)`` (for a converted scikit-learn pipeline,
    exactly sklearn's ``transform``), whereas the attacks act on the deterministic probabilities.
    """
    from rgaudit.experiments.audit import _diagnose
    from rgaudit.rg.mcrg import mcrg_network

    gen = torch.Generator(device=net.device).manual_seed(seed)
    res = mcrg_network(net, x.to(device=net.device, dtype=net.dtype), "singles", n_samples,
                       generator=gen)
    return AnyDiagnosis(
        available=True, spectra=_diagnose(res, x.shape[0]), samples=n_samples,
        n_inputs=int(x.shape[0]),
        note=("MCRG diagnosis of the stochastic network with this model's weights (hidden "
              "units sampled from its own layer conditionals). Fisher-normalised singular "
              "values s ≈ 1 mark directions whose information survives the layer "
              "(relevant or marginal), s < 1 directions it loses (irrelevant); the "
              "attacks act on the deterministic (mean-field) probabilities."))


def _verdict(l2: dict[str, AnyAttackRow]) -> AnyVerdict:
    """The smallest median flipping L2 perturbation over methods, in plain words."""
    cands = [(r.min_eps_actual_summary.median, name) for name, r in l2.items()
             if name != "random" and math.isfinite(r.min_eps_actual_summary.median)]
    if not cands:
        return AnyVerdict(None, None, None, 0, next(iter(l2.values())).min_eps_summary.n,
                          "No method flipped the median input within the largest L2 budget.")
    med, name = min(cands)
    r = l2[name]
    frac = r.min_eps_fraction_of_norm_summary.median
    s = r.min_eps_actual_summary
    text = (f"Half of the audited inputs change class under an L2 perturbation of at most "
            f"{med:.2g} ({100 * frac:.2g} % of the input's own L2 norm, median over inputs), "
            f"found by {name}; "
            f"{s.n_flipped}/{s.n} inputs flipped within the largest budget.")
    fim_med = l2["fim"].min_eps_actual_summary.median if "fim" in l2 else math.inf
    relevant = ("The FIM direction is the input change that moves the model's output "
                "distribution fastest (top eigenvector of the input Fisher information); "
                + (f"along it the median flip needs L2 {fim_med:.2g}."
                   if math.isfinite(fim_med) else "along it the median input did not flip."))
    return AnyVerdict(name, med, _num(frac), s.n_flipped, s.n, text, relevant)
