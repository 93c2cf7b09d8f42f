"""2×2 majority-rule blocking with random tie-break, as a stochastic kernel.

The kernel has the interface of an RBM layer's up-sampling (DESIGN.md, "a blocking kernel and an
RBM layer expose the same small interface"): ``sample(prev, generator) -> next`` on flattened
{0,1} units, so the MCRG engine runs on it without special cases.

Convention: unit ``h ∈ {0,1}`` is spin ``s = 2h − 1``. A block of four spins with sum > 0 becomes
``+1``, sum < 0 becomes ``−1``, sum = 0 (two up, two down) becomes ``±1`` with probability ½ each.
Blocks are the non-overlapping squares ``(2i..2i+1, 2j..2j+1)`` of the row-major L×L lattice.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class MajorityRuleKernel:
    """2×2 majority rule with random tie-break on an L×L lattice.

    Parameters
    ----------
    size : int
        Linear size ``L`` of the input lattice (even, at least 2).

    Attributes
    ----------
    n_in : int
        ``L²`` input units.
    n_out : int
        ``(L/2)²`` output units.
    """

    def __init__(self, size: int) -> None:
        if size < 2 or size % 2:
            raise ValueError(f"2×2 blocking needs an even lattice size >= 2, got {size}")
        self.size = int(size)
        self.n_in = self.size * self.size
        self.n_out = (self.size // 2) ** 2

    def __repr__(self) -> str:
        return f"MajorityRuleKernel(size={self.size})"

    def block_counts(self, prev: Tensor) -> Tensor:
        """Number of up spins in every 2×2 block.

        Parameters
        ----------
        prev : Tensor of shape (..., L*L)
            {0,1} units.

        Returns
        -------
        Tensor of shape (..., (L/2)**2), values 0..4, dtype of ``prev`` (float) or int16.
        """
        if prev.shape[-1] != self.n_in:
            raise ValueError(
                f"expected {self.n_in} = {self.size}² units in the last dimension, "
                f"got {prev.shape[-1]}"
            )
        half = self.size // 2
        x = prev.reshape(*prev.shape[:-1], half, 2, half, 2)
        if not x.is_floating_point():
            x = x.to(torch.int16)
        return x.sum(dim=(-3, -1)).reshape(*prev.shape[:-1], half * half)

    def sample(self, prev: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Block spins of ``prev``.

        Parameters
        ----------
        prev : Tensor of shape (..., L*L)
            {0,1} units.
        generator : torch.Generator or None
            Source of the tie-break coins (must live on ``prev.device``).

        Returns
        -------
        Tensor of shape (..., (L/2)**2)
            {0,1} block units, dtype of ``prev``.
        """
        counts = self.block_counts(prev)
        coin = torch.rand(counts.shape, generator=generator, device=prev.device) < 0.5
        out = (counts > 2) | ((counts == 2) & coin)
        return out.to(prev.dtype)

    def prob(self, prev: Tensor) -> Tensor:
        """``P(block unit = 1 | prev)``: 1, 0 or ½, shape (..., (L/2)**2), float64."""
        counts = self.block_counts(prev).to(torch.float64)
        return (counts > 2).to(torch.float64) + 0.5 * (counts == 2).to(torch.float64)
