"""The audit's chain FIM without forming every replicate ``T_r`` (issue 16).

:func:`rgaudit.fisher.chain.fim_from_mcrg` builds the jackknife replicates of ``J`` by applying
each pair's factored replicates to the thin chain (:mod:`rgaudit.rg.replicate_chain`) instead of
forming the ``m × m`` replicates ``T_r``. Reference: :func:`chain_fim_jackknife` on the formed
``T_r`` (the previous code path). Same samples, so they agree to rounding; the tolerance 1e-10
is the issue's. ``EXACT_COND_MAX`` is lowered so that the tiny exact-test networks take the
factored path (used above 256 kept operators otherwise).
"""

import pytest
import torch
from stat_checks import large_weight_binary_net

import rgaudit.rg.replicate_solve as rs
from rgaudit.fisher.chain import chain_fim_jackknife, chain_quality, fim_from_mcrg
from rgaudit.fisher.first_layer import dg1_dx_analytic, operator_subsets
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.mcrg import mcrg_network
from rgaudit.rg.replicate_chain import left_association_cheaper

F64 = torch.float64
TOL = dict(rtol=0.0, atol=1e-10)


def _reference(res, W1, factored):
    """The previous fim_from_mcrg: chain_fim_jackknife on the formed T_r."""
    pairs = res.computed()
    dg1 = dg1_dx_analytic(W1, operator_subsets(pairs[0].ops_prev, pairs[0].names_prev))
    return chain_fim_jackknife(dg1, [p.T for p in pairs], pairs[-1].C_next,
                               Ts_reps=[list(p.T_replicates) for p in pairs],
                               c_out_reps=list(pairs[-1].C_next_replicates), factored=factored)


def _check(res, W1):
    pairs = res.computed()
    new = fim_from_mcrg(res, W1)
    new_f = fim_from_mcrg(res, W1, factored=True)
    factored = [isinstance(p.replicate_solutions, rs.FactoredReplicates) for p in pairs]
    assert all(factored)
    assert not any(p.replicate_solutions.materialised for p in pairs)   # no T_r formed
    assert new.meta["unestimated_checked"] == [False] * len(pairs)
    ref, ref_f = _reference(res, W1, False), _reference(res, W1, True)
    torch.testing.assert_close(new.fim, ref.fim, **TOL)
    torch.testing.assert_close(new.replicates, ref.replicates, **TOL)
    torch.testing.assert_close(new.stderr, ref.stderr, **TOL)
    torch.testing.assert_close(new_f.factors.J, ref_f.factors.J, **TOL)
    torch.testing.assert_close(new_f.factors.C, ref_f.factors.C, **TOL)
    torch.testing.assert_close(new_f.replicate_eigvalsh(), ref_f.replicate_eigvalsh(), **TOL)
    # once the T_r exist ("auto" checks them), the meta is the previous one
    full = fim_from_mcrg(res, W1)
    old = chain_quality(pairs)
    for key in ("unestimated", "n_unestimated", "rests_on_unestimated", "dropped_next",
                "dropped_prev", "regularised", "replicates_regularised"):
        assert full.meta[key] == old[key]
    assert full.meta["unestimated_checked"] == [True] * len(pairs)
    return new


@pytest.mark.parametrize("seed", [0, 2])
def test_exact_test_network_chain_fim_same_numbers(seed, monkeypatch):
    """The network of test_mcrg's exact complete-basis test, both chain associations."""
    monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
    g = torch.Generator().manual_seed(seed)
    net = DeepRBM.random([6, 4, 4, 3], generator=g, dtype=F64)
    x = torch.rand(2, 6, generator=g, dtype=F64)
    res = mcrg_network(net, x, "full", 4000, generator=seed + 100, n_blocks=16)
    ms = [p.T.shape[-1] for p in res.computed()] + [res.computed()[-1].T.shape[-2]]
    assert not left_association_cheaper(ms, 6)        # [15, 15, 7], d = 6: from the input
    _check(res, net.layer(1).W)


def test_small_output_layer_left_association(monkeypatch):
    """A 2-unit output layer: the replicates are associated from the output side."""
    monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
    g = torch.Generator().manual_seed(4)
    net = DeepRBM.random([6, 5, 5, 2], generator=g, dtype=F64)
    x = torch.rand(2, 6, generator=g, dtype=F64)
    res = mcrg_network(net, x, "full", 4000, generator=9, n_blocks=8)
    ms = [p.T.shape[-1] for p in res.computed()] + [res.computed()[-1].T.shape[-2]]
    assert left_association_cheaper(ms, 6)            # [31, 31, 3]
    _check(res, net.layer(1).W)


def test_unestimated_network_chain_fim(monkeypatch):
    """The large-weight network with collapsed entries: "auto" leaves factored pairs
    unchecked (rests_on_unestimated None), True counts them as before."""
    monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
    net, x = large_weight_binary_net([6, 5, 5, 4], 0)
    res = mcrg_network(net, x, "full", 4000, generator=100)
    pairs = res.computed()
    lazy = fim_from_mcrg(res, net.layer(1).W, factored=True)
    assert lazy.meta["rests_on_unestimated"] is None and lazy.meta["n_unestimated"] == 0
    assert lazy.meta["unestimated"] == [None, None]
    new = _check(res, net.layer(1).W)
    assert new.meta["rests_on_unestimated"] is None
    assert chain_quality(pairs)["rests_on_unestimated"] is True


def test_constant_operators_and_eager_pairs_unchanged():
    """Default EXACT_COND_MAX: small pairs are solved eagerly, their meta is checked as before
    (the exact-enumeration tests' path), and a constant prev operator's column stays 0."""
    g = torch.Generator().manual_seed(8)
    net = DeepRBM.random([5, 4, 3, 3], generator=g, dtype=F64)
    x = torch.rand(2, 5, generator=g, dtype=F64)
    with torch.no_grad():
        net.layer(1).a[2] = 60.0
    res = mcrg_network(net, x, "full", 4000, generator=2)
    new = fim_from_mcrg(res, net.layer(1).W)
    assert new.meta["unestimated_checked"] == [True, True]
    assert new.meta["rests_on_unestimated"] is not None
    ref = _reference(res, net.layer(1).W, False)
    torch.testing.assert_close(new.replicates, ref.replicates, **TOL)
    torch.testing.assert_close(new.stderr, ref.stderr, **TOL)


def test_chain_quality_rejects_bad_option():
    g = torch.Generator().manual_seed(1)
    net = DeepRBM.random([4, 3, 3], generator=g, dtype=F64)
    res = mcrg_network(net, torch.rand(4, generator=g, dtype=F64), "full", 400, generator=1)
    with pytest.raises(ValueError, match="unestimated must be"):
        chain_quality(res.computed(), unestimated="sometimes")


@pytest.mark.parametrize("q", [3, 40])
def test_apply_left_and_right_thin_and_wide(q, monkeypatch):
    """y T_r and T_r x from the factors (thin: through C_r⁻¹; wide/tall, q > m: each T_r formed
    and dropped) = the formed T_r, with a constant (masked) prev operator."""
    monkeypatch.setattr(rs, "EXACT_COND_MAX", 1)
    g = torch.Generator().manual_seed(8)
    net = DeepRBM.random([5, 4, 3, 3], generator=g, dtype=F64)
    x = torch.rand(2, 5, generator=g, dtype=F64)
    with torch.no_grad():
        net.layer(1).a[2] = 60.0
    res = mcrg_network(net, x, "full", 4000, generator=2, n_blocks=8)
    p = res.layers[1]
    mn, mp = p.T.shape[-2:]
    v = torch.randn(2, mp, q, generator=g, dtype=F64)
    y = torch.randn(8, 2, q, mn, generator=g, dtype=F64)
    right, left = p.apply_replicates(v), p.apply_replicates_left(y)
    assert not p.replicates_formed
    t_r = p.T_replicates
    assert p.replicates_formed
    torch.testing.assert_close(right, t_r @ v, **TOL)
    torch.testing.assert_close(left, y @ t_r, **TOL)
    gone = ~p.kept_mask_prev[0]                     # constant prev operators of input 0
    assert bool(gone.any()) and bool((left[:, 0][..., gone] == 0).all())
