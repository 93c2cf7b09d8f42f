"""The fields every estimate of one layer pair carries, exact or sampled.

:class:`rgaudit.rg.exact.ExactPair` (exact enumeration) and :class:`rgaudit.rg.mcrg.LayerPair`
(Monte Carlo) both extend :class:`PairMoments`, so the two estimates of ``T = C⁻¹D`` and its
moments are declared once and compared field by field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass
class PairMoments:
    """``T = C_next⁻¹ D`` and the moments it is solved from.

    Attributes
    ----------
    T : Tensor of shape (*batch, m_next, m_prev)
        Full size; rows of constant next operators and columns of constant prev operators are 0.
    C_next : Tensor of shape (*batch, m_next, m_next)
        ``Cov(O(h_{i+1}))``.
    C_prev : Tensor of shape (*batch, m_prev, m_prev)
        ``Cov(O(h_i))``.
    D : Tensor of shape (*batch, m_next, m_prev)
        ``Cov(O(h_{i+1}), O(h_i))``.
    mean_next, mean_prev : Tensor of shape (*batch, m)
        Operator means.
    """

    T: Tensor
    C_next: Tensor
    C_prev: Tensor
    D: Tensor
    mean_next: Tensor
    mean_prev: Tensor
