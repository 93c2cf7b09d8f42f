"""Cloning study: does poisoning the victim's answers spoil clones trained on them?

The victim is a DeepRBM; its API answers a query ``x`` with the probability vector
``y(x) = σ(z) / Σ σ(z)``, ``z`` the mean-field top logits (deterministic: a production API would
not return Monte Carlo noise), and predicts ``argmax z``. The held-out pool is the first
``pool_fraction`` of the data set's test split (never seen in training); the rest is the
evaluation set for clone accuracy, fidelity and transfer.

For every defence and budget the pool's answers are poisoned once; for every number of queries
``n`` (the first ``n`` of the pool) every attacker trains a clone, which is scored. Everything is
returned as plain result objects; no file I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from rgaudit.defence.baselines import DEFENCES, make_poisoner
from rgaudit.defence.cloning_attacks import ATTACKERS, CLONE_LAYERWISE, clone_attack
from rgaudit.defence.generation_fim import DEFAULT_ESTIMATOR, ESTIMATORS
from rgaudit.defence.metrics import clone_quality, transfer_rates, victim_utility
from rgaudit.defence.poison import PoisonedOutputs
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.random import torch_generator

Tensor = torch.Tensor


@torch.no_grad()
def victim_answers(net: DeepRBM, x: Tensor) -> Tensor:
    """The API's answer: normalised sigmoids of the mean-field top logits; (n, K), float64."""
    p = torch.sigmoid(net.mean_field_logits(x.to(net.device)).to(torch.float64))
    return (p / p.sum(-1, keepdim=True)).cpu()


def victim_predictor(net: DeepRBM) -> Callable[[Tensor], Tensor]:
    """Victim's class predictions (argmax of the mean-field logits) as a callable."""
    @torch.no_grad()
    def predict(x: Tensor) -> Tensor:
        return net.mean_field_logits(x.to(net.device)).argmax(-1).cpu()
    return predict


def poison_damage(po: Any, F: Tensor) -> dict[str, float]:
    """Fisher "damage" of poisoned answers: median ``δyᵀ F̃ δy`` (what the RG poison aims to
    maximise) and median ``|cos(δy, v_top)|`` (``v_top`` the top eigenvector of ``P F̃ P``).

    Parameters
    ----------
    po : PoisonedOutputs
    F : Tensor of shape (n, m, m)
        Generation FIMs at the honest answers.
    """
    from rgaudit.defence.generation_fim import top_directions

    d = (po.y_poisoned - po.y).to(torch.float64).cpu()
    q = torch.einsum("ni,nij,nj->n", d, F, d)
    v = top_directions(F, "simplex", 1)[1][..., 0]
    norm = d.norm(dim=1)
    cos = (d * v).sum(1).abs() / norm.clamp_min(1e-300)
    moved = norm > 0
    return {"median_fisher_damage": float(q.median()),
            "mean_fisher_damage": float(q.mean()),
            "median_abs_cos_top": float(cos[moved].median()) if moved.any() else float("nan")}


@dataclass(frozen=True)
class CloningSettings:
    """Settings of a cloning study (all recorded in the result)."""

    defences: tuple[str, ...] = ("none", "rg", "random", "reverse-sigmoid", "mad")
    eps: tuple[float, ...] = (0.1, 0.3)
    norm: str = "l1"
    n_queries: tuple[int, ...] = (240,)
    attackers: tuple[str, ...] = ATTACKERS
    eps_adv: float = 1.0
    transfer_methods: tuple[str, ...] = ("fim", "fgm")
    pool_fraction: float = 0.55
    estimator: str = DEFAULT_ESTIMATOR
    mlp_epochs: int = 100
    layerwise_sweeps: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [d for d in self.defences if d not in DEFENCES]
        bad += [a for a in self.attackers if a not in ATTACKERS]
        if bad:
            raise ValueError(f"unknown defences/attackers {bad}; defences: {DEFENCES}, "
                             f"attackers: {ATTACKERS}")
        if self.norm not in ("l1", "l2", "kl"):
            raise ValueError(f"norm must be l1, l2 or kl, got {self.norm!r}")
        if not 0 < self.pool_fraction < 1:
            raise ValueError("pool_fraction must lie in (0, 1)")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")


@dataclass(frozen=True)
class ServedVictim:
    """The victim as deployed: a callable answering flat inputs over its API.

    Attributes
    ----------
    answer : callable
        ``x (n, d) ndarray -> probabilities (n, K) ndarray``.
    defence : str
        The defence the API reports (``GET /v1/model``).
    eps : float
        Its budget.
    describe : dict
        What the API says of itself (recorded in the result).
    """

    answer: Callable[[Any], Any]
    defence: str
    eps: float
    describe: dict[str, Any] = field(default_factory=dict)


@dataclass
class CloningRow:
    """One (defence, budget, queries, attacker) cell."""

    defence: str
    eps: float
    n_queries: int
    attacker: str
    accuracy: float
    fidelity: float
    transfer: dict[str, float]
    utility: dict[str, float]
    poison: dict[str, float] = field(default_factory=dict)


@dataclass
class CloningResult:
    """Result of :func:`run_cloning`."""

    settings: dict[str, Any]
    victim: dict[str, Any]
    rows: list[CloningRow] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "victim": self.victim, "seconds": self.seconds,
                "rows": [asdict(r) for r in self.rows]}


def _poisoned(defence: str, eps: float, ctx: dict[str, Any]) -> PoisonedOutputs:
    """The pool's answers poisoned once by (defence, eps), with the study's poison seed."""
    s: CloningSettings = ctx["settings"]
    poisoner = make_poisoner(defence, eps=eps, norm=s.norm, kind="simplex", net=ctx["net"],
                             n_inputs=ctx["n_inputs"], **({"estimator": s.estimator}
                                                          if defence == "rg" else {}))
    gen = torch_generator(s.seed, "poison")
    return poisoner(ctx["honest"], ctx["x_pool"], gen)


def _clone_rows(defence: str, eps: float, po: PoisonedOutputs, ctx: dict[str, Any],
                progress: Callable[[str], None] | None,
                victim: Callable[[Any], Any] | None = None) -> list[CloningRow]:
    """Train and score every clone on the first ``n`` answers of ``po``, for every ``n``.

    ``victim`` is the API the ART attackers query themselves (a served model); by default they
    query the in-process answers.
    """
    s: CloningSettings = ctx["settings"]
    net, x_pool = ctx["net"], ctx["x_pool"]
    x_eval, y_eval, F_honest = ctx["x_eval"], ctx["y_eval"], ctx["F_honest"]
    predict = victim_predictor(net)
    lw = replace(CLONE_LAYERWISE, max_sweeps=s.layerwise_sweeps)
    rows = []
    for n in s.n_queries:
        po_n = type(po)(po.y[:n], po.y_poisoned[:n], po.scales[:n], po.limits[:n])
        util = victim_utility(po_n, "simplex")
        dmg = poison_damage(po_n, F_honest[:n])
        for attacker in s.attackers:
            if progress is not None:
                progress(f"{defence} eps={eps:g} n={n} {attacker}")
            g = torch_generator(s.seed, "clone")
            clone = clone_attack(attacker, x_pool[:n], po.y_poisoned[:n],
                                 victim_widths=list(net.widths), generator=g,
                                 epochs=s.mlp_epochs, layerwise=lw, victim=victim)
            q = clone_quality(clone, predict, x_eval, y_eval)
            tr = transfer_rates(clone, predict, x_eval, y_eval, s.eps_adv, s.transfer_methods)
            rows.append(CloningRow(defence, eps, n, attacker, q["accuracy"], q["fidelity"], tr,
                                   util, dmg))
    return rows


def _cell_rows(defence: str, eps: float, ctx: dict[str, Any],
               progress: Callable[[str], None] | None) -> list[CloningRow]:
    """Poison the pool once for (defence, eps), then train and score every clone."""
    return _clone_rows(defence, eps, _poisoned(defence, eps, ctx), ctx, progress)


def cloning_cell_unit(unit: Any, ss: Any, shared: dict[str, Any]) -> list[dict[str, Any]]:
    """Executor unit: the rows of one (defence, eps) cell as plain dicts (``ss`` unused: the
    cell's seeds are the study's, see :func:`run_cloning`)."""
    return [asdict(r) for r in _cell_rows(unit.payload["defence"], unit.payload["eps"],
                                          shared, None)]


def run_cloning(
    net: DeepRBM,
    dataset: Any,
    settings: CloningSettings | None = None,
    progress: Callable[[str], None] | None = None,
    executor: Any = None,
    store: Any = None,
    *,
    served: ServedVictim | None = None,
) -> CloningResult:
    """Run the cloning study.

    Parameters
    ----------
    net : DeepRBM
        The victim.
    dataset : rgaudit.data.Dataset
        Provides ``X_test``/``y_test`` (split into query pool and evaluation set).
    settings : CloningSettings, optional
    progress : callable, optional
        Called with a short description before each clone is trained (with an executor: once,
        before the cells are sent).
    executor : rgaudit.executors.Executor, optional
        Run every (defence, budget) cell as one unit (``--executor local|ray``). The cells use
        the study's fixed streams (``"poison"`` for the poison, ``"clone"`` for every clone:
        common random numbers across defences), so the rows equal those of the plain loop.
    store : rgaudit.executors.UnitStore, optional
        Finished cells are kept there and skipped on a rerun (executor path only).
    served : ServedVictim, optional
        A deployed API of the same model: its answers to the pool form one more column,
        ``served:<defence>`` (``clone-attack --target``).

    Returns
    -------
    CloningResult
    """
    import time

    s = settings or CloningSettings()
    t0 = time.perf_counter()
    X = dataset.X_test.to(torch.float64)
    labels = dataset.y_test
    n_pool = int(round(s.pool_fraction * len(X)))
    if max(s.n_queries) > n_pool:
        raise ValueError(f"asked for {max(s.n_queries)} queries but the pool holds {n_pool}")
    x_pool, x_eval, y_eval = X[:n_pool], X[n_pool:], labels[n_pool:]
    predict = victim_predictor(net)
    honest = victim_answers(net, x_pool)
    from rgaudit.defence.generation_fim import generation_fim, resolve_estimator

    F_honest = generation_fim(net, honest.to(net.device), s.estimator).detach().to(
        "cpu", torch.float64)
    victim_acc = float((predict(x_eval) == y_eval).double().mean())
    result = CloningResult(settings={**asdict(s)},
                           victim={"widths": list(net.widths), "eval_accuracy": victim_acc,
                                   "n_pool": n_pool, "n_eval": len(x_eval),
                                   "fim_estimator": resolve_estimator(net, s.estimator),
                                   "answers": "normalised sigmoid of mean-field logits"})
    cells = [("none", 0.0)] if "none" in s.defences else []
    cells += [(d, float(e)) for d in s.defences if d != "none" for e in s.eps]
    ctx = {"net": net, "settings": s, "n_inputs": X.shape[1], "honest": honest,
           "x_pool": x_pool, "x_eval": x_eval, "y_eval": y_eval, "F_honest": F_honest}
    if executor is None:
        for defence, eps in cells:
            result.rows += _cell_rows(defence, eps, ctx, progress)
    else:
        from rgaudit.executors.base import Unit

        units = [Unit(f"{d}:eps={e!r}", {"defence": d, "eps": e}) for d, e in cells]
        if progress is not None:
            progress(f"{len(units)} cells on the {executor.name} executor")
        rep = executor.map(cloning_cell_unit, units, seed=s.seed, shared=ctx, store=store)
        rep.raise_on_failure("clone-attack cells")
        result.rows += [CloningRow(**r) for rows in rep.values for r in rows]
        result.settings["execution"] = rep.summary()
    if served is not None:
        # the deployed defence: the pool's answers as the API returns them; the ART attackers
        # query the API themselves (each query crosses HTTP)
        answered = torch.as_tensor(served.answer(x_pool.numpy()), dtype=torch.float64)
        if answered.shape != honest.shape:
            raise ValueError(f"the served API answered shape {tuple(answered.shape)} for "
                             f"{tuple(honest.shape)} expected: is it serving this model?")
        po = PoisonedOutputs(honest, answered, np.full(n_pool, np.nan), ["served"] * n_pool)
        result.rows += _clone_rows(f"served:{served.defence}", served.eps, po, ctx, progress,
                                   victim=served.answer)
        result.victim["served"] = served.describe
    result.seconds = time.perf_counter() - t0
    return result
