"""Jackknife replicates of the RG-chain Jacobian and FIM without forming every ``T_r`` (issue 16).

:func:`rgaudit.fisher.chain.chain_fim_jackknife` multiplies the full replicate matrices
``T_r^(k)`` (``LayerPair.T_replicates``), which forces every factored replicate solve to be
completed: ``2 m³`` flops per replicate and pair. The chain only needs each ``T_r`` applied to
the ``d`` columns of the Jacobian below it, ``T_r J = C_r⁻¹ (D_r J)`` — ``4 m² d`` flops from the
replicate's Cholesky factor (:meth:`rgaudit.rg.mcrg.LayerPair.apply_replicates`), cheaper whenever
``d < m``. The replicates equal those of ``chain_fim_jackknife`` to rounding
(``tests/test_mcrg_factored.py``).

The product is associated as :func:`rgaudit.fisher.chain.chain_jacobian` associates the
full-sample one (:func:`left_association_cheaper`): from the input side
(``T_r J = C_r⁻¹ (D_r J)``, :meth:`~rgaudit.rg.mcrg.LayerPair.apply_replicates`) or, when the
output layer has few operators (the class layer of a classifier), from the output side
(``y T_r = (C_r⁻¹ yᵀ)ᵀ D_r`` with ``m_N`` rows,
:meth:`~rgaudit.rg.mcrg.LayerPair.apply_replicates_left`): then no pair costs more than
``O(m_N m²)`` per replicate. :func:`rgaudit.fisher.chain.fim_from_mcrg` uses it.

Note: a pair's ``quality()`` (unestimated entries) needs every entry's jackknife spread and so
still forms ``T_r``; ``fim_from_mcrg`` checks it only where the replicates are formed already
(its ``unestimated`` option).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

Tensor = torch.Tensor


def left_association_cheaper(ms: Sequence[int], d: int) -> bool:
    """Whether ``T^(N) ⋯ T^(2) G`` (``G`` of shape ``(m_1, d)``) costs fewer multiply-adds
    associated from the left (``T^(N) T^(N−1)`` first) than from the right.

    Parameters
    ----------
    ms : sequence of int
        ``m_1, …, m_N``: operators of every chain position.
    d : int
        Columns of ``G`` (inputs).
    """
    n = len(ms) - 1
    m_out = ms[-1]
    right = sum(ms[k + 1] * ms[k] * d for k in range(n))
    left = sum(m_out * ms[k + 1] * ms[k] for k in range(n - 1)) + m_out * ms[0] * d
    return left < right


def chain_jacobian_replicates(dg1_dx: Tensor, pairs: Sequence[Any]) -> Tensor:
    """``J_r = T_r^(N) ⋯ T_r^(2) ∂g^(1)/∂x`` for every jackknife replicate ``r``.

    Parameters
    ----------
    dg1_dx : Tensor of shape (*batch, m_1, d)
        Shared by all replicates (the analytic ``−W_1`` has none).
    pairs : sequence of rgaudit.rg.mcrg.LayerPair
        The pairs ``1 → 2, …, N−1 → N`` in chain order, from the same jackknife blocks.

    Returns
    -------
    Tensor of shape (n_rep, *batch, m_N, d), float64 on the CPU
    """
    if not pairs:
        raise ValueError("no pair: the chain needs at least one stability matrix")
    counts = {int(p.n_replicates) for p in pairs}
    if len(counts) != 1:
        raise ValueError(f"pairs have different numbers of replicates {sorted(counts)}: they "
                         "must come from the same jackknife blocks")
    J = dg1_dx.to(torch.float64)
    rows = J.shape[-2]
    for i, p in enumerate(pairs):
        if rows != p.T.shape[-1]:
            raise ValueError(f"pair {i} has {p.T.shape[-1]} columns but the factor below it "
                             f"has {rows} rows")
        rows = p.T.shape[-2]
    ms = [J.shape[-2]] + [p.T.shape[-2] for p in pairs]
    if len(pairs) > 1 and left_association_cheaper(ms, J.shape[-1]):
        top = pairs[-1]
        if top.replicates_formed:
            P = top.T_replicates.to(torch.float64)
        else:
            P = top.apply_replicates_left(torch.eye(ms[-1], dtype=torch.float64))
        for p in reversed(pairs[:-1]):
            P = p.apply_replicates_left(P)
        return P @ J
    for p in pairs:
        J = p.apply_replicates(J)
    return J


def chain_fim_replicates(dg1_dx: Tensor, pairs: Sequence[Any]) -> Tensor:
    """Replicates ``F_r = J_rᵀ C_r^(N) J_r`` of the chain FIM (symmetrised, as ``chain_fim``).

    Parameters
    ----------
    dg1_dx : Tensor of shape (*batch, m_1, d)
    pairs : sequence of rgaudit.rg.mcrg.LayerPair

    Returns
    -------
    Tensor of shape (n_rep, *batch, d, d)
        Stack them with the full-sample FIM in
        :func:`rgaudit.rg.moments.jackknife_stderr` for the error bar.
    """
    J = chain_jacobian_replicates(dg1_dx, pairs)
    c = pairs[-1].C_next_replicates.to(torch.float64)
    F = J.transpose(-1, -2) @ c @ J
    return 0.5 * (F + F.transpose(-1, -2))
