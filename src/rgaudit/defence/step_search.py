"""Compiled (numba) step search of :func:`rgaudit.defence.budget.poison_steps`: per row, the
largest step ``s`` along ``z(s) = Π(y + s d)`` that stays within budget and keeps the argmax
margin — the doubling and 40 bisection steps of the one-output search, row by row.

The NumPy implementation (:func:`rgaudit.defence.budget._largest_feasible`) pays a few hundred
array calls per batch, which dominates small batches (a served answer at batch 1). This kernel
performs **the same floating-point operations in the same order** on each row: ``y + s·d``
elementwise, the sort-based simplex projection with a sequential cumulative sum, and every sum
over a row in NumPy's pairwise order (:func:`_pairwise_sum` reproduces ``numpy.add.reduce`` on
a contiguous row of at most :data:`MAX_M` terms: 8 partial sums from 8 terms on). So its steps are
bit-identical to the NumPy search on L1 and L2 budgets (tested). The KL budget calls ``log``,
which NumPy may compute with its own SIMD routine on some CPUs; there the two can differ by one
unit in the last place of a divergence, which moves a step by at most one bisection interval
(``2⁻⁴⁰`` of the bracket; the tests allow 1e-9).
"""

from __future__ import annotations

import numba
import numpy as np

#: Codes of the budget norm passed to the kernel.
NORM_CODES = {"l1": 0, "l2": 1, "kl": 2}


#: Longest row the kernel sums (NumPy's pairwise sum is a single block up to 128 terms; longer
#: rows fall back to the NumPy search).
MAX_M = 128


@numba.njit(cache=True, nogil=True)
def _pairwise_sum(a: np.ndarray, n: int) -> float:
    """``numpy.add.reduce`` of ``a[:n]`` (``n <= 128``) in NumPy's pairwise order."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return res


@numba.njit(cache=True, nogil=True)
def _to_domain(y: np.ndarray, d: np.ndarray, s: float, simplex: bool, out: np.ndarray,
               u: np.ndarray) -> None:
    """``out = Π(y + s d)`` (simplex: sort-based Euclidean projection; unit: clip to [0, 1]);
    ``u`` is scratch of the same length."""
    m = y.shape[0]
    for i in range(m):
        out[i] = y[i] + s * d[i]
    if not simplex:
        for i in range(m):
            v = out[i]
            out[i] = min(max(v, 0.0), 1.0)
        return
    for i in range(m):                                   # insertion sort, descending
        v = out[i]
        j = i
        while j > 0 and u[j - 1] < v:
            u[j] = u[j - 1]
            j -= 1
        u[j] = v
    css = 0.0
    rho = m - 1
    theta_css = 0.0
    found = False
    last_css = 0.0
    for k in range(m):                                   # the last k with u_k > (css_k - 1)/(k+1)
        css += u[k]
        c = css - 1.0
        if u[k] - c / (k + 1) > 0:
            rho = k
            theta_css = c
            found = True
        last_css = c
    if not found:
        theta_css = last_css
    theta = theta_css / (rho + 1)
    for i in range(m):
        out[i] = max(out[i] - theta, 0.0)


@numba.njit(cache=True, nogil=True)
def _feasible(y: np.ndarray, z: np.ndarray, top: int, need: np.ndarray, eps: float, norm: int,
              simplex: bool, t: np.ndarray) -> bool:
    """Within budget (``deviation(y, z) <= eps``) and the argmax margin kept."""
    m = y.shape[0]
    zt = z[top]
    for j in range(m):
        if j != top:
            gap = zt - z[j]
            if not (gap > 0 and gap >= need[j]):
                return False
    if norm == 0:
        for i in range(m):
            t[i] = abs(z[i] - y[i])
        dev = _pairwise_sum(t, m)
    elif norm == 1:
        for i in range(m):
            e = z[i] - y[i]
            t[i] = e * e
        dev = np.sqrt(_pairwise_sum(t, m))
    else:
        for i in range(m):
            a = y[i]
            t[i] = a * (np.log(a) - np.log(z[i])) if a > 0 else 0.0
        dev = _pairwise_sum(t, m)
        if not simplex:
            for i in range(m):
                a = 1.0 - y[i]
                t[i] = a * (np.log(a) - np.log(1.0 - z[i])) if a > 0 else 0.0
            dev = dev + _pairwise_sum(t, m)
    return dev <= eps


@numba.njit(cache=True, nogil=True)
def largest_feasible(Y: np.ndarray, D: np.ndarray, hi0: np.ndarray, top: np.ndarray,
                     need: np.ndarray, eps: float, norm: int,
                     simplex: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row ``r``: the largest ``s`` (doubling from ``hi0[r]``, then 40 bisections) with
    ``Π(Y[r] + s D[r])`` within budget and keeping ``need[r]`` of every top-vs-other gap.

    Parameters
    ----------
    Y, D : ndarray of shape (R, m)
        Outputs and unit projected directions.
    hi0 : ndarray of shape (R,)
        First step tried.
    top : ndarray of int64 of shape (R,)
        Argmax of each output.
    need : ndarray of shape (R, m)
        ``keep_margin · (y_top − y_j)``.
    eps : float
    norm : int
        :data:`NORM_CODES`.
    simplex : bool
        Simplex projection (else clipping to the box).

    Returns
    -------
    s : ndarray of shape (R,)
    Z : ndarray of shape (R, m)
        ``Π(Y + s D)``.
    """
    R, m = Y.shape
    s_out = np.zeros(R)
    Z = np.empty((R, m))
    z_hi = np.empty(m)
    z_far = np.empty(m)
    u = np.empty(m)
    t = np.empty(m)
    for r in range(R):
        y, d, nd, tp = Y[r], D[r], need[r], top[r]
        lo = 0.0
        hi = hi0[r]
        _to_domain(y, d, hi, simplex, z_hi, u)
        done = False
        for _ in range(64):
            if not _feasible(y, z_hi, tp, nd, eps, norm, simplex, t):
                break
            _to_domain(y, d, 2 * hi, simplex, z_far, u)
            lo = hi
            same = True
            for i in range(m):
                if z_hi[i] != z_far[i]:
                    same = False
                    break
            if same:                                     # the path has stopped moving
                done = True
                for i in range(m):
                    Z[r, i] = z_hi[i]
                break
            hi *= 2
            for i in range(m):
                z_hi[i] = z_far[i]
        if done:
            s_out[r] = lo
            continue
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            _to_domain(y, d, mid, simplex, z_far, u)
            if _feasible(y, z_far, tp, nd, eps, norm, simplex, t):
                lo = mid
            else:
                hi = mid
        _to_domain(y, d, lo, simplex, z_far, u)
        for i in range(m):
            Z[r, i] = z_far[i]
        s_out[r] = lo
    return s_out, Z
