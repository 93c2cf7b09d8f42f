"""A trained RBM block-spin kernel (after Chung & Kao, "Neural Monte Carlo renormalization group").

Chung & Kao identify the RG weight factor ``P(h' | s)`` with the hidden conditional of an RBM and
train the RBM so that its visible marginal matches the distribution of the spin system (minimum
KL divergence ``KL(P_Ising ‖ P_RBM)``, i.e. maximum likelihood on Ising configurations).

Our simplified, stated choice: one hidden unit per non-overlapping 2×2 block, the same
parameters for every block (translation invariance) — four weights ``w_i`` (one per block site),
a hidden bias ``a`` and four visible biases ``b_i``:

    P(v, h) ∝ Π_blocks exp(bᵀv_B + h (wᵀv_B + a)),   P(h = 1 | v_B) = σ(wᵀv_B + a).

With non-overlapping receptive fields the visible marginal factorises over blocks,
``P(v_B) ∝ exp(bᵀv_B) (1 + exp(wᵀv_B + a))``, so the likelihood is exact over the 16 states of a
block and maximum likelihood reduces to fitting the empirical histogram of 2×2 block states — no
contrastive divergence needed. What the RBM cannot do in this form is model correlations
between blocks; that is the price of the simplification (see docs/ising.md).

Units are {0,1} (spin ``s = 2h − 1``); a block's sites are ordered (0,0), (0,1), (1,0), (1,1),
and block state ``k = Σ_i v_i 2^i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

Tensor = torch.Tensor

_STATES = torch.tensor([[(k >> i) & 1 for i in range(4)] for k in range(16)], dtype=torch.float64)
"""The 16 block states, shape (16, 4)."""


def block_states(units: Tensor, size: int) -> Tensor:
    """Block-state index of every 2×2 block.

    Parameters
    ----------
    units : Tensor of shape (..., L*L)
        {0,1} units, row-major L×L lattice.
    size : int
        ``L`` (even).

    Returns
    -------
    Tensor of int64, shape (..., (L/2)**2), values 0..15.
    """
    if size % 2 or units.shape[-1] != size * size:
        raise ValueError(f"need an even L and L² units, got L={size}, {units.shape[-1]} units")
    half = size // 2
    x = units.reshape(*units.shape[:-1], half, 2, half, 2).to(torch.int64)
    k = (
        x[..., :, 0, :, 0]
        + 2 * x[..., :, 0, :, 1]
        + 4 * x[..., :, 1, :, 0]
        + 8 * x[..., :, 1, :, 1]
    )
    return k.reshape(*units.shape[:-1], half * half)


def block_histogram(units: Tensor, size: int) -> Tensor:
    """Counts of the 16 block states over all blocks of all configurations, shape (16,)."""
    return torch.bincount(block_states(units, size).flatten(), minlength=16).to(torch.float64)


@dataclass(frozen=True)
class BlockRBMFit:
    """Result of :func:`fit_block_rbm`.

    Attributes
    ----------
    weights : Tensor of shape (4,)
    hidden_bias : float
    visible_bias : Tensor of shape (4,)
    nll : float
        Mean negative log-likelihood per block (nats) at the optimum.
    entropy : float
        Entropy of the empirical block histogram (nats); ``nll − entropy`` is the KL divergence.
    mutual_information : float
        ``I(h; v_B)`` in bits under the empirical block distribution and the kernel.
    n_blocks_seen : int
    """

    weights: Tensor
    hidden_bias: float
    visible_bias: Tensor
    nll: float
    entropy: float
    mutual_information: float
    n_blocks_seen: int

    def to_dict(self) -> dict:
        """Plain data."""
        return {
            "weights": self.weights.tolist(),
            "hidden_bias": self.hidden_bias,
            "visible_bias": self.visible_bias.tolist(),
            "nll_per_block": self.nll,
            "entropy_per_block": self.entropy,
            "kl_per_block": self.nll - self.entropy,
            "mutual_information_bits": self.mutual_information,
            "n_blocks_seen": self.n_blocks_seen,
        }


def kernel_mutual_information(p_block: Tensor, p_up: Tensor) -> float:
    """``I(h; v_B)`` in bits for block distribution ``p_block`` (16,) and ``P(h=1|v_B)`` (16,)."""
    p_block = p_block / p_block.sum()

    def h2(p: Tensor) -> Tensor:
        p = p.clamp(1e-300, 1.0)
        q = (1 - p).clamp(1e-300, 1.0)
        return -(p * p.log2() + q * q.log2()) * ((p > 1e-300) & (q > 1e-300))

    marginal = (p_block * p_up).sum()
    return float(h2(marginal) - (p_block * h2(p_up)).sum())


def fit_block_rbm(
    hist: Tensor,
    *,
    max_iter: int = 500,
    init_scale: float = 0.1,
    generator: torch.Generator | None = None,
) -> BlockRBMFit:
    """Maximum-likelihood fit of the local RBM to a histogram of 2×2 block states.

    Parameters
    ----------
    hist : Tensor of shape (16,)
        Counts (or probabilities) of the block states.
    max_iter : int
        L-BFGS iterations.
    init_scale : float
        Standard deviation of the random initial parameters.
    generator : torch.Generator, optional
        Seeds the initial parameters.

    Returns
    -------
    BlockRBMFit
    """
    if hist.shape != (16,) or (hist < 0).any() or hist.sum() <= 0:
        raise ValueError("hist must be 16 non-negative counts with a positive sum")
    p = hist.to(torch.float64) / hist.sum()
    theta = (init_scale * torch.randn(9, generator=generator, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.LBFGS(
        [theta],
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
    )

    def nll() -> Tensor:
        w, a, b = theta[:4], theta[4], theta[5:]
        log_w = _STATES @ b + F.softplus(_STATES @ w + a)
        return -(p * (log_w - torch.logsumexp(log_w, 0))).sum()

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nll()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        loss = float(nll())
        w, a, b = theta[:4].clone(), float(theta[4]), theta[5:].clone()
        if float(torch.sigmoid(w.sum() + a)) < 0.5:
            # gauge: h ↔ 1 − h leaves the visible marginal unchanged (b → b + w, w → −w,
            # a → −a); pick the orientation in which an all-up block maps to an up block
            w, a, b = -w, -a, b + w
        ent = float(-(p[p > 0] * p[p > 0].log()).sum())
        mi = kernel_mutual_information(p, torch.sigmoid(_STATES @ w + a))
    return BlockRBMFit(w, a, b, loss, ent, mi, int(hist.sum()))


class BlockRBMKernel:
    """The hidden conditional of the local RBM as a 2×2 → 1 blocking kernel.

    Parameters
    ----------
    size : int
        Linear size ``L`` of the input lattice (even).
    weights : Tensor of shape (4,)
    hidden_bias : float
    """

    def __init__(self, size: int, weights: Tensor, hidden_bias: float) -> None:
        if size < 2 or size % 2:
            raise ValueError(f"2×2 blocking needs an even lattice size >= 2, got {size}")
        if weights.shape != (4,):
            raise ValueError(f"weights must have shape (4,), got {tuple(weights.shape)}")
        self.size = int(size)
        self.n_in, self.n_out = self.size**2, (self.size // 2) ** 2
        self.weights = weights.to(torch.float64)
        self.hidden_bias = float(hidden_bias)
        self._table = torch.sigmoid(_STATES @ self.weights + self.hidden_bias)

    def __repr__(self) -> str:
        return f"BlockRBMKernel(size={self.size}, w={self.weights.tolist()}, a={self.hidden_bias})"

    def prob(self, prev: Tensor) -> Tensor:
        """``P(block unit = 1 | prev)``, shape (..., (L/2)**2), float64."""
        return self._table.to(prev.device)[block_states(prev, self.size)]

    def sample(self, prev: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Block units drawn from the RBM conditional.

        Parameters
        ----------
        prev : Tensor of shape (..., L*L)
        generator : torch.Generator or None

        Returns
        -------
        Tensor of shape (..., (L/2)**2), dtype of ``prev``.
        """
        p = self.prob(prev)
        u = torch.rand(p.shape, generator=generator, device=prev.device, dtype=torch.float64)
        return (u < p).to(prev.dtype)


def majority_table() -> Tensor:
    """``P(h=1 | block state)`` of the 2×2 majority rule with random tie-break, shape (16,)."""
    c = _STATES.sum(1)
    return (c > 2).to(torch.float64) + 0.5 * (c == 2).to(torch.float64)

