"""Input Fisher information by the RG chain rule (vulnerability eq. 27–28).

``J = T^(N) ⋯ T^(2) ∂g^(1)/∂x`` maps input directions to couplings of the output layer's effective
Hamiltonian, and ``F = Jᵀ C^(N) J`` with ``C^(N)`` the operator covariance at the output layer.

With the complete operator basis and exact expectations this is the exact FIM of ``q_N(y|x)``;
with a truncated basis (singles, selected pairs) it is an approximation (DESIGN.md fact 2).

:func:`chain_fim` is a pure function of tensors. :func:`chain_fim_jackknife` propagates
leave-one-block-out replicates of every factor to a jackknife error bar, as a dense stack of
``d × d`` replicates or (``factored=True``, the audit's choice) as their factors ``(J_b, C_b)``
(:mod:`rgaudit.fisher.factored`: rank ≤ ``m_N``, exact spectra from ``m_N × m_N`` problems).
:func:`fim_from_mcrg` glues it to the RG engine's :class:`~rgaudit.rg.mcrg.MCRGResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from rgaudit.fisher.factored import FactoredFIM, factored_dense
from rgaudit.fisher.first_layer import dg1_dx_analytic, operator_subsets, subsets_from_names
from rgaudit.rg.moments import jackknife_stderr
from rgaudit.rg.replicate_chain import chain_jacobian_replicates, left_association_cheaper

if TYPE_CHECKING:
    from rgaudit.rg.mcrg import LayerPair, MCRGResult

Tensor = torch.Tensor

__all__ = ["ChainFIM", "FactoredFIM", "chain_fim", "chain_fim_jackknife", "chain_jacobian",
           "chain_fim_pairs", "chain_quality", "fim_from_mcrg", "subsets_from_names"]


def chain_jacobian(dg1_dx: Tensor, Ts: Sequence[Tensor]) -> Tensor:
    """``J = T^(N) ⋯ T^(2) ∂g^(1)/∂x`` (eq. 28).

    The product is associated in the cheaper order: from the right (``T^(2) ∂g^(1)/∂x`` first,
    every product ``d`` columns wide) or, when the output layer has few operators, from the
    left (``T^(N) T^(N−1)`` first, every product ``m_N`` rows high; at 784-500-500-10 with
    ``pairs:64`` six times fewer flops). Both give the same matrix up to rounding.

    Parameters
    ----------
    dg1_dx : Tensor of shape (*batch, m_1, d)
        Derivative of the first layer's couplings with respect to the input.
    Ts : sequence of Tensor
        ``[T^(2), …, T^(N)]``; ``T^(k+1)`` has shape (*batch, m_{k+1}, m_k). Empty for N = 1.

    Returns
    -------
    Tensor of shape (*batch, m_N, d)
    """
    J = dg1_dx.to(torch.float64)
    rows = J.shape[-2]
    for i, T in enumerate(Ts):
        if T.shape[-1] != rows:
            raise ValueError(
                f"stability matrix {i} (T^({i + 2})) has shape {tuple(T.shape)}; it must have "
                f"{rows} columns to follow a factor with {rows} rows"
            )
        rows = T.shape[-2]
    Ts = [T.to(device=J.device, dtype=torch.float64) for T in Ts]
    if not Ts:
        return J
    ms = [J.shape[-2]] + [T.shape[-2] for T in Ts]     # m_1, …, m_N
    if left_association_cheaper(ms, J.shape[-1]):
        P = Ts[-1]
        for T in reversed(Ts[:-1]):
            P = P @ T
        return P @ J
    for T in Ts:
        J = T @ J
    return J


def chain_fim(dg1_dx: Tensor, Ts: Sequence[Tensor], c_out: Tensor) -> Tensor:
    """Input FIM by the chain rule, ``F = Jᵀ C^(N) J`` (eq. 27–28).

    Parameters
    ----------
    dg1_dx : Tensor of shape (*batch, m_1, d)
    Ts : sequence of Tensor
        ``[T^(2), …, T^(N)]``, ``T^(k+1)`` of shape (*batch, m_{k+1}, m_k).
    c_out : Tensor of shape (*batch, m_N, m_N)
        Operator covariance at the output layer.

    Returns
    -------
    Tensor of shape (*batch, d, d)
        Symmetric, float64.
    """
    J = chain_jacobian(dg1_dx, Ts)
    c = c_out.to(device=J.device, dtype=torch.float64)
    if c.shape[-1] != J.shape[-2] or c.shape[-2] != J.shape[-2]:
        raise ValueError(f"output covariance has shape {tuple(c.shape)} but the chain ends with "
                         f"{J.shape[-2]} operators")
    F = J.transpose(-1, -2) @ c @ J
    return 0.5 * (F + F.transpose(-1, -2))


@dataclass(frozen=True)
class ChainFIM:
    """A chain-rule FIM with its blocked-jackknife error.

    The replicates come in one of two storages: dense (``replicates``, ``stderr``; the default)
    or factored (``factors``: each replicate as ``J_bᵀ C_b J_b``, ``17·r·d`` numbers per input
    instead of ``17·d²``; ``stderr`` and ``replicates`` are then None, see
    :meth:`replicate_eigvalsh` and :meth:`FactoredFIM.entry_stderr
    <rgaudit.fisher.factored.FactoredFIM.entry_stderr>`).

    Attributes
    ----------
    fim : Tensor of shape (*batch, d, d)
    stderr : Tensor of shape (*batch, d, d) or None
        Entrywise jackknife standard error (None without replicates or when factored).
    replicates : Tensor of shape (n_blocks, *batch, d, d) or None
    meta : dict
        Basis, samples, solve diagnostics (plain data).
    factors : FactoredFIM or None
        The replicates as factors (``factored=True``).
    """

    fim: Tensor
    stderr: Tensor | None = None
    replicates: Tensor | None = None
    meta: dict[str, Any] | None = None
    factors: FactoredFIM | None = None

    def replicate_eigvalsh(self) -> Tensor | None:
        """Descending eigenvalues of every replicate, shape (n_blocks, *batch, d), or None.

        From the factors when present (an ``r × r`` problem each), else from the dense
        replicates (symmetrised, as :func:`rgaudit.fisher.eig.top_eigenpairs` does).
        """
        if self.factors is not None:
            return self.factors.eigvalsh()
        if self.replicates is None:
            return None
        R = self.replicates.to(torch.float64)
        return torch.linalg.eigvalsh(0.5 * (R + R.transpose(-1, -2))).flip(-1)


def chain_fim_jackknife(
    dg1_dx: Tensor,
    Ts: Sequence[Tensor],
    c_out: Tensor,
    *,
    Ts_reps: Sequence[Sequence[Tensor]] | None = None,
    c_out_reps: Sequence[Tensor] | None = None,
    dg1_dx_reps: Sequence[Tensor] | None = None,
    factored: bool = False,
) -> ChainFIM:
    """Chain FIM plus jackknife propagation from leave-one-block-out replicates.

    Parameters
    ----------
    dg1_dx, Ts, c_out
        As in :func:`chain_fim` (all-sample estimates).
    Ts_reps : sequence of sequence of Tensor, optional
        ``Ts_reps[k][r]`` is replicate ``r`` of ``Ts[k]``. All factors must share the same
        replicates (the same blocks left out), so that their correlations propagate.
    c_out_reps : sequence of Tensor, optional
        Replicates of ``c_out``.
    dg1_dx_reps : sequence of Tensor, optional
        Replicates of ``dg1_dx`` (the analytic ``−W_1`` has none).
    factored : bool, default False
        Keep the replicates as factors ``(J_b, C_b)`` (:class:`FactoredFIM`, no ``d × d``
        matrix per replicate, no entrywise ``stderr``) instead of a dense stack.

    Returns
    -------
    ChainFIM
    """
    fim = chain_fim(dg1_dx, Ts, c_out)
    counts = {len(r) for r in (*(Ts_reps or ()), c_out_reps or (), dg1_dx_reps or ()) if r}
    if not counts:
        return ChainFIM(fim)
    if len(counts) != 1:
        raise ValueError(f"replicate lists differ in length {sorted(counts)}: every factor must "
                         "come from the same jackknife blocks")
    n = counts.pop()
    if n < 2:
        raise ValueError("need at least 2 jackknife replicates")
    reps, Js, Cs = [], [], []
    for r in range(n):
        g = dg1_dx_reps[r] if dg1_dx_reps else dg1_dx
        ts = [Ts_reps[k][r] if Ts_reps else Ts[k] for k in range(len(Ts))]
        c = c_out_reps[r] if c_out_reps else c_out
        if factored:
            J = chain_jacobian(g, ts)
            Js.append(J)
            Cs.append(c.to(device=J.device, dtype=torch.float64).expand(
                *J.shape[:-2], J.shape[-2], J.shape[-2]))
        else:
            reps.append(chain_fim(g, ts, c))
    if factored:
        return ChainFIM(fim, None, None, None, FactoredFIM(torch.stack(Js), torch.stack(Cs)))
    R = torch.stack(reps)
    return ChainFIM(fim, jackknife_stderr(R), R)


def chain_quality(pairs: Sequence[LayerPair], *,
                  unestimated: bool | str = True) -> dict[str, Any]:
    """What a chain FIM built from MCRG pairs rests on (plain data for its ``meta``).

    Parameters
    ----------
    pairs : sequence of rgaudit.rg.mcrg.LayerPair
        The pairs of the chain, in the order they are applied.
    unestimated : bool or "auto", default True
        Count the unestimated entries of every pair (True: forms every replicate ``T_r``, the
        ``2 m³`` solves the factored path defers), of none (False), or only of the pairs whose
        replicates are formed already (``"auto"``: :attr:`LayerPair.replicates_formed
        <rgaudit.rg.mcrg.LayerPair.replicates_formed>`; pairs above
        :data:`rgaudit.rg.replicate_solve.EXACT_COND_MAX` kept operators are then not checked).

    Returns
    -------
    dict
        ``max_cond_threshold`` (:data:`rgaudit.rg.solve.MAX_COND` unless overridden);
        per pair (lists in chain order, inner lists per batch element): ``dropped_next`` and
        ``dropped_prev`` (operator indices dropped as constant), ``regularised``,
        ``replicates_regularised`` (jackknife replicates regularised on their own),
        ``unestimated`` (collapsed entries of ``T``; ``None`` for a pair not checked) and
        ``unestimated_checked`` (bool per pair); ``n_unestimated`` (total over the checked
        pairs) and ``rests_on_unestimated``: True when a checked factor has unestimated
        entries (the FIM and its error bar then rest on entries the samples do not determine),
        False when every pair was checked and none has, ``None`` when none was found but some
        pair was not checked.
    """
    from rgaudit.rg.solve import MAX_COND

    if unestimated not in (True, False, "auto"):
        raise ValueError(f"unestimated must be True, False or 'auto', got {unestimated!r}")
    checked = [unestimated is True or (unestimated == "auto" and p.replicates_formed)
               for p in pairs]
    counts = [p.unestimated_counts() if c else None for p, c in zip(pairs, checked, strict=True)]
    n_unest = sum(sum(c) for c in counts if c is not None)
    d = [p.dropped() for p in pairs]
    return {
        "max_cond_threshold": MAX_COND,
        "dropped_next": [x["next"] for x in d],
        "dropped_prev": [x["prev"] for x in d],
        "regularised": [[bool(i.regularised) for i in p.solve_info] for p in pairs],
        "replicates_regularised": [[int(i.n_replicates_regularised) for i in p.solve_info]
                                   for p in pairs],
        "unestimated": counts,
        "unestimated_checked": checked,
        "n_unestimated": int(n_unest),
        "rests_on_unestimated": True if n_unest else (False if all(checked) else None),
    }


def fim_from_mcrg(result: MCRGResult, W1: Tensor, *, meta: dict[str, Any] | None = None,
                  factored: bool = False, unestimated: bool | str = "auto") -> ChainFIM:
    """Chain FIM from the RG engine's upward :class:`~rgaudit.rg.mcrg.MCRGResult`.

    The jackknife replicates ``J_r = T_r^(N) ⋯ T_r^(2) ∂g^(1)/∂x`` are built by
    :func:`rgaudit.rg.replicate_chain.chain_jacobian_replicates`, which applies each pair's
    replicates to the thin chain (from the factored replicates' Cholesky factors) instead of
    forming every ``m × m`` replicate ``T_r``; the numbers are those of
    :func:`chain_fim_jackknife` on the formed ``T_r`` up to rounding
    (``tests/test_fisher_chain_lazy.py``: 1e-10).

    Parameters
    ----------
    result : rgaudit.rg.mcrg.MCRGResult
        From :func:`rgaudit.rg.mcrg.mcrg_network` (direction "up") with the pairs
        ``1 → 2, …, N−1 → N`` computed (the default). ``result.layers[i].T`` is ``T^(i+1)``.
    W1 : Tensor of shape (n_1, d)
        First-layer weights; ``∂g^(1)/∂x`` is ``−W_1`` on the singles of layer 1's basis
        (read from the operator names of pair 1).
    meta : dict, optional
        Extra plain data stored with the result.
    factored : bool, default False
        Keep the jackknife replicates as factors (see :func:`chain_fim_jackknife`): the
        audit's storage, ``17·m_N·d`` instead of ``17·d²`` float64 per input.
    unestimated : bool or "auto", default "auto"
        Which pairs' unestimated entries ``meta`` counts (:func:`chain_quality`): by default
        only those whose replicates are formed already, since counting them on a factored
        pair forms every ``T_r``; True counts every pair (the cost of the error bars of every
        entry of ``T``).

    Returns
    -------
    ChainFIM
        FIM of shape (*batch, d, d) with jackknife errors from the shared blocks; ``meta``
        carries :func:`chain_quality` (dropped operators, regularised solves and replicates,
        unestimated entries and ``rests_on_unestimated``).
    """
    n_pos = len(result.layers)
    pairs = [p for p in result.layers[1:] if p is not None]
    if len(pairs) != n_pos - 1:
        missing = [i for i in range(1, n_pos) if result.layers[i] is None]
        raise ValueError(f"MCRG pairs {missing} were not computed; the chain needs 1 → N")
    if getattr(result, "settings", {}).get("direction", "up") != "up":
        raise ValueError("the FIM chain needs an upward (classification) MCRG result")
    if not pairs:
        raise ValueError("a one-layer network has no chain: use the exact/direct FIM")
    first = pairs[0]
    dg1 = dg1_dx_analytic(W1, operator_subsets(getattr(first, "ops_prev", None),
                                               first.names_prev))
    out = chain_fim_pairs(dg1, pairs, factored=factored)
    info = {"bases": [len(p.names_prev) for p in pairs] + [len(pairs[-1].names_next)],
            "n_samples": int(result.n_samples), "n_blocks": int(result.n_blocks),
            **chain_quality(pairs, unestimated=unestimated),
            "any_regularised": [bool(p.any_regularised) for p in pairs],
            "max_cond": [float(p.max_cond) for p in pairs],
            # True where a pair's max_cond is (or includes) a certified upper bound, not the
            # exact eigenvalue ratio (large pairs, rgaudit.rg.solve.solve_batch(certify=True))
            "max_cond_is_bound": [any(i.cond_bound for i in p.solve_info) for p in pairs],
            **(meta or {})}
    return ChainFIM(out.fim, out.stderr, out.replicates, info, out.factors)


def chain_fim_pairs(dg1_dx: Tensor, pairs: Sequence[LayerPair], *,
                    factored: bool = False) -> ChainFIM:
    """Chain FIM and its jackknife replicates from MCRG pairs, no ``T_r`` formed.

    Parameters
    ----------
    dg1_dx : Tensor of shape (*batch, m_1, d)
    pairs : sequence of rgaudit.rg.mcrg.LayerPair
        ``1 → 2, …, N−1 → N`` in chain order, from the same jackknife blocks.
    factored : bool, default False
        As in :func:`chain_fim_jackknife`.

    Returns
    -------
    ChainFIM
        Without ``meta``; ``stderr`` and ``replicates`` (or ``factors``) as
        :func:`chain_fim_jackknife` gives them from the formed replicates.
    """
    fim = chain_fim(dg1_dx, [p.T for p in pairs], pairs[-1].C_next)
    if not pairs[-1].n_replicates:
        return ChainFIM(fim)
    J = chain_jacobian_replicates(dg1_dx, pairs)
    C = pairs[-1].C_next_replicates.to(device=J.device, dtype=torch.float64)
    if factored:
        return ChainFIM(fim, None, None, None, FactoredFIM(J, C))
    R = factored_dense(J, C)
    return ChainFIM(fim, jackknife_stderr(R), R)
