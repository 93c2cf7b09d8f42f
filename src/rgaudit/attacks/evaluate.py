"""Judging attacks on the stochastic network: flip rates and minimal flipping budgets.

The judge is the DeepRBM's own ``predict_proba`` averaged over ``n_samples`` sampled chains with
common random numbers (each input its own generator, re-seeded at every call), so that
comparisons between nearby inputs are not drowned in sampling noise and no verdict depends on
the other inputs of the batch. A decision is *confident* when the gap between the top two
classes exceeds ``z`` standard errors of the per-chain difference of the two.

:func:`minimal_eps` bisects on ε along each input's direction, ``x(ε) = clip(x + ε step)`` with
the unit step ``v/‖v‖₂`` (L2) or ``sign(v)`` (L∞); inputs not flipped at ``eps_max`` get ``inf``
(censored). It also records the perturbation actually applied at the flip (after clipping) in
L2 and L∞, and whether the clean input is classified correctly at ε = 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rgaudit.attacks.base import Norm, clip_box, unit_step
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.random import child_seed

Tensor = torch.Tensor


@dataclass(frozen=True)
class Verdict:
    """Stochastic-network predictions.

    Attributes
    ----------
    pred : Tensor of shape (n,)
    gap_z : Tensor of shape (n,)
        ``(p_top − p_second) / se(p_top − p_second)``, the standard error taken from the
        per-chain differences of the two classes' top conditionals (the two are estimated on
        the same chains, so their errors are correlated).
    proba : Tensor of shape (n, n_out)
        Chain-averaged output probabilities.
    """

    pred: Tensor
    gap_z: Tensor
    proba: Tensor | None = None


class StochasticJudge:
    """Predicted classes of a DeepRBM from sampled chains, with common random numbers.

    Every input row gets its own generator, on stream ``("judge", key)`` of ``seed``
    (:mod:`rgaudit.random`): the key is the row's entry in ``ids`` (e.g. its index in the test
    set) or, without ``ids``, its position in the batch. So an input's verdict does not depend
    on which other inputs share the batch, and the perturbed inputs ``x + δ`` of one input reuse
    its random numbers (common random numbers: comparisons between nearby inputs are not
    drowned in sampling noise).

    Parameters
    ----------
    net : DeepRBM
    n_samples : int, default 2000
    seed : int, default 0
        The user's seed (the judge names its own stream: pass the study's seed, not an offset).
    z : float, default 2.0
        Gap (in standard errors of the per-chain difference) for a confident decision.
    ids : sequence of int, optional
        Random-number key of each row (see :meth:`for_inputs`).
    chunk : int, default 500
        Chains sampled at once.
    """

    def __init__(self, net: DeepRBM, *, n_samples: int = 2000, seed: int = 0, z: float = 2.0,
                 ids: Sequence[int] | Tensor | None = None, chunk: int = 500) -> None:
        self.net, self.n_samples, self.seed, self.z = net, int(n_samples), int(seed), float(z)
        self.ids = None if ids is None else [int(i) for i in torch.as_tensor(ids).tolist()]
        self.chunk = int(chunk)
        self.calls = 0

    def for_inputs(self, ids: Sequence[int] | Tensor) -> StochasticJudge:
        """The same judge with row ``i`` keyed by ``ids[i]`` (e.g. test-set indices)."""
        return StochasticJudge(self.net, n_samples=self.n_samples, seed=self.seed, z=self.z,
                               ids=ids, chunk=self.chunk)

    def input_seed(self, key: int) -> int:
        """Seed of the generator of the input keyed ``key``."""
        return child_seed(self.seed, "judge", int(key))

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Chain means (n, C) and unbiased chain covariances (n, C, C) of the top conditionals."""
        n = x.shape[0]
        keys = self.ids if self.ids is not None else list(range(n))
        if len(keys) != n:
            raise ValueError(f"judge keyed for {len(keys)} inputs, got {n}")
        dev = self.net.device
        xd = x.to(dev)
        C = self.net.widths[-1]
        means = torch.empty(n, C, dtype=torch.float64, device=dev)
        covs = torch.empty(n, C, C, dtype=torch.float64, device=dev)
        S = self.n_samples
        for i, key in enumerate(keys):
            g = torch.Generator(device=dev).manual_seed(self.input_seed(key))
            s1 = torch.zeros(C, dtype=torch.float64, device=dev)
            s2 = torch.zeros(C, C, dtype=torch.float64, device=dev)
            for p in self.net.predict_proba_chains(xd[i:i + 1], S, g, chunk=self.chunk):
                p = p[0]                                          # (m, C)
                s1 += p.sum(0)
                s2 += p.T @ p
            m = s1 / S
            means[i] = m
            covs[i] = (s2 - S * torch.outer(m, m)) / max(S - 1, 1)
        return means, covs

    def verdict(self, x: Tensor) -> Verdict:
        """Predictions and their confidence for inputs (n, d)."""
        mean, cov = self.moments(x)
        self.calls += 1
        top2 = mean.topk(2, dim=-1)
        a, b = top2.indices[:, 0], top2.indices[:, 1]
        r = torch.arange(mean.shape[0], device=mean.device)
        var_d = (cov[r, a, a] + cov[r, b, b] - 2 * cov[r, a, b]).clamp_min(0)
        se = (var_d / self.n_samples).sqrt()
        gap = (top2.values[:, 0] - top2.values[:, 1]) / se.clamp_min(1e-12)
        return Verdict(a, gap, mean)

    def __call__(self, x: Tensor) -> Tensor:
        return self.verdict(x).pred


@dataclass(frozen=True)
class MinimalEps:
    """Bisection result.

    Attributes
    ----------
    eps : Tensor of shape (n,)
        Smallest flipping *nominal* budget found (upper end of the final bracket); ``inf`` if
        not flipped at ``eps_max``.
    lower : Tensor of shape (n,)
        Lower end of the final bracket.
    confident : Tensor of shape (n,), bool
        The flip at ``eps`` is a confident decision of the judge.
    actual_l2, actual_linf : Tensor of shape (n,)
        The perturbation actually applied at the flip, ``‖clip(x + eps·step) − x‖`` (clipping
        to [0, 1] removes part of the nominal step); ``inf`` where not flipped.
    clean_correct : Tensor of shape (n,), bool
        The judge classifies the clean input (ε = 0) correctly; a flip of an input that is
        already wrong at ε = 0 is no attack.
    """

    eps: Tensor
    lower: Tensor
    confident: Tensor
    actual_l2: Tensor
    actual_linf: Tensor
    clean_correct: Tensor


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
        Nominal budgets and the norms of the perturbations actually applied after clipping.
    """
    step = unit_step(v, norm).to(x.dtype)
    y = y.to(x.device)
    n = x.shape[0]
    at = along(x, step)

    def flipped(eps: Tensor) -> tuple[Tensor, Tensor]:
        ver = judge.verdict(at(eps))
        return (ver.pred.to(y.device) != y).cpu(), (ver.gap_z > judge.z).cpu()

    wrong0, _ = flipped(torch.zeros(n, dtype=torch.float64))
    lo, hi, ok = bisect_flips(lambda e: flipped(e)[0], n, eps_max, steps)
    _, conf = flipped(hi)
    l2, linf = applied_norms(x, at(hi), ok)
    eps = torch.where(ok, hi, torch.full_like(hi, float("inf")))
    return MinimalEps(eps, torch.where(ok, lo, hi), conf & ok, l2, linf, ~wrong0)


def along(x: Tensor, step: Tensor) -> Callable[[Tensor], Tensor]:
    """``ε ↦ clip(x + ε·step)``: inputs (n, d) moved by per-input budgets ε (n,) along unit
    steps (n, d), clipped to the input box."""

    def at(eps: Tensor) -> Tensor:
        return clip_box(x + eps.to(device=x.device, dtype=x.dtype).unsqueeze(-1) * step)

    return at


def bisect_flips(flips: Callable[[Tensor], Tensor], n: int, eps_max: float, steps: int
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Bisection of the smallest flipping budget of ``n`` inputs, all at once.

    Parameters
    ----------
    flips : callable
        Budgets (n,) float64 → flipped (n,) bool, on the CPU.
    n : int
    eps_max : float
        Top of the bracket; inputs that do not flip there keep ``[0, eps_max]``.
    steps : int
        Bisection steps (bracket width ``eps_max / 2^steps``).

    Returns
    -------
    lo, hi : Tensor of shape (n,), float64
        The final bracket (``hi`` flips where ``ok``).
    ok : Tensor of shape (n,), bool
        Flipped at ``eps_max``.
    """
    lo = torch.zeros(n, dtype=torch.float64)
    hi = torch.full((n,), float(eps_max), dtype=torch.float64)
    ok = flips(hi)
    for _ in range(int(steps)):
        mid = 0.5 * (lo + hi)
        f = flips(mid)
        hi = torch.where(f & ok, mid, hi)
        lo = torch.where(~f & ok, mid, lo)
    return lo, hi, ok


def applied_norms(x: Tensor, adv: Tensor, ok: Tensor) -> tuple[Tensor, Tensor]:
    """L2 and L∞ norms (n,) float64 of the applied perturbations ``adv − x`` (n, d), ``inf``
    where not ``ok`` (not flipped)."""
    delta = (adv - x).to(torch.float64).cpu()
    inf = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
    return (torch.where(ok, delta.norm(dim=1), inf),
            torch.where(ok, delta.abs().amax(dim=1), inf))
