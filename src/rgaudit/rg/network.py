"""What the RG engine needs of a network: two structural types (``typing.Protocol``).

:class:`rgaudit.nets.deep_rbm.DeepRBM` and its layers :class:`rgaudit.nets.rbm.RBM` satisfy them;
so does any stack of binary stochastic layers with the same few members, without inheriting
from anything. They let ``rg/`` be typed without importing ``nets/`` (``rg`` stays a leaf of the
import graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

import torch

Tensor = torch.Tensor


class StochasticLayer(Protocol):
    """One binary stochastic layer ``t(h | v) = Π_j σ(±(W v + a)_j)`` and its reverse.

    Attributes
    ----------
    W : Tensor of shape (n_out, n_in)
    a : Tensor of shape (n_out,)
        Upper (hidden) biases.
    b : Tensor of shape (n_in,)
        Lower (visible) biases.
    n_in, n_out : int
    """

    @property
    def W(self) -> Tensor: ...

    @property
    def a(self) -> Tensor: ...

    @property
    def b(self) -> Tensor: ...

    @property
    def n_in(self) -> int: ...

    @property
    def n_out(self) -> int: ...

    def logits_up(self, v: Tensor) -> Tensor:
        """``W v + a``; (..., n_in) → (..., n_out)."""
        ...

    def sample_up(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``h ~ t(· | v)``; (..., n_in) → (..., n_out)."""
        ...

    def sample_down(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``v ~ t(· | h)``; (..., n_out) → (..., n_in)."""
        ...


class LayerStack(Protocol):
    """A chain of :class:`StochasticLayer` ``t_1 … t_N`` (widths ``n_0 … n_N``)."""

    @property
    def widths(self) -> Sequence[int]: ...

    @property
    def depth(self) -> int: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def layer(self, k: int) -> StochasticLayer:
        """The layer ``t_k`` (1-based)."""
        ...

    def sample_up(self, x: Tensor, n_samples: int, generator: torch.Generator | None = None,
                  *, upto: int | None = None) -> list[Tensor]:
        """``n_samples`` upward chains per input, positions ``0..upto``; each (n, s, n_j)."""
        ...

    def to(self, device: torch.device) -> Self:
        """Move to ``device`` (``mcrg_network`` calls it on a deep copy only)."""
        ...
