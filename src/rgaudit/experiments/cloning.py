"""Cloning study: does poisoning the victim's answers spoil clones trained on them?

The victim is a DeepRBM; its API answers a query ``x`` with the probability vector
``y(x) = σ(z) / Σ σ(z)``, ``z`` the mean-field top logits (deterministic: a production API would
not return Monte Carlo noise), and predicts ``argmax z``. The held-out pool is the first
``pool_fraction`` of the data set's test split (never seen in training); the rest is the
evaluation set for clone accuracy, fidelity and transfer.

For every defence and budget the pool's answers are poisoned once; for every number of queries
``n`` (the first ``n`` of the pool) every attacker trains a clone, which is scored. The study
takes one validated :class:`CloningConfig` and returns a typed :class:`CloningResult`
(``to_dict`` is the JSON the CLI writes); no file I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from rgaudit.choices import (
    ATTACKERS,
    BUDGET_NORMS,
    DEFENCES,
    GENERATION_ESTIMATORS,
    BudgetNorm,
    GenerationEstimator,
)
from rgaudit.defence.baselines import make_poisoner
from rgaudit.defence.cloning_attacks import CLONE_LAYERWISE, clone_attack
from rgaudit.defence.generation_fim import DEFAULT_ESTIMATOR
from rgaudit.defence.metrics import clone_quality, transfer_rates, victim_utility
from rgaudit.defence.poison import PoisonedOutputs
from rgaudit.experiments.execution_summary import ExecutionSummary
from rgaudit.models.served_info import SERVED_INFO_FIELDS, ServedModelInfo
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


@dataclass(frozen=True)
class PoisonDamage:
    """Fisher "damage" of poisoned answers (see :func:`poison_damage`)."""

    median_fisher_damage: float
    mean_fisher_damage: float
    median_abs_cos_top: float


def poison_damage(po: Any, F: Tensor) -> PoisonDamage:
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
    return PoisonDamage(float(q.median()), float(q.mean()),
                        float(cos[moved].median()) if moved.any() else float("nan"))


#: transfer attacks crafted on the clone (:func:`rgaudit.defence.metrics.transfer_rates`)
TRANSFER_METHODS: tuple[str, ...] = ("fim", "fgm")


@dataclass(frozen=True)
class CloningConfig:
    """Settings of a cloning study (all recorded in the result as ``settings``).

    Validated on construction: ``ValueError`` naming the ``rgaudit clone-attack`` option.

    Attributes
    ----------
    defences : tuple of str
        Among :data:`rgaudit.choices.DEFENCES` (``--defence``).
    eps : tuple of float
        Poisoning budgets (``--eps``), finite and ≥ 0.
    norm : {"l1", "l2", "kl"}
        Budget norm (``--norm``).
    n_queries : tuple of int
        Numbers of queries (``--queries``), positive.
    attackers : tuple of str
        Among :data:`rgaudit.choices.ATTACKERS` (``--attacker``).
    eps_adv : float
        L2 budget of the transfer attacks (``--eps-adv``), finite and > 0.
    transfer_methods : tuple of str
        Among :data:`TRANSFER_METHODS`.
    pool_fraction : float
        Share of the test split used as query pool, in (0, 1).
    estimator : str
        Generation-FIM estimator of the RG defence (:data:`rgaudit.choices.GENERATION_ESTIMATORS`).
    mlp_epochs, layerwise_sweeps : int
        ``--epochs`` and ``--sweeps``, ≥ 1.
    seed : int
    """

    defences: tuple[str, ...] = DEFENCES
    eps: tuple[float, ...] = (0.1, 0.3)
    norm: BudgetNorm = "l1"
    n_queries: tuple[int, ...] = (240,)
    attackers: tuple[str, ...] = ATTACKERS
    eps_adv: float = 1.0
    transfer_methods: tuple[str, ...] = TRANSFER_METHODS
    pool_fraction: float = 0.55
    estimator: GenerationEstimator = DEFAULT_ESTIMATOR
    mlp_epochs: int = 100
    layerwise_sweeps: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = {"defence": [d for d in self.defences if d not in DEFENCES],
                   "attacker": [a for a in self.attackers if a not in ATTACKERS],
                   "transfer": [m for m in self.transfer_methods if m not in TRANSFER_METHODS]}
        rules = (  # (holds, message naming the option), checked in this order
            (self.defences and not unknown["defence"],
             f"--defence: unknown {unknown['defence']}; choose from {', '.join(DEFENCES)}"),
            (self.attackers and not unknown["attacker"],
             f"--attacker: unknown {unknown['attacker']}; choose from {', '.join(ATTACKERS)}"),
            (self.norm in BUDGET_NORMS,
             f"--norm must be one of {', '.join(BUDGET_NORMS)}, got {self.norm!r}"),
            (self.eps and all(math.isfinite(e) and e >= 0 for e in self.eps),
             f"--eps must be finite non-negative numbers, got {self.eps}"),
            (self.n_queries and all(n > 0 for n in self.n_queries),
             f"--queries must be positive integers, got {self.n_queries}"),
            (math.isfinite(self.eps_adv) and self.eps_adv > 0,
             f"--eps-adv must be finite and > 0, got {self.eps_adv}"),
            (not unknown["transfer"], f"transfer_methods: unknown {unknown['transfer']}; "
             f"choose from {TRANSFER_METHODS}"),
            (0 < self.pool_fraction < 1, "pool_fraction must lie in (0, 1)"),
            (self.estimator in GENERATION_ESTIMATORS,
             f"--estimator must be one of {', '.join(GENERATION_ESTIMATORS)}, "
             f"got {self.estimator!r}"),
            (self.mlp_epochs >= 1 and self.layerwise_sweeps >= 1,
             f"--epochs and --sweeps must be ≥ 1, got {self.mlp_epochs}, "
             f"{self.layerwise_sweeps}"),
        )
        for holds, message in rules:
            if not holds:
                raise ValueError(message)


#: the name of :class:`CloningConfig` before issue 15 (kept: tests and scripts use it)
CloningSettings = CloningConfig


@dataclass(frozen=True)
class ServedAPI(ServedModelInfo):
    """What a served API says of itself (``GET /v1/model``: the fields of
    :class:`~rgaudit.models.served_info.ServedModelInfo`, which the server's response model is
    built from), and where it was reached.

    Attributes
    ----------
    kind, input_shape, n_features, n_classes, classes, bounds, defence, limits
        As :class:`~rgaudit.models.served_info.ServedModelInfo`; ``defence`` and ``limits``
        are documents of the server, recorded as is.
    url : str
    other : dict
        Any further field a newer server reports.
    """

    url: str
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_info(cls, url: str, info: dict[str, Any]) -> ServedAPI:
        """From the ``GET /v1/model`` answer ``info`` of the API at ``url``."""
        kw: dict[str, Any] = {k: info[k] for k in SERVED_INFO_FIELDS}
        return cls(url=url, **kw,
                   other={k: v for k, v in info.items() if k not in SERVED_INFO_FIELDS})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServedAPI:
        return cls.from_info(d["url"], {k: v for k, v in d.items() if k != "url"})

    def to_dict(self) -> dict[str, Any]:
        """``url`` first, then the API's answer (the JSON's order)."""
        return {"url": self.url, **{k: getattr(self, k) for k in SERVED_INFO_FIELDS},
                **self.other}


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
    describe : ServedAPI or None
        What the API says of itself (recorded in the result).
    """

    answer: Callable[[Any], Any]
    defence: str
    eps: float
    describe: ServedAPI | None = None


@dataclass(frozen=True)
class TransferRates:
    """Transfer of the clone's adversarial examples to the victim
    (:func:`rgaudit.defence.metrics.transfer_rates`): over the ``n_correct`` evaluation inputs
    the victim gets right, the victim's error rate per transfer method (keyed by the
    configured ``transfer_methods``, in their order; NaN when ``n_correct`` is 0)."""

    n_correct: int
    rates: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"n_correct": self.n_correct, **self.rates}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransferRates:
        return cls(int(d["n_correct"]), {k: v for k, v in d.items() if k != "n_correct"})


@dataclass(frozen=True)
class VictimUtility:
    """Utility of the returned answers for legitimate use
    (:func:`rgaudit.defence.metrics.victim_utility`): share of answers whose top-1 class is
    kept, mean and largest L1 change, mean KL divergence, over ``n`` answers."""

    top1_preserved: float
    mean_l1: float
    max_l1: float
    mean_kl: float
    n: int


@dataclass
class CloningRow:
    """One (defence, budget, queries, attacker) cell.

    ``transfer``: the victim's error rates on the clone's adversarial examples; ``utility``:
    what the poisoned answers cost legitimate users; ``poison``: their Fisher damage.
    """

    defence: str
    eps: float
    n_queries: int
    attacker: str
    accuracy: float
    fidelity: float
    transfer: TransferRates
    utility: VictimUtility
    poison: PoisonDamage

    def to_dict(self) -> dict[str, Any]:
        return {"defence": self.defence, "eps": self.eps, "n_queries": self.n_queries,
                "attacker": self.attacker, "accuracy": self.accuracy,
                "fidelity": self.fidelity, "transfer": self.transfer.to_dict(),
                "utility": asdict(self.utility), "poison": asdict(self.poison)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CloningRow:
        """The row back from :meth:`to_dict` (executor units return plain data)."""
        return cls(**{**d, "transfer": TransferRates.from_dict(d["transfer"]),
                      "utility": _utility(d["utility"]),
                      "poison": PoisonDamage(**d["poison"])})


@dataclass(frozen=True)
class VictimInfo:
    """The victim as the study saw it.

    Attributes
    ----------
    widths : list of int
    eval_accuracy : float
        Accuracy of the victim's predictions on the evaluation set.
    n_pool, n_eval : int
        Query pool and evaluation set sizes.
    fim_estimator : str
        The generation-FIM estimator the RG defence resolved to.
    answers : str
    served : ServedAPI or None
        What a served API (``--target``) says of itself.
    """

    widths: list[int]
    eval_accuracy: float
    n_pool: int
    n_eval: int
    fim_estimator: str
    answers: str = "normalised sigmoid of mean-field logits"
    served: ServedAPI | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "served"}
        if self.served is not None:
            d["served"] = self.served.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VictimInfo:
        served = d.get("served")
        return cls(**{**d, "served": None if served is None else ServedAPI.from_dict(served)})


@dataclass
class CloningResult:
    """Result of :func:`run_cloning`.

    Attributes
    ----------
    config : CloningConfig
    victim : VictimInfo
    rows : list of CloningRow
    seconds : float
    execution : ExecutionSummary or None
        The executor's summary (``--executor``), else None.
    """

    config: CloningConfig
    victim: VictimInfo
    rows: list[CloningRow] = field(default_factory=list)
    seconds: float = 0.0
    execution: ExecutionSummary | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The ``settings`` object of the JSON: the config, and the execution summary."""
        extra = {} if self.execution is None else {"execution": self.execution.to_dict()}
        return {**asdict(self.config), **extra}

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "victim": self.victim.to_dict(),
                "seconds": self.seconds, "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CloningResult:
        """The result back from its JSON (``result.json`` of ``clone-attack``; other
        top-level keys, such as ``model`` and ``data``, are ignored)."""
        s = dict(d["settings"])
        ex = s.pop("execution", None)
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}
        cfg = CloningConfig(**kw)
        return cls(cfg, VictimInfo.from_dict(d["victim"]),
                   [CloningRow.from_dict(r) for r in d["rows"]], d.get("seconds", 0.0),
                   None if ex is None else ExecutionSummary.from_dict(ex))


@dataclass(frozen=True)
class CloningContext:
    """What every (defence, budget) cell needs: the executor units' shared object.

    Attributes
    ----------
    net : DeepRBM
    config : CloningConfig
    n_inputs : int
        Input width ``d``.
    honest : Tensor of shape (n_pool, K)
        The victim's honest answers to the pool.
    x_pool : Tensor of shape (n_pool, d)
    x_eval : Tensor of shape (n_eval, d)
    y_eval : Tensor of shape (n_eval,)
    F_honest : Tensor of shape (n_pool, K, K)
        Generation FIMs at the honest answers (float64, CPU).
    """

    net: DeepRBM
    config: CloningConfig
    n_inputs: int
    honest: Tensor
    x_pool: Tensor
    x_eval: Tensor
    y_eval: Tensor
    F_honest: Tensor


def _poisoned(defence: str, eps: float, ctx: CloningContext) -> PoisonedOutputs:
    """The pool's answers poisoned once by (defence, eps), with the study's poison seed."""
    s = ctx.config
    poisoner = make_poisoner(defence, eps=eps, norm=s.norm, kind="simplex", net=ctx.net,
                             n_inputs=ctx.n_inputs, **({"estimator": s.estimator}
                                                       if defence == "rg" else {}))
    gen = torch_generator(s.seed, "poison")
    return poisoner(ctx.honest, ctx.x_pool, gen)


def _clone_rows(defence: str, eps: float, po: PoisonedOutputs, ctx: CloningContext,
                progress: Callable[[str], None] | None,
                victim: Callable[[Any], Any] | None = None) -> list[CloningRow]:
    """Train and score every clone on the first ``n`` answers of ``po``, for every ``n``.

    ``victim`` is the API the ART attackers query themselves (a served model); by default they
    query the in-process answers.
    """
    s = ctx.config
    net, x_pool = ctx.net, ctx.x_pool
    x_eval, y_eval, F_honest = ctx.x_eval, ctx.y_eval, ctx.F_honest
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
            rows.append(CloningRow(defence, eps, n, attacker, q["accuracy"], q["fidelity"],
                                   TransferRates.from_dict(tr), _utility(util), dmg))
    return rows


def _utility(u: dict[str, Any]) -> VictimUtility:
    return VictimUtility(u["top1_preserved"], u["mean_l1"], u["max_l1"], u["mean_kl"],
                         int(u["n"]))


def _cell_rows(defence: str, eps: float, ctx: CloningContext,
               progress: Callable[[str], None] | None) -> list[CloningRow]:
    """Poison the pool once for (defence, eps), then train and score every clone."""
    return _clone_rows(defence, eps, _poisoned(defence, eps, ctx), ctx, progress)


def cloning_cell_unit(unit: Any, ss: Any, shared: CloningContext) -> list[dict[str, Any]]:
    """Executor unit: the rows of one (defence, eps) cell as plain dicts (``ss`` unused: the
    cell's seeds are the study's, see :func:`run_cloning`)."""
    return [r.to_dict() for r in _cell_rows(unit.payload["defence"], unit.payload["eps"],
                                          shared, None)]


def run_cloning(
    net: DeepRBM,
    dataset: Any,
    settings: CloningConfig | None = None,
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
    settings : CloningConfig, optional
    progress : callable, optional
        Called with a short description before each clone is trained (with an executor: once,
        before the cells are sent).
    executor : rgaudit.executors.Executor, optional
        Run every (defence, budget) cell as one unit (``--executor local|ray``). The cells use
        the study's fixed streams (``"poison"`` for the poison, ``"clone"`` for every clone:
        common random numbers across defences; ``"clone.damage"`` for the generation FIM the
        Fisher damage is scored on), so the rows equal those of the plain loop.
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

    s = settings or CloningConfig()
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

    # the F̃ every defence's Fisher damage is scored on (a draw of the run: stream "clone.damage")
    F_honest = generation_fim(net, honest.to(net.device), s.estimator,
                              generator=torch_generator(s.seed, "clone.damage",
                                                        device=net.device)).detach().to(
        "cpu", torch.float64)
    victim_acc = float((predict(x_eval) == y_eval).double().mean())
    result = CloningResult(s, VictimInfo(list(net.widths), victim_acc, n_pool, len(x_eval),
                                         resolve_estimator(net, s.estimator)))
    cells = [("none", 0.0)] if "none" in s.defences else []
    cells += [(d, float(e)) for d in s.defences if d != "none" for e in s.eps]
    ctx = CloningContext(net, s, X.shape[1], honest, x_pool, x_eval, y_eval, F_honest)
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
        result.rows += [CloningRow.from_dict(r) for rows in rep.values for r in rows]
        result.execution = ExecutionSummary.from_dict(rep.summary())
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
        result.victim = replace(result.victim, served=served.describe)
    result.seconds = time.perf_counter() - t0
    return result
