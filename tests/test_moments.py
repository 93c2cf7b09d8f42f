"""Streaming moments and the regularised solve against direct computations.

Family-wise false-failure rate: one statistical check, the jackknife error of a mean within 3σ
of its chi distribution (normal approximation, ≈ 0.3 %); the rest is exact arithmetic.
"""

import numpy as np
import pytest
import torch

from rgaudit.rg.moments import CovarianceAccumulator, jackknife
from rgaudit.rg.solve import solve_cov


def _data(seed: int, s: int = 4000):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(s, 3, generator=g, dtype=torch.float64) + 100.0  # large mean: cancellation
    b = a[:, :2] @ torch.tensor([[1.0, 0.5], [0.0, 2.0]], dtype=torch.float64)
    b = b + 0.3 * torch.randn(s, 2, generator=g, dtype=torch.float64)
    return a, b


def test_chunked_moments_equal_numpy_covariance():
    a, b = _data(0)
    acc = CovarianceAccumulator(3, 2, n_blocks=8)
    for i in range(0, a.shape[0], 250):
        acc.update(a[i:i + 250], b[i:i + 250])
    m = acc.moments()
    full = np.cov(np.hstack([a.numpy(), b.numpy()]).T, bias=True)
    np.testing.assert_allclose(m.c_aa.numpy(), full[:3, :3], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m.c_ab.numpy(), full[:3, 3:], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m.c_bb.numpy(), full[3:, 3:], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(m.mean_a.numpy(), a.mean(0).numpy(), rtol=1e-12)
    assert acc.n_samples == a.shape[0]


def test_batched_accumulator_matches_per_input():
    a, b = _data(1, 800)
    a2, b2 = _data(2, 800)
    acc = CovarianceAccumulator(3, 2, n_blocks=4, batch_shape=(2,))
    for i in range(0, 800, 100):
        acc.update(torch.stack([a[i:i + 100], a2[i:i + 100]]),
                   torch.stack([b[i:i + 100], b2[i:i + 100]]))
    m = acc.moments()
    full = np.cov(np.hstack([a2.numpy(), b2.numpy()]).T, bias=True)
    np.testing.assert_allclose(m.c_ab[1].numpy(), full[:3, 3:], rtol=1e-10, atol=1e-10)


def test_jackknife_error_of_mean_matches_analytic():
    # The jackknife SE of a mean over blocks equals the SE of the mean of block means.
    g = torch.Generator().manual_seed(3)
    acc = CovarianceAccumulator(1, 1, n_blocks=20)
    x = torch.randn(20 * 500, 1, generator=g, dtype=torch.float64)
    for i in range(20):
        acc.update(x[i * 500:(i + 1) * 500], x[i * 500:(i + 1) * 500])
    est = jackknife(acc, lambda m: m.mean_a)
    block_means = x.reshape(20, 500).mean(1)
    expected = block_means.std(unbiased=True) / 20**0.5
    torch.testing.assert_close(est.stderr[0], expected, rtol=1e-8, atol=0)
    # and it is a sane estimate of 1/sqrt(n): within 3 sigma of the chi distribution with 19 dof
    assert abs(float(est.stderr[0]) * (len(x) ** 0.5) - 1) < 3 * (1 / (2 * 19)) ** 0.5


def test_bad_chunks_are_rejected():
    acc = CovarianceAccumulator(2, 2, n_blocks=2)
    with pytest.raises(ValueError, match="do not match"):
        acc.update(torch.zeros(5, 3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="NaN"):
        acc.update(torch.full((5, 2), float("nan")), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="no samples"):
        acc.moments()
    with pytest.raises(ValueError, match="n_blocks"):
        CovarianceAccumulator(1, 1, n_blocks=1)


def test_solve_drops_constant_operator_and_reports():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    x[:, 1] = 1.0  # constant operator
    c = torch.cov(x.T, correction=0)
    t_true = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], dtype=torch.float64)
    d = c @ t_true
    t, info = solve_cov(c, d)
    assert info.dropped.tolist() == [1]
    assert info.kept.tolist() == [0, 2]
    assert not info.regularised
    torch.testing.assert_close(t, t_true[[0, 2]], rtol=1e-10, atol=1e-10)


def test_solve_regularises_and_flags_singular_covariance():
    v = torch.tensor([[1.0, 1.0], [1.0, 1.0 + 1e-14]], dtype=torch.float64)
    d = torch.eye(2, dtype=torch.float64)
    t, info = solve_cov(v, d, max_cond=1e8)
    assert info.regularised and info.lam > 0 and info.cond > 1e8
    assert torch.isfinite(t).all()
    with pytest.raises(ValueError, match="every operator is constant"):
        solve_cov(torch.zeros(2, 2, dtype=torch.float64), d)


def test_replicate_condition_numbers_checked_like_the_full_sample():
    from rgaudit.rg.solve import solve_replicates

    c = torch.eye(3, dtype=torch.float64)
    d = torch.ones(3, 2, dtype=torch.float64)
    _, info = solve_cov(c, d, max_cond=1e6)
    assert not info.regularised
    reps = c.repeat(4, 1, 1)
    reps[2, 2, 2] = 1e-8            # finite solve, but cond 1e8 > max_cond: must be regularised
    x, info_r = solve_replicates(reps, d.repeat(4, 1, 1), info, max_cond=1e6)
    assert info_r.n_replicates_regularised == 1
    assert info_r.max_cond_replicates == pytest.approx(1e8)
    assert torch.isfinite(x).all() and float(x[2, 2].abs().max()) < 1e7  # not 1e8
    torch.testing.assert_close(x[0], d)
    assert info_r.to_dict()["n_replicates_regularised"] == 1
