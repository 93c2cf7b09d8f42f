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
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rgaudit.attacks.base import Attack, DirectionAttack, Norm, clip_box, unit_step
from rgaudit.attacks.evaluate import Verdict, minimal_eps
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


@dataclass
class AnyAuditResult:
    """Typed result of :func:`run_any_audit`; ``to_dict`` is the JSON the CLI writes.

    ``examples`` holds the arrays saved next to the JSON (``examples.npz``), not in it.
    """

    config: dict[str, Any]
    model: dict[str, Any]
    inputs: dict[str, Any]
    fim: dict[str, Any]
    attacks: dict[str, Any]
    verdict: dict[str, Any]
    diagnosis: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "examples"}
        d["examples"] = {k: {"method": v["method"], "eps_l2": v["eps_l2"],
                             "pred_clean": v["pred_clean"], "pred_adv": v["pred_adv"],
                             "proba_clean": v["proba_clean"], "proba_adv": v["proba_adv"],
                             "flipped": v["flipped"]}
                         for k, v in self.examples.items()}
        return d


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
        e = top_fim_eigs(model, x[i:i + 1], k, "softmax", seed=child_seed(seed, "lanczos", i))
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


def _quartiles(v: Tensor) -> dict[str, Any]:
    v = v.to(torch.float64)
    from rgaudit.stats import censored_quantiles

    fl = torch.isfinite(v)
    # a quantile that falls among the unflipped inputs is "not flipped" (null), not a number
    q = [t if math.isfinite(t) else None
         for t in censored_quantiles(v.cpu().numpy(), (0.25, 0.5, 0.75))]
    return {"q1": q[0], "median": q[1], "q3": q[2], "n_flipped": int(fl.sum()),
            "n": int(v.numel())}


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
    X = torch.as_tensor(X_test)
    y_all = torch.as_tensor(y_test).long()
    check_data(clf, X, y_all)
    judge = ArgmaxJudge(clf)
    pool = min(X.shape[0], max(4 * cfg.n_inputs, cfg.n_inputs + 20))
    with torch.no_grad():
        pred = judge(X[:pool])
    ok = torch.nonzero(pred == y_all[:pool]).flatten()[: cfg.n_inputs]
    if ok.numel() == 0:
        raise ValueError("the model classifies none of the first test inputs correctly; check "
                         "that --data (and its scaling) is what the model was trained on")
    x, y = X[ok], y_all[ok]
    steps = 1 + 2 * 5
    progress("input Fisher information", 0, steps)
    t0 = time.perf_counter()
    evals, evec, fim_method = fim_top(clf, x, cfg.fim_top_k, cfg.dense_max_features,
                                      cfg.streams()["lanczos"])
    grad = _true_class_grad(clf, x, y)
    timings["fim"] = time.perf_counter() - t0
    progress("input Fisher information", 1, steps)
    xnorm = x.to(torch.float64).norm(dim=1)
    attacks: dict[str, Any] = {}
    best: dict[str, Any] = {}
    dirs: dict[str, Tensor] = {}
    done = 1
    t0 = time.perf_counter()
    grids: tuple[tuple[Norm, tuple[float, ...]], ...] = (("l2", cfg.eps_l2),
                                                          ("linf", cfg.eps_linf))
    for norm, grid in grids:
        per: dict[str, Any] = {}
        for atk in _attacks(clf, x, y, norm, evec, grad, cfg):
            progress(f"attack {atk.name} ({norm})", done, steps)
            t1 = time.perf_counter()
            res = atk(x, y, epsilons=list(grid), judge=judge)
            v = (atk.cached_direction(x, y) if isinstance(atk, DirectionAttack)
                 else atk.direction(x, y, reference_eps=float(grid[-1])))
            # ArgmaxJudge has the verdict/z/__call__ interface minimal_eps uses; there is no
            # judge protocol yet (StochasticJudge is the annotated type)
            me = minimal_eps(judge, x, y, v, norm=norm, eps_max=float(grid[-1]),  # type: ignore[arg-type]
                             steps=cfg.bisect_steps)
            flipped = torch.isfinite(me.eps)
            actual = me.actual_l2 if norm == "l2" else me.actual_linf
            per[atk.name] = {
                "epsilons": list(grid), "flip_rate": res.flip_rate.tolist(),
                "flipped": flipped.tolist(),
                "min_eps": [float(e) if f else None
                            for e, f in zip(me.eps.tolist(), flipped.tolist(), strict=True)],
                "min_eps_summary": _quartiles(me.eps),
                "min_eps_actual": [float(e) if f else None
                                   for e, f in zip(actual.tolist(), flipped.tolist(), strict=True)],
                "min_eps_actual_summary": _quartiles(actual),
                "min_eps_fraction_of_norm_summary": _quartiles(
                    me.actual_l2 / xnorm if norm == "l2" else actual),
                "bracket": float(grid[-1]) / 2 ** cfg.bisect_steps,
                "seconds": time.perf_counter() - t1,
            }
            if norm == "l2":
                dirs[atk.name] = v
                best[atk.name] = me
            done += 1
        attacks[norm] = per
    timings["attacks"] = time.perf_counter() - t0
    progress("done", steps, steps)
    verdict = _verdict(attacks["l2"], clf)
    examples = {}
    for key, name in (("best", verdict["best_method"]), ("fim", "fim")):
        if name is None:
            continue
        me = best[name]
        step = unit_step(dirs[name], "l2").to(x.dtype)
        eps = torch.where(torch.isfinite(me.eps), me.eps, torch.full_like(me.eps, cfg.eps_l2[-1]))
        x_adv = clip_box(x + eps.to(x.dtype).unsqueeze(-1) * step)
        with torch.no_grad():
            pc, pa = clf.answer(x), clf.answer(x_adv)
        examples[key] = {
            "method": name, "x": x.detach().cpu().numpy(),
            "x_adv": x_adv.detach().cpu().numpy(),
            "eps_l2": [float(e) if math.isfinite(e) else None for e in me.actual_l2.tolist()],
            "flipped": torch.isfinite(me.eps).tolist(),
            "pred_clean": pc.argmax(-1).tolist(), "pred_adv": pa.argmax(-1).tolist(),
            "proba_clean": pc.max(-1).values.tolist(), "proba_adv": pa.max(-1).values.tolist(),
        }
    diagnosis: dict[str, Any] = {"available": False, "note": MCRG_NOTE.format(kind=clf.kind)}
    net = clf.rbm
    if net is not None and cfg.n_diagnose > 0:
        progress("MCRG diagnosis", steps, steps)
        t0 = time.perf_counter()
        diagnosis = mcrg_diagnosis(net, x[: cfg.n_diagnose], cfg.mcrg_samples,
                                   cfg.streams()["mcrg"])
        timings["mcrg"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    return AnyAuditResult(
        config=cfg.to_dict(),
        model={"kind": clf.kind, "input_shape": list(clf.input_shape),
               "n_classes": clf.n_classes, "bounds": list(clf.bounds), **(model_info or {})},
        inputs={"indices": ok.tolist(), "pool": pool,
                "pool_accuracy": float((pred == y_all[:pool]).double().mean()),
                "labels": y.tolist(), "norm_l2": xnorm.tolist()},
        fim={"method": fim_method, "output": "softmax", "top_eigs": evals.tolist(),
             "top_eig_median": float(evals[:, 0].median()),
             "note": "exact and deterministic: no sampling error"},
        attacks=attacks, verdict=verdict, diagnosis=diagnosis, timings=timings,
        examples=examples)


def mcrg_diagnosis(net: Any, x: Tensor, n_samples: int, seed: int) -> dict[str, Any]:
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
    d = _diagnose(res, x.shape[0])
    return {"available": True, "basis": "singles", "samples": n_samples,
            "n_inputs": int(x.shape[0]), "pairs": [p.to_dict() for p in d.pairs],
            "note": ("MCRG diagnosis of the stochastic network with this model's weights (hidden "
                     "units sampled from its own layer conditionals). Fisher-normalised singular "
                     "values s ≈ 1 mark directions whose information survives the layer "
                     "(relevant or marginal), s < 1 directions it loses (irrelevant); the "
                     "attacks act on the deterministic (mean-field) probabilities.")}


def _verdict(l2: dict[str, Any], clf: Classifier) -> dict[str, Any]:
    """The smallest median flipping L2 perturbation over methods, in plain words."""
    cands = [(r["min_eps_actual_summary"]["median"], name) for name, r in l2.items()
             if name != "random" and r["min_eps_actual_summary"]["median"] is not None]
    if not cands:
        return {"best_method": None, "median_l2": None, "median_fraction": None,
                "n_flipped": 0, "n": next(iter(l2.values()))["min_eps_summary"]["n"],
                "text": "No method flipped the median input within the largest L2 budget."}
    med, name = min(cands)
    r = l2[name]
    frac = r["min_eps_fraction_of_norm_summary"]["median"]
    s = r["min_eps_actual_summary"]
    text = (f"Half of the audited inputs change class under an L2 perturbation of at most "
            f"{med:.2g} ({100 * frac:.2g} % of the input's own L2 norm, median over inputs), "
            f"found by {name}; "
            f"{s['n_flipped']}/{s['n']} inputs flipped within the largest budget.")
    fim_med = l2.get("fim", {}).get("min_eps_actual_summary", {}).get("median")
    relevant = ("The FIM direction is the input change that moves the model's output "
                "distribution fastest (top eigenvector of the input Fisher information); "
                + (f"along it the median flip needs L2 {fim_med:.2g}."
                   if fim_med is not None else "along it the median input did not flip."))
    return {"best_method": name, "median_l2": med, "median_fraction": frac,
            "n_flipped": s["n_flipped"], "n": s["n"], "text": text,
            "relevant_directions": relevant}
