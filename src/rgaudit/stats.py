"""Small statistics on top of scipy: binomial intervals, log–log fits, cluster bootstrap.

Nothing here is new mathematics; each function names the scipy routine it wraps and fixes the
conventions the studies share (95 % intervals, natural logarithms, resampling whole clusters —
e.g. random networks — rather than the correlated inputs inside one cluster).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def wilson_interval(successes: int, trials: int,
                    confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``scipy.stats.binomtest``).

    Parameters
    ----------
    successes, trials : int
    confidence : float, default 0.95

    Returns
    -------
    (low, high) : tuple of float
        ``(nan, nan)`` when ``trials == 0``.
    """
    if trials == 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(
        confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


@dataclass(frozen=True)
class LogLogFit:
    """Least-squares line ``log y = intercept + slope · log x`` (``scipy.stats.linregress``).

    ``slope_se`` is the regression standard error of the slope (NaN with fewer than 3 points);
    it ignores any noise in the ``y`` values beyond the scatter about the line.
    """

    slope: float
    intercept: float
    slope_se: float


def loglog_fit(x: Sequence[float], y: Sequence[float] | np.ndarray) -> LogLogFit:
    """Fit ``log y`` against ``log x``; both of length n ≥ 2, positive."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if lx.shape != ly.shape or lx.ndim != 1 or len(lx) < 2:
        raise ValueError(f"need two 1-D sequences of equal length >= 2, got {lx.shape}, "
                         f"{ly.shape}")
    res = stats.linregress(lx, ly)
    se = float(res.stderr) if len(lx) > 2 else math.nan
    return LogLogFit(slope=float(res.slope), intercept=float(res.intercept), slope_se=se)


def loglog_slopes(x: Sequence[float], y: np.ndarray) -> np.ndarray:
    """Vectorised least-squares slopes of ``log y`` against ``log x``.

    Parameters
    ----------
    x : sequence of float, length n
    y : ndarray of shape (..., n), positive

    Returns
    -------
    ndarray of shape (...)
        ``numpy.polynomial.polynomial.polyfit`` degree-1 coefficient of every row.
    """
    lx = np.log(np.asarray(x, dtype=float))
    ly = np.log(np.asarray(y, dtype=float))
    flat = ly.reshape(-1, ly.shape[-1]).T  # (n, rows)
    coef = np.polynomial.polynomial.polyfit(lx, flat, 1)  # (2, rows)
    return coef[1].reshape(ly.shape[:-1])


@dataclass(frozen=True)
class BootstrapEstimate:
    """Percentile bootstrap of a vector statistic (``scipy.stats.bootstrap``).

    Attributes
    ----------
    low, high : ndarray of shape (k,)
        The ``confidence`` percentile interval.
    se : ndarray of shape (k,)
        Standard deviation of the bootstrap distribution.
    """

    low: np.ndarray
    high: np.ndarray
    se: np.ndarray


def cluster_bootstrap(
    clusters: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    n_resamples: int,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
) -> BootstrapEstimate:
    """Percentile bootstrap that resamples whole clusters, each sample independently.

    Sample ``j`` is an array whose first axis indexes clusters (e.g. networks, shape
    ``(n_j, ...)``); resampling draws ``n_j`` clusters with replacement from it, independently
    for every sample (``scipy.stats.bootstrap`` with ``paired=False`` on cluster indices).

    Parameters
    ----------
    clusters : sequence of ndarray, each of shape (n_j, ...)
    statistic : callable
        ``statistic(*resampled)`` with every argument of shape ``(B, n_j, ...)`` (``B``
        resamples at once) returns an array of shape ``(B, k)``.
    n_resamples : int
    rng : numpy.random.Generator
    confidence : float, default 0.95

    Returns
    -------
    BootstrapEstimate
    """
    data = [np.asarray(c) for c in clusters]

    def by_index(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        picked = [d[np.moveaxis(i, axis, -1).reshape(-1, i.shape[axis])]
                  for d, i in zip(data, idx, strict=True)]
        return np.asarray(statistic(*picked)).T  # (k, B): scipy wants the resamples last

    res = stats.bootstrap(tuple(np.arange(len(d)) for d in data), by_index, vectorized=True,
                          paired=False, n_resamples=n_resamples, method="percentile",
                          confidence_level=confidence, random_state=rng)  # rng= needs scipy>=1.15
    return BootstrapEstimate(low=np.atleast_1d(res.confidence_interval.low),
                             high=np.atleast_1d(res.confidence_interval.high),
                             se=np.atleast_1d(res.standard_error))


def censored_quantiles(values: Sequence[float] | np.ndarray, qs: Sequence[float]) -> list[float]:
    """Quantiles of right-censored values: ``+inf`` means "beyond the search range".

    Linear interpolation (``numpy.quantile``'s default), with every ``inf`` ranked above every
    finite value; a quantile whose interpolation touches an ``inf`` is ``inf`` (the censored
    value is unknown, so no number between is claimed). Without ``inf`` entries this is
    ``numpy.quantile(values, qs)``. Used for minimal flipping ε, where ``inf`` = not flipped.

    Parameters
    ----------
    values : array_like of shape (n,)
        Finite values or ``+inf``; no NaN.
    qs : sequence of float in [0, 1]

    Returns
    -------
    list of float, one per ``q``
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0 or np.isnan(x).any() or (x == -np.inf).any():
        raise ValueError("censored_quantiles needs at least one value, none NaN or -inf")
    fin = np.isfinite(x)
    # the infs sit at the end of x; any finite stand-in leaves the finite part in place
    filled = np.where(fin, x, x[fin].max() if fin.any() else 0.0)
    out = np.quantile(filled, np.asarray(qs, dtype=np.float64))
    top = np.ceil(np.asarray(qs, dtype=np.float64) * (x.size - 1)).astype(int)
    return [float(o) if fin[t] else math.inf for o, t in zip(out, top, strict=True)]
