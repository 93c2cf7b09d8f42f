"""Spectra: Fisher-normalised singular values, eigenvalues of T, counts of relevant directions.

Family-wise false-failure rate: one statistical check, the tied one-unit eigenvalue within 3σ
with 16 jackknife blocks (P(|t_15| > 3) ≈ 0.9 %); the rest is exact.
"""

import math

import torch

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.exact import exact_network_pairs
from rgaudit.rg.mcrg import mcrg_network
from rgaudit.rg.operators import ProductBasis
from rgaudit.rg.spectra import eigen_sorted, fisher_singular_values, pair_spectra, result_spectra

F64 = torch.float64


def _net(widths, seed, **kw):
    g = torch.Generator().manual_seed(seed)
    net = DeepRBM.random(widths, generator=g, dtype=F64, **kw)
    return net, torch.rand(2, widths[0], generator=g, dtype=F64)


def test_plugin_fisher_values_are_canonical_correlations():
    """Deterministic property, not a statistical test: plug-in values are canonical correlations
    of ONE covariance matrix, so they lie in [0, 1] up to rounding whatever the sample. (The
    statistical check against exact values is in tests/test_mcrg.py.)"""
    for seed in (0, 1):
        net, x = _net([6, 5, 5, 4], seed, scale=2.0)
        res = mcrg_network(net, x, "pairs", 20_000, generator=seed)
        for spectra in result_spectra(res).values():
            for sp in spectra:
                assert (sp.fisher_raw <= 1 + 1e-10).all() and (sp.fisher_raw >= 0).all()
                assert torch.all(sp.fisher_raw[:-1] >= sp.fisher_raw[1:])
                # reported values = jackknife bias-corrected: lowered, same rank order source
                assert sp.fisher.shape == sp.fisher_raw.shape
                assert not sp.flags and sp.floored_prev == 0 and math.isfinite(sp.cond_prev)


def test_kept_count_criterion_is_fixed_threshold_with_range():
    """``fisher~1`` counts bias-corrected s ≥ 1 − δ; lo/hi shift by ∓ n_sigma errors."""
    from rgaudit.rg.spectra import _count

    v = torch.tensor([0.99, 0.96, 0.93, 0.5], dtype=F64)
    e = torch.tensor([0.001, 0.02, 0.02, 0.01], dtype=F64)
    reps = v + 0.01 * torch.randn(16, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    c = _count(v, e, reps, 0.95, 2.0, "s ≥ 0.95", inclusive=True)
    assert (c.value, c.lo, c.hi) == (2, 1, 3)
    # as the error → 0 the range collapses onto the value (no drift with S)
    c0 = _count(v, 0 * e, reps, 0.95, 2.0, "s ≥ 0.95", inclusive=True)
    assert c0.lo == c0.value == c0.hi == 2


def test_fisher_values_invariant_to_relabelling_units():
    net, x = _net([5, 4, 4, 3], 2)
    p1 = torch.tensor([2, 0, 3, 1])
    p2 = torch.tensor([3, 1, 0, 2])
    perm = DeepRBM.random([5, 4, 4, 3], dtype=F64)
    with torch.no_grad():
        perm.layer(1).load_state_dict(net.layer(1).state_dict())
        perm.layer(1).W.copy_(net.layer(1).W[p1])
        perm.layer(1).a.copy_(net.layer(1).a[p1])
        perm.layer(2).W.copy_(net.layer(2).W[p2][:, p1])
        perm.layer(2).a.copy_(net.layer(2).a[p2])
        perm.layer(2).b.copy_(net.layer(2).b[p1])
        perm.layer(3).load_state_dict(net.layer(3).state_dict())
        perm.layer(3).W.copy_(net.layer(3).W[:, p2])
        perm.layer(3).b.copy_(net.layer(3).b[p2])
    ops = [None, ProductBasis.singles(4), ProductBasis.singles(4), ProductBasis.singles(3)]
    a = exact_network_pairs(net, x, ops=ops)[1]
    b = exact_network_pairs(perm, x, ops=ops)[1]
    sa = fisher_singular_values(a.T, a.C_next, a.C_prev)
    sb = fisher_singular_values(b.T, b.C_next, b.C_prev)
    torch.testing.assert_close(sa, sb, rtol=1e-10, atol=1e-12)
    # raw eigenvalues are not invariant when the two layers are relabelled independently
    ea = eigen_sorted(a.T)[0].abs()
    eb = eigen_sorted(b.T)[0].abs()
    assert (ea - eb).abs().max() > 1e-3


def test_tied_one_unit_eigenvalue_and_counts():
    w, a = 3.0, -1.0
    net = DeepRBM([1] * 9, tied=True, dtype=F64)
    with torch.no_grad():
        net.layer(1).W.fill_(w)
        net.layer(1).a.fill_(a)
    t_star = 1 / (1 + math.exp(-(w + a))) - 1 / (1 + math.exp(-a))
    res = mcrg_network(net, torch.tensor([[0.5]], dtype=F64), "singles", 100_000, generator=5,
                       pair_layers=[7])
    (sp,) = pair_spectra(res.layers[7], shared_basis=True)
    assert sp.eig is not None and abs(float(sp.eig[0].real) - t_star) < 3 * float(sp.eig_abs_err[0])
    assert sp.counts["eig>1"].value == 0 and sp.counts["eig>1"].hi == 0
    # one unit: the Fisher-normalised value is the |correlation| of consecutive units
    assert 0 < float(sp.fisher[0]) < 1
    assert set(sp.counts) == {"eig>1", "fisher~1", "fisher>0.9"}
    assert "1 − 0.05" in sp.counts["fisher~1"].criterion
    assert "fisher" in sp.to_dict()


def test_fisher_value_one_for_a_copying_kernel():
    # a deterministic copy keeps all information: s = 1 exactly, counted as relevant
    h = (torch.rand(4000, 3, generator=torch.Generator().manual_seed(0)) < 0.4).to(F64)
    c = torch.cov(h.T, correction=0)
    s = fisher_singular_values(torch.eye(3, dtype=F64), c, c)
    torch.testing.assert_close(s, torch.ones(3, dtype=F64))


def test_raw_eigenvalues_only_for_shared_operator_sets():
    """DESIGN fact 3: an untied net with equal widths gets no raw eigenvalues (the operator names
    ``h0, h1, …`` agree on every layer, but the units are different); a tied net does."""
    x = torch.rand(2, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    untied, _ = _net([5, 4, 4, 4], 3)
    res = mcrg_network(untied, x, "singles", 2048, generator=1)
    assert res.layers[1].names_next == res.layers[1].names_prev  # the trap: same names
    for sp in pair_spectra(res.layers[1]):  # default: not shared
        assert sp.eig is None and sp.eig_abs_err is None and "eig>1" not in sp.counts
        assert "eig_real" not in sp.to_dict()
    for spectra in result_spectra(res, shared_basis=untied.tied).values():
        assert all(sp.eig is None for sp in spectra)
    tied = DeepRBM.random([4, 4, 4, 4], tied=True, dtype=F64,
                          generator=torch.Generator().manual_seed(4))
    xt = torch.rand(2, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    res_t = mcrg_network(tied, xt, "singles", 2048, generator=2)
    for spectra in result_spectra(res_t, shared_basis=tied.tied).values():
        for sp in spectra:
            assert sp.eig is not None and sp.eig.shape == (4,) and "eig>1" in sp.counts
