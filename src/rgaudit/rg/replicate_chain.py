"""Jackknife replicates of the RG-chain Jacobian and FIM without forming every ``T_r`` (issue 16).

:func:`rgaudit.fisher.chain.chain_fim_jackknife` multiplies the full replicate matrices
``T_r^(k)`` (``LayerPair.T_replicates``), which forces every factored replicate solve to be
completed: ``2 m³`` flops per replicate and pair. The chain only needs each ``T_r`` applied to
the ``d`` columns of the Jacobian below it, ``T_r J = C_r⁻¹ (D_r J)`` — ``4 m² d`` flops from the
replicate's Cholesky factor (:meth:`rgaudit.rg.mcrg.LayerPair.apply_replicates`), cheaper whenever
``d < m``. The replicates equal those of ``chain_fim_jackknife`` to rounding
(``tests/test_mcrg_factored.py``).

Note: a pair's ``quality()`` (unestimated entries) needs every entry's jackknife spread and so
still forms ``T_r``; a caller that wants the saving must not ask for it on large pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

Tensor = torch.Tensor


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
    for i, p in enumerate(pairs):
        if J.shape[-2] != p.T.shape[-1]:
            raise ValueError(f"pair {i} has {p.T.shape[-1]} columns but the factor below it "
                             f"has {J.shape[-2]} rows")
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
