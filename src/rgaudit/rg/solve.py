"""The MCRG solve ``C T = D`` with constant operators dropped and a stated regulariser.

Policy (DESIGN.md, "Ill-conditioned covariances"):

1. An operator whose variance is below ``var_tol`` (relative to the largest variance, or
   absolutely zero) is constant on the samples: its coupling is not identifiable. Such rows of
   ``C`` / ``T`` are dropped and their indices reported.
2. The condition number of the remaining ``C`` is computed and reported.
3. If it exceeds ``max_cond`` (default :data:`MAX_COND`, the ONE threshold of the exact and the
   sampled paths) the solve is Tikhonov-regularised, ``T = (C + λ I)⁻¹ D`` with
   ``λ = trace(C)/m / max_cond``, and flagged ``regularised=True``.
   Never a silent pseudo-inverse, never a NaN.
4. Entries of a sampled ``T`` whose jackknife replicates do not move at all (relative spread below
   :data:`COLLAPSE_RTOL`) are *unestimated* (:func:`unestimated_entries`): an operator value that
   never occurs together with some states of the other layer makes such an entry exactly the same
   in every replicate (usually 0) while its true value is not; its error bar is NaN, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from rgaudit.rg.replicate_solve import FactoredReplicates

Tensor = torch.Tensor

#: The one condition-number threshold above which a solve is regularised, for exact moments
#: (:mod:`rgaudit.rg.exact`, the exact generation chain) and sampled ones (:mod:`rgaudit.rg.mcrg`).
#: 1e10 leaves ~6 significant digits of a float64 solve; sampled covariances are far noisier.
MAX_COND = 1e10

#: Relative jackknife spread (against the largest error bar of the same matrix) below which an
#: entry counts as collapsed/unestimated. Rounding gives ≤ 2e-13 on such entries; the smallest
#: genuine spread measured in the 6-5-5-4 large-weight regime was 1e-3 (docs/design.md).
COLLAPSE_RTOL = 1e-9


@dataclass(frozen=True)
class SolveInfo:
    """Diagnostics of one ``C T = D`` solve.

    Attributes
    ----------
    kept : Tensor of shape (m_kept,)
        Indices of the operators kept (rows of ``C``).
    dropped : Tensor of shape (m_dropped,)
        Indices of operators dropped as constant.
    cond : float
        Condition number of the kept block of ``C``.
    regularised : bool
        Whether the Tikhonov regulariser was applied.
    lam : float
        The regulariser λ (0 when not applied).
    """

    kept: Tensor
    dropped: Tensor
    cond: float
    regularised: bool
    lam: float
    n_replicates_regularised: int = 0
    max_cond_replicates: float = float("nan")
    #: ``cond`` is a certified upper bound (≤ max_cond), not the exact eigenvalue ratio
    #: (``solve_batch(certify=True)`` on large operator sets, issue 16)
    cond_bound: bool = False

    def to_dict(self) -> dict:
        """Plain-data form for JSON results (a condition number of ``inf`` becomes ``None``)."""
        return {
            "n_kept": int(self.kept.numel()),
            "dropped": [int(i) for i in self.dropped.tolist()],
            "cond": float(self.cond) if math.isfinite(self.cond) else None,
            "cond_is_upper_bound": bool(self.cond_bound),
            "regularised": bool(self.regularised),
            "lambda": float(self.lam),
            "n_replicates_regularised": int(self.n_replicates_regularised),
            "max_cond_replicates": (float(self.max_cond_replicates)
                                    if math.isfinite(self.max_cond_replicates) else None),
        }


def constant_operators(c: Tensor, var_tol: float = 1e-12) -> Tensor:
    """Boolean mask of operators with (relatively) zero variance.

    Parameters
    ----------
    c : Tensor of shape (m, m)
        A covariance matrix.
    var_tol : float
        Relative tolerance on the diagonal, against its largest entry.
    """
    d = torch.diagonal(c)
    scale = d.abs().max().clamp_min(1e-300)
    return d <= var_tol * scale


def solve_cov(
    c: Tensor,
    d: Tensor,
    *,
    kept: Tensor | None = None,
    var_tol: float = 1e-12,
    max_cond: float = MAX_COND,
    lam: float | None = None,
) -> tuple[Tensor, SolveInfo]:
    """Solve ``C X = D`` for symmetric positive semi-definite ``C``.

    Parameters
    ----------
    c : Tensor of shape (m, m)
        Covariance of the operators the rows of ``X`` refer to.
    d : Tensor of shape (m, p)
        Right-hand side.
    kept : Tensor of int, optional
        Operators to keep; by default those with non-zero variance. Pass the same ``kept`` to all
        jackknife replicates so their shapes agree.
    var_tol : float
        Relative variance below which an operator counts as constant.
    max_cond : float
        Largest condition number solved without regularisation.
    lam : float, optional
        Use this regulariser instead of deciding from the condition number (jackknife replicates
        reuse the full-sample decision this way). ``regularised`` is then ``lam > 0``.

    Returns
    -------
    x : Tensor of shape (m_kept, p)
        Solution on the kept operators.
    info : SolveInfo
    """
    if c.dim() != 2 or c.shape[0] != c.shape[1] or d.shape[0] != c.shape[0]:
        raise ValueError(f"shapes C {tuple(c.shape)} and D {tuple(d.shape)} do not fit C X = D")
    if kept is None:
        kept = torch.nonzero(~constant_operators(c, var_tol)).flatten()
    dropped_mask = torch.ones(c.shape[0], dtype=torch.bool, device=c.device)
    dropped_mask[kept] = False
    dropped = torch.nonzero(dropped_mask).flatten()
    if kept.numel() == 0:
        raise ValueError(
            "every operator is constant on the samples (saturated units?): nothing to solve; "
            "use more samples or an input where the layer is not saturated"
        )
    ck = c[kept][:, kept]
    dk = d[kept]
    evals = torch.linalg.eigvalsh(ck)
    top = evals[-1].clamp_min(1e-300)
    low = evals[0]
    cond = float("inf") if low <= 0 else float(top / low)
    if lam is None:
        regularised = not cond <= max_cond
        lam = float(torch.diagonal(ck).mean() / max_cond) if regularised else 0.0
    else:
        lam = float(lam)
        regularised = lam > 0
    if regularised:
        ck = ck + lam * torch.eye(ck.shape[0], dtype=ck.dtype, device=ck.device)
    x = torch.linalg.solve(ck, dk)
    return x, SolveInfo(kept.cpu(), dropped.cpu(), cond, regularised, lam)


def solve_replicates(
    c: Tensor, d: Tensor, info: SolveInfo, *, max_cond: float = MAX_COND,
) -> tuple[Tensor, SolveInfo]:
    """Solve ``C_r X_r = D_r`` for a stack of jackknife replicates with a fixed policy.

    Every replicate keeps the operators ``info.kept`` and the regulariser ``info.lam`` of the
    full-sample solve, so that replicate shapes agree and the jackknife measures the spread of
    one estimator. When the full sample was solved without regulariser, each replicate's kept
    block is checked like the full sample: a replicate whose condition number exceeds
    ``max_cond`` (or whose solve fails) is solved with its own regulariser
    ``trace(C_r)/m / max_cond``; such replicates are counted in ``n_replicates_regularised`` and
    the largest replicate condition number is reported as ``max_cond_replicates``.

    Parameters
    ----------
    c : Tensor of shape (n_rep, m, m)
    d : Tensor of shape (n_rep, m, p)
    info : SolveInfo
        Diagnostics of the full-sample solve.
    max_cond : float

    Returns
    -------
    x : Tensor of shape (n_rep, m_kept, p)
    info : SolveInfo
        ``info`` with ``n_replicates_regularised`` and ``max_cond_replicates`` filled in.
    """
    kept = info.kept.to(c.device)
    ck = c[:, kept][:, :, kept]
    dk = d[:, kept]
    eye = torch.eye(ck.shape[-1], dtype=ck.dtype, device=ck.device)
    evals = torch.linalg.eigvalsh(ck)
    top = evals[:, -1].clamp_min(1e-300)
    low = evals[:, 0]
    cond_r = torch.where(low > 0, top / low.clamp_min(1e-300),
                         torch.full_like(low, float("inf")))
    ill = ~(cond_r <= max_cond)
    if info.lam > 0:
        ck = ck + info.lam * eye
        ill = torch.zeros_like(ill)  # the full-sample regulariser is applied to every replicate
    x, status = torch.linalg.solve_ex(ck, dk)
    bad = ill | (status != 0) | ~torch.isfinite(x).flatten(1).all(1)
    if bool(bad.any()):
        lam_r = replicate_lambda(torch.diagonal(ck, dim1=-2, dim2=-1).mean(-1), max_cond)
        x_r = torch.linalg.solve(ck + lam_r[:, None, None] * eye, dk)
        x = torch.where(bad[:, None, None], x_r, x)
    return x, replace(info, n_replicates_regularised=int(bad.sum()),
                      max_cond_replicates=float(cond_r.max()))



def replicate_lambda(diag_mean: Tensor, max_cond: float) -> Tensor:
    """Ridge of the replicates that need one: ``λ_r = trace(C_r)/m / max_cond``.

    A replicate in which every kept operator is constant (its only fluctuations fell in the
    left-out block; seen on saturated 784-input networks) has ``C_r = 0`` and ``λ_r = 0``: it
    borrows the largest replicate's ``λ`` (its ``D_r`` is 0 too, so ``T_r = 0``, not a crash).

    Parameters
    ----------
    diag_mean : Tensor of shape (n_rep, *batch)
        ``trace(C_r)/m`` per replicate (and batch element).
    max_cond : float

    Returns
    -------
    Tensor of shape (n_rep, *batch)
    """
    lam = diag_mean / max_cond
    scale = lam.amax(0, keepdim=True)
    fallback = torch.where(scale > 0, scale, torch.full_like(scale, 1.0 / max_cond))
    return torch.where(lam > 0, lam, fallback.expand_as(lam))


def unestimated_entries(stderr: Tensor, kept_rows: Tensor, kept_cols: Tensor, *,
                        rtol: float = COLLAPSE_RTOL) -> Tensor:
    """Entries of a sampled ``T`` (kept rows × kept columns) whose jackknife spread collapsed.

    In a complete (or near-complete) basis, ``T`` is built from conditional means of the
    previous layer's operators given states of the next one. When an operator value never
    occurs together with some of those states, the entry is the same in every jackknife
    replicate (usually exactly 0, up to rounding) although its true value is not: the samples
    say nothing about it, and its jackknife error is a meaningless 0.

    Parameters
    ----------
    stderr : Tensor of shape (*batch, m_next, m_prev)
        Jackknife standard errors of ``T``.
    kept_rows : Tensor of shape (*batch, m_next), bool
    kept_cols : Tensor of shape (*batch, m_prev), bool

    Returns
    -------
    Tensor of shape (*batch, m_next, m_prev), bool
        True where the entry is unestimated (only inside the kept block; rows and columns of
        dropped operators are reported separately, as ``SolveInfo.dropped``).
    """
    block = kept_rows.unsqueeze(-1) & kept_cols.unsqueeze(-2)
    scale = torch.where(block, stderr, torch.zeros_like(stderr)).flatten(-2).amax(-1)
    thr = (rtol * scale).clamp_min(1e-300)[..., None, None]
    return block & ~(stderr > thr)


def solve_batch(
    c: Tensor,
    d: Tensor,
    *,
    c_reps: Tensor | None = None,
    d_reps: Tensor | None = None,
    var_tol: float = 1e-12,
    max_cond: float = MAX_COND,
    frozen_ok: bool = False,
    replicates: str = "dense",
    certify: bool = False,
) -> tuple[Tensor, Tensor | FactoredReplicates | None, list[SolveInfo]]:
    """The one batched "drop constants → solve → scatter" of every ``C T = D`` in rgaudit.

    Applies :func:`solve_cov` to every batch element (and :func:`solve_replicates` to its
    jackknife replicates) with the same policy and the same results, but batched: elements that
    keep the same operators are solved together, and the solution is scattered back to full
    size with zero rows for dropped (constant) operators.

    Parameters
    ----------
    c : Tensor of shape (nb, m, m)
    d : Tensor of shape (nb, m, p)
    c_reps, d_reps : Tensor of shape (n_rep, nb, m, m) and (n_rep, nb, m, p), optional
        Jackknife replicates; they reuse each element's kept set and regulariser.
    var_tol, max_cond : float
        As in :func:`solve_cov`.
    frozen_ok : bool, default False
        An element whose operators are all constant ("frozen": nothing fluctuates) gets
        ``x = 0`` and a :class:`SolveInfo` with no kept operator and ``cond = nan`` instead of
        raising (the sampled estimator's choice; exact paths keep the error).

    Replicates of an element keeping more than
    :data:`rgaudit.rg.replicate_solve.EXACT_COND_MAX` operators are solved one at a time with
    their conditioning certified by a Cholesky factorisation instead of an eigenvalue problem
    (:func:`rgaudit.rg.replicate_solve.solve_replicates_certified`; same numbers whenever it
    certifies).

    replicates : {"dense", "factored"}, default "dense"
        ``"dense"``: the replicate solutions as one tensor (the reference path). ``"factored"``:
        a :class:`~rgaudit.rg.replicate_solve.FactoredReplicates` in which replicates of
        elements above ``EXACT_COND_MAX`` kept operators whose full sample is not regularised
        are kept as Cholesky factors (:func:`~rgaudit.rg.replicate_solve.factor_replicates`:
        one factorisation per replicate serves as certificate and solve) and solved when asked;
        everything else is solved now, as in ``"dense"``.

    certify : bool, default False
        Elements keeping more than ``EXACT_COND_MAX`` operators: decide the conditioning from
        one Cholesky factorisation and a certified upper bound on the condition number
        (:func:`rgaudit.rg.replicate_solve.factor_certified`), solve with that factor, and
        report the **bound** as ``cond`` (``SolveInfo.cond_bound``); the exact eigenvalue ratio
        is computed only where the bound does not certify ``cond ≤ max_cond``. The same
        regularisation decisions (except with probability 1e-10), solutions equal to rounding.

    Returns
    -------
    x : Tensor of shape (nb, m, p)
        Full-size solutions (rows of dropped operators are 0).
    x_reps : Tensor of shape (n_rep, nb, m, p), FactoredReplicates, or None
    infos : list of SolveInfo, one per batch element
    """
    if c.dim() != 3 or c.shape[-1] != c.shape[-2] or d.shape[:2] != c.shape[:2]:
        raise ValueError(f"shapes C {tuple(c.shape)} and D {tuple(d.shape)} do not fit a batch "
                         "of C X = D")
    if replicates not in ("dense", "factored"):
        raise ValueError(f"replicates must be 'dense' or 'factored', got {replicates!r}")
    from rgaudit.rg.replicate_solve import EXACT_COND_MAX, FactoredReplicates

    nb, m, p = d.shape
    diag = torch.diagonal(c, dim1=-2, dim2=-1)
    keep = diag > var_tol * diag.abs().amax(-1, keepdim=True).clamp_min(1e-300)
    if not frozen_ok and not bool(keep.any(-1).all()):
        raise ValueError(
            "every operator is constant on the samples (saturated units?): nothing to solve; "
            "use more samples or an input where the layer is not saturated"
        )
    x = torch.zeros(nb, m, p, dtype=d.dtype, device=d.device)
    x_r = None
    lazy = None
    if c_reps is not None and d_reps is not None:
        if replicates == "factored":
            lazy = FactoredReplicates(d_reps)
        else:
            x_r = torch.zeros(c_reps.shape[0], nb, m, p, dtype=d_reps.dtype,
                              device=d_reps.device)
    infos: list[SolveInfo | None] = [None] * nb
    groups, inverse = torch.unique(keep, dim=0, return_inverse=True)
    for gi in range(groups.shape[0]):
        idx = torch.nonzero(inverse == gi).flatten()
        kept = torch.nonzero(groups[gi]).flatten()
        dropped = torch.nonzero(~groups[gi]).flatten()
        if kept.numel() == 0:                      # frozen (only with frozen_ok): x = 0
            for b in idx.tolist():
                infos[b] = SolveInfo(kept.cpu(), dropped.cpu(), float("nan"), False, 0.0)
            continue
        ck, dk = _select(c, d, idx, kept)
        xg, cond, reg, lam, bound = _solve_group(ck, dk, max_cond,
                                                 certify and len(kept) > EXACT_COND_MAX)
        x[idx.unsqueeze(-1), kept] = xg
        n_bad = [0] * len(idx)
        cond_rmax = [float("nan")] * len(idx)
        has_reps = (x_r is not None or lazy is not None) and c_reps is not None \
            and d_reps is not None
        if has_reps and len(kept) > EXACT_COND_MAX:
            assert c_reps is not None and d_reps is not None
            n_bad, cond_rmax = _replicates_large(c_reps, d_reps, idx, kept, dropped, cond, reg,
                                                 lam, max_cond, lazy, x_r)
        elif has_reps:
            assert c_reps is not None and d_reps is not None
            xr, n_bad, cond_rmax = _replicates_small(c_reps, d_reps, idx, kept, lam, reg,
                                                     max_cond)
            if lazy is not None:
                for j, b in enumerate(idx.tolist()):
                    lazy.set_solved(b, kept, xr[:, j])
            else:
                assert x_r is not None
                x_r[:, idx.unsqueeze(-1), kept] = xr
        for j, b in enumerate(idx.tolist()):
            infos[b] = SolveInfo(kept.cpu(), dropped.cpu(), float(cond[j]), bool(reg[j]),
                                 float(lam[j]), n_bad[j], cond_rmax[j], bool(bound[j]))
    return x, (lazy if lazy is not None else x_r), [i for i in infos if i is not None]


def _replicates_large(c_reps: Tensor, d_reps: Tensor, idx: Tensor, kept: Tensor,
                      dropped: Tensor, cond: Tensor, reg: Tensor, lam: Tensor, max_cond: float,
                      lazy: FactoredReplicates | None, x_r: Tensor | None
                      ) -> tuple[list[int], list[float]]:
    """Replicates of a group above ``EXACT_COND_MAX`` kept operators, one element and one
    replicate at a time: factored (``lazy``, unregularised full sample) or solved with a
    certified conditioning check; stored in ``lazy`` or ``x_r``. Returns the regularised
    counts and largest computed condition numbers per element."""
    from rgaudit.rg.replicate_solve import factor_replicates, solve_replicates_certified

    n_bad, cond_rmax = [0] * len(idx), [float("nan")] * len(idx)
    for j, b in enumerate(idx.tolist()):
        info_b = SolveInfo(kept.cpu(), dropped.cpu(), float(cond[j]), bool(reg[j]),
                           float(lam[j]))
        if lazy is not None and not bool(reg[j]):
            fac, solved, info_b = factor_replicates(c_reps[:, b], d_reps[:, b], info_b,
                                                    max_cond=max_cond)
            lazy.set_factored(b, kept, fac, solved)
        else:
            xr_b, info_b = solve_replicates_certified(c_reps[:, b], d_reps[:, b], info_b,
                                                      max_cond=max_cond)
            if lazy is not None:
                lazy.set_solved(b, kept, xr_b)
            else:
                assert x_r is not None
                x_r[:, b, kept] = xr_b
        n_bad[j] = info_b.n_replicates_regularised
        cond_rmax[j] = info_b.max_cond_replicates
    return n_bad, cond_rmax


def _replicates_small(c_reps: Tensor, d_reps: Tensor, idx: Tensor, kept: Tensor, lam: Tensor,
                      reg: Tensor, max_cond: float) -> tuple[Tensor, list[int], list[float]]:
    """Replicates of a small group, all at once with their eigenvalues (the reference path).

    Returns the solutions (n_rep, len(idx), m_kept, p), the regularised counts and the largest
    replicate condition numbers per element."""
    eye = torch.eye(len(kept), dtype=c_reps.dtype, device=c_reps.device)
    ckr = c_reps[:, idx][:, :, kept][:, :, :, kept] + lam[None, :, None, None] * eye
    dkr = d_reps[:, idx][:, :, kept]
    ev_r = torch.linalg.eigvalsh(c_reps[:, idx][:, :, kept][:, :, :, kept])
    top_r, low_r = ev_r[..., -1].clamp_min(1e-300), ev_r[..., 0]
    cond_r = torch.where(low_r > 0, top_r / low_r.clamp_min(1e-300),
                         torch.full_like(low_r, float("inf")))
    ill = ~(cond_r <= max_cond) & ~reg.unsqueeze(0)
    xr, status = torch.linalg.solve_ex(ckr, dkr)
    bad = ill | (status != 0) | ~torch.isfinite(xr).flatten(2).all(-1)
    if bool(bad.any()):
        lam_r = replicate_lambda(torch.diagonal(ckr, dim1=-2, dim2=-1).mean(-1), max_cond)
        xr_reg = torch.linalg.solve(ckr + lam_r[..., None, None] * eye, dkr)
        xr = torch.where(bad[..., None, None], xr_reg, xr)
    return xr, [int(v) for v in bad.sum(0)], [float(v) for v in cond_r.amax(0)]


def _solve_group(ck: Tensor, dk: Tensor, max_cond: float, certify: bool
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, list[bool]]:
    """Solve a group of elements sharing their kept operators (see :func:`solve_batch`).

    Returns ``(x, cond, regularised, lam, cond_is_bound)`` per element.
    """
    n = ck.shape[0]
    bound = [False] * n
    cond = torch.empty(n, dtype=ck.dtype, device=ck.device)
    x = torch.empty(dk.shape, dtype=dk.dtype, device=dk.device)
    todo = list(range(n))
    if certify:                        # one Cholesky: certificate and solve (replicate_solve)
        from rgaudit.rg.replicate_solve import factor_certified

        todo = []
        for j in range(n):
            fac, cj, bound[j] = factor_certified(ck[j], max_cond)
            cond[j] = cj
            if bound[j]:
                assert fac is not None
                x[j] = torch.cholesky_solve(dk[j], fac)
            else:
                todo.append(j)
    if todo:
        rest = torch.tensor(todo, device=ck.device)
        cr = ck if len(todo) == n else ck[rest]
        dr = dk if len(todo) == n else dk[rest]
        evals = torch.linalg.eigvalsh(cr)
        top, low = evals[:, -1].clamp_min(1e-300), evals[:, 0]
        cond[rest] = torch.where(low > 0, top / low.clamp_min(1e-300),
                                 torch.full_like(low, float("inf")))
        reg_r = ~(cond[rest] <= max_cond)
        lam_r = torch.where(reg_r, torch.diagonal(cr, dim1=-2, dim2=-1).mean(-1) / max_cond,
                            torch.zeros_like(low))
        eye = torch.eye(cr.shape[-1], dtype=cr.dtype, device=cr.device)
        # C + 0·I is C: no m×m copy when nothing is regularised (the same solve, same bits)
        x[rest] = torch.linalg.solve(cr + lam_r[:, None, None] * eye if bool(reg_r.any())
                                     else cr, dr)
    reg = ~(cond <= max_cond)
    reg[[j for j in range(n) if bound[j]]] = False
    lam = torch.where(reg, torch.diagonal(ck, dim1=-2, dim2=-1).mean(-1) / max_cond,
                      torch.zeros_like(cond))
    return x, cond, reg, lam, bound


def _select(c: Tensor, d: Tensor, idx: Tensor, kept: Tensor) -> tuple[Tensor, Tensor]:
    """``c[idx][:, kept][:, :, kept]`` and ``d[idx][:, kept]``, without copies (views of the
    inputs) when ``idx`` is every batch element in order and every operator is kept."""
    all_b = idx.numel() == c.shape[0] and bool(
        (idx == torch.arange(c.shape[0], device=idx.device)).all())
    all_k = kept.numel() == c.shape[-1]
    ck = c if all_b else c[idx]
    dk = d if all_b else d[idx]
    if not all_k:
        ck, dk = ck[:, kept][:, :, kept], dk[:, kept]
    return ck, dk
