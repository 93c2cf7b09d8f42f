"""Scale a perturbation direction of one output vector under a budget, keeping it valid and its
argmax unchanged.

Every poisoning defence (the RG poison and each baseline) only proposes a *direction* ``v`` for
each returned output ``y``; this module owns the invariants, so all defences are compared on equal
terms (the Foolbox pattern of DESIGN.md/STYLE.md):

1. **Validity.** ``y + δy`` lies in ``[0, 1]`` (``kind="unit"``: independent per-unit
   probabilities, the raw DeepRBM output) or on the probability simplex (``kind="simplex"``).
   Directions are first projected onto the tangent space (sum zero on the simplex) and onto the
   face of the box/simplex the output sits on (active-set projection); the output then moves
   along the projected path ``z(s) = Π(y + s v)`` (``Π`` the Euclidean projection onto the
   simplex, or clipping to the box), so entries near 0 or 1 bend the path instead of stopping it.
2. **Budget.** ``‖δy‖₁ ≤ ε``, ``‖δy‖₂ ≤ ε`` or ``KL(y ‖ y + δy) ≤ ε`` (on the simplex the
   categorical KL; for unit outputs the sum of per-unit Bernoulli KLs). The step uses the whole
   budget unless validity or the argmax forbid it.
3. **Argmax.** ``argmax(y + δy) = argmax(y)`` always, strictly. The step length ``s`` is the
   largest (doubling, then bisection) for which ``z(s)`` is within budget and keeps a fraction
   ``keep_margin`` of every top-vs-other gap; the final output is checked once more and ``y`` is
   returned unchanged if the check fails. If the top two entries of ``y`` tie exactly, ``y`` is
   returned unchanged.

All numerics here are float64 NumPy, batched: :func:`poison_steps` moves a whole batch of
outputs along several candidate directions each at once (the active sets, the doubling and the
bisection run on masks over all rows in lockstep), so a served defence pays a few hundred NumPy
calls per batch, not per answer. :func:`poison_step` is the one-output view of the same code.
The per-row implementation it replaced is kept as the test reference
(``tests/poison_reference.py``); the two agree to 1e-9.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

import numpy as np

from rgaudit.choices import BUDGET_NORMS as NORMS
from rgaudit.choices import OUTPUT_KINDS as KINDS
from rgaudit.choices import BudgetNorm as Norm
from rgaudit.choices import OutputKind as OutputKind

_TINY = 1e-12


@dataclass(frozen=True)
class StepInfo:
    """What limited one poisoning step.

    Attributes
    ----------
    scale : float
        Step length ``s`` with ``δy = s · v̂`` (``v̂`` the projected unit direction).
    limit : str
        ``"budget"``, ``"domain"``, ``"argmax"``, ``"tie"`` (exact top-2 tie: unchanged) or
        ``"zero-direction"`` (nothing feasible to move along).
    """

    scale: float
    limit: str


def kl_divergence(p: np.ndarray, q: np.ndarray, kind: OutputKind) -> float:
    """``KL(p ‖ q)`` of two output vectors of shape (m,).

    ``kind="simplex"``: categorical KL ``Σ p_i log(p_i/q_i)``; ``kind="unit"``: sum of Bernoulli
    KLs over units. Terms with ``p_i = 0`` contribute 0; ``q_i = 0 < p_i`` gives ``inf``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)

    def part(a: np.ndarray, b: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0)
        return float(np.sum(t))

    if kind == "simplex":
        return part(p, q)
    return part(p, q) + part(1.0 - p, 1.0 - q)


def deviation(y: np.ndarray, y_new: np.ndarray, norm: Norm, kind: OutputKind) -> float:
    """Size of ``y_new − y`` in ``norm`` (KL as ``KL(y ‖ y_new)``); shapes (m,)."""
    d = np.asarray(y_new, np.float64) - np.asarray(y, np.float64)
    if norm == "l1":
        return float(np.abs(d).sum())
    if norm == "l2":
        return float(np.sqrt((d * d).sum()))
    return kl_divergence(y, y_new, kind)


#: Codes of :attr:`Steps.limit`, in order.
LIMITS: tuple[str, ...] = ("budget", "domain", "argmax", "tie", "zero-direction")
_BUDGET, _DOMAIN, _ARGMAX, _TIE, _ZERO = range(5)


@dataclass(frozen=True)
class Steps:
    """Result of :func:`poison_steps` for ``n`` outputs and ``c`` candidate directions each.

    Attributes
    ----------
    z : ndarray of shape (n, c, m)
        ``y + δy`` per candidate (valid, within budget, argmax kept).
    scale : ndarray of shape (n, c)
        Step length along the projected unit direction (0 where nothing moved).
    limit : ndarray of int of shape (n, c)
        Index into :data:`LIMITS` of what limited each step.
    movable : ndarray of bool of shape (n, c)
        Whether the candidate's projection onto the feasible cone (first sign tried) is
        non-zero; candidates that are not are skipped by the best-of-candidates choice.
    tie : ndarray of bool of shape (n,)
        Exact top-2 tie of ``y`` (returned unchanged).
    """

    z: np.ndarray
    scale: np.ndarray
    limit: np.ndarray
    movable: np.ndarray
    tie: np.ndarray


def deviations(Y: np.ndarray, Z: np.ndarray, norm: str, kind: str) -> np.ndarray:
    """Row-wise :func:`deviation` of ``Z − Y``; shapes (..., m) -> (...)."""
    d = Z - Y
    if norm == "l1":
        return np.abs(d).sum(-1)
    if norm == "l2":
        return np.sqrt((d * d).sum(-1))

    def part(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0)
        return t.sum(-1)

    if kind == "simplex":
        return part(Y, Z)
    return part(Y, Z) + part(1.0 - Y, 1.0 - Z)


def project_directions(Y: np.ndarray, V: np.ndarray, kind: str) -> np.ndarray:
    """Project each ``V[r]`` onto the feasible cone of the domain at ``Y[r]``; shapes (R, m).

    Coordinates pinned at a bound (``y_i ≤ 1e-12`` moving down, ``y_i ≥ 1 − 1e-12`` moving up)
    are frozen, and on the simplex the free coordinates are re-centred to sum zero; repeated
    until no frozen set changes. Rows may come back zero.
    """
    V = np.array(V, dtype=np.float64)
    R, m = V.shape
    out = np.zeros_like(V)
    free = np.ones(V.shape, dtype=bool)
    rows = np.arange(R)
    for _ in range(m + 1):
        if rows.size == 0:
            return out
        v, f, y = V[rows], free[rows], Y[rows]
        if kind == "simplex":
            n_free = f.sum(-1)
            few = n_free < 2
            if few.any():                                # fewer than two free: nothing moves
                out[rows[few]] = 0.0
                rows, v, f, y, n_free = rows[~few], v[~few], f[~few], y[~few], n_free[~few]
            mean = np.where(f, v, 0.0).sum(-1) / n_free
            v = np.where(f, v - mean[:, None], v)
        v[~f] = 0.0
        pinned = ((y <= _TINY) & (v < 0)) | ((y >= 1.0 - _TINY) & (v > 0))
        pinned &= f
        settled = ~pinned.any(-1)
        out[rows[settled]] = v[settled]
        V[rows] = v
        free[rows] = f & ~pinned
        rows = rows[~settled]
    out[rows] = V[rows]
    return out


def project_direction(y: np.ndarray, v: np.ndarray, kind: OutputKind) -> np.ndarray:
    """One-row :func:`project_directions`; shapes (m,)."""
    y = np.asarray(y, np.float64)
    return project_directions(y[None], np.asarray(v, np.float64)[None], kind)[0]


@lru_cache(maxsize=64)
def _arange(start: int, stop: int) -> np.ndarray:
    a = np.arange(start, stop)
    a.setflags(write=False)
    return a


def project_simplexes(V: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``V`` (R, m) onto the probability simplex (sort
    algorithm, row-wise identical to the one-row version)."""
    R, m = V.shape
    u = -np.sort(-V, axis=-1)
    css = np.cumsum(u, axis=-1)
    css -= 1.0
    cond = u - css / _arange(1, m + 1) > 0
    rho = (m - 1) - np.argmax(cond[:, ::-1], axis=-1)
    theta = css[_arange(0, R), rho] / (rho + 1)
    return np.maximum(V - theta[:, None], 0.0)


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` (m,) onto the probability simplex (sort algorithm)."""
    return project_simplexes(np.asarray(v, np.float64)[None])[0]


def _to_domain(Z: np.ndarray, kind: str) -> np.ndarray:
    if kind == "simplex":
        return project_simplexes(Z)
    return np.clip(Z, 0.0, 1.0)


def _margins_ok(Y: np.ndarray, Z: np.ndarray, top: np.ndarray, keep_margin: float) -> np.ndarray:
    """Row-wise ``z_top − z_j ≥ keep_margin (y_top − y_j)`` and ``z_top > z_j`` for ``j ≠ top``;
    shapes (R, m), (R, m), (R,) -> (R,)."""
    return _Margin(Y, top, keep_margin).ok(Z)


class _Margin:
    """The argmax-margin test of a fixed set of rows, with what does not depend on ``z``
    computed once."""

    def __init__(self, Y: np.ndarray, top: np.ndarray, keep_margin: float) -> None:
        r = _arange(0, len(Y))
        self.r, self.top = r, top
        self.need = keep_margin * (Y[r, top][:, None] - Y)
        self.is_top = np.zeros(Y.shape, dtype=bool)
        self.is_top[r, top] = True

    def ok(self, Z: np.ndarray) -> np.ndarray:
        gap_z = Z[self.r, self.top][:, None] - Z
        good = (gap_z > 0) & (gap_z >= self.need)
        return (good | self.is_top).all(-1)


def _largest_feasible(Y: np.ndarray, D: np.ndarray, eps: float, norm: str, kind: str,
                      top: np.ndarray, keep_margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the largest ``s`` (doubling then 40 bisections, all rows in lockstep) such that
    ``z(s) = Π(y + s d)`` is within budget and keeps the argmax margin; shapes (R, m) ->
    ``(s (R,), z(s) (R, m))``. Row by row the same floating-point steps as the one-output
    search it replaced."""

    def feasible(y: np.ndarray, z: np.ndarray, margin: _Margin) -> np.ndarray:
        return (deviations(y, z, norm, kind) <= eps) & margin.ok(z)

    R = len(Y)
    lo = np.zeros(R)
    hi = (eps if norm != "kl" else np.sqrt(eps)) / np.abs(D).sum(-1)
    Z = np.empty_like(Y)
    done = np.zeros(R, dtype=bool)                       # the path stopped moving: (lo, z(lo))
    rows = _arange(0, R)
    z_hi = _to_domain(Y + hi[:, None] * D, kind)
    for _ in range(64):
        if rows.size == 0:
            break
        y, d = Y[rows], D[rows]
        ok = feasible(y, z_hi, _Margin(y, top[rows], keep_margin))
        rows, y, d, z_hi = rows[ok], y[ok], d[ok], z_hi[ok]   # infeasible rows: bisection
        h = hi[rows]
        z_far = _to_domain(y + (2 * h)[:, None] * d, kind)
        lo[rows] = h
        still = np.all(z_hi == z_far, axis=-1)
        done[rows[still]] = True
        Z[rows[still]] = z_hi[still]
        rows, z_hi = rows[~still], z_far[~still]
        hi[rows] *= 2
    rows = np.nonzero(~done)[0]
    y, d = Y[rows], D[rows]
    lo_b, hi_b = _bisect(y, d, lo[rows], hi[rows], top[rows], eps, norm, kind, keep_margin)
    lo[rows] = lo_b
    Z[rows] = _to_domain(y + lo_b[:, None] * d, kind)
    return lo, Z


#: bisection steps of :func:`_largest_feasible` (as in the one-output search it replaced)
_BISECTIONS = 40


def _bisect(y: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray, top: np.ndarray,
            eps: float, norm: str, kind: str, keep_margin: float) -> tuple[np.ndarray, np.ndarray]:
    """40 bisection steps of ``[lo, hi]`` per row (feasible ``lo``, infeasible ``hi``).

    Small batches are dominated by per-call overhead, so ``k`` steps are taken per round: the
    ``2^k − 1`` midpoints of the whole depth-``k`` bisection tree are evaluated in one batched
    call and the path through them is then read off — the very midpoints (same floating-point
    expression ``0.5 (lo + hi)``) and decisions of ``k`` plain bisection steps, for ``k``
    times the arithmetic and ``1/k`` of the calls. Large batches use ``k = 1``.
    """
    R = len(y)
    if R == 0:
        return lo, hi
    k = next((k for k in (4, 2) if R * (2**k - 1) <= 2048), 1)
    M = 2**k - 1
    yk, dk = np.repeat(y, M, axis=0), np.repeat(d, M, axis=0)
    margin = _Margin(yk, np.repeat(top, M), keep_margin)
    r = _arange(0, R)
    for _ in range(_BISECTIONS // k):
        level_lo, level_hi, mids = lo[:, None], hi[:, None], []
        for _level in range(k):
            mid = 0.5 * (level_lo + level_hi)              # (R, 2^level)
            mids.append(mid)
            level_lo = np.stack([mid, level_lo], axis=-1).reshape(R, -1)   # feasible child
            level_hi = np.stack([level_hi, mid], axis=-1).reshape(R, -1)   # first
        allm = np.concatenate(mids, axis=1)                # (R, M), breadth-first
        z = _to_domain(yk + allm.reshape(-1, 1) * dk, kind)
        ok = ((deviations(yk, z, norm, kind) <= eps) & margin.ok(z)).reshape(R, M)
        j = np.zeros(R, dtype=np.int64)
        for level in range(k):
            node = (2**level - 1) + j
            f, m = ok[r, node], allm[r, node]
            lo = np.where(f, m, lo)
            hi = np.where(f, hi, m)
            j = 2 * j + (~f)
    return lo, hi


def _check_step_args(Y: np.ndarray, V: np.ndarray, eps: float, norm: str, kind: str,
                     keep_margin: float) -> None:
    if Y.ndim != 2 or Y.shape[-1] < 2:
        raise ValueError("an output must be a vector of at least 2 entries, got shape "
                         f"{Y.shape[1:] if Y.ndim == 2 else Y.shape}")
    if norm not in NORMS or kind not in KINDS:
        raise ValueError(f"norm must be one of {NORMS} and kind one of {KINDS}, "
                         f"got {norm!r}, {kind!r}")
    if eps < 0 or not np.isfinite(eps):
        raise ValueError(f"the budget eps must be finite and non-negative, got {eps}")
    if not 0.0 < keep_margin < 1.0:
        raise ValueError(f"keep_margin must lie in (0, 1), got {keep_margin}")
    if not np.all(np.isfinite(Y)) or Y.min() < 0 or Y.max() > 1:
        raise ValueError("outputs must be finite and lie in [0, 1]")
    if V.ndim != 3 or V.shape[0] != Y.shape[0] or V.shape[2] != Y.shape[1]:
        raise ValueError(f"the direction v must have the shape of y {Y.shape[1:]}, got "
                         f"{V.shape[2:] if V.ndim == 3 else V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("the direction v must be finite (got NaN or inf entries)")


def _compiled() -> ModuleType:
    """:mod:`rgaudit.defence.step_search` (numba; imported on first use)."""
    from rgaudit.defence import step_search

    return step_search


def poison_steps(
    Y: np.ndarray, V: np.ndarray, eps: float, norm: str, kind: str, *,
    keep_margin: float = 0.1, flip: bool = True, engine: str = "compiled",
) -> Steps:
    """Move every output ``Y[i]`` along each of its candidate directions ``±V[i, c]`` by the
    budget, keeping it valid and its argmax (the batched form of :func:`poison_step`).

    Parameters
    ----------
    Y : ndarray of shape (n, m)
        Honest outputs (entries in [0, 1]; rows summing to 1 if ``kind="simplex"``).
    V : ndarray of shape (n, c, m)
        Proposed directions (any finite scale: each is rescaled, projected onto the feasible
        cone and normalised to unit L2; the sign giving the longer feasible step is used when
        ``flip``). A non-finite entry raises ``ValueError``.
    eps : float
        Budget (≥ 0) in ``norm``.
    norm : {"l1", "l2", "kl"}
    kind : {"unit", "simplex"}
    keep_margin : float in (0, 1), default 0.1
        Fraction of every top-vs-other gap that must survive.
    flip : bool, default True
        Also try ``−v`` and keep the sign with the longer feasible step.
    engine : {"compiled", "numpy"}, default "compiled"
        ``"compiled"``: the numba kernel :func:`rgaudit.defence.step_search.poison_rows`
        (row by row, the same floating-point operations as the NumPy code; outputs of more
        than ``step_search.MAX_M`` entries fall back to NumPy); ``"numpy"``: the batched
        NumPy implementation below (the test oracle).

    Returns
    -------
    Steps
    """
    if engine not in ("compiled", "numpy"):
        raise ValueError(f"engine must be 'compiled' or 'numpy', got {engine!r}")
    Y = np.asarray(Y, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    _check_step_args(Y, V, eps, norm, kind, keep_margin)
    n, c, m = V.shape
    if engine == "compiled" and m <= _compiled().MAX_M:
        kernel = _compiled()
        z, scale, limit, movable, tie_row = kernel.poison_rows(
            np.ascontiguousarray(Y), np.ascontiguousarray(V), float(eps),
            kernel.NORM_CODES[norm], kind == "simplex", float(keep_margin), bool(flip))
        return Steps(z, scale, limit, movable, tie_row)
    y = np.repeat(Y, c, axis=0)                          # (R, m), R = n c
    v = V.reshape(n * c, m)
    vmax = np.abs(v).max(-1, keepdims=True)
    v = np.divide(v, vmax, out=v.copy(), where=vmax > 0)  # safe for huge and subnormal entries
    top = np.argmax(y, axis=-1)
    ordered = np.sort(Y, axis=-1)
    tie_row = ordered[:, -1] == ordered[:, -2]
    tie = np.repeat(tie_row, c)
    R = len(y)
    best_s, best_z, best_dev = np.zeros(R), y.copy(), np.zeros(R)
    best_d = np.zeros_like(y)
    movable = np.zeros(R, dtype=bool)
    for k, sign in enumerate((1.0, -1.0) if flip else (1.0,)):
        d = project_directions(y, sign * v, kind)
        if k == 0:
            movable = np.any(d != 0, axis=-1)
        d_norm = np.sqrt((d * d).sum(-1))
        rows = np.nonzero((d_norm > 1e-300) & ~tie & (eps != 0))[0]
        if rows.size == 0:
            continue
        d_unit = d[rows] / d_norm[rows, None]             # unit L2 projected direction
        s, z = _largest_feasible(y[rows], d_unit, eps, norm, kind, top[rows], keep_margin)
        dev = deviations(y[rows], z, norm, kind)
        better = dev > best_dev[rows]
        b = rows[better]
        best_s[b], best_z[b], best_dev[b], best_d[b] = (s[better], z[better], dev[better],
                                                        d_unit[better])
    limit = np.full(R, _ZERO if eps > 0 else _BUDGET)
    scale = np.zeros(R)
    z_out = y.copy()
    rows = np.nonzero((best_dev != 0.0) & ~tie)[0]
    zr = best_z[rows]
    y_new = zr / zr.sum(-1, keepdims=True) if kind == "simplex" else zr
    yr, tr = y[rows], top[rows]
    others = y_new.copy()
    others[np.arange(len(rows)), tr] = -np.inf
    valid = ((y_new[np.arange(len(rows)), tr] > others.max(-1))
             & (deviations(yr, y_new, norm, kind) <= eps * (1 + 1e-9) + 1e-15)
             & (y_new.min(-1) >= 0) & (y_new.max(-1) <= 1))
    limit[rows[~valid]] = _ARGMAX
    ok = rows[valid]
    z_out[ok] = y_new[valid]
    scale[ok] = best_s[ok]
    at_budget = best_dev[ok] >= eps * (1 - 1e-6)
    beyond = _to_domain(y[ok] + (1.01 * best_s[ok])[:, None] * best_d[ok], kind)
    margin = _margins_ok(y[ok], beyond, top[ok], keep_margin)
    limit[ok] = np.where(at_budget, _BUDGET, np.where(margin, _DOMAIN, _ARGMAX))
    limit[tie] = _TIE
    return Steps(z_out.reshape(n, c, m), scale.reshape(n, c), limit.reshape(n, c),
                 movable.reshape(n, c), tie_row)


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
        Proposed direction (see :func:`poison_steps`).
    eps, norm, kind, keep_margin, flip
        See :func:`poison_steps`.

    Returns
    -------
    y_new : ndarray of shape (m,)
        ``y + δy``, valid, within budget, same argmax as ``y``.
    info : StepInfo
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.size < 2:
        raise ValueError(f"an output must be a vector of at least 2 entries, got shape {y.shape}")
    v = np.asarray(v, dtype=np.float64)
    if v.shape != y.shape:
        raise ValueError(f"the direction v must have the shape of y {y.shape}, got {v.shape}")
    st = poison_steps(y[None], v[None, None], eps, norm, kind, keep_margin=keep_margin,
                      flip=flip)
    return st.z[0, 0], StepInfo(float(st.scale[0, 0]), LIMITS[int(st.limit[0, 0])])
