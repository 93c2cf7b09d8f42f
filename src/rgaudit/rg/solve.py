"""The MCRG solve ``C T = D`` with constant operators dropped and a stated regulariser.

Policy (DESIGN.md, "Ill-conditioned covariances"):

1. An operator whose variance is below ``var_tol`` (relative to the largest variance, or
   absolutely zero) is constant on the samples: its coupling is not identifiable. Such rows of
   ``C`` / ``T`` are dropped and their indices reported.
2. The condition number of the remaining ``C`` is computed and reported.
3. If it exceeds ``max_cond`` the solve is Tikhonov-regularised,
   ``T = (C + λ I)⁻¹ D`` with ``λ = trace(C)/m / max_cond``, and flagged ``regularised=True``.
   Never a silent pseudo-inverse, never a NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor


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

    def to_dict(self) -> dict:
        """Plain-data form for JSON results."""
        return {
            "n_kept": int(self.kept.numel()),
            "dropped": [int(i) for i in self.dropped.tolist()],
            "cond": float(self.cond),
            "regularised": bool(self.regularised),
            "lambda": float(self.lam),
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
    max_cond: float = 1e10,
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
    lam = 0.0
    regularised = cond > max_cond
    if regularised:
        lam = float(torch.diagonal(ck).mean() / max_cond)
        ck = ck + lam * torch.eye(ck.shape[0], dtype=ck.dtype, device=ck.device)
    x = torch.linalg.solve(ck, dk)
    return x, SolveInfo(kept.cpu(), dropped.cpu(), cond, regularised, lam)
