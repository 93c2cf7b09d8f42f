"""Depth study: DeepRBMs of depth 2–6 on the same data, trained with small fast settings.

For each depth ``N`` (widths ``(d, w, …, w, n_classes)``), on the same correctly classified test
inputs: the top eigenvalue of the direct Monte Carlo FIM (with jackknife error), the top
Fisher-normalised singular value of every MCRG layer pair (singles basis; DESIGN.md fact 3 —
information kept ≈ 1 versus lost < 1), and the minimal flipping L2 budget along the direct-FIM
direction, judged on the stochastic network. No file I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from rgaudit.attacks.evaluate import StochasticJudge, minimal_eps
from rgaudit.attacks.fim import fim_direction
from rgaudit.experiments.audit_results import inf_from_json, inf_list_from_json
from rgaudit.fisher.direct import direct_fim
from rgaudit.fisher.eig import top_eigenpairs
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.random import torch_generator
from rgaudit.rg.mcrg import mcrg_network
from rgaudit.rg.spectra import pair_spectra
from rgaudit.threads import check_threads_option, limit_threads

if TYPE_CHECKING:  # rgaudit.data imports sklearn: not at run time
    from rgaudit.data.dataset import Dataset

Tensor = torch.Tensor


@dataclass(frozen=True)
class DepthConfig:
    """Settings of the depth study (validated on construction).

    Attributes
    ----------
    depths : tuple of int
        Numbers of RBM layers ``N``.
    width : int
        Hidden width.
    pretrain_epochs, finetune_epochs : int
        Small, fast training settings (``rgaudit.train``).
    n_inputs, mcrg_samples, direct_samples, judge_samples : int
    eps_max : float
        Top of the L2 bisection bracket.
    seed : int
    threads : int or None
        Torch CPU threads (see :class:`rgaudit.experiments.audit.AuditConfig`).
    """

    depths: tuple[int, ...] = (2, 3, 4, 5, 6)
    width: int = 64
    pretrain_epochs: int = 5
    finetune_epochs: int = 30
    n_inputs: int = 10
    mcrg_samples: int = 2000
    direct_samples: int = 4000
    judge_samples: int = 500
    eps_max: float = 6.0
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        if not self.depths or any(int(k) < 1 for k in self.depths):
            raise ValueError(f"depth study: depths must be ≥ 1, got {self.depths!r}")
        for name, low in (("width", 1), ("pretrain_epochs", 0), ("finetune_epochs", 0),
                          ("n_inputs", 1), ("mcrg_samples", 32), ("direct_samples", 16),
                          ("judge_samples", 1)):
            if int(getattr(self, name)) < low:
                raise ValueError(f"depth study: {name} must be ≥ {low}, "
                                 f"got {getattr(self, name)!r}")
        if not self.eps_max > 0:
            raise ValueError(f"depth study: eps_max must be > 0, got {self.eps_max!r}")
        check_threads_option(self.threads)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DepthRow:
    """One depth of the study.

    Attributes
    ----------
    depth : int
    widths : list of int
    accuracy : float or None
        Stochastic test accuracy the trainer reported.
    top_eig, top_eig_err : list of float (per input); ``top_eig_err`` None when exact (depth 1)
    top_eig_median, top_eig_err_median : float (or None)
    fisher_sv_top : list of float
        Median top Fisher-normalised singular value of each MCRG layer pair.
    min_eps, min_eps_actual_l2 : list of float
        Minimal flipping L2 budget per input along the direct-FIM direction (``inf``: none).
    min_eps_median : float
    seconds : float
    """

    depth: int
    widths: list[int]
    accuracy: float | None
    top_eig: list[float]
    top_eig_err: list[float] | None
    top_eig_median: float
    top_eig_err_median: float | None
    fisher_sv_top: list[float]
    min_eps: list[float]
    min_eps_actual_l2: list[float]
    min_eps_median: float
    seconds: float


@dataclass
class DepthResult:
    """The depth study's typed result; :meth:`to_dict` is its JSON (``depth`` in the audit)."""

    config: DepthConfig
    rows: list[DepthRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "rows": [asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DepthResult:
        """From :meth:`to_dict` or its JSON (``null`` minimal ε are ``inf`` again); the config
        is validated again."""
        conf: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                for k, v in d["config"].items()}
        rows = []
        for r in d["rows"]:
            rows.append(DepthRow(**{**r, "min_eps": inf_list_from_json(r["min_eps"]),
                                    "min_eps_actual_l2": inf_list_from_json(
                                        r["min_eps_actual_l2"]),
                                    "min_eps_median": inf_from_json(r["min_eps_median"])}))
        return cls(DepthConfig(**conf), rows)


def train_depth(dataset: Dataset, depth: int, cfg: DepthConfig) -> tuple[DeepRBM, dict[str, Any]]:
    """Train one network of ``depth`` RBM layers with rgaudit.train's pipeline (fast settings)."""
    from rgaudit.train.pipeline import TrainConfig, train_default

    base = TrainConfig()
    widths = (dataset.n_features, *([cfg.width] * (depth - 1)), dataset.n_classes)
    tc = replace(base, widths=widths, seed=cfg.seed,
                 pretrain=replace(base.pretrain, epochs=cfg.pretrain_epochs),
                 finetune=replace(base.finetune, epochs=cfg.finetune_epochs),
                 eval_samples=200)
    return train_default(dataset, tc)


def run_depth_study(dataset: Dataset, cfg: DepthConfig | None = None, *,
                    progress: Callable[[str], None] | None = None,
                    trainer: Callable[[Dataset, int, DepthConfig], tuple[DeepRBM, dict]] | None
                    = None
                    ) -> DepthResult:
    """Train and audit one network per depth.

    Parameters
    ----------
    dataset : rgaudit.data.Dataset
    cfg : DepthConfig, optional
    progress : callable, optional
    trainer : callable, optional
        ``(dataset, depth, cfg) → (net, report)``; default :func:`train_depth`.

    Returns
    -------
    DepthResult
    """
    cfg = cfg or DepthConfig()
    with limit_threads(cfg.threads):
        return _run(dataset, cfg, progress or (lambda s: None), trainer or train_depth)


def _run(dataset: Dataset, cfg: DepthConfig, progress: Callable[[str], None],
         trainer: Callable[[Dataset, int, DepthConfig], tuple[DeepRBM, dict]]) -> DepthResult:
    out = DepthResult(cfg)
    for depth in cfg.depths:
        t0 = time.perf_counter()
        progress(f"depth {depth}: training")
        net, rep = trainer(dataset, depth, cfg)
        net = net.to(torch.float64)
        judge = StochasticJudge(net, n_samples=cfg.judge_samples, seed=cfg.seed)
        X = dataset.X_test.to(net.dtype)
        pool = min(X.shape[0], 4 * cfg.n_inputs)
        pred = judge.for_inputs(range(pool))(X[:pool])
        ok = torch.nonzero(pred == dataset.y_test[:pool]).flatten()[: cfg.n_inputs]
        x, y = X[ok], dataset.y_test[ok]
        judge = judge.for_inputs(ok)     # per-input random numbers keyed by test-set index
        gen = torch_generator(cfg.seed, "fim")
        progress(f"depth {depth}: FIM and MCRG")
        D = direct_fim(net, x, cfg.direct_samples, gen)
        top = top_eigenpairs(D.fim, 1, replicates=D.replicates)
        sv_top: list[float] = []
        if depth >= 2:
            res = mcrg_network(net, x, "singles", cfg.mcrg_samples, generator=gen)
            for p in res.computed():
                sv_top.append(float(torch.stack([s.fisher[0] for s in pair_spectra(p)]).median()))
        progress(f"depth {depth}: minimal ε")
        v = fim_direction(D.fim, D.unit_prob_grad(y), 1).to(x.dtype)
        me = minimal_eps(judge, x, y, v, norm="l2", eps_max=cfg.eps_max, steps=8)
        med = float(me.eps.median())   # lower median (no interpolation): inf = not flipped
        out.rows.append(DepthRow(
            depth=depth, widths=list(net.widths),
            accuracy=(rep.get("accuracy") or {}).get("stochastic", {}).get("accuracy"),
            top_eig=top.values[:, 0].tolist(),
            # no replicates (depth 1: the FIM is exact): no error bar, reported as null
            top_eig_err=None if top.stderr is None else top.stderr[:, 0].tolist(),
            top_eig_median=float(top.values[:, 0].median()),
            top_eig_err_median=(None if top.stderr is None
                                else float(top.stderr[:, 0].median())),
            fisher_sv_top=sv_top,
            min_eps=[float(e) for e in me.eps],
            min_eps_actual_l2=[float(e) for e in me.actual_l2],
            min_eps_median=med,
            seconds=time.perf_counter() - t0,
        ))
    return out
