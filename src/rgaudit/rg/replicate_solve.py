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

Factored replicates (the default of :mod:`rgaudit.rg.mcrg`, issue 16): :func:`factor_replicates`
and :func:`factor_replicate_stream` factor each ``C_r`` once (Cholesky) and use the factor both
for a randomised conditioning certificate (:func:`_inverse_norm_bound`, wrong with probability
``1e-10``; the rigorous certificate above is the fallback) and for the solve, which
:class:`FactoredReplicates` performs only when ``T_r`` is asked for (or applies ``T_r`` to a thin
matrix without forming it). The certified LU path above stays as the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch

from rgaudit.rg.solve import SolveInfo, replicate_lambda, solve_replicates

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
        lam_r = replicate_lambda(torch.diagonal(ck, dim1=-2, dim2=-1).mean(-1), max_cond)
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
    d_reps : Tensor of shape (n_rep, nb, m, p), or callable
        Right-hand sides (referenced, not copied), or ``d_reps(r) -> Tensor (nb, m, p)``
        forming replicate ``r`` on request (then ``shape`` is required).
    col_mask : Tensor of shape (nb, p), bool, optional
        Columns whose solution is set to exactly 0 (constant operators of the other layer);
        ``C⁻¹ (D ∘ M) = (C⁻¹ D) ∘ M`` column by column, so ``d_reps`` need not be masked.
    shape : tuple (n_rep, nb, m, p), optional
    """

    def __init__(self, d_reps: Tensor | Callable[[int], Tensor], col_mask: Tensor | None = None,
                 *, shape: tuple[int, int, int, int] | None = None) -> None:
        if isinstance(d_reps, Tensor):
            tensor = d_reps
            self._d: Callable[[int], Tensor] = lambda r: tensor[r]
            n_rep, nb, m, p = tensor.shape
            self.shape = (int(n_rep), int(nb), int(m), int(p))
        else:
            if shape is None:
                raise ValueError("a callable d_reps needs shape=(n_rep, nb, m, p)")
            self._d = d_reps
            self.shape = tuple(int(v) for v in shape)  # type: ignore[assignment]
        self.col_mask = col_mask
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

    def _needs_rhs(self, r: int) -> bool:
        return any(fac is not None and r not in solved for _, fac, solved in self._parts.values())

    @property
    def has_factors(self) -> bool:
        """Whether some replicate is still a factor (forming ``dense()`` then costs solves)."""
        return self._dense is None and any(fac is not None for _, fac, _ in
                                           self._parts.values())

    def dense(self) -> Tensor:
        """All solutions, shape (n_rep, nb, m, p), rows of dropped operators 0 (cached)."""
        if self._dense is None:
            out = self._each_replicate((self.shape[-2], self.shape[-1]), lambda dr, fac, r, b:
                                       torch.cholesky_solve(dr, fac), lambda x, r, b: x)
            self._dense = self._masked(out)
            self._parts = {}
        return self._dense

    def _each_replicate(self, tail: tuple[int, int],
                        factored: Callable[[Tensor, Tensor, int, int], Tensor],
                        solved: Callable[[Tensor, int, int], Tensor], *,
                        rows: bool = True) -> Tensor:
        """One result per replicate ``r`` and batch element ``b``, shape (n_rep, nb, *tail).

        ``factored(D_r[kept], L_r, r, b)`` for a replicate kept as a Cholesky factor,
        ``solved(X_r[kept], r, b)`` for a stored solution. With ``rows`` the result fills the
        kept rows of ``out[r, b]`` (the other rows, and every frozen element, stay 0);
        otherwise all of ``out[r, b]``.
        """
        n_rep, nb = self.shape[0], self.shape[1]
        out: Tensor | None = None
        for r in range(n_rep):
            dr = self._d(r) if self._needs_rhs(r) else None
            for b, (kept, fac, done) in self._parts.items():
                xr = done.get(r)
                if xr is None:
                    assert fac is not None and dr is not None
                    y = factored(dr[b, kept], fac[r], r, b)
                else:
                    y = solved(xr, r, b)
                if out is None:
                    out = torch.zeros(n_rep, nb, *tail, dtype=y.dtype, device=y.device)
                if rows:
                    out[r, b, kept] = y
                else:
                    out[r, b] = y
        if out is None:            # every element frozen
            out = torch.zeros(n_rep, nb, *tail, dtype=torch.float64)
        return out

    def _masked(self, out: Tensor) -> Tensor:
        if self.col_mask is None or bool(self.col_mask.all()):
            return out
        return torch.where(self.col_mask.to(out.device)[None, :, None, :], out,
                           torch.zeros((), dtype=out.dtype, device=out.device))

    def _per_replicate(self, x: Tensor, axis: int, size: int, shape: str) -> Tensor:
        """``x`` as (n_rep, nb, ·, ·) float64 (a shared (nb, ·, ·) is broadcast), checked."""
        n_rep, nb = self.shape[0], self.shape[1]
        if x.dim() == 3:
            x = x.unsqueeze(0).expand(n_rep, *x.shape)
        if x.dim() != 4 or tuple(x.shape[:2]) != (n_rep, nb) or x.shape[axis] != size:
            raise ValueError(f"got shape {tuple(x.shape)}; expected {shape} or (n_rep, {shape[1:]} "
                             f"with n_rep={n_rep}, nb={nb}")
        return x.to(torch.float64)

    def apply(self, x: Tensor) -> Tensor:
        """``X_r @ x`` for every replicate without keeping ``X_r``.

        ``X_r x = C_r⁻¹ (D_r x)``: ``O(m² q + m p q)`` per replicate for ``q`` columns; when
        ``q > p`` forming ``X_r`` is cheaper (``O(m² p + m p q)``): it is formed, applied and
        dropped, one replicate at a time (never all of them).

        Parameters
        ----------
        x : Tensor of shape (nb, p, q) or (n_rep, nb, p, q)
            The same matrix for every replicate, or one per replicate.

        Returns
        -------
        Tensor of shape (n_rep, nb, m, q)
        """
        m, p = self.shape[2], self.shape[3]
        x = self._per_replicate(x, 2, p, f"(nb, p={p}, q)")
        if self.col_mask is not None:
            x = torch.where(self.col_mask.to(x.device)[None, :, :, None], x,
                            torch.zeros((), dtype=x.dtype, device=x.device))
        if self._dense is not None:
            return self._dense @ x.to(self._dense.device)
        wide = x.shape[-1] > p    # then forming X_r (one at a time, dropped) is cheaper

        def factored(dr: Tensor, fac: Tensor, r: int, b: int) -> Tensor:
            xk = x[r, b].to(dr.device)
            if wide:
                return torch.cholesky_solve(dr, fac) @ xk
            return torch.cholesky_solve(dr @ xk, fac)

        return self._each_replicate((m, x.shape[-1]), factored,
                                    lambda xr, r, b: xr @ x[r, b].to(xr.device))

    def apply_left(self, y: Tensor) -> Tensor:
        """``y @ X_r`` for every replicate: ``(C_r⁻¹ yᵀ)ᵀ D_r`` (``C_r`` symmetric), as
        :meth:`apply` from the other side (``X_r`` formed, applied and dropped when ``q > p``).

        Parameters
        ----------
        y : Tensor of shape (nb, q, m) or (n_rep, nb, q, m)

        Returns
        -------
        Tensor of shape (n_rep, nb, q, p)
        """
        m, p = self.shape[2], self.shape[3]
        y = self._per_replicate(y, 3, m, f"(nb, q, m={m})")
        if self._dense is not None:
            return y.to(self._dense.device) @ self._dense
        parts = self._parts
        tall = y.shape[-2] > p

        def factored(dr: Tensor, fac: Tensor, r: int, b: int) -> Tensor:
            yk = y[r, b][:, parts[b][0]].to(dr.device)
            if tall:
                return yk @ torch.cholesky_solve(dr, fac)
            return torch.cholesky_solve(yk.transpose(-1, -2), fac).transpose(-1, -2) @ dr

        out = self._each_replicate(
            (y.shape[-2], p), factored,
            lambda xr, r, b: y[r, b][:, parts[b][0]].to(xr.device) @ xr, rows=False)
        return self._masked(out)


def factor_certified(c: Tensor, max_cond: float) -> tuple[Tensor | None, float, bool]:
    """Cholesky factor of ``c`` and its condition number, certified or exact.

    One factorisation ``C = L Lᵀ`` (``m³/3``) and the bound ``cond(C) ≤ u · b`` with
    ``u = min(trace C, ‖C‖_F) ≥ λ_max`` and ``b ≥ ‖C⁻¹‖₂`` the randomised bound of
    :func:`_inverse_norm_bound` (wrong with probability ≤ 1e-10). When it certifies
    ``cond ≤ max_cond`` the bound is returned (an upper bound, typically within a factor
    ``8–30`` of the exact value), else the exact eigenvalue ratio (``4/3·m³`` more).

    Parameters
    ----------
    c : Tensor of shape (m, m)
        Symmetric.
    max_cond : float

    Returns
    -------
    factor : Tensor of shape (m, m) or None
        Lower Cholesky factor (None when ``c`` is not numerically positive definite).
    cond : float
        The certified bound (``≤ max_cond``) or the exact condition number.
    is_bound : bool
        Whether ``cond`` is the bound.
    """
    fac, status = torch.linalg.cholesky_ex(c)
    if int(status) == 0:
        bound = _inverse_norm_bound(fac)
        up = min(float(torch.diagonal(c).sum()), float(torch.linalg.matrix_norm(c)))
        if up * bound <= max_cond:
            return fac, up * bound, True
    ev = torch.linalg.eigvalsh(c)
    lo, hi = float(ev[0]), max(float(ev[-1]), 1e-300)
    return (fac if int(status) == 0 else None), (hi / lo if lo > 0 else float("inf")), False


def _factor_one(cr: Tensor, max_cond: float,
                out: Tensor | None = None) -> tuple[Tensor | None, float]:
    """Factor one replicate and decide its conditioning (see :func:`factor_replicates`).

    ``out`` (m, m), optional, receives the factor (no copy).

    Returns
    -------
    factor : Tensor of shape (m, m) or None
        Lower Cholesky factor, ``None`` when ``C_r`` is not numerically positive definite.
    cond : float
        ``nan`` when certified ``≤ max_cond``; otherwise the exact (eigenvalue) condition number.
    """
    if out is None:
        fac, status = torch.linalg.cholesky_ex(cr)
    else:
        fac, status = torch.linalg.cholesky_ex(
            cr, out=(out, torch.empty((), dtype=torch.int32, device=cr.device)))
    if int(status) == 0:
        bound = _inverse_norm_bound(fac)
        up = float(torch.diagonal(cr).sum())               # trace ≥ λ_max (C is PD here), O(m)
        if up * bound <= max_cond:
            return fac, float("nan")
        up = min(up, float(torch.linalg.matrix_norm(cr)))  # ‖C‖_F ≥ λ_max, one pass
        if up * bound <= max_cond:
            return fac, float("nan")
        up = min(up, float(cr.abs().sum(-1).amax()))       # the rigorous certificate, as before
        eye = torch.eye(cr.shape[-1], dtype=cr.dtype, device=cr.device)
        if int(torch.linalg.cholesky_ex(cr - (up / max_cond) * eye)[1]) == 0:
            return fac, float("nan")
    ev = torch.linalg.eigvalsh(cr)
    lo, hi = float(ev[0]), max(float(ev[-1]), 1e-300)
    return (fac if int(status) == 0 else None), (hi / lo if lo > 0 else float("inf"))


def _regularised_solves(bad: list[int], lu_only: list[int], diag_mean: Tensor, max_cond: float,
                        system: Callable[[int], tuple[Tensor, Tensor]]) -> tuple[
                            dict[int, Tensor], int]:
    """Eager solves of the replicates that cannot be left to a factor (as the certified path).

    ``lu_only``: not factorable yet well-conditioned, solved by LU (a failure makes it bad);
    ``bad``: regularised with ``λ_r = mean diag(C_r)/max_cond`` (a replicate with ``C_r = 0``
    borrows the largest replicate's scale). ``system(r)`` gives ``(C_r, D_r)`` on the kept
    operators. Returns the solutions and the number regularised.
    """
    solved: dict[int, Tensor] = {}
    bad = list(bad)
    for r in lu_only:
        cr, dr = system(r)
        xr, st = torch.linalg.solve_ex(cr, dr)
        if int(st) != 0 or not bool(torch.isfinite(xr).all()):
            bad.append(r)
        else:
            solved[r] = xr
    if bad:
        lam_r = replicate_lambda(diag_mean, max_cond)
        for r in sorted(bad):
            cr, dr = system(r)
            eye = torch.eye(cr.shape[-1], dtype=cr.dtype, device=cr.device)
            solved[r] = torch.linalg.solve(cr + lam_r[r] * eye, dr)
    return solved, len(bad)


def factor_replicates(c: Tensor, d: Tensor, info: SolveInfo, *,
                      max_cond: float = 1e10) -> tuple[Tensor, dict[int, Tensor], SolveInfo]:
    """Cholesky-factor every replicate ``C_r`` once: its certificate and its (lazy) solve.

    The same decisions as :func:`solve_replicates_certified`, from one factorisation per
    replicate instead of a certificate factorisation of ``C_r − τ I`` plus an LU solve:

    1. ``C_r = L_r L_rᵀ`` (``m³/3``). If it fails, ``C_r`` is not numerically positive
       definite: the exact condition number decides, as before.
    2. Certified well-conditioned when ``u_r · b_r ≤ max_cond`` (``u_r`` = the trace, else
       ``‖C_r‖_F``: both ``≥ λ_max``) with
       ``b_r ≥ ‖C_r⁻¹‖₂`` the randomised bound of :func:`_inverse_norm_bound` (ten solves with
       ``L_r``, ``O(m²)``; a bound except with probability ``1e-10`` per replicate, for any
       matrix).
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
        Lower Cholesky factors (entries of replicates in ``solved`` are meaningless).
    solved : dict of int to Tensor of shape (m_kept, p)
        Replicates solved now (regularised).
    info : SolveInfo
        ``n_replicates_regularised`` filled in; ``max_cond_replicates`` is the largest computed
        replicate condition number (``nan`` when all were certified).
    """
    if info.lam > 0:
        raise ValueError("a regularised full sample is solved eagerly (solve_replicates)")
    kept = info.kept.to(c.device)
    full = int(kept.numel()) == c.shape[-1]
    ck = c if full else c[:, kept][:, :, kept]
    dk = d if full else d[:, kept]
    state = _FactorState(ck.shape[0], ck.shape[-1], ck.dtype, ck.device)
    for r in range(ck.shape[0]):
        state.add(r, ck[r], max_cond)
    solved, n_bad = _regularised_solves(state.bad, state.lu_only, state.diag_mean, max_cond,
                                        lambda r: (ck[r], dk[r]))
    return state.factors, solved, replace(info, n_replicates_regularised=n_bad,
                                          max_cond_replicates=state.worst())


class _FactorState:
    """Factors and decisions of one batch element's replicates, filled one replicate at a time."""

    def __init__(self, n_rep: int, m: int, dtype: torch.dtype, device: torch.device) -> None:
        self.factors = torch.empty(n_rep, m, m, dtype=dtype, device=device)
        self.diag_mean = torch.zeros(n_rep, dtype=dtype, device=device)
        self.conds: list[float] = []
        self.bad: list[int] = []
        self.lu_only: list[int] = []

    def add(self, r: int, cr: Tensor, max_cond: float) -> None:
        self.diag_mean[r] = torch.diagonal(cr).mean()
        fac, cond = _factor_one(cr, max_cond, out=self.factors[r])
        if not math.isnan(cond):
            self.conds.append(cond)
            if not cond <= max_cond:
                self.bad.append(r)
            elif fac is None:
                self.lu_only.append(r)

    def worst(self) -> float:
        return max(self.conds) if self.conds else float("nan")


def factor_replicate_stream(
    c: Tensor, d: Tensor, infos: list[SolveInfo], n_rep: int,
    c_rep: Callable[[int], Tensor], d_rep: Callable[[int], Tensor], *,
    var_tol: float = 1e-12, max_cond: float = 1e10, col_mask: Tensor | None = None,
) -> tuple[FactoredReplicates, list[SolveInfo]]:
    """Replicate solves of a batch, each replicate's ``C_r`` formed, factored and dropped.

    Elements keeping more than :data:`EXACT_COND_MAX` operators whose full sample was not
    regularised are factored (:func:`factor_replicates`, one replicate at a time: ``C_r`` is
    formed by ``c_rep(r)`` and released, only its factor is kept); every other element is
    solved eagerly by :func:`~rgaudit.rg.solve.solve_batch` on its own stacked replicates
    (the reference path, same numbers). Frozen elements (no kept operator) give 0.

    Parameters
    ----------
    c : Tensor of shape (nb, m, m)
    d : Tensor of shape (nb, m, p)
        Full-sample moments (only the eagerly solved elements use them again).
    infos : list of SolveInfo
        Full-sample solves of :func:`~rgaudit.rg.solve.solve_batch`.
    n_rep : int
    c_rep, d_rep : callable
        ``c_rep(r) -> Tensor (nb, m, m)`` and ``d_rep(r) -> Tensor (nb, m, p)``: replicate
        ``r``'s moments, formed on request (:class:`~rgaudit.rg.moments.BlockReplicates`).
    var_tol, max_cond : float
    col_mask : Tensor of shape (nb, p), bool, optional
        Solution columns set to 0 (constant operators of the other layer).

    Returns
    -------
    FactoredReplicates
    infos : list of SolveInfo
        With ``n_replicates_regularised`` and ``max_cond_replicates`` filled in.
    """
    from rgaudit.rg.solve import solve_batch

    nb, m, p = d.shape
    lazy = FactoredReplicates(d_rep, col_mask, shape=(n_rep, nb, m, p))
    infos = list(infos)
    large = [b for b, i in enumerate(infos)
             if i.kept.numel() > EXACT_COND_MAX and i.lam == 0]
    eager = [b for b, i in enumerate(infos) if i.kept.numel() and b not in large]
    kept = {b: infos[b].kept.to(c.device) for b in large}
    states = {b: _FactorState(n_rep, int(kept[b].numel()), c.dtype, c.device) for b in large}
    c_e = {b: torch.empty(n_rep, m, m, dtype=c.dtype, device=c.device) for b in eager}
    d_e = {b: torch.empty(n_rep, m, p, dtype=d.dtype, device=d.device) for b in eager}
    for r in range(n_rep):
        cr = c_rep(r)
        for b in large:
            k = kept[b]
            crb = cr[b] if k.numel() == m else cr[b][k][:, k]
            states[b].add(r, crb, max_cond)
        if eager:
            dr = d_rep(r)
            for b in eager:
                c_e[b][r] = cr[b]
                d_e[b][r] = dr[b]
        del cr
    for b in large:
        st, k = states[b], kept[b]

        def system(r: int, b: int = b, k: Tensor = k) -> tuple[Tensor, Tensor]:
            return c_rep(r)[b][k][:, k], d_rep(r)[b][k]

        solved, n_bad = _regularised_solves(st.bad, st.lu_only, st.diag_mean, max_cond, system)
        lazy.set_factored(b, k, st.factors, solved)
        infos[b] = replace(infos[b], n_replicates_regularised=n_bad,
                           max_cond_replicates=st.worst())
    for b in eager:
        _, xr, (info_b,) = solve_batch(c[b:b + 1], d[b:b + 1], c_reps=c_e[b][:, None],
                                       d_reps=d_e[b][:, None], var_tol=var_tol,
                                       max_cond=max_cond, frozen_ok=True)
        assert isinstance(xr, Tensor)
        k = info_b.kept.to(c.device)
        lazy.set_solved(b, k, xr[:, 0, k])
        infos[b] = info_b
    return lazy, infos
