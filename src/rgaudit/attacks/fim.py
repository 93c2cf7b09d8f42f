"""Attacks along top eigenvectors of an input Fisher information matrix (vulnerability §IV).

- :class:`FIMAttack` with ``k = 1``: ``x' = clip(x + ε v)``, ``v`` the top FIM eigenvector, its
  sign chosen so that the true class's probability decreases to first order
  (``sign = −sign(vᵀ∇P(true|x))``);
- with ``k > 1``: the steepest descent of the true class inside the span of the top ``k``
  eigenvectors, ``v = −U Uᵀ ∇P(true|x)``;
- :class:`IteratedFIMAttack`: ``steps`` steps of ``ε/steps``, re-estimating the FIM (and the
  gradient) at the current point, each time projected onto the budget and clipped.

The FIM and the gradient are injected as callables, so every estimator (RG chain, direct Monte
Carlo, mean-field autograd) drives the same attack.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rgaudit.attacks.base import Attack, DirectionAttack, Norm, clip_box, project, unit_step
from rgaudit.fisher.eig import top_eigenpairs

Tensor = torch.Tensor
FIMFn = Callable[[Tensor], Tensor]
GradFn = Callable[[Tensor, Tensor], Tensor]


def fim_direction(F: Tensor, grad_true: Tensor, k: int = 1) -> Tensor:
    """Attack direction from FIMs and true-class gradients.

    Parameters
    ----------
    F : Tensor of shape (n, d, d)
    grad_true : Tensor of shape (n, d)
        ``∇_x P(true class | x)``.
    k : int
        Top-k span (k = 1: the signed top eigenvector).

    Returns
    -------
    Tensor of shape (n, d)
    """
    U = top_eigenpairs(F, k).vectors                       # (n, d, k)
    g = grad_true.to(U.dtype).unsqueeze(-1)
    if k == 1:
        s = (U.transpose(-1, -2) @ g).squeeze(-1).sign()   # (n, 1)
        s = torch.where(s == 0, torch.ones_like(s), s)
        return -(U[..., 0] * s)
    return -(U @ (U.transpose(-1, -2) @ g)).squeeze(-1)


class FIMAttack(DirectionAttack):
    """Step along the top FIM eigenvector (or the top-k span).

    Parameters
    ----------
    fim_fn : callable
        Inputs (n, d) → FIMs (n, d, d).
    grad_fn : callable
        ``(x (n, d), y (n,)) → ∇_x P(y | x)`` of shape (n, d); only its sign along the
        eigenvectors (k = 1) or its projection (k > 1) is used.
    k : int, default 1
    norm : {"l2", "linf"}
    name : str, optional
        Label in reports (e.g. "fim-rg-singles").
    """

    def __init__(self, *, fim_fn: FIMFn, grad_fn: GradFn, k: int = 1, norm: Norm = "l2",
                 name: str | None = None) -> None:
        super().__init__(norm=norm)
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        self.fim_fn, self.grad_fn, self.k = fim_fn, grad_fn, int(k)
        self.name = name or (f"fim-top{k}" if k > 1 else "fim")

    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        return fim_direction(self.fim_fn(x), self.grad_fn(x, y), self.k).to(x.dtype)


class IteratedFIMAttack(Attack):
    """Iterated FIM attack: re-estimate the FIM at the current point every step.

    Parameters
    ----------
    fim_fn, grad_fn, k, norm
        As in :class:`FIMAttack`.
    steps : int, default 5
    """

    def __init__(self, *, fim_fn: FIMFn, grad_fn: GradFn, k: int = 1, steps: int = 5,
                 norm: Norm = "l2", name: str | None = None) -> None:
        super().__init__(norm=norm)
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        self.fim_fn, self.grad_fn, self.k, self.steps = fim_fn, grad_fn, int(k), int(steps)
        self.name = name or "fim-iterated"

    def run(self, x: Tensor, y: Tensor, *, epsilons: Tensor) -> Tensor:
        out = []
        for e in epsilons:
            eps = float(e)
            xt = x.clone()
            for _ in range(self.steps):
                v = fim_direction(self.fim_fn(xt), self.grad_fn(xt, y), self.k).to(x.dtype)
                xt = xt + (eps / self.steps) * unit_step(v, self.norm)
                xt = clip_box(x + project(xt - x, eps, self.norm))
            out.append(xt)
        return torch.stack(out)
