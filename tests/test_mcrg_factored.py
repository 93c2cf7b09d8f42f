"""Factored (lazy) replicate solves against the dense reference path (issue 16).

``REPLICATE_SOLVES = "factored"`` keeps each jackknife replicate of ``C_r T_r = D_r`` as one
Cholesky factor (its conditioning certificate and its solve) and solves on first access;
``"dense"`` is the previous path (certificate factorisation of ``C_r − τI`` + LU solve, every
``T_r`` formed at once). Both see the same samples, so they must agree to rounding: the
tolerance 1e-10 is the issue's. ``EXACT_COND_MAX`` is lowered so that the tiny exact-test
networks go through the factored path (it is used above 256 kept operators otherwise).
"""

import math

import pytest
import torch
from stat_checks import large_weight_binary_net

import rgaudit.rg.mcrg as mcrg
import rgaudit.rg.replicate_solve as rs
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.mcrg import mcrg_network, mcrg_pairs
from rgaudit.rg.operators import ProductBasis
from rgaudit.rg.solve import solve_batch, solve_cov, solve_replicates

F64 = torch.float64
TOL = dict(rtol=0.0, atol=1e-10)
FIELDS = ("T", "T_stderr", "T_replicates", "T_unestimated", "C_next", "C_prev", "D",
          "C_next_replicates", "C_prev_replicates", "D_replicates")


def _both(monkeypatch, run):
    out = []
    for method in ("dense", "factored"):
        monkeypatch.setattr(mcrg, "REPLICATE_SOLVES", method)
        monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
        out.append(run())
    return out


def _same_pairs(p, q):
    for name in FIELDS:
        torch.testing.assert_close(getattr(p, name), getattr(q, name), equal_nan=True, **TOL)
    assert [i.n_replicates_regularised for i in p.solve_info] == \
        [i.n_replicates_regularised for i in q.solve_info]
    assert [i.regularised for i in p.solve_info] == [i.regularised for i in q.solve_info]
    assert p.n_replicates == q.n_replicates


@pytest.mark.parametrize("seed", [0, 2])
def test_exact_test_network_same_numbers(seed, monkeypatch):
    """The network of test_mcrg.test_complete_basis_T_from_samples_matches_exact."""
    g = torch.Generator().manual_seed(seed)
    net = DeepRBM.random([6, 4, 4, 3], generator=g, dtype=F64)
    x = torch.rand(2, 6, generator=g, dtype=F64)
    ref, new = _both(monkeypatch, lambda: mcrg_network(net, x, "full", 4000,
                                                       generator=seed + 100, n_blocks=16))
    for p, q in zip(ref.computed(), new.computed(), strict=True):
        assert isinstance(q.replicate_solutions, rs.FactoredReplicates)
        assert not q.replicate_solutions.materialised      # nothing solved before it is asked
        _same_pairs(p, q)
        assert q.replicate_solutions is not None and isinstance(q.replicate_solutions,
                                                                torch.Tensor)


def test_unestimated_network_same_numbers(monkeypatch):
    """The large-weight network of test_mcrg_unestimated (collapsed entries, NaN errors)."""
    net, x = large_weight_binary_net([6, 5, 5, 4], 0)
    ref, new = _both(monkeypatch, lambda: mcrg_network(net, x, "full", 4000, generator=100))
    assert sum(p.n_unestimated for p in ref.computed()) > 0
    for p, q in zip(ref.computed(), new.computed(), strict=True):
        _same_pairs(p, q)


@pytest.mark.parametrize("collinear", [False, True])
def test_constant_and_collinear_operators_same_numbers(collinear, monkeypatch):
    """Dropped rows, masked columns (constant prev operator), and regularised solves."""
    g = torch.Generator().manual_seed(8)
    net = DeepRBM.random([5, 4, 3], generator=g, dtype=F64)
    x = torch.rand(2, 5, generator=g, dtype=F64)
    with torch.no_grad():
        net.layer(1).a[2] = 60.0          # unit 2 of layer 1 is always on: a constant column
        if collinear:
            net.layer(2).a[0] = 60.0      # h0 ≡ 1 ⇒ h0*h1 ≡ h1: singular C, regularised
    ops = [None, ProductBasis.singles(4), ProductBasis(3, [(1,), (0, 1), (2,)])]
    ref, new = _both(monkeypatch, lambda: mcrg_network(net, x, ops, 4000, generator=2,
                                                       pair_layers=[1]))
    p, q = ref.layers[1], new.layers[1]
    assert not bool(p.kept_mask_prev[:, 2].any())
    assert p.any_regularised == collinear
    assert bool((q.T_replicates[..., 2] == 0).all())
    _same_pairs(p, q)


def test_apply_replicates_equals_dense_product(monkeypatch):
    """T_r @ x from the factors = the formed T_r times x, before and after forming them."""
    g = torch.Generator().manual_seed(1)
    net = DeepRBM.random([6, 4, 4, 3], generator=g, dtype=F64)
    xin = torch.rand(2, 6, generator=g, dtype=F64)
    monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
    res = mcrg_network(net, xin, "full", 4000, generator=5, n_blocks=8)
    p = res.layers[1]
    v = torch.randn(2, p.T.shape[-1], 3, generator=g, dtype=F64)
    v_r = torch.randn(8, 2, p.T.shape[-1], 3, generator=g, dtype=F64)
    lazy_shared, lazy_per_rep = p.apply_replicates(v), p.apply_replicates(v_r)
    assert not p.replicate_solutions.materialised
    t_r = p.T_replicates
    torch.testing.assert_close(lazy_shared, t_r @ v, **TOL)
    torch.testing.assert_close(lazy_per_rep, t_r @ v_r, **TOL)
    torch.testing.assert_close(p.apply_replicates(v), t_r @ v, rtol=0, atol=0)


def _spd_stack(m: int, n_rep: int, seed: int, tiny: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_rep, 6 * m, m, generator=g, dtype=F64) < 0.3).to(F64)
    c = x.transpose(-1, -2) @ x / x.shape[1]
    if tiny:   # replicate 1: an almost collinear pair (cond ≈ 1/tiny) → regularised
        c[1, :, 0] = c[1, :, 1]
        c[1, 0, :] = c[1, 1, :]
        c[1, 0, 0] = c[1, 1, 1] + tiny
    return c


@pytest.mark.parametrize("tiny", [0.0, 1e-9, -1e-3])
def test_factored_replicates_same_decisions_and_solutions(tiny):
    """factor_replicates + FactoredReplicates = solve_replicates (eigenvalue-checked, LU):
    the same regularised replicates and the same T_r. ``tiny < 0`` makes replicate 1
    indefinite (its Cholesky fails)."""
    m = 40
    c = _spd_stack(m, 5, seed=1, tiny=tiny)
    d = torch.randn(5, m, 7, generator=torch.Generator().manual_seed(2), dtype=F64)
    _, info = solve_cov(c[0], d[0], max_cond=1e8)
    ref, ref_info = solve_replicates(c, d, info, max_cond=1e8)
    fac, solved, new_info = rs.factor_replicates(c, d, info, max_cond=1e8)
    lazy = rs.FactoredReplicates(d.unsqueeze(1))
    lazy.set_factored(0, info.kept, fac, solved)
    torch.testing.assert_close(lazy.dense()[:, 0], ref, **TOL)
    assert new_info.n_replicates_regularised == ref_info.n_replicates_regularised
    assert new_info.n_replicates_regularised == (1 if tiny else 0)


def test_solve_batch_factored_equals_dense(monkeypatch):
    """Several batch elements, one of them frozen and one with a dropped operator."""
    monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
    c_r = _spd_stack(12, 6 * 3, seed=4).reshape(6, 3, 12, 12)
    c_r[:, 1, 3, :] = 0.0
    c_r[:, 1, :, 3] = 0.0          # element 1: operator 3 constant
    c_r[:, 2] = 0.0                # element 2: frozen
    c = c_r.mean(0)
    d_r = torch.randn(6, 3, 12, 5, generator=torch.Generator().manual_seed(6), dtype=F64)
    d = d_r.mean(0)
    x0, xr0, i0 = solve_batch(c, d, c_reps=c_r, d_reps=d_r, frozen_ok=True)
    x1, xr1, i1 = solve_batch(c, d, c_reps=c_r, d_reps=d_r, frozen_ok=True,
                              replicates="factored")
    assert isinstance(xr1, rs.FactoredReplicates) and isinstance(xr0, torch.Tensor)
    torch.testing.assert_close(x1, x0, rtol=0, atol=0)
    torch.testing.assert_close(xr1.dense(), xr0, **TOL)
    assert [i.kept.tolist() for i in i0] == [i.kept.tolist() for i in i1]
    with pytest.raises(ValueError, match="dense.*factored"):
        solve_batch(c, d, c_reps=c_r, d_reps=d_r, replicates="lazy")


@pytest.mark.parametrize("log_cond", [2, 6, 9])
def test_randomised_inverse_norm_bound_bounds(log_cond):
    """The bound is ≥ ‖C⁻¹‖₂ (false-failure probability 1e-10 per matrix, Halko et al.
    Lemma 4.1) and within a factor α·√m·√(2/π)·(1 + slack) of it."""
    m = 60
    g = torch.Generator().manual_seed(log_cond)
    q, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=F64))
    ev = torch.logspace(0, -log_cond, m, dtype=F64)
    c = (q * ev) @ q.T
    c = 0.5 * (c + c.T)
    bound = rs._inverse_norm_bound(torch.linalg.cholesky(c))
    true = 1.0 / float(torch.linalg.eigvalsh(c)[0])
    assert bound >= true
    assert bound <= rs.CERT_ALPHA * math.sqrt(2 / math.pi) * 3 * math.sqrt(m) * true


def test_pairs_stream_binary_operators_above_exact_threshold(monkeypatch):
    """The default threshold, m = 300 singles (factored path without monkeypatching), against
    the dense path: same T and replicates to 1e-10."""
    g = torch.Generator().manual_seed(0)
    m, s = 300, 4800
    a = (torch.rand(s, m, generator=g) < 0.3).float()
    b = (torch.rand(s, m, generator=g) < 0.5).float()
    a[:, : m // 2] = torch.maximum(a[:, : m // 2], b[:, : m // 2])
    ops = ProductBasis.singles(m)
    out = []
    for method in ("dense", "factored"):
        monkeypatch.setattr(mcrg, "REPLICATE_SOLVES", method)
        out.append(mcrg_pairs(((b[i:i + 600], a[i:i + 600]) for i in range(0, s, 600)),
                              ops, ops, n_blocks=8, contiguous_blocks=8))
    p, q = out
    assert isinstance(q.replicate_solutions, rs.FactoredReplicates)
    _same_pairs(p, q)


def test_chain_fim_replicates_equal_chain_fim_jackknife(monkeypatch):
    """The lazy chain replicates = fisher.chain's, built from the formed T_r (1e-10)."""
    from rgaudit.fisher.chain import chain_fim_jackknife
    from rgaudit.fisher.first_layer import dg1_dx_analytic, operator_subsets
    from rgaudit.rg.replicate_chain import chain_fim_replicates

    monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
    g = torch.Generator().manual_seed(3)
    net = DeepRBM.random([6, 4, 4, 3], generator=g, dtype=F64)
    x = torch.rand(2, 6, generator=g, dtype=F64)
    res = mcrg_network(net, x, "full", 4000, generator=7, n_blocks=8)
    pairs = [res.layers[1], res.layers[2]]
    dg1 = dg1_dx_analytic(net.layer(1).W, operator_subsets(pairs[0].ops_prev,
                                                           pairs[0].names_prev))
    lazy = chain_fim_replicates(dg1, pairs)
    assert not any(p.replicate_solutions.materialised for p in pairs)
    ref = chain_fim_jackknife(dg1, [p.T for p in pairs], pairs[-1].C_next,
                              Ts_reps=[list(p.T_replicates) for p in pairs],
                              c_out_reps=list(pairs[-1].C_next_replicates))
    torch.testing.assert_close(lazy, ref.replicates, **TOL)


@pytest.mark.parametrize("tiny", [0.0, 1e-12])
def test_certified_full_sample_solve(tiny, monkeypatch):
    """solve_batch(certify=True): Cholesky + certified condition bound. Well-conditioned: the
    same solution to 1e-10, cond reported as an upper bound ≥ the exact value (≤ max_cond);
    ill-conditioned (cond ≈ 1e12 > MAX_COND): not certified, exact cond, same regularised
    solve, same bits."""
    monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
    c = _spd_stack(12, 3, 11, tiny=tiny)          # element 1 nearly collinear when tiny
    g = torch.Generator().manual_seed(12)
    d = torch.randn(3, 12, 5, generator=g, dtype=F64)
    x0, _, i0 = solve_batch(c, d)
    x1, _, i1 = solve_batch(c, d, certify=True)
    torch.testing.assert_close(x1, x0, **TOL)
    for a, b in zip(i0, i1, strict=True):
        assert a.regularised == b.regularised and a.lam == b.lam
        assert not a.cond_bound
        if b.cond_bound:
            assert a.cond <= b.cond <= 1e10 and b.to_dict()["cond_is_upper_bound"]
        else:
            assert b.cond == a.cond
    if tiny:
        assert i1[1].regularised and not i1[1].cond_bound
        assert torch.equal(x1[1], x0[1])
    assert i1[0].cond_bound
