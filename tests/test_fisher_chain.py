"""Chain FIM (eq. 27–28) against the exact FIM; ∂g^(1)/∂x analytic versus eq. 29.

Family-wise false-failure rate: one statistical check (``agrees_within_errors``, 1 % for its
max-|z| half); every other assertion is exact up to rounding.
"""

from __future__ import annotations

import torch
from stat_checks import agrees_within_errors

from rgaudit.fisher.chain import chain_fim, chain_fim_jackknife, fim_from_mcrg
from rgaudit.fisher.exact import all_states, exact_fim, exact_log_q, exact_pair_distribution
from rgaudit.fisher.first_layer import (
    dg1_dx_analytic,
    dg1_dx_linear_system,
    dg1_dx_sampled,
    first_layer_score,
)
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.operators import ProductBasis


def _net(widths, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    net = DeepRBM.random(widths, generator=g, scale=scale)
    x = torch.rand(2, widths[0], generator=g, dtype=torch.float64)
    return net, x


def _cov(p, A, B):
    """Cov(A, B) under weights p (S,) with A (S, m_a), B (S, m_b)."""
    ma, mb = p @ A, p @ B
    return A.T @ (p.unsqueeze(-1) * B) - ma.unsqueeze(-1) * mb.unsqueeze(-2)


def _exact_chain_inputs(net, xi):
    """Exact complete-basis T^(k+1) = C⁻¹D and C^(N) for one input (test-only enumeration)."""
    x = xi.unsqueeze(0)
    lq = [q[0].exp().detach() for q in exact_log_q(net, x)]
    ops = [ProductBasis.complete(w).evaluate(all_states(w)) for w in net.widths[1:]]
    Ts = []
    for k in range(1, net.depth):
        P = exact_pair_distribution(net, x, k)[0].detach()   # (S_{k+1}, S_k)
        A, B = ops[k], ops[k - 1]
        mean_a, mean_b = P.sum(1) @ A, P.sum(0) @ B
        D = A.T @ P @ B - mean_a.unsqueeze(-1) * mean_b.unsqueeze(-2)
        C = _cov(lq[k], A, A)
        Ts.append(torch.linalg.solve(C, D))
    c_out = _cov(lq[-1], ops[-1], ops[-1])
    dg1 = dg1_dx_analytic(net.layer(1).W, ProductBasis.complete(net.widths[1]).subsets)
    return dg1, Ts, c_out


def test_complete_basis_chain_equals_exact_fim():
    for widths in ([5, 4, 3, 2], [6, 3, 4, 3, 2]):
        net, x = _net(widths)
        F_exact = exact_fim(net, x)
        for i in range(x.shape[0]):
            dg1, Ts, c_out = _exact_chain_inputs(net, x[i])
            F = chain_fim(dg1, Ts, c_out)
            err = (F - F_exact[i]).abs().max() / F_exact[i].abs().max()
            assert err < 1e-10, err          # exact vs exact (measured ~1e-14)


def test_singles_chain_is_only_an_approximation():
    net, x = _net([5, 4, 3, 2])
    dg1, Ts, c_out = _exact_chain_inputs(net, x[0])
    # truncate every layer to its singles (first n_k operators of the complete basis order
    # are not the singles; select them by subset size)
    sub = [[i for i, s in enumerate(ProductBasis.complete(w).subsets) if len(s) == 1]
           for w in net.widths[1:]]
    Ts_s = [T[sub[k + 1]][:, sub[k]] for k, T in enumerate(Ts)]
    F_s = chain_fim(dg1[sub[0]], Ts_s, c_out[sub[-1]][:, sub[-1]])
    F = exact_fim(net, x[:1])[0]
    assert (F_s - F).abs().max() > 1e-6 * F.abs().max()


def test_dg1_dx_analytic_matches_linear_system_exact():
    net, x = _net([6, 4, 2])
    basis = ProductBasis.complete(4)
    lq = exact_log_q(net, x[:1])[0][0].exp().detach()
    hs = all_states(4)
    O = basis.evaluate(hs)
    s = first_layer_score(net, x[:1], hs.unsqueeze(0))[0]      # (S, d)
    C = _cov(lq, O, O)
    cov_os = _cov(lq, O, s)
    X, info = dg1_dx_linear_system(C, cov_os)
    assert info.kept.numel() == basis.size
    torch.testing.assert_close(X, dg1_dx_analytic(net.layer(1).W, basis.subsets),
                               atol=1e-10, rtol=1e-10)


def test_dg1_dx_sampled_singles_rows_are_minus_w1():
    # With singles in the basis, the score is s = W_1ᵀ(h − σ), so the *sample* covariance
    # Cov(O, s) = Cov(O, h) W_1 holds exactly and Cov(O, h) is the singles' columns of the
    # sample C: the solve returns −W_1 on singles and 0 on pairs up to roundoff, with no
    # sampling noise at all (hence the tight tolerance).
    net, x = _net([6, 4, 2], scale=1.0)
    basis = ProductBasis.up_to_order(4, 2)
    g = torch.Generator().manual_seed(1)
    X, info = dg1_dx_sampled(net, x[0], basis.evaluate, 20_000, g)
    assert info.kept.numel() == basis.size
    ref = dg1_dx_analytic(net.layer(1).W, basis.subsets)
    torch.testing.assert_close(X, ref, atol=1e-8, rtol=1e-8)


def test_jackknife_propagation_and_mcrg_glue():
    from rgaudit.rg.mcrg import mcrg_network

    net, x = _net([5, 4, 3, 2])
    res = mcrg_network(net, x, "full", 40_000, generator=3, n_blocks=8)
    out = fim_from_mcrg(res, net.layer(1).W)
    F = exact_fim(net, x)
    assert out.fim.shape == F.shape and out.replicates.shape[0] == 8
    iu = torch.triu_indices(F.shape[-1], F.shape[-1])      # F is symmetric: count each once
    agrees_within_errors(out.fim[:, iu[0], iu[1]], out.stderr[:, iu[0], iu[1]].clamp_min(1e-12),
                         F[:, iu[0], iu[1]], out.replicates.shape[0])
    ref = chain_fim_jackknife(torch.eye(2, dtype=torch.float64), [], torch.eye(2))
    assert ref.stderr is None


def test_chain_fim_from_exact_moments_equals_exact_fim():
    """chain_fim fed with rg.exact's exact complete-basis T and C^(N) is the exact FIM."""
    from rgaudit.rg.exact import exact_network_pairs

    for widths in ([5, 4, 3, 2], [6, 3, 4, 3, 2]):
        net, x = _net(widths, seed=4)
        pairs = exact_network_pairs(net, x)
        F_exact = exact_fim(net, x)
        dg1 = dg1_dx_analytic(net.layer(1).W, ProductBasis.complete(net.widths[1]).subsets)
        for i in range(x.shape[0]):
            Ts = [p.T[i] for p in pairs[1:]]
            F = chain_fim(dg1, Ts, pairs[-1].C_next[i])
            err = (F - F_exact[i]).abs().max() / F_exact[i].abs().max()
            assert err < 1e-10, err


def test_pairs_carry_their_operator_sets_and_one_parser():
    """Issue 15.2: a LayerPair carries its Operators; names are parsed by one function."""
    import pytest as _pytest

    from rgaudit.fisher.first_layer import operator_subsets, subsets_from_names
    from rgaudit.rg.mcrg import mcrg_network

    net = DeepRBM.random([5, 4, 3], generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    ops = [None, ProductBasis.pairs(4), ProductBasis.singles(3)]
    p = mcrg_network(net, torch.rand(5, dtype=torch.float64), ops, 256, generator=0).layers[1]
    assert p.ops_prev is ops[1] and p.ops_next is ops[2]
    assert operator_subsets(p.ops_prev, p.names_prev) == subsets_from_names(p.names_prev)
    assert subsets_from_names(["h3", "h1*h5"]) == [(3,), (1, 5)]
    with _pytest.raises(ValueError, match="not a product of units"):
        subsets_from_names(["x1"])
