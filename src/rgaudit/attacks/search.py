"""Minimal flipping budgets, on equal terms for every kind of attack.

- :func:`minimal_eps_along`: bisection on ε along a fixed unit step per input
  (direction attacks, minimal-norm attacks used as directions, the Fisher walk's chord);
- :func:`minimal_eps_rerun`: bisection on ε that **re-runs** a fixed-budget attack (PGD, APGD) at
  every ε of the search, each input at its own ε; the adversarial kept for an input is the one
  of the smallest budget that flipped it (a valid attack at every larger budget);
- :func:`monotone_success`: the flip record over an increasing budget grid, made monotone the
  same way (a flip found at ε is a flip at every ε' ≥ ε);
- :class:`SoftmaxJudge`: the judge of a deterministic model (arg-max of its log-probabilities),
  with the same interface as :class:`~rgaudit.attacks.evaluate.StochasticJudge`.

Every search returns a :class:`Search`: the nominal ε (upper end of the final bracket, ``inf``
where not flipped at ``eps_max``), the bracket width (the resolution to quote next to every
figure), and the norms of the perturbation actually applied (after clipping to the box).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from rgaudit.attacks.base import Norm, clip_box
from rgaudit.attacks.evaluate import Verdict, along, applied_norms, bisect_flips

Tensor = torch.Tensor


class Judge(Protocol):
    """What a search needs of a judge."""

    z: float

    def verdict(self, x: Tensor) -> Verdict: ...


class SoftmaxJudge:
    """Deterministic judge: the arg-max class of a model's log-probabilities.

    Parameters
    ----------
    log_proba : callable
        Inputs (n, d) → log class probabilities (n, C), e.g. ``TorchClassifier.log_proba``.
    """

    z = 0.0

    def __init__(self, log_proba: Any) -> None:
        self.log_proba = log_proba
        self.calls = 0

    def for_inputs(self, ids: Sequence[int] | Tensor) -> SoftmaxJudge:
        return self

    @torch.no_grad()
    def verdict(self, x: Tensor) -> Verdict:
        lp = self.log_proba(x).to(torch.float64)
        self.calls += 1
        top2 = lp.topk(2, dim=-1)
        p = lp.exp()
        return Verdict(top2.indices[:, 0], torch.full((x.shape[0],), float("inf")), p)

    def __call__(self, x: Tensor) -> Tensor:
        return self.verdict(x).pred


@dataclass(frozen=True)
class Search:
    """Minimal flipping budgets of one method.

    Attributes
    ----------
    eps : Tensor of shape (n,)
        Nominal ε (upper end of the final bracket); ``inf`` where not flipped at ``eps_max``.
    resolution : float
        Width of the final bracket (nominal ε); quote it next to every figure.
    applied_l2, applied_linf : Tensor of shape (n,)
        Norms of the perturbation actually applied at the flip (after clipping); ``inf`` where
        not flipped.
    adversarial : Tensor of shape (n, d)
        The flipping input (the clean input where not flipped).
    clean_correct : Tensor of shape (n,), bool
    """

    eps: Tensor
    resolution: float
    applied_l2: Tensor
    applied_linf: Tensor
    adversarial: Tensor
    clean_correct: Tensor

    def applied(self, norm: Norm) -> Tensor:
        return self.applied_l2 if norm == "l2" else self.applied_linf


def _flipped(judge: Judge, x: Tensor, y: Tensor) -> Tensor:
    return (judge.verdict(x).pred.to(y.device) != y).cpu()


def _finish(x: Tensor, adv: Tensor, ok: Tensor, hi: Tensor, res: float, wrong0: Tensor
            ) -> Search:
    l2, linf = applied_norms(x, adv, ok)
    return Search(torch.where(ok, hi, torch.full_like(hi, float("inf"))), res, l2, linf,
                  torch.where(ok.to(adv.device).unsqueeze(-1), adv, x), ~wrong0)


def minimal_eps_along(judge: Judge, x: Tensor, y: Tensor, step: Tensor, *, eps_max: float,
                      steps: int = 10) -> Search:
    """Bisection on ε of ``clip(x + ε step)``, all inputs at once.

    Parameters
    ----------
    judge : Judge
    x : Tensor of shape (n, d)
    y : Tensor of shape (n,)
    step : Tensor of shape (n, d)
        Unit step per input (``v/‖v‖`` or ``sign(v)``; no rescaling here).
    eps_max : float
    steps : int
        Bisection steps; resolution ``eps_max / 2^steps``.
    """
    y = y.to(x.device)
    at = along(x, step.to(x.dtype))
    wrong0 = _flipped(judge, x, y)
    _, hi, ok = bisect_flips(lambda e: _flipped(judge, at(e), y), x.shape[0], eps_max, steps)
    return _finish(x, at(hi), ok, hi, float(eps_max) / 2 ** int(steps), wrong0)


def minimal_eps_rerun(judge: Judge, attack: Any, x: Tensor, y: Tensor, *, eps_max: float,
                      steps: int = 8) -> Search:
    """Bisection on ε that re-runs a fixed-budget attack at every ε, per input.

    Parameters
    ----------
    judge : Judge
    attack : FixedBudgetAttack
        ``attack.attack_at(x, y, eps (n,)) → x_adv (n, d)``.
    x, y, eps_max, steps
        As :func:`minimal_eps_along`.

    Notes
    -----
    The attack's output at ε is projected onto the ε-ball and clipped (as the base class does),
    then judged. Success need not be monotone in ε for a heuristic attack: the kept adversarial
    is always one that flipped, at the bracket's upper end.
    """
    from rgaudit.attacks.base import project

    y = y.to(x.device)
    n = x.shape[0]
    lo = torch.zeros(n, dtype=torch.float64)
    hi = torch.full((n,), float(eps_max), dtype=torch.float64)
    norm: Norm = attack.norm

    def run(e: Tensor) -> Tensor:
        xa = attack.attack_at(x, y, e)
        d = xa - x
        out = torch.empty_like(x)
        # project each row on its own ball (project() takes one radius)
        for i in range(n):
            out[i] = project(d[i:i + 1], float(e[i]), norm)[0]
        return clip_box(x + out)

    wrong0 = _flipped(judge, x, y)
    best = run(hi)
    ok = _flipped(judge, best, y)
    for _ in range(int(steps)):
        mid = 0.5 * (lo + hi)
        cand = run(mid)
        f = _flipped(judge, cand, y)
        take = f & ok
        best = torch.where(take.to(x.device).unsqueeze(-1), cand, best)
        hi = torch.where(take, mid, hi)
        lo = torch.where(~f & ok, mid, lo)
    return _finish(x, best, ok, hi, float(eps_max) / 2 ** int(steps), wrong0)


def monotone_success(success: Tensor) -> Tensor:
    """Flip record over an increasing budget grid, (E, n) bool → (E, n) bool, monotone in ε.

    A perturbation that flips at budget ε lies inside every larger ball, so it is a valid attack
    at every ε' ≥ ε: the record is the running "or" along the budget axis.
    """
    return torch.cummax(success.to(torch.int8), dim=0).values.bool()
