"""rgaudit.stats against closed forms.

Statistical check: the bootstrap standard error of a mean against its closed form at 5 times
its Monte Carlo relative error 1/√(2B) (two-sided normal, false-failure rate ≈ 6e-7); the rest
is exact up to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from rgaudit.stats import cluster_bootstrap, loglog_fit, loglog_slopes, wilson_interval


def test_wilson_interval_matches_the_closed_form():
    k, n = 7, 20
    z = norm.ppf(0.975)
    p = k / n
    mid = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert wilson_interval(k, n) == pytest.approx((mid - half, mid + half), rel=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_loglog_fit_and_vectorised_slopes_recover_a_power_law():
    x = [16, 64, 256, 1024]
    fit = loglog_fit(x, [3.0 * v**-0.5 for v in x])
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(3.0), abs=1e-12)
    assert fit.slope_se == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    y = np.exp(rng.normal(size=(5, 4)))
    slopes = loglog_slopes(x, y)
    assert slopes.shape == (5,)
    for row, s in zip(y, slopes, strict=True):
        assert s == pytest.approx(loglog_fit(x, row).slope, rel=1e-10)
    assert math.isnan(loglog_fit(x[:2], [1.0, 2.0]).slope_se)
    with pytest.raises(ValueError, match="equal length"):
        loglog_fit(x, [1.0, 2.0])


def test_cluster_bootstrap_standard_error_of_a_mean():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(40, 3))  # 40 clusters of 3 correlated-free values
    n_boot = 2000
    est = cluster_bootstrap([data], lambda r: r.mean(axis=(1, 2))[:, None], n_resamples=n_boot,
                            rng=np.random.default_rng(2))
    means = data.mean(axis=1)  # the statistic is the mean of the cluster means
    expected = means.std(ddof=0) / math.sqrt(len(means))  # plug-in (bootstrap) standard error
    assert est.se[0] == pytest.approx(expected, rel=5 / math.sqrt(2 * n_boot))
    assert est.low[0] < data.mean() < est.high[0]
