"""Compiled (numba) form of :func:`rgaudit.defence.budget.poison_steps`: :func:`poison_rows`
moves each output along each candidate direction row by row — the feasible-cone projection,
the doubling and 40 bisection steps of the largest feasible step, the final validity check and
the classification of what limited the step.

The NumPy implementation pays a few hundred array calls per batch, which dominates small
batches (a served answer at batch 1: ~4 ms of ~7). This kernel performs **the same
floating-point operations in the same order** on each row: ``y + s·d`` elementwise, the
sort-based simplex projection with a sequential cumulative sum, and every sum over a row in
NumPy's pairwise order (:func:`_pairwise_sum` reproduces ``numpy.add.reduce`` on a contiguous row
of at most :data:`MAX_M` terms: 8 partial sums from 8 terms on). So its steps are bit-identical
to the NumPy code on L1 and L2 budgets (``tests/test_poison_compiled.py``). The KL budget calls
``log``, which NumPy may compute with its own SIMD routine on some CPUs (AVX-512); there the two
can differ by one unit in the last place of a divergence, which moves a step by at most one
bisection interval (``2⁻⁴⁰`` of the bracket; the tests allow 1e-9).

Compiled on first use and cached on disk next to this file (numba ``cache=True``): the first
call in a fresh checkout takes ~10–40 s, later processes load the cache in about a second.
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
    if not _margin_ok(z, top, need):
        return False
    return _deviation(y, z, norm, simplex, t) <= eps


_TINY = 1e-12


@numba.njit(cache=True, nogil=True)
def _project_direction(y: np.ndarray, v: np.ndarray, simplex: bool, out: np.ndarray,
                       free: np.ndarray, tmp: np.ndarray) -> None:
    """``out`` = ``v`` projected onto the feasible cone at ``y`` (the row-wise operations of
    ``budget.project_directions``); ``v`` is overwritten, ``free``/``tmp`` are scratch."""
    m = y.shape[0]
    for i in range(m):
        free[i] = True
    for _ in range(m + 1):
        if simplex:
            nf = 0
            for i in range(m):
                if free[i]:
                    nf += 1
            if nf < 2:                                   # fewer than two free: nothing moves
                for i in range(m):
                    out[i] = 0.0
                return
            for i in range(m):
                tmp[i] = v[i] if free[i] else 0.0
            mean = _pairwise_sum(tmp, m) / nf
            for i in range(m):
                if free[i]:
                    v[i] = v[i] - mean
        for i in range(m):
            if not free[i]:
                v[i] = 0.0
        pinned = False
        for i in range(m):
            if free[i] and ((y[i] <= _TINY and v[i] < 0) or (y[i] >= 1.0 - _TINY and v[i] > 0)):
                free[i] = False
                pinned = True
        if not pinned:
            break
    for i in range(m):
        out[i] = v[i]


@numba.njit(cache=True, nogil=True)
def _deviation(y: np.ndarray, z: np.ndarray, norm: int, simplex: bool, t: np.ndarray) -> float:
    """``budget.deviations`` of one row (NumPy's pairwise sums)."""
    m = y.shape[0]
    if norm == 0:
        for i in range(m):
            t[i] = abs(z[i] - y[i])
        return _pairwise_sum(t, m)
    if norm == 1:
        for i in range(m):
            e = z[i] - y[i]
            t[i] = e * e
        return np.sqrt(_pairwise_sum(t, m))
    for i in range(m):
        a = y[i]
        t[i] = a * (np.log(a) - np.log(z[i])) if a > 0 else 0.0
    dev = _pairwise_sum(t, m)
    if not simplex:
        for i in range(m):
            a = 1.0 - y[i]
            t[i] = a * (np.log(a) - np.log(1.0 - z[i])) if a > 0 else 0.0
        dev = dev + _pairwise_sum(t, m)
    return dev


@numba.njit(cache=True, nogil=True)
def _margin_ok(z: np.ndarray, top: int, need: np.ndarray) -> bool:
    zt = z[top]
    for j in range(z.shape[0]):
        if j != top:
            gap = zt - z[j]
            if not (gap > 0 and gap >= need[j]):
                return False
    return True


@numba.njit(cache=True, nogil=True)
def poison_rows(Y: np.ndarray, V: np.ndarray, eps: float, norm: int, simplex: bool,
                keep_margin: float, flip: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``budget.poison_steps`` row by row: for each output ``Y[i]`` and candidate ``V[i, c]``
    the step along ``±v`` (projected, unit L2) of largest feasible length, checked and
    classified as there. Arguments are validated by the caller.

    Parameters
    ----------
    Y : ndarray of shape (n, m)
    V : ndarray of shape (n, c, m)
    eps : float
    norm : int
        :data:`NORM_CODES`.
    simplex : bool
    keep_margin : float
    flip : bool

    Returns
    -------
    z : ndarray of shape (n, c, m)
    scale : ndarray of shape (n, c)
    limit : ndarray of int64 of shape (n, c)
        Codes of ``budget.LIMITS`` (budget, domain, argmax, tie, zero-direction).
    movable : ndarray of bool of shape (n, c)
    tie : ndarray of bool of shape (n,)
    """
    n, c, m = V.shape
    z_out = np.empty((n, c, m))
    scale = np.zeros((n, c))
    limit = np.empty((n, c), dtype=np.int64)
    movable = np.zeros((n, c), dtype=np.bool_)
    tie = np.zeros(n, dtype=np.bool_)
    v = np.empty(m)
    d = np.empty(m)
    d_best = np.empty(m)
    z_best = np.empty(m)
    need = np.empty(m)
    free = np.empty(m, dtype=np.bool_)
    tmp = np.empty(m)
    z_hi = np.empty(m)
    z_far = np.empty(m)
    u = np.empty(m)
    start = np.sqrt(eps) if norm == 2 else eps
    for r in range(n):
        y = Y[r]
        top = 0
        for i in range(1, m):
            if y[i] > y[top]:
                top = i
        n_top = 0
        for i in range(m):
            if y[i] == y[top]:
                n_top += 1
        tie[r] = n_top >= 2
        for i in range(m):
            need[i] = keep_margin * (y[top] - y[i])
        for k in range(c):
            vmax = 0.0
            for i in range(m):
                vmax = max(vmax, abs(V[r, k, i]))
            best_s, best_dev = 0.0, 0.0
            for i in range(m):
                z_best[i] = y[i]
                d_best[i] = 0.0
            for sgn in range(2 if flip else 1):
                sign = 1.0 if sgn == 0 else -1.0
                for i in range(m):
                    w = V[r, k, i] / vmax if vmax > 0 else V[r, k, i]
                    v[i] = sign * w
                _project_direction(y, v, simplex, d, free, tmp)
                if sgn == 0:
                    for i in range(m):
                        if d[i] != 0:
                            movable[r, k] = True
                            break
                for i in range(m):
                    tmp[i] = d[i] * d[i]
                d_norm = np.sqrt(_pairwise_sum(tmp, m))
                if not (d_norm > 1e-300) or tie[r] or eps == 0:
                    continue
                for i in range(m):
                    d[i] = d[i] / d_norm                 # unit L2 projected direction
                    tmp[i] = abs(d[i])
                s = _search(y, d, start / _pairwise_sum(tmp, m), top, need, eps, norm, simplex,
                            z_hi, z_far, u, tmp)
                dev = _deviation(y, z_hi, norm, simplex, tmp)
                if dev > best_dev:
                    best_s, best_dev = s, dev
                    for i in range(m):
                        z_best[i] = z_hi[i]
                        d_best[i] = d[i]
            lim = 4 if eps > 0 else 0                     # zero-direction / budget
            for i in range(m):
                z_out[r, k, i] = y[i]
            if best_dev != 0.0 and not tie[r]:
                if simplex:
                    for i in range(m):
                        tmp[i] = z_best[i]
                    tot = _pairwise_sum(tmp, m)
                    for i in range(m):
                        z_far[i] = z_best[i] / tot
                else:
                    for i in range(m):
                        z_far[i] = z_best[i]
                ok = True
                lo_z, hi_z = z_far[0], z_far[0]
                for i in range(m):
                    lo_z, hi_z = min(lo_z, z_far[i]), max(hi_z, z_far[i])
                    if i != top and not (z_far[top] > z_far[i]):
                        ok = False
                if ok and not (_deviation(y, z_far, norm, simplex, tmp)
                               <= eps * (1 + 1e-9) + 1e-15 and lo_z >= 0 and hi_z <= 1):
                    ok = False
                if not ok:
                    lim = 2                               # argmax
                else:
                    for i in range(m):
                        z_out[r, k, i] = z_far[i]
                    scale[r, k] = best_s
                    if best_dev >= eps * (1 - 1e-6):
                        lim = 0
                    else:
                        _to_domain(y, d_best, 1.01 * best_s, simplex, z_hi, u)
                        lim = 1 if _margin_ok(z_hi, top, need) else 2
            if tie[r]:
                lim = 3
            limit[r, k] = lim
    return z_out, scale, limit, movable, tie


@numba.njit(cache=True, nogil=True)
def _search(y: np.ndarray, d: np.ndarray, hi: float, top: int, need: np.ndarray, eps: float,
            norm: int, simplex: bool, z_hi: np.ndarray, z_far: np.ndarray, u: np.ndarray,
            t: np.ndarray) -> float:
    """The largest ``s`` (doubling from ``hi``, then 40 bisections) with ``Π(y + s d)`` within
    budget and keeping ``need`` of every top-vs-other gap (``budget._largest_feasible`` of one
    row); returns ``s`` and leaves ``Π(y + s d)`` in ``z_hi``."""
    m = y.shape[0]
    lo = 0.0
    _to_domain(y, d, hi, simplex, z_hi, u)
    for _ in range(64):
        if not _feasible(y, z_hi, top, need, eps, norm, simplex, t):
            break
        _to_domain(y, d, 2 * hi, simplex, z_far, u)
        lo = hi
        same = True
        for i in range(m):
            if z_hi[i] != z_far[i]:
                same = False
                break
        if same:                                         # the path has stopped moving
            return lo
        hi *= 2
        for i in range(m):
            z_hi[i] = z_far[i]
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        _to_domain(y, d, mid, simplex, z_far, u)
        if _feasible(y, z_far, top, need, eps, norm, simplex, t):
            lo = mid
        else:
            hi = mid
    _to_domain(y, d, lo, simplex, z_hi, u)
    return lo


def warm_up() -> None:
    """Compile :func:`poison_rows` now (or load it from numba's on-disk cache), so that a
    server's first answer does not pay the compilation (12–38 s on a cold cache, measured on
    the 2-core machine under load; docs/serving.md)."""
    y = np.array([[0.7, 0.3]])
    v = np.array([[[1.0, -1.0]]]) / np.sqrt(2.0)
    poison_rows(y, v, 0.1, NORM_CODES["l1"], True, 0.1, True)
