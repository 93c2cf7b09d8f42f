"""One restricted Boltzmann machine layer with binary {0,1} units (DESIGN.md conventions).

``t(h, v) ∝ exp(hᵀ W v + aᵀ h + bᵀ v)`` with ``W`` of shape (n_out, n_in):

- up (classification): ``P(h=1 | v) = σ(W v + a)``;
- down (generation):   ``P(v=1 | h) = σ(Wᵀ h + b)``.

Inputs ``v`` may be real in [0, 1] (grey levels); they then enter the up conditional as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

Tensor = torch.Tensor


def bernoulli(p: Tensor, generator: torch.Generator | None) -> Tensor:
    """Sample {0,1} units with probabilities ``p`` using an explicit generator.

    Parameters
    ----------
    p : Tensor of any shape
        Probabilities in [0, 1].
    generator : torch.Generator or None
        Source of randomness (must live on ``p.device``).

    Returns
    -------
    Tensor of the shape and dtype of ``p`` with values 0 or 1.
    """
    u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return (u < p).to(p.dtype)


class RBM(nn.Module):
    """A bipartite layer ``t(h_out, h_in)``.

    Parameters
    ----------
    n_in : int
        Number of units of the lower layer (``h_{k-1}``).
    n_out : int
        Number of units of the upper layer (``h_k``).
    dtype : torch.dtype, default torch.float32

    Attributes
    ----------
    W : Parameter of shape (n_out, n_in)
    a : Parameter of shape (n_out,)
        Biases of the upper units.
    b : Parameter of shape (n_in,)
        Biases of the lower units.
    """

    def __init__(self, n_in: int, n_out: int, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1:
            raise ValueError(f"an RBM needs at least one unit per side, got {n_in}, {n_out}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.W = nn.Parameter(torch.zeros(n_out, n_in, dtype=dtype))
        self.a = nn.Parameter(torch.zeros(n_out, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(n_in, dtype=dtype))

    @classmethod
    def random(
        cls,
        n_in: int,
        n_out: int,
        *,
        scale: float = 1.0,
        bias_scale: float = 0.5,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> RBM:
        """A layer with Gaussian weights ``N(0, scale²/n_in)`` and biases ``N(0, bias_scale²)``."""
        rbm = cls(n_in, n_out, dtype=dtype)
        with torch.no_grad():
            rbm.W.copy_(torch.randn(n_out, n_in, generator=generator, dtype=dtype)
                        * scale / n_in**0.5)
            rbm.a.copy_(torch.randn(n_out, generator=generator, dtype=dtype) * bias_scale)
            rbm.b.copy_(torch.randn(n_in, generator=generator, dtype=dtype) * bias_scale)
        return rbm

    # -- upward (classification) ------------------------------------------------------------
    def logits_up(self, v: Tensor) -> Tensor:
        """``W v + a`` for ``v`` of shape (..., n_in); returns (..., n_out)."""
        return F.linear(v.to(self.W.dtype), self.W, self.a)

    def prob_up(self, v: Tensor) -> Tensor:
        """``P(h=1 | v) = σ(W v + a)``, shape (..., n_out)."""
        return torch.sigmoid(self.logits_up(v))

    def sample_up(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Sample ``h ~ t(· | v)``, shape (..., n_out)."""
        return bernoulli(self.prob_up(v), generator)

    def log_prob_up(self, h: Tensor, v: Tensor) -> Tensor:
        """``log t(h | v)`` for ``h`` (..., n_out), ``v`` (..., n_in); returns (...)."""
        z = self.logits_up(v)
        return (h.to(z.dtype) * z - F.softplus(z)).sum(-1)

    # -- downward (generation) --------------------------------------------------------------
    def logits_down(self, h: Tensor) -> Tensor:
        """``Wᵀ h + b`` for ``h`` of shape (..., n_out); returns (..., n_in)."""
        return F.linear(h.to(self.W.dtype), self.W.t(), self.b)

    def prob_down(self, h: Tensor) -> Tensor:
        """``P(v=1 | h) = σ(Wᵀ h + b)``, shape (..., n_in)."""
        return torch.sigmoid(self.logits_down(h))

    def sample_down(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Sample ``v ~ t(· | h)``, shape (..., n_in)."""
        return bernoulli(self.prob_down(h), generator)

    def log_prob_down(self, v: Tensor, h: Tensor) -> Tensor:
        """``log t(v | h)`` for ``v`` (..., n_in), ``h`` (..., n_out); returns (...)."""
        z = self.logits_down(h)
        return (v.to(z.dtype) * z - F.softplus(z)).sum(-1)

    # -- energies ---------------------------------------------------------------------------
    def free_energy(self, v: Tensor) -> Tensor:
        """Free energy of the lower layer, ``−bᵀv − Σ_j softplus((W v + a)_j)``; shape (...)."""
        return -(v.to(self.b.dtype) @ self.b) - F.softplus(self.logits_up(v)).sum(-1)

    def energy(self, h: Tensor, v: Tensor) -> Tensor:
        """Joint energy ``−(hᵀ W v + aᵀ h + bᵀ v)``; shape (...)."""
        h = h.to(self.W.dtype)
        v = v.to(self.W.dtype)
        return -((h * self.logits_up(v)).sum(-1) + v @ self.b)
