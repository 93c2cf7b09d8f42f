"""Judging attacks on the stochastic network: flip rates and minimal flipping budgets.

The judge is the DeepRBM's own ``predict_proba`` averaged over ``n_samples`` sampled chains with
common random numbers (the same seed at every call), so that comparisons between nearby inputs
are not drowned in sampling noise. A decision is *confident* when the gap between the top two
classes exceeds ``z`` combined standard errors.

:func:`minimal_eps` bisects on ε along each input's direction, ``x(ε) = clip(x + ε step)`` with
the unit step ``v/‖v‖₂`` (L2) or ``sign(v)`` (L∞); inputs not flipped at ``eps_max`` get ``inf``
(censored).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rgaudit.attacks.base import Norm, clip_box, unit_step
from rgaudit.nets.deep_rbm import DeepRBM

Tensor = torch.Tensor


@dataclass(frozen=True)
class Verdict:
    """Stochastic-network predictions.

    Attributes
    ----------
    pred : Tensor of shape (n,)
    gap_z : Tensor of shape (n,)
        ``(p_top − p_second) / sqrt(se_top² + se_second²)``.
    """

    pred: Tensor
    gap_z: Tensor


class StochasticJudge:
    """Predicted classes of a DeepRBM from sampled chains, with common random numbers.

    Parameters
    ----------
    net : DeepRBM
    n_samples : int, default 2000
    seed : int, default 0
    z : float, default 2.0
        Gap (in standard errors) for a confident decision.
    """

    def __init__(self, net: DeepRBM, *, n_samples: int = 2000, seed: int = 0, z: float = 2.0
                 ) -> None:
        self.net, self.n_samples, self.seed, self.z = net, int(n_samples), int(seed), float(z)
        self.calls = 0

    def verdict(self, x: Tensor) -> Verdict:
        """Predictions and their confidence for inputs (n, d)."""
        g = torch.Generator(device=self.net.device).manual_seed(self.seed)
        est = self.net.predict_proba(x.to(self.net.device), self.n_samples, g,
                                     return_stderr=True)
        self.calls += 1
        top2 = est.mean.topk(2, dim=-1)
        se = est.stderr.gather(-1, top2.indices)
        gap = (top2.values[:, 0] - top2.values[:, 1]) / se.pow(2).sum(-1).sqrt().clamp_min(1e-12)
        return Verdict(top2.indices[:, 0], gap)

    def __call__(self, x: Tensor) -> Tensor:
        return self.verdict(x).pred


@dataclass(frozen=True)
class MinimalEps:
    """Bisection result.

    Attributes
    ----------
    eps : Tensor of shape (n,)
        Smallest flipping budget found (upper end of the final bracket); ``inf`` if not flipped
        at ``eps_max``.
    lower : Tensor of shape (n,)
        Lower end of the final bracket.
    confident : Tensor of shape (n,), bool
        The flip at ``eps`` is a confident decision of the judge.
    """

    eps: Tensor
    lower: Tensor
    confident: Tensor


def minimal_eps(
    judge: StochasticJudge,
    x: Tensor,
    y: Tensor,
    v: Tensor,
    *,
    norm: Norm = "l2",
    eps_max: float = 4.0,
    steps: int = 10,
) -> MinimalEps:
    """Minimal flipping budget along directions ``v`` by bisection, all inputs at once.

    Parameters
    ----------
    judge : StochasticJudge
    x : Tensor of shape (n, d)
    y : Tensor of shape (n,)
    v : Tensor of shape (n, d)
        Attack directions (any scale).
    norm : {"l2", "linf"}
    eps_max : float
    steps : int
        Bisection steps (bracket width ``eps_max / 2^steps``).

    Returns
    -------
    MinimalEps
    """
    step = unit_step(v, norm).to(x.dtype)
    y = y.to(x.device)
    n = x.shape[0]
    lo = torch.zeros(n, dtype=torch.float64)
    hi = torch.full((n,), float(eps_max), dtype=torch.float64)

    def flipped(eps: Tensor) -> tuple[Tensor, Tensor]:
        xe = clip_box(x + eps.to(x.dtype).unsqueeze(-1) * step)
        ver = judge.verdict(xe)
        return (ver.pred.to(y.device) != y).cpu(), (ver.gap_z > judge.z).cpu()

    ok, conf = flipped(hi)
    for _ in range(int(steps)):
        mid = 0.5 * (lo + hi)
        f, _ = flipped(mid)
        hi = torch.where(f & ok, mid, hi)
        lo = torch.where(~f & ok, mid, lo)
    _, conf = flipped(hi)
    eps = torch.where(ok, hi, torch.full_like(hi, float("inf")))
    return MinimalEps(eps, torch.where(ok, lo, hi), conf & ok)


def flip_rate_curve(judge: StochasticJudge, x: Tensor, y: Tensor, v: Tensor, epsilons: Tensor,
                    *, norm: Norm = "l2") -> Tensor:
    """Fraction flipped at each budget along fixed directions, shape (E,)."""
    step = unit_step(v, norm).to(x.dtype)
    rates = []
    for e in torch.as_tensor(epsilons, dtype=torch.float64):
        pred = judge(clip_box(x + float(e) * step))
        rates.append((pred.to(y.device) != y).to(torch.float64).mean())
    return torch.stack(rates)
