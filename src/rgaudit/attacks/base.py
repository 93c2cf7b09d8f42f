"""Shared attack machinery (Foolbox style): the base class owns every invariant.

An :class:`Attack` subclass writes only :meth:`Attack.run` (raw candidates for each budget).
:meth:`Attack.__call__` — which subclasses must not override — then, for every method alike,

1. projects the perturbation onto the budget ball (L2: rescale rows longer than ε; L∞: clamp),
2. clips the result to the input box [0, 1],
3. asks a *judge* (the stochastic network, see :mod:`rgaudit.attacks.evaluate`) for the
   predicted class and records success = prediction ≠ true label.

:class:`DirectionAttack` is the common case of an attack defined by one direction ``v`` per
input: the step for budget ε is ``ε v/‖v‖₂`` (L2) or ``ε sign(v)`` (L∞, the step inside the L∞
ball that maximises ``⟨v, δ⟩``). Every attack exposes :meth:`Attack.direction` so the minimal
flipping ε can be found by bisection along it on equal terms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import final

import torch

from rgaudit.choices import ATTACK_NORMS as NORMS
from rgaudit.choices import AttackNorm as Norm

Tensor = torch.Tensor
Judge = Callable[[Tensor], Tensor]


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def project(delta: Tensor, eps: float, norm: Norm) -> Tensor:
    """Project perturbations (n, d) onto the ball of radius ``eps`` of ``norm``."""
    if eps < 0:
        raise ValueError(f"budget must be non-negative, got {eps}")
    if norm == "l2":
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-300)
        scale = (eps / n).clamp(max=1.0)
        return delta * scale.reshape(-1, *([1] * (delta.dim() - 1)))
    if norm == "linf":
        return delta.clamp(-eps, eps)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def unit_step(v: Tensor, norm: Norm) -> Tensor:
    """The budget-1 step along direction ``v`` (n, d): ``v/‖v‖₂`` or ``sign(v)``."""
    if norm == "l2":
        return v / v.flatten(1).norm(dim=1).clamp_min(1e-300).reshape(-1, *([1] * (v.dim() - 1)))
    if norm == "linf":
        return v.sign()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def clip_box(x: Tensor, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """Clip to the input box."""
    return x.clamp(lo, hi)


@dataclass(frozen=True)
class AttackResult:
    """Outcome of an attack over a grid of budgets.

    Attributes
    ----------
    epsilons : Tensor of shape (E,)
    raw : Tensor of shape (E, n, d)
        The subclass's candidates, before projection and clipping.
    clipped : Tensor of shape (E, n, d)
        Projected onto the budget and clipped to [0, 1]: what was judged.
    success : Tensor of shape (E, n), bool
        Judge's prediction differs from the true label.
    """

    epsilons: Tensor
    raw: Tensor
    clipped: Tensor
    success: Tensor

    @property
    def flip_rate(self) -> Tensor:
        """Fraction of inputs flipped at each budget, shape (E,)."""
        return self.success.to(torch.float64).mean(-1)


class Attack(ABC):
    """Base class of every attack.

    Parameters
    ----------
    norm : {"l2", "linf"}
        Budget norm; keyword-only, as are all subclass arguments.
    """

    name: str = "attack"

    def __init__(self, *, norm: Norm = "l2") -> None:
        self.norm: Norm = check_norm(norm)  # type: ignore[assignment]

    @abstractmethod
    def run(self, x: Tensor, y: Tensor, *, epsilons: Tensor) -> Tensor:
        """Raw adversarial candidates.

        Parameters
        ----------
        x : Tensor of shape (n, d)
            Clean inputs in [0, 1].
        y : Tensor of shape (n,)
            True labels.
        epsilons : Tensor of shape (E,)

        Returns
        -------
        Tensor of shape (E, n, d)
            Need not respect the budget or the box: :meth:`__call__` enforces both.
        """

    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        """One attack direction per input, (n, d), for bisection on ε.

        Default: the projected, clipped perturbation of :meth:`run` at ``reference_eps``.
        """
        eps = torch.tensor([float(reference_eps)], dtype=torch.float64)
        raw = self.run(x, y, epsilons=eps)[0]
        return clip_box(x + project(raw - x, float(reference_eps), self.norm)) - x

    @final
    def __call__(self, x: Tensor, y: Tensor, *, epsilons: Tensor | list[float], judge: Judge
                 ) -> AttackResult:
        """Run, project onto each budget, clip to [0, 1] and judge success.

        Parameters
        ----------
        x : Tensor of shape (n, d)
        y : Tensor of shape (n,)
        epsilons : sequence of float, shape (E,)
        judge : callable
            Maps inputs (n, d) to predicted classes (n,).

        Returns
        -------
        AttackResult
        """
        if x.dim() != 2:
            raise ValueError(f"inputs must have shape (n, d), got {tuple(x.shape)}")
        if x.min() < 0 or x.max() > 1:
            raise ValueError("clean inputs must lie in [0, 1]")
        eps = torch.as_tensor(epsilons, dtype=torch.float64).reshape(-1)
        raw = self.run(x, y, epsilons=eps)
        if raw.shape != (eps.numel(), *x.shape):
            raise RuntimeError(f"{type(self).__name__}.run returned shape {tuple(raw.shape)}, "
                               f"expected {(eps.numel(), *x.shape)}")
        clipped = torch.stack([clip_box(x + project(raw[i] - x, float(e), self.norm))
                               for i, e in enumerate(eps)])
        success = torch.stack([judge(c).to(y.device) != y for c in clipped])
        return AttackResult(eps, raw, clipped, success)


class DirectionAttack(Attack):
    """An attack defined by one direction per input; the subclass writes :meth:`direction`."""

    @abstractmethod
    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        """Direction (n, d); its scale does not matter."""

    def cached_direction(self, x: Tensor, y: Tensor) -> Tensor:
        """:meth:`direction`, remembered for the last ``(x, y)`` (directions are budget-free)."""
        c = getattr(self, "_cache", None)
        if c is not None and c[0].shape == x.shape and torch.equal(c[0], x) and torch.equal(
                c[1], y):
            return c[2]
        v = self.direction(x, y)
        self._cache = (x.clone(), y.clone(), v)
        return v

    def run(self, x: Tensor, y: Tensor, *, epsilons: Tensor) -> Tensor:
        step = unit_step(self.cached_direction(x, y), self.norm).to(x.dtype)
        return torch.stack([x + float(e) * step for e in epsilons])
