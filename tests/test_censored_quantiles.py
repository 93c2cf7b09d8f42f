"""``stats.censored_quantiles``: deterministic checks (false-failure rate 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rgaudit.stats import censored_quantiles

QS = [0.25, 0.5, 0.75]


def test_without_censoring_it_is_numpys_linear_quantile():
    v = np.random.default_rng(0).exponential(size=11)
    assert censored_quantiles(v, QS) == [float(t) for t in np.quantile(v, QS)]


def test_a_quantile_touching_an_inf_is_inf_and_one_below_is_a_number():
    # sorted [1, 2, 3, inf, inf]: q = 0.5 → position 2 exactly (3.0); 0.75 → position 3 (inf)
    v = [3.0, math.inf, 1.0, 2.0, math.inf]
    assert censored_quantiles(v, [0.5, 0.75]) == [3.0, math.inf]
    # q = 0.6 → position 2.4: interpolates towards the first inf, so inf (not 3 + 0.4·∞)
    assert censored_quantiles(v, [0.6]) == [math.inf]
    assert censored_quantiles([math.inf, math.inf], QS) == [math.inf] * 3


def test_it_matches_the_old_sentinel_rule_on_quartiles():
    # the rule it replaces: substitute 1e300 for inf, take torch-style linear quantiles, read
    # anything ≥ 1e299 as inf (exact for quartiles: interpolation weights are multiples of 1/4)
    rng = np.random.default_rng(1)
    for n in range(1, 12):
        v = rng.exponential(size=n)
        v[rng.random(n) < 0.4] = np.inf
        raw = np.quantile(np.where(np.isfinite(v), v, 1e300), QS)
        old = [float(t) if t < 1e299 else math.inf for t in raw]
        assert censored_quantiles(v, QS) == old


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [-math.inf, 1.0]])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError, match="censored_quantiles"):
        censored_quantiles(bad, QS)
