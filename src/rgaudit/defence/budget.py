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

All numerics here are float64 NumPy on one row at a time: the per-query work is tiny and the
branching (active sets, bisection) is clearer row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Norm = Literal["l1", "l2", "kl"]
OutputKind = Literal["unit", "simplex"]
NORMS: tuple[str, ...] = ("l1", "l2", "kl")
KINDS: tuple[str, ...] = ("unit", "simplex")
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
