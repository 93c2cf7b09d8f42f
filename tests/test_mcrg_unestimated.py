"""Collapsed error bars (issue 14, item 1): the large-weight, binary-input regime.

With weights N(0, 1) (not N(0, 1/n)) and a binary input, some operator values of one layer never
occur together with some states of the other at 2e4 samples. The matching entries of ``T`` are
then identical in every jackknife replicate (0 ± 1e-15) while their exact value is up to ~5e-3.
They must be flagged as unestimated (mask, count, NaN error), never reported as a confident 0,
and everything computed from the pair must say that it rests on them.

False-failure rate: each :func:`agrees_within_errors` call has a family-wise rate ≤ 1% on its
max-|z| check (Bonferroni) plus a mean-z² check at twice its nominal value; this file makes
5 such calls, so its family-wise false-failure rate over fresh seeds is ≤ ~5% (fixed seeds here,
so a failure reproduces). Measured with these seeds: mean z² 0.82–1.52, max |z| ≤ 5.3 against
limits 6.4–6.9.
"""

import math

import pytest
import torch
from stat_checks import agrees_where_estimated, large_weight_binary_net

from rgaudit.fisher.chain import fim_from_mcrg
from rgaudit.rg.exact import exact_network_pairs
from rgaudit.rg.mcrg import mcrg_network
from rgaudit.rg.solve import COLLAPSE_RTOL, unestimated_entries
from rgaudit.rg.spectra import pair_spectra

WIDTHS = [6, 5, 5, 4]


@pytest.mark.parametrize("seed", [0, 1])
def test_unseen_cooccurrences_are_unestimated_not_confident_zeros(seed):
    net, x = large_weight_binary_net(WIDTHS, seed)
    exact = exact_network_pairs(net, x)
    res = mcrg_network(net, x, "full", 20_000, generator=seed + 100)
    total = 0
    for i in (1, 2):
        p = res.layers[i]
        mask = p.T_unestimated
        assert mask.shape == p.T.shape and mask.dtype == torch.bool
        assert p.n_unestimated == int(mask.sum())
        assert p.unestimated_counts() == [int(m.sum()) for m in mask]
        total += p.n_unestimated
        # never a confident number: the error bar is NaN exactly there
        assert torch.isnan(p.T_stderr[mask]).all()
        assert torch.isfinite(p.T_stderr[~mask]).all() and (p.T_stderr[~mask] > 0).all()
        # the estimated entries are calibrated against the exact T
        agrees_where_estimated(p.T, p.T_stderr, exact[i].T, p.n_replicates, mask)
        # the flagged entries really are unknown: the exact values there are not ≈ 0 ± 1e-15
        if p.n_unestimated:
            assert float(exact[i].T[mask].abs().max()) > 1e-4
        assert p.to_dict()["n_unestimated"] == p.n_unestimated
        # spectra (Fisher-normalised values, eigenvalues) say they rest on them
        for b, sp in enumerate(pair_spectra(p)):
            assert sp.n_unestimated == p.unestimated_counts()[b]
            assert (sp.unestimated_warning is not None) == bool(sp.n_unestimated)
    assert total > 0            # this regime does produce them (66 at seed 0, 83 at seed 1)
    fim = fim_from_mcrg(res, net.layer(1).W.detach())
    assert fim.meta["n_unestimated"] == total
    assert fim.meta["rests_on_unestimated"] is True
    assert fim.meta["unestimated"] == [res.layers[i].unestimated_counts() for i in (1, 2)]


def test_collapsed_entries_break_the_old_check():
    """The regression itself: reading the collapsed entries as 0 ± stderr fails calibration."""
    net, x = large_weight_binary_net(WIDTHS, 0)
    exact = exact_network_pairs(net, x)
    p = mcrg_network(net, x, "full", 20_000, generator=100).layers[1]
    assert p.n_unestimated > 0
    collapsed_err = torch.nan_to_num(p.T_stderr, nan=0.0)[p.T_unestimated]
    z = (p.T[p.T_unestimated] - exact[1].T[p.T_unestimated]).abs() / collapsed_err.clamp_min(
        1e-15)
    assert float(z.max()) > 1e6


@pytest.mark.slow
def test_unestimated_entries_shrink_with_samples():
    """At 2e5 samples fewer entries are unestimated, and the rest stay calibrated."""
    net, x = large_weight_binary_net(WIDTHS, 0)
    exact = exact_network_pairs(net, x)
    small = mcrg_network(net, x, "full", 20_000, generator=100).layers[1]
    big = mcrg_network(net, x, "full", 200_000, generator=100).layers[1]
    assert big.n_unestimated < small.n_unestimated
    agrees_where_estimated(big.T, big.T_stderr, exact[1].T, big.n_replicates, big.T_unestimated)


def test_unestimated_entries_rule():
    err = torch.tensor([[1e-3, 1e-17, 0.0], [2e-4, 1e-3 * COLLAPSE_RTOL / 2, 5e-2]])
    rows = torch.tensor([True, True])
    cols = torch.tensor([True, True, False])
    got = unestimated_entries(err, rows, cols)
    # relative to the largest error of the kept block (1e-3); dropped columns are not counted
    assert got.tolist() == [[False, True, False], [False, True, False]]
    assert not unestimated_entries(torch.full((2, 2), math.pi), rows[:2], rows[:2]).any()
