"""The PRADA extraction detector (rgaudit.serve.prada): exact bookkeeping on a hand-computed
stream, the Shapiro–Wilk verdict on synthetic distributions, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rgaudit.serve.prada import ClientStatus, PradaConfig, PradaMonitor, shapiro_w


def _feed(mon: PradaMonitor, client: str, x: np.ndarray, labels: np.ndarray) -> ClientStatus:
    st = None
    for i in range(len(x)):                          # one query at a time, as a stream
        st = mon.observe(client, x[i:i + 1], labels[i:i + 1])
    assert st is not None
    return st


def test_growing_set_and_distances_match_a_hand_computation() -> None:
    # 1-D queries of one class: 0, 1, 3, 3.1, 10; class 1: 5, 5
    # G={0}, DG=[0], T=0 | x=1: d=1>0 add, DG=[0,1] -> T=max(0, .5-.5)=0
    # x=3: d=2>0 add, DG=[0,1,2] -> T = 1 - sqrt(2/3) = 0.1835 | x=3.1: d=.1 < T, not added
    # x=10: d=7 add | class 1: 5 starts G_1 (no distance), 5 again: d=0, not added (0 <= T_1=0)
    x = np.array([[0.0], [1.0], [3.0], [3.1], [10.0], [5.0], [5.0]])
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    mon = PradaMonitor(PradaConfig(min_distances=3, test_every=1, delta=0.0), 1)
    st = _feed(mon, "a", x, labels)
    np.testing.assert_allclose(mon.distances("a"), [1.0, 2.0, 0.1, 7.0, 0.0], atol=1e-6)
    assert st.n_queries == 7 and st.n_distances == 5
    assert st.growing_set == 4 + 1                   # 0, 1, 3, 10 | 5
    assert st.w == pytest.approx(stats.shapiro([1.0, 2.0, 0.1, 7.0, 0.0]).statistic, abs=1e-6)
    assert not st.flagged and st.flagged_at is None


def test_shapiro_w_drops_outliers_and_handles_degenerate_input() -> None:
    rng = np.random.default_rng(0)
    d = rng.standard_normal(200)
    assert shapiro_w(d, None) == pytest.approx(stats.shapiro(d).statistic)
    with_outlier = np.append(d, 50.0)                # beyond 3 sd: dropped before the test
    assert shapiro_w(with_outlier, 3.0) == pytest.approx(stats.shapiro(d).statistic)
    assert shapiro_w(np.full(150, 0.5), 3.0) == 1.0  # all equal: no evidence, never flags
    assert shapiro_w(np.array([1.0, 2.0]), None) == 1.0


def test_normal_distances_are_not_flagged() -> None:
    # W of 200 normal draws: P(W < 0.9) is about 1e-10 (scipy's p-value of W = 0.895 at
    # n = 200), so this check fails falsely with probability < 1e-9.
    rng = np.random.default_rng(1)
    assert shapiro_w(np.abs(3.0 + rng.standard_normal(200)), 3.0) > 0.9


def test_honest_like_stream_not_flagged_attack_pattern_flagged() -> None:
    # Honest-like: i.i.d. uniform points in [0, 1]^16, 300 queries, 4 classes. Over 300 seeds
    # the smallest W ever reached was 0.933 (1 % quantile 0.939): below delta = 0.85 with
    # margin 0.08 -> false failure well under 1/300 (measured 0/300).
    d, cfg = 16, PradaConfig(delta=0.85, min_distances=50, test_every=1)
    rng = np.random.default_rng(7)
    mon = PradaMonitor(cfg, d)
    honest = _feed(mon, "honest", rng.random((300, d)), rng.integers(0, 4, 300))
    assert not honest.flagged and honest.w is not None and honest.w_min is not None
    assert honest.w_min > 0.85
    # Attack pattern (Jacobian-augmentation-like): 20 natural seeds, then 5 small sign steps
    # around each. Over 300 seeds the largest final W was 0.59: far below 0.85.
    base = rng.random((20, d))
    steps = np.clip(np.repeat(base, 5, 0) + 1e-3 * rng.choice([-1.0, 1.0], (100, d)), 0, 1)
    x = np.concatenate([base, steps])
    thief = _feed(mon, "thief", x, np.zeros(len(x), dtype=int))
    assert thief.flagged and thief.w is not None and thief.w < 0.85
    assert thief.flagged_at is not None and 50 < thief.flagged_at <= len(x)
    assert mon.is_flagged("thief") and not mon.is_flagged("honest")
    # a flag is sticky: later natural queries do not clear it
    later = _feed(mon, "thief", rng.random((50, d)), rng.integers(0, 4, 50))
    assert later.flagged and later.flagged_at == thief.flagged_at


def test_memory_is_bounded() -> None:
    d, k = 8, 3
    cfg = PradaConfig(min_distances=20, test_every=5, max_kept_per_class=7,
                      max_distances=40, max_clients=3, delta=0.0)
    mon = PradaMonitor(cfg, d)
    rng = np.random.default_rng(3)
    for c in range(5):
        st = mon.observe(f"c{c}", rng.random((500, d)), rng.integers(0, k, 500))
        assert st.n_queries == 500 and st.n_distances == 40 and st.growing_set <= 7 * k
    assert [s.client for s in mon.report()] == ["c2", "c3", "c4"]   # least recent dropped
    assert mon.status("c0") is None and len(mon.distances("c4")) == 40
    for client, state in mon._clients.items():
        used = state.distances.nbytes + sum(g.rows.nbytes for g in state.sets.values())
        assert used <= cfg.bytes_per_client(d, k), client
    # the window holds the last 40 distances, oldest first
    mon2 = PradaMonitor(cfg, 1)
    x = np.arange(100, dtype=float)[:, None] ** 1.5
    mon2.observe("z", x, np.zeros(100, dtype=int))
    want = np.diff(x[:, 0])[-40:]                    # each query's nearest is its predecessor
    np.testing.assert_allclose(mon2.distances("z"), want, rtol=1e-5)   # float32 storage


@pytest.mark.parametrize("kwargs, match", [
    ({"delta": 1.5}, "--prada-delta"), ({"min_distances": 2}, "minimum number"),
    ({"max_distances": 50}, "max_distances"), ({"max_clients": 0}, "max_clients"),
    ({"outlier_sigma": -1.0}, "outlier_sigma"), ({"test_every": 0}, "test_every")])
def test_config_is_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PradaConfig(**kwargs)


def test_observe_checks_shapes() -> None:
    mon = PradaMonitor(PradaConfig(), 4)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        mon.observe("a", np.zeros((2, 3)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="labels"):
        mon.observe("a", np.zeros((2, 4)), np.zeros(3, dtype=int))
