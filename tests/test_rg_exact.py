"""Exact enumeration: Möbius couplings, the exact stability matrix and exact moments (fact 1)."""

import math

import pytest
import torch

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.exact import (
    all_states,
    couplings_from_logq,
    exact_chain,
    exact_moments,
    exact_network_jacobians,
    exact_network_pairs,
    exact_stability,
    log_kernel,
    logq_from_couplings,
    mobius,
    output_logq_mc,
    zeta,
)
from rgaudit.rg.operators import ProductBasis
from rgaudit.rg.spectra import fisher_singular_values

F64 = torch.float64


def _net(widths, seed, **kw):
    g = torch.Generator().manual_seed(seed)
    net = DeepRBM.random(widths, generator=g, dtype=F64, **kw)
    x = torch.rand(3, widths[0], generator=g, dtype=F64)
    return net, x


def test_mobius_zeta_roundtrip_and_product_distribution():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 32, generator=g, dtype=F64)
    torch.testing.assert_close(zeta(mobius(f)), f, rtol=0, atol=1e-12)
    # independent units: q(h) = Π p_i^h_i (1-p_i)^(1-h_i)  ⇒  g_i = −logit(p_i), no products
    p = torch.tensor([0.2, 0.7, 0.55], dtype=F64)
    s = all_states(3)
    logq = (s * p.log() + (1 - s) * (1 - p).log()).sum(-1)
    gc = couplings_from_logq(logq)
    expect = torch.zeros(7, dtype=F64)
    for i in range(3):
        expect[(1 << i) - 1] = -torch.logit(p[i])
    torch.testing.assert_close(gc, expect, rtol=0, atol=1e-12)
    torch.testing.assert_close(logq_from_couplings(gc), logq, rtol=0, atol=1e-12)


def test_hamiltonian_sign_convention():
    # H = Σ g_α O_α and q ∝ exp(−H): a positive single coupling suppresses the unit.
    logq = logq_from_couplings(torch.tensor([2.0, 0.0, 0.0], dtype=F64))
    q = logq.exp()
    assert q[1] < q[0] and math.isclose(float(q[1] / q[0]), math.exp(-2.0), rel_tol=1e-12)


def test_exact_chain_is_normalised_and_matches_brute_force():
    net, x = _net([5, 3, 4], 1)
    lq = exact_chain(net, x)
    assert lq[0] is None
    torch.testing.assert_close(lq[2].exp().sum(-1), torch.ones(3, dtype=F64))
    # brute force q_2(h2) = Σ_h1 t_2(h2|h1) t_1(h1|x)
    s1, s2 = all_states(3), all_states(4)
    l1 = net.layer(1).log_prob_up(s1.unsqueeze(0), x[:, None, :])          # (3, 8)
    l2 = net.layer(2).log_prob_up(s2[:, None, :], s1[None, :, :])          # (16, 8)
    brute = torch.logsumexp(l2.unsqueeze(0) + l1.unsqueeze(1), dim=-1)
    torch.testing.assert_close(lq[2], brute, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_complete_basis_T_equals_exact_jacobian(seed, direction):
    """DESIGN fact 1: T = C⁻¹D with exact expectations is the Jacobian of the coupling map."""
    net, x = _net([4, 5, 4, 3], seed)
    v = x if direction == "up" else torch.rand(3, 3, generator=torch.Generator().manual_seed(9),
                                              dtype=F64)
    pairs = exact_network_pairs(net, v, direction)
    for b in range(v.shape[0]):
        jac = exact_network_jacobians(net, v[b], direction)
        jac_fd = exact_network_jacobians(net, v[b], direction, method="fd")
        for i in range(1, net.depth):
            t = pairs[i].T[b]
            rel = (t - jac[i]).norm() / jac[i].norm()
            # exact vs exact: observed ~1e-13; central finite differences ~1e-9
            assert rel < 1e-10, f"pair {i}: relative error {rel:.2e}"
            assert (jac_fd[i] - jac[i]).norm() / jac[i].norm() < 1e-7
            assert not pairs[i].solve_info[b].regularised


def test_exact_fisher_singular_values_are_at_most_one():
    for seed in range(3):
        net, x = _net([4, 5, 4, 3], seed, scale=2.0)
        for pair in exact_network_pairs(net, x)[1:]:
            for b in range(x.shape[0]):
                s = fisher_singular_values(pair.T[b], pair.C_next[b], pair.C_prev[b])
                assert s.max() <= 1 + 1e-10 and s.min() >= 0


def test_truncated_exact_moments_and_singles_shapes():
    net, x = _net([4, 4, 3], 3)
    lq = exact_chain(net, x)
    pair = exact_moments(lq[1], log_kernel(net.layer(2)), ProductBasis.singles(4),
                         ProductBasis.singles(3))
    assert pair.T.shape == (3, 3, 4) and torch.isfinite(pair.T).all()


def test_one_unit_tied_fixed_point():
    """DESIGN fact 4: P(h'=1|h) = σ(wh + a) has T* = σ(w + a) − σ(a) at its fixed point."""
    for w, a in [(1.5, -0.7), (-2.0, 0.4), (0.8, 0.1)]:
        net = DeepRBM([1] * 41, tied=True, dtype=F64)  # |Δ|^40 < 1e-8
        with torch.no_grad():
            net.layer(1).W.fill_(w)
            net.layer(1).a.fill_(a)
        delta = torch.sigmoid(torch.tensor(w + a, dtype=F64)) - torch.sigmoid(
            torch.tensor(a, dtype=F64))
        p_star = torch.sigmoid(torch.tensor(a, dtype=F64)) / (1 - delta)
        g_star = -torch.logit(p_star).reshape(1)
        t_star = exact_stability(g_star, log_kernel(net.layer(1)))
        torch.testing.assert_close(t_star, delta.reshape(1, 1), rtol=1e-12, atol=1e-12)
        # the chain flows to the fixed point; its deepest T is T*
        jac = exact_network_jacobians(net, torch.tensor([0.3], dtype=F64))
        torch.testing.assert_close(jac[-1], delta.reshape(1, 1), rtol=1e-8, atol=1e-10)


def test_output_distribution_from_sampled_chains():
    net, x = _net([5, 4, 3], 4)
    exact = exact_chain(net, x)[2].exp()
    n = 20000
    est = output_logq_mc(net, x, n, torch.Generator().manual_seed(5), chunk=4000).exp()
    # each q(y) is a mean of t(y|h) ∈ [0,1]: Var ≤ q/n, so |error| ≤ 5 sqrt(q/n)
    assert ((est - exact).abs() <= 5 * (exact / n).sqrt()).all()
    torch.testing.assert_close(est.sum(-1), torch.ones(3, dtype=F64))


def test_exact_mode_refuses_large_layers():
    net, x = _net([4, 20, 3], 0)
    with pytest.raises(ValueError, match="exact enumeration"):
        exact_chain(net, x)
