"""The per-answer poisoning search as it was before the batched implementation (issue 12):
kept verbatim as the test reference the vectorised :mod:`rgaudit.defence.budget` and
:class:`rgaudit.defence.poison.RGPoisoner` must reproduce (to 1e-9)."""

from __future__ import annotations

import numpy as np

from rgaudit.defence.budget import StepInfo, deviation

_TINY = 1e-12
Norm = str
OutputKind = str
NORMS = ("l1", "l2", "kl")
KINDS = ("unit", "simplex")


def fisher_damage(y: np.ndarray, z: np.ndarray, F: np.ndarray) -> float:
    d = np.asarray(z, np.float64) - np.asarray(y, np.float64)
    return float(d @ F @ d)


def project_direction(y: np.ndarray, v: np.ndarray, kind: OutputKind) -> np.ndarray:
    """Project ``v`` onto the feasible cone of the domain at ``y``; shapes (m,).

    Coordinates pinned at a bound (``y_i ≤ 1e-12`` moving down, ``y_i ≥ 1 − 1e-12`` moving up)
    are frozen, and on the simplex the free coordinates are re-centred to sum zero; repeated
    until no frozen set changes. Returns the projected direction (possibly zero).
    """
    v = np.asarray(v, np.float64).copy()
    free = np.ones_like(v, dtype=bool)
    for _ in range(v.size + 1):
        if kind == "simplex":
            if free.sum() < 2:
                return np.zeros_like(v)
            v[free] -= v[free].mean()
        v[~free] = 0.0
        pinned = ((y <= _TINY) & (v < 0)) | ((y >= 1.0 - _TINY) & (v > 0))
        pinned &= free
        if not pinned.any():
            return v
        free &= ~pinned
    return v


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` (m,) onto the probability simplex (sort algorithm)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    idx = np.arange(1, v.size + 1)
    rho = int(np.nonzero(u - css / idx > 0)[0][-1])
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


def _to_domain(z: np.ndarray, kind: OutputKind) -> np.ndarray:
    if kind == "simplex":
        return project_simplex(z)
    return np.clip(z, 0.0, 1.0)


def _margin_ok(y: np.ndarray, z: np.ndarray, top: int, keep_margin: float) -> bool:
    """``z_top − z_j ≥ keep_margin (y_top − y_j)`` and ``z_top > z_j`` for every ``j ≠ top``."""
    gap_y = np.delete(y[top] - y, top)
    gap_z = np.delete(z[top] - z, top)
    return bool(np.all(gap_z > 0) and np.all(gap_z >= keep_margin * gap_y))


def _largest_feasible(y: np.ndarray, d: np.ndarray, eps: float, norm: Norm, kind: OutputKind,
                      top: int, keep_margin: float) -> tuple[float, np.ndarray]:
    """Largest ``s`` (by doubling then bisection) such that ``z(s) = Π(y + s d)`` is within
    budget and keeps the argmax margin; returns ``(s, z(s))``."""

    def point(s: float) -> np.ndarray:
        return _to_domain(y + s * d, kind)

    def feasible(s: float) -> bool:
        z = point(s)
        return deviation(y, z, norm, kind) <= eps and _margin_ok(y, z, top, keep_margin)

    lo, hi = 0.0, (eps if norm != "kl" else np.sqrt(eps)) / float(np.abs(d).sum())
    for _ in range(64):
        if not feasible(hi):
            break
        z_hi, z_far = point(hi), point(2 * hi)
        lo = hi
        if np.array_equal(z_hi, z_far):                      # the path has stopped moving
            return lo, z_hi
        hi *= 2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo, point(lo)


def poison_step(
    y: np.ndarray, v: np.ndarray, eps: float, norm: Norm, kind: OutputKind, *,
    keep_margin: float = 0.1, flip: bool = True,
) -> tuple[np.ndarray, StepInfo]:
    """Move one output ``y`` along ``±v`` by the budget, keeping it valid and its argmax.

    Parameters
    ----------
    y : ndarray of shape (m,)
        The honest output (entries in [0, 1]; summing to 1 if ``kind="simplex"``).
    v : ndarray of shape (m,)
        Proposed direction (any finite scale: it is rescaled, projected onto the feasible cone
        and normalised to unit L2; the sign giving the longer feasible step is used when
        ``flip``). A non-finite entry raises ``ValueError``.
    eps : float
        Budget (≥ 0) in ``norm``.
    norm : {"l1", "l2", "kl"}
    kind : {"unit", "simplex"}
    keep_margin : float in (0, 1), default 0.1
        Fraction of every top-vs-other gap that must survive.
    flip : bool, default True
        Also try ``−v`` and keep the sign with the longer feasible step (for sign-free
        directions such as eigenvectors); ``False`` keeps the sign of ``v``.

    Returns
    -------
    y_new : ndarray of shape (m,)
        ``y + δy``, valid, within budget, same argmax as ``y``.
    info : StepInfo
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.size < 2:
        raise ValueError(f"an output must be a vector of at least 2 entries, got shape {y.shape}")
    if norm not in NORMS or kind not in KINDS:
        raise ValueError(f"norm must be one of {NORMS} and kind one of {KINDS}, "
                         f"got {norm!r}, {kind!r}")
    if eps < 0 or not np.isfinite(eps):
        raise ValueError(f"the budget eps must be finite and non-negative, got {eps}")
    if not 0.0 < keep_margin < 1.0:
        raise ValueError(f"keep_margin must lie in (0, 1), got {keep_margin}")
    if not np.all(np.isfinite(y)) or y.min() < 0 or y.max() > 1:
        raise ValueError("outputs must be finite and lie in [0, 1]")
    v = np.asarray(v, dtype=np.float64)
    if v.shape != y.shape:
        raise ValueError(f"the direction v must have the shape of y {y.shape}, got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("the direction v must be finite (got NaN or inf entries)")
    vmax = float(np.abs(v).max())
    v = v / vmax if vmax > 0 else v                      # safe for huge and subnormal entries
    top = int(np.argmax(y))
    ordered = np.sort(y)
    if ordered[-1] == ordered[-2]:
        return y.copy(), StepInfo(0.0, "tie")
    best_s, best_z, best_dev, best_d = 0.0, y.copy(), 0.0, np.zeros_like(y)
    for sign in ((1.0, -1.0) if flip else (1.0,)):
        d = project_direction(y, sign * v, kind)
        d_norm = float(np.sqrt((d * d).sum()))
        if not d_norm > 1e-300 or eps == 0:
            continue
        d = d / d_norm                                   # unit L2 projected direction
        s, z = _largest_feasible(y, d, eps, norm, kind, top, keep_margin)
        dev = deviation(y, z, norm, kind)
        if dev > best_dev:
            best_s, best_z, best_dev, best_d = s, z, dev, d
    if best_dev == 0.0:
        return y.copy(), StepInfo(0.0, "zero-direction" if eps > 0 else "budget")
    y_new = best_z / best_z.sum() if kind == "simplex" else best_z
    others = np.delete(y_new, top)
    if not (y_new[top] > others.max()
            and deviation(y, y_new, norm, kind) <= eps * (1 + 1e-9) + 1e-15
            and y_new.min() >= 0 and y_new.max() <= 1):
        return y.copy(), StepInfo(0.0, "argmax")
    if best_dev >= eps * (1 - 1e-6):
        limit = "budget"
    elif not _margin_ok(y, _to_domain(y + 1.01 * best_s * best_d, kind), top, keep_margin):
        limit = "argmax"
    else:
        limit = "domain"
    return y_new, StepInfo(float(best_s), limit)


def candidate_directions(F: np.ndarray, y: np.ndarray, norm: str, kind: str,
                         k_eig: int = 3, n_pairs: int | None = 12,
                         eps: float = 1.0) -> np.ndarray:
    """Candidate directions of the RG poison for one output; shape (c, m), signed.

    ± the top ``k_eig`` eigenvectors of ``P F P`` (L2-optimal), every ``e_i − e_j`` (the vertices
    of the L1 ball on the sum-zero plane), every ``e_k − y`` (vertex directions, the kind MAD
    uses), ``±e_i`` on the box (``kind="unit"``), and for ``norm="kl"`` ± the top ``k_eig``
    generalised eigenvectors of ``F v = λ G v`` with ``G`` the KL metric at ``y``
    (``diag(1/y)`` on the sum-zero plane; ``diag(1/(y(1−y)))`` for unit outputs).
    ``n_pairs`` keeps only that many ``e_i − e_j`` pairs, ranked by the damage of the step
    ``t (e_i − e_j)`` with ``t = min(eps/2, y_j)`` (the room to lower ``y_j``) — a cheap
    pre-filter, since every candidate costs a full :func:`poison_step`; ``None`` keeps all.
    """
    m = y.size
    F = 0.5 * (F + F.T)
    P = np.eye(m) - (np.full((m, m), 1.0 / m) if kind == "simplex" else 0.0)
    k = min(k_eig, m - 1 if kind == "simplex" else m)
    _, U = np.linalg.eigh(P @ F @ P)
    eig = U[:, ::-1][:, :k].T
    cands = [eig, -eig]
    eye = np.eye(m)
    ii, jj = np.nonzero(~np.eye(m, dtype=bool))
    if n_pairs is not None and len(ii) > n_pairs:
        t = np.minimum(0.5 * eps, y[jj])
        score = (np.diag(F)[ii] + np.diag(F)[jj] - 2 * F[ii, jj]) * t * t
        keep = np.argsort(-score, kind="stable")[:n_pairs]
        ii, jj = ii[keep], jj[keep]
    cands.append(eye[ii] - eye[jj])
    cands.append(eye - y[None, :])
    if kind == "unit":
        cands += [eye, -eye]
    if norm == "kl":
        yc = np.clip(y, 1e-12, 1.0)
        g = 1.0 / yc if kind == "simplex" else 1.0 / (yc * np.clip(1.0 - y, 1e-12, 1.0))
        if kind == "simplex":                          # orthonormal basis of the sum-zero plane
            B = np.linalg.svd(P)[0][:, :m - 1]
        else:
            B = eye
        A = B.T @ F @ B
        Gs = B.T @ (g[:, None] * B)
        Lc = np.linalg.cholesky(Gs + 1e-300 * np.eye(len(Gs)))
        Li = np.linalg.inv(Lc)
        _, W = np.linalg.eigh(Li @ A @ Li.T)
        gen = (B @ (Li.T @ W[:, ::-1][:, :k])).T
        cands += [gen, -gen]
    C = np.concatenate(cands)
    C = C[np.all(np.isfinite(C), axis=1) & (np.abs(C).max(axis=1) > 0)]
    return C


def rg_reference(F: np.ndarray, Y: np.ndarray, eps: float, norm: str, kind: str,
                 keep_margin: float = 0.1, k_eig: int = 3,
                 n_pairs: int | None = 12) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The old ``RGPoisoner.__call__`` loop on FIMs ``F`` (n, m, m) and outputs ``Y`` (n, m)."""
    out, scales, limits = Y.copy(), np.zeros(len(Y)), []
    for i in range(len(Y)):
        best, best_info = -1.0, None
        for v in candidate_directions(F[i], Y[i], norm, kind, k_eig, n_pairs, eps):
            if not np.any(project_direction(Y[i], v, kind)):
                continue
            z, info = poison_step(Y[i], v, eps, norm, kind, keep_margin=keep_margin, flip=False)
            dmg = fisher_damage(Y[i], z, F[i])
            if dmg > best:
                best, best_info, out[i] = dmg, info, z
        if best_info is None:
            limits.append("zero-direction")
        else:
            scales[i] = best_info.scale
            limits.append(best_info.limit)
    return out, scales, limits
