"""RBM and DeepRBM sampling against exact enumeration (chi-square, fixed seeds).

Family-wise false-failure rate: 5 chi-square tests at p < 1e-3 (0.5 %), 8 |z| < 4.5 checks of
``predict_proba`` (6.8e-6 each), the standard-error check at rtol 0.2 (≥ 5.7σ of its 1/√(2n)
relative error, < 1e-7) and the chunking z-test (1.3e-4): ≈ 0.5 % in all.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.rbm import RBM

N_SAMPLES = 40_000
P_MIN = 1e-3  # reject a sampler only when the chi-square p-value is below this


def states(n: int) -> torch.Tensor:
    """All 2^n binary vectors, shape (2^n, n), float64, in the order of :func:`state_index`."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def state_index(h: torch.Tensor) -> torch.Tensor:
    """Row index into :func:`states` of each binary vector in ``h`` (..., n)."""
    n = h.shape[-1]
    weights = 2 ** torch.arange(n - 1, -1, -1)
    return (h.round().long() * weights).sum(-1)


def assert_matches(samples: torch.Tensor, exact: np.ndarray) -> None:
    """Chi-square goodness of fit of sampled states against exact probabilities.

    States expected fewer than 5 times are pooled into one cell (the usual validity rule).
    """
    counts = np.bincount(state_index(samples.reshape(-1, samples.shape[-1])).numpy(),
                         minlength=exact.size)
    expected = exact * counts.sum()
    rare = expected < 5
    if rare.any():
        counts = np.append(counts[~rare], counts[rare].sum())
        expected = np.append(expected[~rare], expected[rare].sum())
    assert (~rare).sum() >= 3, "test set-up: too few well-populated states"
    p = chisquare(counts, expected).pvalue
    assert p > P_MIN, f"sampled histogram disagrees with enumeration (p = {p:.2e})"


def exact_up(rbm: RBM, v: torch.Tensor) -> torch.Tensor:
    """``t(h | v) ∝ exp(hᵀWv + aᵀh)`` by enumeration; shape (2^n_out,)."""
    h = states(rbm.n_out)
    logw = h @ (rbm.W.detach() @ v + rbm.a.detach())
    return torch.softmax(logw, 0)


def exact_down(rbm: RBM, h: torch.Tensor) -> torch.Tensor:
    """``t(v | h) ∝ exp(hᵀWv + bᵀv)`` by enumeration; shape (2^n_in,)."""
    v = states(rbm.n_in)
    logw = v @ (rbm.W.detach().T @ h + rbm.b.detach())
    return torch.softmax(logw, 0)


@pytest.fixture
def rbm() -> RBM:
    return RBM.random(3, 3, scale=2.0, bias_scale=1.0, generator=torch.Generator().manual_seed(1))


def test_rbm_up_conditional_matches_enumeration(rbm: RBM) -> None:
    v = torch.tensor([1.0, 0.3, 0.0], dtype=torch.float64)  # grey level allowed
    gen = torch.Generator().manual_seed(2)
    h = rbm.sample_up(v.expand(N_SAMPLES, 3), gen)
    assert_matches(h, exact_up(rbm, v).numpy())


def test_rbm_down_conditional_matches_enumeration(rbm: RBM) -> None:
    h = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    v = rbm.sample_down(h.expand(N_SAMPLES, 3), gen)
    assert_matches(v, exact_down(rbm, h).numpy())


@pytest.fixture
def tiny_net() -> DeepRBM:
    return DeepRBM.random([3, 2, 2], scale=2.0, bias_scale=1.0,
                         generator=torch.Generator().manual_seed(4))


def test_deep_chain_up_joint_matches_enumeration(tiny_net: DeepRBM) -> None:
    """Joint law of (h_1, h_2) given x: t_1(h_1|x) t_2(h_2|h_1), four units, 16 states."""
    x = torch.tensor([0.2, 1.0, 0.0], dtype=torch.float64)
    p1 = exact_up(tiny_net.layer(1), x)
    h1s = states(2)
    joint = torch.stack([p1[i] * exact_up(tiny_net.layer(2), h1s[i]) for i in range(4)])
    hs = tiny_net.sample_up(x, N_SAMPLES, torch.Generator().manual_seed(5))
    assert [tuple(t.shape) for t in hs] == [(N_SAMPLES, 3), (N_SAMPLES, 2), (N_SAMPLES, 2)]
    assert_matches(torch.cat([hs[1], hs[2]], -1), joint.reshape(-1).numpy())


def test_deep_chain_down_joint_matches_enumeration(tiny_net: DeepRBM) -> None:
    """Generation chain from y: t_2(h_1|y) t_1(x|h_1) over (h_1, x), 32 states."""
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    p1 = exact_down(tiny_net.layer(2), y)
    h1s = states(2)
    joint = torch.stack([p1[i] * exact_down(tiny_net.layer(1), h1s[i]) for i in range(4)])
    hs = tiny_net.sample_down(y, N_SAMPLES, torch.Generator().manual_seed(6))
    assert [tuple(t.shape) for t in hs] == [(N_SAMPLES, 2), (N_SAMPLES, 2), (N_SAMPLES, 3)]
    assert_matches(torch.cat([hs[1], hs[2]], -1), joint.reshape(-1).numpy())


def exact_proba(net: DeepRBM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and variance of ``σ(W_N h_{N-1} + a_N)`` under the chain, for depth 2."""
    p1 = exact_up(net.layer(1), x)
    out = net.layer(2).prob_up(states(net.widths[1])).detach()  # (4, n_out)
    mean = p1 @ out
    var = p1 @ out**2 - mean**2
    return mean, var


def test_predict_proba_mean_and_stderr(tiny_net: DeepRBM) -> None:
    x = torch.tensor([[0.2, 1.0, 0.0], [1.0, 1.0, 0.5]], dtype=torch.float64)
    for n in (400, 3200):
        est = tiny_net.predict_proba(x, n, torch.Generator().manual_seed(7), return_stderr=True)
        for i in range(2):
            mean, var = exact_proba(tiny_net, x[i])
            expected_se = (var / n).sqrt()
            # the reported standard error estimates the true one (relative error ~ 1/sqrt(2n))
            torch.testing.assert_close(est.stderr[i], expected_se, rtol=0.2, atol=1e-12)
            z = (est.mean[i] - mean).abs() / expected_se.clamp_min(1e-12)
            assert z.max() < 4.5, f"predict_proba off by {z.max():.1f} standard errors (n={n})"
    single = tiny_net.predict_proba(x[0], 10, torch.Generator().manual_seed(0))
    assert single.shape == (2,)


def test_predict_proba_is_reproducible_and_chunking_changes_only_the_draws(
        tiny_net: DeepRBM) -> None:
    x = torch.tensor([[0.2, 1.0, 0.0]], dtype=torch.float64)
    n = 2000
    a = tiny_net.predict_proba(x, n, torch.Generator().manual_seed(8), chunk=500)
    b = tiny_net.predict_proba(x, n, torch.Generator().manual_seed(8), chunk=500)
    assert torch.equal(a, b)  # same generator state -> the same estimate
    # another chunk size consumes the stream differently, so the draws differ, but both are
    # estimates of the same exact probabilities: |a - c| / (√2 se) is a z-score. Bonferroni
    # over the 2 outputs at |z| < 4: false-failure rate 2 × 6.3e-5 ≈ 1.3e-4.
    c = tiny_net.predict_proba(x, n, torch.Generator().manual_seed(8), chunk=37)
    assert not torch.equal(a, c)
    _, var = exact_proba(tiny_net, x[0])
    z = (a[0] - c[0]).abs() / (2 * var / n).sqrt().clamp_min(1e-12)
    assert z.max() < 4.0, z
    with pytest.raises(ValueError, match="n_samples"):
        tiny_net.predict_proba(x, 0)


def test_mean_field_gradients_flow() -> None:
    net = DeepRBM.random([6, 5, 4, 3], generator=torch.Generator().manual_seed(9))
    mf = net.mean_field()
    x = torch.rand(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    x.requires_grad_(True)
    logits = mf(x)
    assert logits.shape == (8, 3)
    torch.nn.functional.cross_entropy(logits, torch.arange(8) % 3).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for k in range(1, net.depth + 1):
        layer = net.layer(k)
        for name in ("W", "a"):
            g = getattr(layer, name).grad
            assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, (k, name)
    # the surrogate shares parameters with the network
    assert mf.net is net and set(map(id, mf.parameters())) == set(map(id, net.parameters()))


def test_mean_field_matches_hand_computation() -> None:
    net = DeepRBM.random([4, 3, 2], generator=torch.Generator().manual_seed(11))
    x = torch.rand(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    l1, l2 = net.layer(1), net.layer(2)
    expected = torch.sigmoid(x @ l1.W.T + l1.a) @ l2.W.T + l2.a
    torch.testing.assert_close(net.mean_field_logits(x), expected)


def test_tied_network_shares_one_rbm() -> None:
    net = DeepRBM.random([4, 4, 4, 4], tied=True, generator=torch.Generator().manual_seed(13))
    assert len(net.layers) == 1 and net.depth == 3
    assert net.layer(1) is net.layer(2) is net.layer(3)
    assert sum(p.numel() for p in net.parameters()) == 4 * 4 + 4 + 4
    with pytest.raises(ValueError, match="equal widths"):
        DeepRBM([4, 3, 4], tied=True)
    with pytest.raises(IndexError):
        net.layer(4)
