"""One attack method on one model: what ``rgaudit attack`` runs.

Steps (:func:`run_attack`): pick the first ``n_inputs`` test inputs the stochastic network
classifies correctly (as the audit does, :func:`rgaudit.experiments.audit.select_inputs`);
for ``method="fim"`` estimate the requested input FIM; search each input's minimal flipping ε
along the method's direction (or re-running the attack at every ε) judged on the stochastic
network (:func:`search_one`, with the attacks of
:func:`rgaudit.experiments.attack_study.make_attack`); with ``eps`` the flip rate of the
minimal-ε adversarials projected onto the ε-ball.

One validated :class:`AttackConfig` in, a typed :class:`AttackResult` out; no file I/O
(:meth:`AttackResult.to_dict` is the ``attack.json`` the CLI writes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from rgaudit.choices import ATTACK_METHODS, ATTACK_NORMS, FIM_ESTIMATORS
from rgaudit.experiments.audit_results import (
    AuditInputs,
    ModelRecord,
    Quartiles,
    censored_quartiles,
)

Tensor = torch.Tensor

#: methods that attack in L2 only
L2_ONLY = ("ddn", "cw-l2")
#: the methods of ``rgaudit attack`` (one definition: :data:`rgaudit.choices.ATTACK_METHODS`)
ONE_METHODS = ATTACK_METHODS


@dataclass(frozen=True)
class AttackConfig:
    """Settings of one attack (``rgaudit attack``).

    Validated on construction: ``ValueError`` naming the ``rgaudit attack`` option.

    Attributes
    ----------
    method : str
        One of :data:`rgaudit.choices.ATTACK_METHODS` (``--method``).
    norm : str
        ``"l2"`` or ``"linf"`` (``--norm``).
    fim : str
        FIM estimator of ``method="fim"`` (:data:`rgaudit.choices.FIM_ESTIMATORS`); for
        ``method="walk"``, ``"rg-singles"`` re-estimates the RG-chain FIM per step, any other
        value uses the mean-field FIM (``--fim``).
    eps : float or None
        Budget of the reported flip rate (``--eps``); None: no flip rate.
    n_inputs : int
        Correctly classified test inputs attacked (``--inputs``).
    samples : int
        Chains per input of the FIMs (``--samples``; ≥ 32: MCRG needs 16 jackknife blocks
        of ≥ 2).
    judge_samples : int
        Chains per stochastic judgement (``--judge-samples``).
    eps_max : float or None
        Top of the minimal-ε search (``--eps-max``); None: 4 for L2, 0.5 for L∞.
    bisect_steps : int
        Bisection steps (``--bisect-steps``; resolution ``eps_max / 2^steps``).
    seed : int
        Seed of the attack's random numbers (``--seed``; named streams of
        :mod:`rgaudit.random`), not of the data split.
    """

    method: str = "fim"
    norm: str = "l2"
    fim: str = "direct"
    eps: float | None = None
    n_inputs: int = 20
    samples: int = 4000
    judge_samples: int = 1000
    eps_max: float | None = None
    bisect_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed, option in ((self.method, ATTACK_METHODS, "--method"),
                                      (self.norm, ATTACK_NORMS, "--norm"),
                                      (self.fim, FIM_ESTIMATORS, "--fim")):
            if name not in allowed:
                raise ValueError(f"{option} must be one of {'|'.join(allowed)}, got {name!r}")
        if self.method in L2_ONLY and self.norm != "l2":
            raise ValueError(f"--method {self.method} is an L2 attack: use --norm l2")
        if self.eps is not None and not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"--eps must be a finite number > 0, got {self.eps!r} (a budget "
                             "of 0 cannot flip anything)")
        if self.eps_max is not None and not (math.isfinite(self.eps_max) and self.eps_max > 0):
            raise ValueError(f"--eps-max must be a positive finite number, got {self.eps_max!r}")
        for value, least, most, option in ((self.n_inputs, 1, None, "--inputs"),
                                           (self.samples, 32, 100_000_000, "--samples"),
                                           (self.judge_samples, 1, 1_000_000, "--judge-samples"),
                                           (self.bisect_steps, 1, 30, "--bisect-steps")):
            if value < least or (most is not None and value > most):
                bound = f"≥ {least}" if most is None else f"in {least} … {most}"
                raise ValueError(f"{option} must be {bound}, got {value}")

    @property
    def search_max(self) -> float:
        """The top of the minimal-ε search: ``eps_max``, or 4 (L2) / 0.5 (L∞)."""
        if self.eps_max is not None:
            return float(self.eps_max)
        return 4.0 if self.norm == "l2" else 0.5

    def check_eps(self, n_features: int) -> None:
        """Refuse an ``eps`` beyond the diameter of the input box ``[0, 1]^d``.

        A larger budget is the same attack (every input is clipped to the box) and, in
        float32, an ε near 1e308 overflows to inf and NaN inside the attack.
        """
        diameter = 1.0 if self.norm == "linf" else math.sqrt(n_features)
        if self.eps is not None and self.eps > diameter:
            raise ValueError(
                f"--eps {self.eps:g} exceeds the diameter of the input box [0, 1]^{n_features} "
                f"in {self.norm} ({diameter:.4g}); any larger budget reaches every input, so "
                f"pass at most {diameter:.4g}")


@dataclass(frozen=True)
class FlipRate:
    """Inputs flipped by the minimal-ε adversarials projected onto the ``eps``-ball."""

    eps: float
    flipped: int
    rate: float


@dataclass(frozen=True)
class SearchInfo:
    """How a minimal ε was searched (``info`` of ``attack.json``): the search, its seconds
    (all inputs), and method-specific data: the judge-preferred sign of the top FIM
    eigenvector per input (``fim``), the Fisher walk's steps per input (``walk``)."""

    search: str
    seconds: float
    sign: list[int] | None = None
    walk_steps: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"search": self.search}
        if self.sign is not None:
            d["sign"] = self.sign
        if self.walk_steps is not None:
            d["walk_steps"] = self.walk_steps
        d["seconds"] = self.seconds
        return d


@dataclass
class AttackResult:
    """Typed result of :func:`run_attack`; :meth:`to_dict` is ``attack.json``.

    Attributes
    ----------
    config : AttackConfig
    model : ModelRecord or None
        Where the model and its data came from (None: not recorded; ``{}`` in the JSON).
    inputs : AuditInputs
    labels : list of int
    resolution : float
        Bisection resolution of the nominal ε.
    min_eps, applied_l2, applied_linf : list of float
        Per input: nominal ε and applied norms at the flip (``inf``: not flipped).
    clean_correct : list of bool
    nominal, applied : Quartiles
        Of the nominal ε and of the applied norm in ``config.norm``.
    seconds : float
        The search, all inputs.
    info : SearchInfo
        How the minimal ε was searched and method-specific data (sign, walk steps).
    flip_rate : FlipRate or None
        With ``config.eps``.
    adversarial, clean : Tensor of shape (n, d)
        The minimal-ε adversarial inputs and the clean ones (saved in ``adversarial.npz``).
    """

    config: AttackConfig
    model: ModelRecord | None
    inputs: AuditInputs
    labels: list[int]
    resolution: float
    min_eps: list[float]
    applied_l2: list[float]
    applied_linf: list[float]
    clean_correct: list[bool]
    nominal: Quartiles
    applied: Quartiles
    seconds: float
    info: SearchInfo
    flip_rate: FlipRate | None
    adversarial: Tensor
    clean: Tensor

    def applied_in_norm(self) -> list[float]:
        """Applied norm per input in the attack's norm."""
        return self.applied_l2 if self.config.norm == "l2" else self.applied_linf

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        d: dict[str, Any] = {
            "model": {} if self.model is None else self.model.to_dict(),
            "method": cfg.method, "norm": cfg.norm,
            "fim": cfg.fim if cfg.method in ("fim", "walk") else None,
            "eps_max": cfg.search_max, "resolution": self.resolution,
            "judge": {"samples": cfg.judge_samples, "seed": cfg.seed},
            "inputs": self.inputs.to_dict(), "labels": self.labels,
            "per_input": {"min_eps": self.min_eps, "applied_l2": self.applied_l2,
                          "applied_linf": self.applied_linf,
                          "clean_correct": self.clean_correct},
            "summary": {"nominal": asdict(self.nominal), "applied": asdict(self.applied)},
            "seconds_per_input": self.seconds / max(len(self.min_eps), 1),
            "info": self.info.to_dict(),
        }
        if self.flip_rate is not None:
            d["flip_rate"] = asdict(self.flip_rate)
        return d


def run_attack(net: Any, X_test: Tensor, y_test: Tensor, cfg: AttackConfig, *,
               model_info: ModelRecord | dict[str, Any] | None = None) -> AttackResult:
    """Attack a DeepRBM with one method, judged on its stochastic network.

    Parameters
    ----------
    net : DeepRBM
    X_test : Tensor of shape (n_test, d)
        Inputs in [0, 1].
    y_test : Tensor of shape (n_test,)
    cfg : AttackConfig
    model_info : ModelRecord, or its dict (``load_model_and_data``'s), optional

    Returns
    -------
    AttackResult
    """
    from rgaudit.attacks.base import Norm, clip_box, project
    from rgaudit.attacks.evaluate import StochasticJudge
    from rgaudit.experiments.audit import select_inputs

    cfg.check_eps(int(net.widths[0]))
    judge = StochasticJudge(net, n_samples=cfg.judge_samples, seed=cfg.seed)
    X = X_test.to(device=net.device, dtype=net.dtype)
    x, y, sel = select_inputs(net, X, y_test.to(net.device), cfg.n_inputs, judge)
    judge = judge.for_inputs(sel.indices)
    s, how = search_one(net, x, y, judge, cfg, _fim(net, x, cfg) if cfg.method == "fim"
                        else _walk_fim(net, cfg))
    norm: Norm = "l2" if cfg.norm == "l2" else "linf"
    flip = None
    if cfg.eps is not None:
        # flip rate at eps: the minimal-ε adversarial projected onto the ε-ball
        adv = clip_box(x + project(s.adversarial - x, float(cfg.eps), norm))
        flipped = judge(adv).cpu() != y.cpu()
        flip = FlipRate(cfg.eps, int(flipped.sum()), float(flipped.double().mean()))
    return AttackResult(
        config=cfg, model=_record(model_info), inputs=sel, labels=y.tolist(),
        resolution=s.resolution, min_eps=s.eps.tolist(), applied_l2=s.applied_l2.tolist(),
        applied_linf=s.applied_linf.tolist(), clean_correct=s.clean_correct.tolist(),
        nominal=censored_quartiles(s.eps), applied=censored_quartiles(s.applied(norm)),
        seconds=how.seconds, info=how, flip_rate=flip,
        adversarial=s.adversarial.detach().cpu(), clean=x.detach().cpu())


def _record(info: ModelRecord | dict[str, Any] | None) -> ModelRecord | None:
    if isinstance(info, dict):
        return ModelRecord.from_dict(info) if info else None
    return info


def search_one(model: Any, x: Tensor, y: Tensor, judge: Any, cfg: AttackConfig,
               fim: Tensor | Callable[[Tensor], Tensor] | None = None
               ) -> tuple[Any, SearchInfo]:
    """Minimal flipping ε of one method on inputs ``x`` (what ``rgaudit attack`` runs).

    Parameters
    ----------
    model : DeepRBM or Classifier
    x : Tensor of shape (n, d)
    y : Tensor of shape (n,)
    judge : Judge
    cfg : AttackConfig
        Method, norm, top of the search (``search_max``), bisection steps (re-run attacks: the
        same number), seed of the random direction.
    fim : Tensor of shape (n, d, d), or callable, optional
        ``method="fim"``: the FIMs of ``x`` (both signs of the top eigenvector are tried);
        ``method="walk"``: the FIM function re-estimated along the Fisher walk.

    Returns
    -------
    search : rgaudit.attacks.search.Search
    info : SearchInfo
    """
    from rgaudit.attacks.base import Norm, unit_step
    from rgaudit.attacks.fisher_best import FisherWalk, both_signs
    from rgaudit.attacks.search import minimal_eps_along, minimal_eps_rerun
    from rgaudit.experiments.attack_study import attack_unit, make_attack
    from rgaudit.fisher.eig import top_eigenpairs

    norm: Norm = "l2" if cfg.norm == "l2" else "linf"
    eps_max, steps = cfg.search_max, cfg.bisect_steps
    t0 = time.perf_counter()
    sign: list[int] | None = None
    walk_steps: list[int] | None = None
    if cfg.method == "fim":
        if not isinstance(fim, Tensor):
            raise ValueError("method 'fim' needs the FIMs of the inputs")
        step = unit_step(top_eigenpairs(fim, 1).vectors[..., 0], norm).to(x.dtype)
        s, signs = both_signs(judge, x, y, step, norm=norm, eps_max=eps_max, steps=steps)
        how = "bisection along ±(top FIM eigenvector), judge-preferred sign"
        sign = signs.tolist()
    elif cfg.method == "walk":
        if fim is None or isinstance(fim, Tensor):
            raise ValueError("method 'walk' needs a FIM function")
        walk = FisherWalk(model=model, fim_fn=fim, norm=norm)
        s = minimal_eps_along(judge, x, y, attack_unit(walk, x, y, norm), eps_max=eps_max,
                              steps=steps)
        how = "bisection along the method's direction"
        if walk.steps_taken is not None:
            walk_steps = walk.steps_taken.tolist()
    else:
        atk = make_attack(cfg.method, model, norm, x, seed=cfg.seed)
        if cfg.method in ("pgd", "apgd"):
            s = minimal_eps_rerun(judge, atk, x, y, eps_max=eps_max, steps=steps)
            how = "bisection on ε, the attack re-run at every ε"
        else:
            s = minimal_eps_along(judge, x, y, attack_unit(atk, x, y, norm), eps_max=eps_max,
                                  steps=steps)
            how = "bisection along the method's direction"
    return s, SearchInfo(how, time.perf_counter() - t0, sign, walk_steps)


def _fim(net: Any, x: Tensor, cfg: AttackConfig) -> Tensor:
    """The requested FIM of the inputs for ``method="fim"``; only that estimator is computed
    (the direct run also gives ∇P(true|x))."""
    from rgaudit.experiments.audit import AuditConfig, compute_fims
    from rgaudit.random import torch_generator

    audit_cfg = AuditConfig(mcrg_samples=cfg.samples, direct_samples=cfg.samples, seed=cfg.seed)
    gen = torch_generator(cfg.seed, "fim", device=net.device)
    fims, _, _, _ = compute_fims(net, x, audit_cfg, gen, lambda s: None, only=(cfg.fim,))
    return fims[cfg.fim]


def _walk_fim(net: Any, cfg: AttackConfig) -> Callable[[Tensor], Tensor] | None:
    """The FIM the Fisher walk re-estimates per step (``method="walk"``; None otherwise)."""
    if cfg.method != "walk":
        return None
    from rgaudit.experiments.attack_study import _rg_fim
    from rgaudit.fisher.autograd import mean_field_fim
    from rgaudit.random import torch_generator

    if cfg.fim == "rg-singles":
        return _rg_fim(net, cfg.samples, torch_generator(cfg.seed, "walk"))
    return lambda z: mean_field_fim(net, z)
