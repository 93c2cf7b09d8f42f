"""Operator bases: products of unit values, spec strings, pair selection."""

import itertools

import pytest
import torch

from rgaudit.rg.operators import (
    CallableOperators,
    Operators,
    ProductBasis,
    basis_needs_pilot,
    complete_products,
    connected_correlation,
    parse_basis,
)


def _binary(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < 0.5).to(torch.float32)


def test_complete_basis_is_mask_ordered_products():
    h = _binary((7, 5), 0)
    out = ProductBasis.complete(5).evaluate(h)
    assert out.shape == (7, 31)
    for mask in range(1, 32):
        units = [i for i in range(5) if (mask >> i) & 1]
        expect = h[:, units].prod(-1)
        torch.testing.assert_close(out[:, mask - 1], expect)
    torch.testing.assert_close(complete_products(h), out)


def test_arbitrary_subsets_in_given_order_and_batch_dims():
    subsets = [(2, 0), (1,), (0, 1, 3), (3,)]
    basis = ProductBasis(4, subsets)
    h = _binary((2, 3, 4), 1)
    out = basis.evaluate(h)
    assert out.shape == (2, 3, 4)
    for k, s in enumerate(subsets):
        torch.testing.assert_close(out[..., k], h[..., list(s)].prod(-1))
    assert basis.names == ["h0*h2", "h1", "h0*h1*h3", "h3"]


def test_sizes_of_standard_bases():
    n = 6
    assert ProductBasis.singles(n).size == 6
    assert ProductBasis.pairs(n).size == 6 + 15
    assert ProductBasis.up_to_order(n, 3).size == 6 + 15 + 20
    assert ProductBasis.complete(n).size == 63
    assert ProductBasis.up_to_order(n, 6).evaluate(_binary((4, n), 2)).shape == (4, 63)


def test_parse_basis_specs():
    h = _binary((500, 8), 3)
    assert parse_basis("singles", 8).size == 8
    assert parse_basis("pairs", 8).size == 8 + 28
    assert parse_basis("pairs:100", 8).size == 8 + 28  # more than all pairs: all pairs
    assert parse_basis("pairs:5", 8, pilot=h).size == 8 + 5
    assert parse_basis("order:2", 8).size == 36
    assert parse_basis("FULL", 4).size == 15
    assert basis_needs_pilot("pairs:5", 8) and not basis_needs_pilot("pairs", 8)
    for bad in ("triples", "pairs:x", "order:0", "full:3"):
        with pytest.raises(ValueError):
            parse_basis(bad, 8)
    with pytest.raises(ValueError, match="pilot"):
        parse_basis("pairs:5", 8)
    with pytest.raises(ValueError, match="complete basis"):
        ProductBasis.complete(30)


def test_top_pairs_picks_the_correlated_pairs():
    g = torch.Generator().manual_seed(4)
    h = (torch.rand(4000, 6, generator=g) < 0.5).float()
    h[:, 4] = h[:, 1]                                   # perfectly correlated
    flip = (torch.rand(4000, generator=g) < 0.1).float()
    h[:, 5] = (h[:, 2] + flip) % 2                      # strongly correlated
    h[:, 3] = 1.0                                       # constant: correlation set to 0
    basis = ProductBasis.top_pairs(h, 2)
    assert basis.subsets[6:] == [(1, 4), (2, 5)]
    corr = connected_correlation(h)
    assert corr[3].abs().max() == 0


def test_invalid_subsets_and_callable_operators():
    with pytest.raises(ValueError):
        ProductBasis(3, [(0, 0)])
    with pytest.raises(ValueError):
        ProductBasis(3, [(3,)])
    with pytest.raises(ValueError):
        ProductBasis(3, [(0,), (0,)])
    with pytest.raises(ValueError):
        ProductBasis(3, [()])
    ops = CallableOperators(lambda h: h.sum(-1, keepdim=True), 1, ["magnetisation"])
    assert isinstance(ops, Operators) and isinstance(ProductBasis.singles(2), Operators)
    assert ops.evaluate(torch.ones(3, 4)).shape == (3, 1)
    with pytest.raises(ValueError):
        CallableOperators(lambda h: h, 2).evaluate(torch.ones(3, 4))


def test_wrong_width_is_an_error():
    with pytest.raises(ValueError, match="units"):
        ProductBasis.pairs(4).evaluate(torch.ones(2, 5))
    assert list(itertools.chain(*ProductBasis.pairs(3).subsets)) == [0, 1, 2, 0, 1, 0, 2, 1, 2]
