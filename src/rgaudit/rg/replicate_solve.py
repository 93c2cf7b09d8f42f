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

import math
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
        x[r], status[r] = torch.linalg.solve_ex(ck[r], dk[r])   # type: ignore[call-overload]
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


# -- factored (lazy) replicates ---------------------------------------------------------------
#: Gaussian test vectors of the randomised conditioning bound (failure probability
#: ``CERT_ALPHA ** -CERT_VECTORS`` per replicate, whatever the matrix).
CERT_VECTORS = 10
#: Over-estimation factor ``α`` of the randomised bound (Halko, Martinsson & Tropp 2011, Lemma 4.1).
CERT_ALPHA = 10.0
#: Fixed seed of the test vectors: the certificate, hence every result, is deterministic.
CERT_SEED = 16


def _inverse_norm_bound(chol: Tensor) -> float:
    """Upper bound on ``‖C⁻¹‖₂`` from a Cholesky factor of ``C``, failing with prob ≤ 1e-10.

    Halko, Martinsson & Tropp (SIAM Review 53, 2011), Lemma 4.1: for any matrix ``B`` and
    ``r`` independent standard Gaussian vectors ``ω_i``,
    ``‖B‖ ≤ α √(2/π) max_i ‖B ω_i‖`` except with probability ``α^(−r)``. With ``B = C⁻¹``
    (``r`` solves with the factor, ``O(r m²)``), ``α = 10``, ``r = 10``: probability ``1e-10``.
    The test vectors come from a generator with the fixed seed :data:`CERT_SEED`.
    """
    m = chol.shape[-1]
    gen = torch.Generator(device=chol.device).manual_seed(CERT_SEED)
    omega = torch.randn(m, CERT_VECTORS, generator=gen, dtype=chol.dtype, device=chol.device)
    w = torch.cholesky_solve(omega, chol)
    top = float(torch.linalg.vector_norm(w, dim=0).max())
    return CERT_ALPHA * math.sqrt(2.0 / math.pi) * top if math.isfinite(top) else math.inf


class FactoredReplicates:
    """Jackknife replicate solutions ``X_r = C_r⁻¹ D_r`` kept as Cholesky factors until asked.

    The consumers of a stability matrix's replicates mostly need them applied to thin matrices
    (:meth:`apply`: ``O(m² q)`` per replicate for ``q`` columns) or not at all; the full
    ``m × p`` solutions (:meth:`dense`, two triangular solves with ``p`` right-hand sides,
    ``2 m² p`` flops per replicate) are formed on first request and cached (the factors are
    then freed). Memory: the factors, ``n_rep · m_kept²`` float64, as much as the solutions.

    Elements solved eagerly (few operators, regularised full sample, replicates that needed a
    regulariser of their own) are stored as solutions.

    Parameters
    ----------
    d_reps : Tensor of shape (n_rep, nb, m, p)
        Right-hand sides (referenced, not copied).
    col_mask : Tensor of shape (nb, p), bool, optional
        Columns whose solution is set to exactly 0 (constant operators of the other layer);
        ``C⁻¹ (D ∘ M) = (C⁻¹ D) ∘ M`` column by column, so ``d_reps`` need not be masked.
    """

    def __init__(self, d_reps: Tensor, col_mask: Tensor | None = None) -> None:
        self.d_reps = d_reps
        self.col_mask = col_mask
        self.shape = tuple(d_reps.shape)
        # per batch element: (kept, factors (n_rep,k,k) or None, {r: solution (k,p)})
        self._parts: dict[int, tuple[Tensor, Tensor | None, dict[int, Tensor]]] = {}
        self._dense: Tensor | None = None

    @property
    def n_rep(self) -> int:
        return int(self.shape[0])

    def set_solved(self, b: int, kept: Tensor, x: Tensor) -> None:
        """Element ``b`` solved eagerly: ``x`` of shape (n_rep, k, p) on the kept rows."""
        self._parts[b] = (kept, None, {r: x[r] for r in range(x.shape[0])})

    def set_factored(self, b: int, kept: Tensor, factors: Tensor,
                     solved: dict[int, Tensor]) -> None:
        """Element ``b``: lower Cholesky factors (n_rep, k, k); ``solved`` overrides replicates."""
        self._parts[b] = (kept, factors, dict(solved))

    @property
    def materialised(self) -> bool:
        """Whether the dense solutions exist (then factors are gone)."""
        return self._dense is not None

    def dense(self) -> Tensor:
        """All solutions, shape (n_rep, nb, m, p), rows of dropped operators 0 (cached)."""
        if self._dense is None:
            n_rep, nb, m, p = self.shape
            d = self.d_reps
            out = torch.zeros(n_rep, nb, m, p, dtype=d.dtype, device=d.device)
            for b, (kept, fac, solved) in self._parts.items():
                for r in range(n_rep):
                    xr = solved.get(r)
                    if xr is None:
                        assert fac is not None
                        xr = torch.cholesky_solve(d[r, b, kept], fac[r])
                    out[r, b, kept] = xr
            self._dense = self._masked(out)
            self._parts = {}
        return self._dense

    def _masked(self, out: Tensor) -> Tensor:
        if self.col_mask is None or bool(self.col_mask.all()):
            return out
        return torch.where(self.col_mask.to(out.device)[None, :, None, :], out,
                           torch.zeros((), dtype=out.dtype, device=out.device))

    def apply(self, x: Tensor) -> Tensor:
        """``X_r @ x`` for every replicate without forming ``X_r``.

        Parameters
        ----------
        x : Tensor of shape (nb, p, q) or (n_rep, nb, p, q)
            The same matrix for every replicate, or one per replicate.

        Returns
        -------
        Tensor of shape (n_rep, nb, m, q)
        """
        n_rep, nb, m, p = self.shape
        if x.dim() == 3:
            x = x.unsqueeze(0).expand(n_rep, *x.shape)
        if tuple(x.shape[:3]) != (n_rep, nb, p):
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (nb={nb}, p={p}, q) or "
                             f"(n_rep={n_rep}, nb, p, q)")
        d = self.d_reps
        x = x.to(device=d.device, dtype=d.dtype)
        if self.col_mask is not None:
            x = torch.where(self.col_mask.to(d.device)[None, :, :, None], x,
                            torch.zeros((), dtype=x.dtype, device=x.device))
        if self._dense is not None:
            return self._dense @ x
        out = torch.zeros(n_rep, nb, m, x.shape[-1], dtype=d.dtype, device=d.device)
        for b, (kept, fac, solved) in self._parts.items():
            for r in range(n_rep):
                xr = solved.get(r)
                if xr is None:
                    assert fac is not None
                    out[r, b, kept] = torch.cholesky_solve(d[r, b, kept] @ x[r, b], fac[r])
                else:
                    out[r, b, kept] = xr @ x[r, b]
        return out


def factor_replicates(c: Tensor, d: Tensor, info: SolveInfo, *,
                      max_cond: float = 1e10) -> tuple[Tensor, dict[int, Tensor], SolveInfo]:
    """Cholesky-factor every replicate ``C_r`` once: its certificate and its (lazy) solve.

    The same decisions as :func:`solve_replicates_certified`, from one factorisation per
    replicate instead of a certificate factorisation of ``C_r − τ I`` plus an LU solve:

    1. ``C_r = L_r L_rᵀ`` (``m³/3``). If it fails, ``C_r`` is not numerically positive
       definite: the exact condition number decides, as before.
    2. Certified well-conditioned when ``u_r · b_r ≤ max_cond`` with
       ``u_r = min(‖C_r‖_F, ‖C_r‖_∞) ≥ λ_max`` and ``b_r ≥ ‖C_r⁻¹‖₂`` the randomised bound of
       :func:`_inverse_norm_bound` (ten solves with ``L_r``, ``O(m²)``; a bound except with
       probability ``1e-10`` per replicate, for any matrix).
    3. Otherwise the rigorous certificate of :func:`solve_replicates_certified` (Cholesky of
       ``C_r − (u_r/max_cond) I``), then the exact condition number.

    Replicates found ill-conditioned get their own regulariser and are solved now, exactly as
    in :func:`solve_replicates_certified`; every other ``T_r = L_r⁻ᵀ L_r⁻¹ D_r`` is left to
    :class:`FactoredReplicates`. Results differ from the LU solves of the certified path by
    rounding only (both backward stable: ``≲ cond · ε`` relative).

    Parameters
    ----------
    c : Tensor of shape (n_rep, m, m)
    d : Tensor of shape (n_rep, m, p)
    info : SolveInfo
        Full-sample diagnostics (``kept``; ``lam`` must be 0: a regularised full sample is
        solved eagerly by :func:`~rgaudit.rg.solve.solve_replicates`).
    max_cond : float

    Returns
    -------
    factors : Tensor of shape (n_rep, m_kept, m_kept)
        Lower Cholesky factors (rows of replicates in ``solved`` are meaningless).
    solved : dict of int to Tensor of shape (m_kept, p)
        Replicates solved now (regularised).
    info : SolveInfo
        ``n_replicates_regularised`` filled in; ``max_cond_replicates`` is the largest computed
        replicate condition number (``nan`` when all were certified).
    """
    if info.lam > 0:
        raise ValueError("a regularised full sample is solved eagerly (solve_replicates)")
    kept = info.kept.to(c.device)
    m = int(kept.numel())
    full = m == c.shape[-1]
    ck = c if full else c[:, kept][:, :, kept]
    dk = d if full else d[:, kept]
    n_rep = ck.shape[0]
    eye = torch.eye(m, dtype=ck.dtype, device=ck.device)
    factors = torch.empty(n_rep, m, m, dtype=ck.dtype, device=ck.device)
    cond_r = torch.full((n_rep,), float("nan"), dtype=ck.dtype, device=ck.device)
    bad = torch.zeros(n_rep, dtype=torch.bool)
    lu_only: list[int] = []
    for r in range(n_rep):
        cr = ck[r]
        fac, status = torch.linalg.cholesky_ex(cr)
        ok = int(status) == 0
        certified = False
        if ok:
            factors[r] = fac
            up = float(torch.minimum(torch.linalg.matrix_norm(cr), cr.abs().sum(-1).amax()))
            certified = up * _inverse_norm_bound(fac) <= max_cond
            if not certified:
                _, st = torch.linalg.cholesky_ex(cr - (up / max_cond) * eye)
                certified = int(st) == 0
        if not certified:
            ev = torch.linalg.eigvalsh(cr)
            lo, hi = ev[0], ev[-1].clamp_min(1e-300)
            cond_r[r] = hi / lo if lo > 0 else float("inf")
            bad[r] = not bool(cond_r[r] <= max_cond)
            if not bad[r] and not ok:   # not factorable yet well-conditioned: LU, as before
                lu_only.append(r)
    solved: dict[int, Tensor] = {}
    for r in lu_only:
        xr, st = torch.linalg.solve_ex(ck[r], dk[r])
        if int(st) != 0 or not bool(torch.isfinite(xr).all()):
            bad[r] = True
        else:
            solved[r] = xr
    if bool(bad.any()):
        lam_r = torch.diagonal(ck, dim1=-2, dim2=-1).mean(-1) / max_cond
        scale = lam_r.max()     # as solve_replicates_certified: C_r = 0 borrows the largest scale
        lam_r = torch.where(lam_r > 0, lam_r, scale if scale > 0 else 1.0 / max_cond)
        for r in torch.nonzero(bad).flatten().tolist():
            solved[r] = torch.linalg.solve(ck[r] + lam_r[r] * eye, dk[r])
    computed = cond_r[~torch.isnan(cond_r)]
    worst = float(computed.max()) if computed.numel() else float("nan")
    return factors, solved, replace(info, n_replicates_regularised=int(bad.sum()),
                                    max_cond_replicates=worst)
