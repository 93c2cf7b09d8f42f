"""Jackknife-replicate solves for large operator sets: conditioning certified, not diagonalised.

:func:`rgaudit.rg.solve.solve_replicates` computes every replicate's eigenvalues to decide
whether its condition number exceeds ``max_cond``. For ``m`` operators that is one symmetric
eigenvalue problem (``≈ 4/3·m³``, half of it memory-bound) per replicate — at ``m = 1000`` more
than the solve itself (issue 16). The decision needs only an inequality:
``cond(C) ≤ max_cond`` holds whenever ``λ_min(C) ≥ u / max_cond`` for an upper bound ``u ≥ λ_max``,
and ``λ_min(C) > τ`` holds exactly when ``C − τI`` has a Cholesky factor. So each replicate gets
one Cholesky factorisation of ``C_r − (u_r/max_cond) I`` (``m³/3``) with
``u_r = min(‖C_r‖_F, ‖C_r‖_∞) ≥ λ_max``; only replicates that this does not certify (rare:
condition numbers within a factor ``√m`` of ``max_cond``) get their eigenvalues computed as
before. The solves themselves are the same LU solves, so the numbers are the same as
:func:`~rgaudit.rg.solve.solve_replicates` whenever the decisions agree, and the decisions agree
whenever a replicate is certified (certified ⇒ ``cond ≤ max_cond`` ⇒ not ill).

Up to :data:`EXACT_COND_MAX` kept operators every replicate's eigenvalues are computed, exactly
as before. A replicate whose kept operators are all constant (``C_r = 0``: their only
fluctuations fell in the left-out block) is regularised with the largest replicate's scale and
gives ``T_r = 0`` instead of a singular-matrix crash (the plain path crashed there on a
784-500-500-10 network).

The price: a certified replicate's condition number is not computed, so
``max_cond_replicates`` is the largest *computed* one (``nan`` — ``None`` in JSON — when every
replicate was certified), and ``SolveInfo`` says which.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from rgaudit.rg.solve import SolveInfo, solve_replicates

Tensor = torch.Tensor

#: Kept operators up to which replicate eigenvalues are computed exactly (cheap there).
EXACT_COND_MAX = 256


def solve_replicates_certified(c: Tensor, d: Tensor, info: SolveInfo, *,
                               max_cond: float = 1e10) -> tuple[Tensor, SolveInfo]:
    """Drop-in for :func:`~rgaudit.rg.solve.solve_replicates` that avoids most eigenvalues.

    Parameters
    ----------
    c : Tensor of shape (n_rep, m, m)
    d : Tensor of shape (n_rep, m, p)
    info : SolveInfo
        Diagnostics of the full-sample solve (its ``kept`` and ``lam`` are reused).
    max_cond : float

    Returns
    -------
    x : Tensor of shape (n_rep, m_kept, p)
    info : SolveInfo
        ``n_replicates_regularised`` filled in; ``max_cond_replicates`` is the largest computed
        replicate condition number (``nan`` when all were certified ≤ ``max_cond``).
    """
    kept = info.kept.to(c.device)
    m = int(kept.numel())
    if info.lam > 0:   # regularised full sample: every replicate gets its λ, no check is made
        return solve_replicates(c, d, info, max_cond=max_cond)
    full = m == c.shape[-1]
    ck = c if full else c[:, kept][:, :, kept]
    dk = d if full else d[:, kept]
    n_rep = ck.shape[0]
    eye = torch.eye(m, dtype=ck.dtype, device=ck.device)
    cond_r = torch.full((n_rep,), float("nan"), dtype=ck.dtype, device=ck.device)
    for r in range(n_rep):
        cr = ck[r]
        if m > EXACT_COND_MAX:   # small sets: exact eigenvalues are cheap, compute them
            up = torch.minimum(torch.linalg.matrix_norm(cr), cr.abs().sum(-1).amax())
            tau = float(up) / max_cond
            _, status = torch.linalg.cholesky_ex(cr - tau * eye)
        if m <= EXACT_COND_MAX or int(status) != 0:   # the exact condition number decides
            ev = torch.linalg.eigvalsh(cr)
            lo, hi = ev[0], ev[-1].clamp_min(1e-300)
            cond_r[r] = hi / lo if lo > 0 else float("inf")
    ill = ~torch.isnan(cond_r) & ~(cond_r <= max_cond)
    # one replicate at a time: LU workspace of one m×m matrix, not of the whole stack
    x = torch.empty(dk.shape, dtype=dk.dtype, device=dk.device)
    status = torch.zeros(n_rep, dtype=torch.int32, device=ck.device)
    for r in range(n_rep):
        x[r], status[r] = torch.linalg.solve_ex(ck[r], dk[r])
    bad = ill | (status != 0) | ~torch.isfinite(x).flatten(1).all(1)
    if bool(bad.any()):
        lam_r = torch.diagonal(ck, dim1=-2, dim2=-1).mean(-1) / max_cond
        # A replicate in which every kept operator is constant (its only fluctuations fell in
        # the left-out block; seen on saturated 784-input networks) has C_r = 0 and λ_r = 0:
        # borrow the largest replicate's scale (its D_r is 0 too, so T_r = 0, not a crash).
        scale = lam_r.max()
        lam_r = torch.where(lam_r > 0, lam_r, scale if scale > 0 else 1.0 / max_cond)
        for r in torch.nonzero(bad).flatten().tolist():
            x[r] = torch.linalg.solve(ck[r] + lam_r[r] * eye, dk[r])
    computed = cond_r[~torch.isnan(cond_r)]
    worst = float(computed.max()) if computed.numel() else float("nan")
    return x, replace(info, n_replicates_regularised=int(bad.sum()), max_cond_replicates=worst)
