"""The Fisher/RG attack's best shot (vulnerability paper §IV, measured against the baselines).

- :func:`both_signs`: the minimal flipping ε along ``+v`` and along ``−v`` for every input,
  keeping the sign the judge prefers (smaller applied norm) — an eigenvector has no sign, so
  never an arbitrary one;
- :class:`FisherWalk`: the iterated Fisher attack. From ``x`` it takes steps of L2 length ``h``
  along the top eigenvector of the FIM re-estimated at the current point (a discretised
  Fisher-metric geodesic of steepest information gain), the sign at every step chosen to lower
  the surrogate's margin of the true class, until the surrogate's decision flips (or
  ``max_steps``). Its chord ``x_end − x`` is then judged like every other direction;
- :class:`SubspaceDDN`: the minimal-norm attack (DDN) restricted to a k-dimensional subspace per
  input (the top-k FIM eigenvectors, or k random directions): DDN attacks the surrogate composed
  with the projection ``x ↦ x₀ + P(x − x₀)``, ``P = UUᵀ``, and its result is projected;
- :func:`eigenspace_fraction`: the fraction ``‖U_kᵀδ‖²/‖δ‖²`` of a perturbation in the span of the
  first k columns of ``U``; for a uniformly random k-space its expectation is ``k/d``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rgaudit.attacks.base import Norm
from rgaudit.attacks.minimal_norm import (
    Float32Logits,
    MinimalNormAttack,
    advlib_call,
    surrogate_of,
)
from rgaudit.attacks.search import Judge, Search, minimal_eps_along
from rgaudit.fisher.eig import top_eigenpairs

Tensor = torch.Tensor
FIMFn = Callable[[Tensor], Tensor]


def both_signs(judge: Judge, x: Tensor, y: Tensor, step: Tensor, *, norm: Norm, eps_max: float,
               steps: int = 10) -> tuple[Search, Tensor]:
    """Minimal flipping ε along ``±step``, keeping per input the sign the judge prefers.

    Parameters
    ----------
    judge, x, y, eps_max, steps
        As :func:`~rgaudit.attacks.search.minimal_eps_along` (inputs (n, d), labels (n,)).
    step : Tensor of shape (n, d)
        Unit step along the eigenvector (either sign).
    norm : {"l2", "linf"}
        Norm whose applied value decides the sign.

    Returns
    -------
    search : Search
        The better of the two, per input.
    sign : Tensor of shape (n,)
        +1 or −1: the sign kept.
    """
    plus = minimal_eps_along(judge, x, y, step, eps_max=eps_max, steps=steps)
    minus = minimal_eps_along(judge, x, y, -step, eps_max=eps_max, steps=steps)
    a_p, a_m = plus.applied(norm), minus.applied(norm)
    use_m = a_m < a_p
    um = use_m.to(x.device).unsqueeze(-1)
    out = Search(
        torch.where(use_m, minus.eps, plus.eps), plus.resolution,
        torch.where(use_m, minus.applied_l2, plus.applied_l2),
        torch.where(use_m, minus.applied_linf, plus.applied_linf),
        torch.where(um, minus.adversarial, plus.adversarial), plus.clean_correct)
    return out, torch.where(use_m, -1.0, 1.0).to(torch.float64)


def _margin(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """True-class logit minus the largest other logit, (n,)."""
    z = model(x).to(torch.float64)
    true = z.gather(1, y.unsqueeze(1)).squeeze(1)
    other = z.scatter(1, y.unsqueeze(1), float("-inf")).amax(1)
    return true - other


class FisherWalk(MinimalNormAttack):
    """Iterated Fisher attack: walk along the re-estimated top FIM eigenvector to the boundary.

    Parameters
    ----------
    model : module or Classifier
        The surrogate whose decision ends the walk and whose margin picks each step's sign.
    fim_fn : callable
        Inputs (m, d) → FIMs (m, d, d), re-estimated at every step (RG chain, mean-field
        autograd, …); called only on inputs still walking.
    step_size : float, default 0.05
        L2 length ``h`` of a step (the walk's resolution).
    max_steps : int, default 80
    norm : {"l2", "linf"}
        Norm of the budget the chord is scaled to.
    name : str, optional
    """

    def __init__(self, *, model: Any, fim_fn: FIMFn, step_size: float = 0.05,
                 max_steps: int = 80, norm: Norm = "l2", name: str | None = None) -> None:
        super().__init__(model=model, norm=norm)
        if step_size <= 0 or max_steps < 1:
            raise ValueError("step_size must be positive and max_steps ≥ 1")
        self.fim_fn, self.h, self.max_steps = fim_fn, float(step_size), int(max_steps)
        self.name = name or "fisher-walk"
        self.steps_taken: Tensor | None = None

    @torch.no_grad()
    def _m(self, x: Tensor, y: Tensor) -> Tensor:
        return _margin(self.model, x, y)

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        xt = x.clone().to(torch.float64)
        y = y.long()
        active = self._m(xt, y) > 0
        taken = torch.zeros(x.shape[0], dtype=torch.long)
        for _ in range(self.max_steps):
            idx = torch.nonzero(active).flatten()
            if idx.numel() == 0:
                break
            cur = xt[idx]
            F = self.fim_fn(cur.to(x.dtype)).to(torch.float64)
            u = top_eigenpairs(F, 1).vectors[..., 0]                 # (m, d)
            up = (cur + self.h * u).clamp(0, 1)
            um = (cur - self.h * u).clamp(0, 1)
            better_m = self._m(um, y[idx]) < self._m(up, y[idx])
            nxt = torch.where(better_m.unsqueeze(-1), um, up)
            xt[idx] = nxt
            taken[idx] += 1
            active[idx] = self._m(nxt, y[idx]) > 0
        self.steps_taken = taken
        return xt.to(x.dtype)


class _Projected(torch.nn.Module):
    """``z ↦ model(x₀ + P(z − x₀))`` for a batch with per-row ``x₀`` and ``P``."""

    def __init__(self, model: torch.nn.Module, x0: Tensor, P: Tensor) -> None:
        super().__init__()
        self.model, self.x0, self.P = model, x0, P

    def forward(self, z: Tensor) -> Tensor:
        d = (z.to(self.P.dtype) - self.x0).unsqueeze(-1)
        return self.model((self.x0 + (self.P @ d).squeeze(-1)).to(z.dtype))


class SubspaceDDN(MinimalNormAttack):
    """DDN restricted to the span of ``basis`` (per input).

    Parameters
    ----------
    model : module or Classifier
    basis : callable
        Inputs (n, d) → orthonormal bases (n, d, k) (e.g. top-k FIM eigenvectors, or random).
    steps : int, default 200
    norm : {"l2", "linf"}
    name : str, optional
    """

    def __init__(self, *, model: Any, basis: Callable[[Tensor], Tensor], steps: int = 200,
                 norm: Norm = "l2", name: str | None = None) -> None:
        super().__init__(model=model, norm=norm)
        self.basis, self.steps = basis, int(steps)
        self.name = name or "subspace-ddn"

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        U = self.basis(x).to(torch.float64)
        P = U @ U.transpose(-1, -2)
        x0 = x.to(torch.float64)
        wrapped = _Projected(self.model, x0, P)
        xa = advlib_call("ddn", wrapped, x, y, steps=self.steps, levels=None)
        d = (xa.to(torch.float64) - x0).unsqueeze(-1)
        return (x0 + (P @ d).squeeze(-1)).to(x.dtype)


def random_orthonormal(n: int, d: int, k: int, generator: torch.Generator) -> Tensor:
    """``n`` uniformly random orthonormal k-frames in R^d, (n, d, k) float64."""
    G = torch.randn(n, d, k, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    return Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)


def eigenspace_fraction(delta: Tensor, U: Tensor) -> Tensor:
    """Fraction of each perturbation in the span of the first k columns of ``U``, every k.

    Parameters
    ----------
    delta : Tensor of shape (n, d)
    U : Tensor of shape (n, d, K)
        Orthonormal columns (e.g. FIM eigenvectors by decreasing eigenvalue).

    Returns
    -------
    Tensor of shape (n, K)
        Entry ``[i, k−1] = ‖U[i, :, :k]ᵀ δ_i‖² / ‖δ_i‖²`` (NaN where ``δ_i = 0``).
    """
    d = delta.to(torch.float64)
    c = (U.to(torch.float64).transpose(-1, -2) @ d.unsqueeze(-1)).squeeze(-1) ** 2   # (n, K)
    nn2 = (d ** 2).sum(-1, keepdim=True)
    return torch.where(nn2 > 0, c.cumsum(-1) / nn2.clamp_min(1e-300),
                       torch.full_like(c, float("nan")))


__all__ = ["FisherWalk", "SubspaceDDN", "both_signs", "eigenspace_fraction",
           "random_orthonormal", "surrogate_of", "Float32Logits"]
