"""Generation FIM (cloning eq. 20–23): chain rule through T̃ equals the exact FIM on tiny nets.

Family-wise false-failure rate: one statistical check (``agrees_within_errors``, 1 % for its
max-|z| half); every other assertion is exact up to rounding.
"""

from __future__ import annotations

import pytest
import torch
from stat_checks import agrees_within_errors

from rgaudit.defence.generation import exact_generation_stability, top_couplings
from rgaudit.defence.generation_fim import (
    exact_chain_generation_fim,
    exact_generation_fim,
    mcrg_generation_fim,
    meanfield_generation_fim,
    top_directions,
)
from rgaudit.nets.deep_rbm import DeepRBM


@pytest.mark.parametrize("widths", [[4, 3, 3, 3], [5, 3, 4, 2, 3], [3, 4, 2]])
def test_chain_equals_exact(widths: list[int]) -> None:
    gen = torch.Generator().manual_seed(sum(widths))
    net = DeepRBM.random(widths, generator=gen, scale=2.5)
    y = torch.rand(3, widths[-1], generator=gen, dtype=torch.float64)
    Fe = exact_generation_fim(net, y)
    Fc = exact_chain_generation_fim(net, y)
    assert Fe.shape == (3, widths[-1], widths[-1])
    assert (Fe - Fc).abs().max() <= 1e-10 * Fe.abs().max()        # measured ~1e-14
    ch = exact_generation_stability(net, y)
    assert ch.n_regularised == 0 and ch.n_dropped == 0
    assert torch.linalg.eigvalsh(Fe).min() >= -1e-12 * Fe.abs().max()


@pytest.mark.slow
def test_mcrg_chain_matches_exact_within_error_bars() -> None:
    gen = torch.Generator().manual_seed(0)
    net = DeepRBM.random([4, 3, 3], generator=gen, scale=3.0)
    y = torch.rand(2, 3, generator=gen, dtype=torch.float64)
    Fe = exact_generation_fim(net, y)
    est = mcrg_generation_fim(net, y, "full", 200_000, torch.Generator().manual_seed(1))
    assert est.stderr is not None and est.replicates is not None
    # a ratio estimator is biased at O(1/n), far below the jackknife error at this n
    agrees_within_errors(est.fim, est.stderr, Fe, len(est.replicates))


def test_mean_field_exact_for_one_layer_and_top_couplings() -> None:
    gen = torch.Generator().manual_seed(2)
    net = DeepRBM.random([5, 3], generator=gen)
    y = torch.rand(4, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(meanfield_generation_fim(net, y), exact_generation_fim(net, y))
    lay = net.layer(1)
    torch.testing.assert_close(top_couplings(net, y), -(y @ lay.W.double() + lay.b.double()))
    assert exact_generation_stability(net, y).Ts == []


def test_simplex_directions_sum_to_zero() -> None:
    gen = torch.Generator().manual_seed(4)
    net = DeepRBM.random([6, 4, 5], generator=gen, scale=2.0)
    y = torch.softmax(torch.randn(7, 5, generator=gen, dtype=torch.float64), -1)
    vals, vecs = top_directions(meanfield_generation_fim(net, y), "simplex", 2)
    assert vals.shape == (7, 2) and vecs.shape == (7, 5, 2)
    assert vecs.sum(-2).abs().max() < 1e-10
    assert torch.all(vals[:, 0] >= vals[:, 1])


def test_mean_field_closed_form_equals_autograd() -> None:
    gen = torch.Generator().manual_seed(5)
    net = DeepRBM.random([7, 5, 4, 3], generator=gen, scale=2.0)
    y = torch.rand(4, 3, generator=gen, dtype=torch.float64)
    J = torch.func.vmap(torch.func.jacrev(lambda v: net.mean_field_down(v).double()))(y)
    p = net.mean_field_down(y).double()
    F = J.transpose(-1, -2) @ (J / (p * (1 - p)).unsqueeze(-1))
    torch.testing.assert_close(meanfield_generation_fim(net, y), F)
