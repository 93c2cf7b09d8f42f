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

from rgaudit.fisher.factored import FactoredFIM
from rgaudit.fisher.first_layer import dg1_dx_analytic, operator_subsets, subsets_from_names
from rgaudit.rg.moments import jackknife_stderr

if TYPE_CHECKING:
    from rgaudit.rg.mcrg import LayerPair, MCRGResult

Tensor = torch.Tensor

__all__ = ["ChainFIM", "FactoredFIM", "chain_fim", "chain_fim_jackknife", "chain_jacobian",
           "chain_quality", "fim_from_mcrg", "subsets_from_names"]


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
    d, m_out = J.shape[-1], ms[-1]
    right = sum(ms[k + 1] * ms[k] * d for k in range(len(Ts)))
    left = sum(m_out * ms[k + 1] * ms[k] for k in range(len(Ts) - 1)) + m_out * ms[0] * d
    if left < right:
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


def chain_quality(pairs: Sequence[LayerPair]) -> dict[str, Any]:
    """What a chain FIM built from MCRG pairs rests on (plain data for its ``meta``).

    Parameters
    ----------
    pairs : sequence of rgaudit.rg.mcrg.LayerPair
        The pairs of the chain, in the order they are applied.

    Returns
    -------
    dict
        ``max_cond_threshold`` (:data:`rgaudit.rg.solve.MAX_COND` unless overridden);
        per pair (lists in chain order, inner lists per batch element): ``dropped_next`` and
        ``dropped_prev`` (operator indices dropped as constant), ``regularised``,
        ``replicates_regularised`` (jackknife replicates regularised on their own),
        ``unestimated`` (collapsed entries of ``T``); ``n_unestimated`` (total) and
        ``rests_on_unestimated``: True when any factor has unestimated entries, in which case
        the FIM and its error bar rest on entries the samples do not determine.
    """
    from rgaudit.rg.solve import MAX_COND

    q = [p.quality() for p in pairs]
    n_unest = sum(sum(x["unestimated"]) for x in q)
    return {
        "max_cond_threshold": MAX_COND,
        "dropped_next": [x["dropped_next"] for x in q],
        "dropped_prev": [x["dropped_prev"] for x in q],
        "regularised": [x["regularised"] for x in q],
        "replicates_regularised": [x["replicates_regularised"] for x in q],
        "unestimated": [x["unestimated"] for x in q],
        "n_unestimated": int(n_unest),
        "rests_on_unestimated": bool(n_unest),
    }


def fim_from_mcrg(result: MCRGResult, W1: Tensor, *, meta: dict[str, Any] | None = None,
                  factored: bool = False) -> ChainFIM:
    """Chain FIM from the RG engine's upward :class:`~rgaudit.rg.mcrg.MCRGResult`.

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
    Ts = [p.T for p in pairs]
    c_out = pairs[-1].C_next
    reps = [list(p.T_replicates) for p in pairs]
    out = chain_fim_jackknife(dg1, Ts, c_out, Ts_reps=reps,
                              c_out_reps=list(pairs[-1].C_next_replicates), factored=factored)
    info = {"bases": [len(p.names_prev) for p in pairs] + [len(pairs[-1].names_next)],
            "n_samples": int(result.n_samples), "n_blocks": int(result.n_blocks),
            **chain_quality(pairs),
            "any_regularised": [bool(p.any_regularised) for p in pairs],
            "max_cond": [float(p.max_cond) for p in pairs], **(meta or {})}
    return ChainFIM(out.fim, out.stderr, out.replicates, info, out.factors)
