"""The faster accumulator (tiled symmetric products, stacked replicates by subtraction) against
the straightforward scheme it replaced, on the setups of the exact tests (issue 16).

Deterministic comparisons (no sampling error): the two schemes see the same samples, so they must
agree to rounding; the tolerance 1e-10 is the brief's.
"""

import pytest
import torch

import rgaudit.rg.moments as moments
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.mcrg import mcrg_network
from rgaudit.rg.moments import CovarianceAccumulator

F64 = torch.float64
TOL = dict(rtol=0.0, atol=1e-10)


def _fill(acc: CovarianceAccumulator, a: torch.Tensor, b: torch.Tensor, chunk: int) -> None:
    for i in range(0, a.shape[-2], chunk):
        acc.update(a[..., i:i + chunk, :], b[..., i:i + chunk, :])


@pytest.mark.parametrize("binary", [True, False])
def test_replicates_equal_weighted_block_sums(binary):
    """Stacked replicates = moments of the blocks with one left out (the old per-block path)."""
    g = torch.Generator().manual_seed(3)
    a = torch.rand(2, 4000, 7, generator=g, dtype=F64)
    b = torch.rand(2, 4000, 5, generator=g, dtype=F64)
    if binary:
        a, b = (a < 0.3).to(F64), (b < 0.6).to(F64)
    else:
        a, b = a + 50.0, 3.0 * b - 1.0
    acc = CovarianceAccumulator(7, 5, n_blocks=8, batch_shape=(2,))
    _fill(acc, a, b, 250)
    assert acc._integer is binary
    rep = acc.replicates()
    assert rep.c_aa.shape == (8, 2, 7, 7) and rep.c_ab.shape == (8, 2, 7, 5)
    for k in range(8):
        w = torch.ones(8, dtype=F64)
        w[k] = 0.0
        ref = acc._moments(w)
        assert float(rep.n[k]) == ref.n
        for name in ("mean_a", "mean_b", "c_aa", "c_ab", "c_bb"):
            torch.testing.assert_close(getattr(rep, name)[k], getattr(ref, name), **TOL)
    loo = acc.leave_one_out()
    assert len(loo) == 8
    torch.testing.assert_close(loo[3].c_ab, rep.c_ab[3], rtol=0, atol=0)


@pytest.mark.parametrize("binary", [True, False])
def test_tiled_symmetric_products_equal_plain_products(binary, monkeypatch):
    g = torch.Generator().manual_seed(5)
    a = torch.rand(3000, 13, generator=g, dtype=torch.float32)
    b = torch.rand(3000, 9, generator=g, dtype=torch.float32)
    if binary:
        a, b = (a < 0.4).float(), (b < 0.5).float()
    accs = []
    for tile_min in (10**9, 1):          # plain products, then tiles even for tiny m
        monkeypatch.setattr(moments, "GRAM_TILE_MIN", tile_min)
        acc = CovarianceAccumulator(13, 9, n_blocks=4)
        _fill(acc, a, b, 300)
        accs.append(acc)
    plain, tiled = accs
    if binary:   # exact integer sums: identical bits
        assert torch.equal(plain.saa, tiled.saa) and torch.equal(plain.sbb, tiled.sbb)
    for x, y in ((plain.saa, tiled.saa), (plain.sab, tiled.sab), (plain.sbb, tiled.sbb)):
        torch.testing.assert_close(x, y, rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("binary", [True, False])
def test_syrk_products_equal_plain_products(binary, monkeypatch):
    """BLAS syrk (lower triangle, mirrored) = the plain products: identical integer sums,
    float64 sums to rounding, exactly symmetric, with a batch dimension."""
    g = torch.Generator().manual_seed(6)
    a = torch.rand(2, 3000, 13, generator=g, dtype=torch.float32)
    b = torch.rand(2, 3000, 9, generator=g, dtype=torch.float32)
    if binary:
        a, b = (a < 0.4).float(), (b < 0.5).float()
    accs = []
    for syrk_min in (10**9, 1):
        monkeypatch.setattr(moments, "GRAM_TILE_MIN", 10**9)
        monkeypatch.setattr(moments, "SYRK_MIN", syrk_min)
        acc = CovarianceAccumulator(13, 9, n_blocks=4, batch_shape=(2,))
        _fill(acc, a, b, 300)
        accs.append(acc)
    plain, fast = accs
    assert fast._integer is binary
    if binary:
        assert torch.equal(plain.saa, fast.saa) and torch.equal(plain.sbb, fast.sbb)
    for x, y in ((plain.saa, fast.saa), (plain.sab, fast.sab), (plain.sbb, fast.sbb)):
        # centred float64 sums: rounding relative to the largest sum, not to each entry
        torch.testing.assert_close(x, y, rtol=0.0, atol=1e-13 * float(x.abs().max()))
    assert torch.equal(fast.saa, fast.saa.transpose(-1, -2))
    assert torch.equal(fast.sbb, fast.sbb.transpose(-1, -2))


def test_integer_check_rejects_fractions_and_nan():
    ok = torch.tensor([[0.0, 1.0], [2.0, -3.0]])
    assert moments._exact_scale(ok, ok, 4) is not None
    for bad in (0.5, -0.25, float("nan"), float("inf")):
        x = ok.clone()
        x[1, 0] = bad
        assert moments._exact_scale(ok, x, 4) is None


@pytest.mark.parametrize("seed", [0, 2])
def test_mcrg_network_same_numbers_fast_and_plain(seed, monkeypatch):
    """The exact-test network of test_mcrg.py: T, errors and covariances agree to 1e-10."""
    g = torch.Generator().manual_seed(seed)
    net = DeepRBM.random([6, 4, 4, 3], generator=g, dtype=F64)
    x = torch.rand(2, 6, generator=g, dtype=F64)
    import rgaudit.rg.replicate_solve as rs

    out = []
    for fast in (False, True):   # plain products + eigenvalue checks, then tiles + certificates
        monkeypatch.setattr(moments, "GRAM_TILE_MIN", 1 if fast else 10**9)
        monkeypatch.setattr(moments, "SYRK_MIN", 1 if fast else 10**9)
        monkeypatch.setattr(rs, "EXACT_COND_MAX", 1 if fast else 10**9)
        out.append(mcrg_network(net, x, "full", 4000, generator=seed + 100, n_blocks=16))
    for p, q in zip(out[0].computed(), out[1].computed(), strict=True):
        for name in ("T", "T_stderr", "T_replicates", "C_next", "C_prev", "D",
                     "C_next_replicates", "C_prev_replicates", "D_replicates"):
            # NaN where an entry is unestimated (its error bar), in both or neither
            torch.testing.assert_close(getattr(p, name), getattr(q, name), equal_nan=True,
                                       **TOL)


def _spd_stack(m: int, n_rep: int, seed: int, tiny: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_rep, 6 * m, m, generator=g, dtype=F64) < 0.3).to(F64)
    c = x.transpose(-1, -2) @ x / x.shape[1]
    if tiny:
        c[1] = c[1] + 0.0   # replicate 1: an almost collinear pair of operators
        c[1, :, 0] = c[1, :, 1]
        c[1, 0, :] = c[1, 1, :]
        c[1, 0, 0] = c[1, 1, 1] + tiny
    return c


@pytest.mark.parametrize("tiny", [0.0, 1e-9])
def test_certified_replicate_solves_equal_the_eigenvalue_checked_ones(tiny, monkeypatch):
    """Same T_r and the same regularisation decisions as solve_replicates (m above the exact
    threshold, lowered here to keep the test small)."""
    import rgaudit.rg.replicate_solve as rs
    from rgaudit.rg.solve import solve_cov, solve_replicates

    monkeypatch.setattr(rs, "EXACT_COND_MAX", 8)
    m = 40
    c = _spd_stack(m, 5, seed=1, tiny=tiny)
    d = torch.randn(5, m, 7, generator=torch.Generator().manual_seed(2), dtype=F64)
    _, info = solve_cov(c[0], d[0], max_cond=1e8)
    ref, ref_info = solve_replicates(c, d, info, max_cond=1e8)
    new, new_info = rs.solve_replicates_certified(c, d, info, max_cond=1e8)
    torch.testing.assert_close(new, ref, **TOL)
    assert new_info.n_replicates_regularised == ref_info.n_replicates_regularised
    assert new_info.n_replicates_regularised == (1 if tiny else 0)
    if tiny:   # the uncertified replicate had its condition number computed exactly
        assert new_info.max_cond_replicates == pytest.approx(ref_info.max_cond_replicates)
    else:
        assert new_info.to_dict()["max_cond_replicates"] is None


def test_replicate_with_every_operator_constant_gives_zero_not_a_crash():
    """C_r = 0 (all fluctuations in the left-out block): both paths raised a singular-matrix
    error here once (seen on a 784-500-500-10 audit); T_r is 0 and the replicate is flagged,
    on the certified and on the plain path alike."""
    from rgaudit.rg.replicate_solve import solve_replicates_certified
    from rgaudit.rg.solve import solve_cov, solve_replicates

    c = _spd_stack(6, 4, seed=4)
    d = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    c[2] = 0.0
    d[2] = 0.0
    _, info = solve_cov(c[0], d[0])
    x_plain, info_plain = solve_replicates(c, d, info)
    x, info_r = solve_replicates_certified(c, d, info)
    torch.testing.assert_close(x_plain, x, **TOL)
    assert info_plain.n_replicates_regularised == 1
    assert torch.isfinite(x).all() and torch.equal(x[2], torch.zeros_like(x[2]))
    assert info_r.n_replicates_regularised == 1
    ref, _ = solve_replicates(c[[0, 1, 3]], d[[0, 1, 3]], info)
    torch.testing.assert_close(x[[0, 1, 3]], ref, **TOL)


def test_frozen_output_layer_gives_zero_T_and_is_reported():
    """A saturated output (every operator constant on all samples, as for confident inputs of
    the 784-500-500-10 digits28 network) no longer stops the run: T = 0, flagged, chain FIM 0."""
    from rgaudit.fisher.chain import fim_from_mcrg

    g = torch.Generator().manual_seed(0)
    net = DeepRBM.random([5, 4, 4, 2], generator=g, dtype=F64)
    with torch.no_grad():
        net.layer(3).W.mul_(0.0)
        net.layer(3).a.copy_(torch.tensor([60.0, -60.0], dtype=F64))   # output frozen at (1, 0)
    x = torch.rand(2, 5, generator=g, dtype=F64)
    res = mcrg_network(net, x, "singles", 2000, generator=1)
    top = res.layers[2]
    assert top.frozen == [0, 1] and torch.equal(top.T, torch.zeros_like(top.T))
    assert not top.kept_mask_next.any() and top.max_cond != top.max_cond   # nan: nothing solved
    assert res.layers[1].frozen == [] and bool((res.layers[1].T != 0).any())
    fim = fim_from_mcrg(res, net.layer(1).W.detach())
    assert torch.equal(fim.fim, torch.zeros_like(fim.fim))
    from rgaudit.rg.spectra import pair_spectra

    spec = pair_spectra(top)
    assert [s.fisher.numel() for s in spec] == [0, 0]
    assert spec[0].counts["fisher~1"].value == 0 and "frozen" in spec[0].flags[0]
    assert all(s.fisher.numel() > 0 for s in pair_spectra(res.layers[1]))


def test_exactly_symmetric_covariances_without_symmetrising():
    """Exact integer sums: the covariances (full and replicates) come out exactly symmetric
    with the symmetrisation skipped; a later non-integer chunk turns it back on."""
    g = torch.Generator().manual_seed(7)
    a = (torch.rand(2, 2000, 9, generator=g) < 0.3).float()
    b = (torch.rand(2, 2000, 6, generator=g) < 0.6).float()
    acc = CovarianceAccumulator(9, 6, n_blocks=4, batch_shape=(2,))
    _fill(acc, a, b, 250)
    assert acc._integer and acc._exact_sums
    rep = acc.block_replicates()
    for x in (acc.moments().c_aa, acc.moments().c_bb, rep.c_aa(1), rep.c_bb(2)):
        assert torch.equal(x, x.transpose(-1, -2))
    acc.update(a[:, :250] * 0.5, b[:, :250])          # not integer: float path from now on
    assert not acc._exact_sums
    mo = acc.moments()
    assert torch.equal(mo.c_aa, mo.c_aa.transpose(-1, -2))
    assert torch.equal(acc.block_replicates().c_aa(0), acc.block_replicates().c_aa(0).mT)


def _exact_block_sums(a: torch.Tensor, b: torch.Tensor, chunk: int, n_blocks: int):
    """Reference: float64 sums of each block's products, straight from the samples."""
    sums = {k: torch.zeros(n_blocks, *a.shape[:-2], a.shape[-1] if k != "bb" else b.shape[-1],
                           b.shape[-1] if k != "aa" else a.shape[-1], dtype=F64)
            for k in ("aa", "ab", "bb")}
    for c, i in enumerate(range(0, a.shape[-2], chunk)):
        x, y = a[..., i:i + chunk, :].to(F64), b[..., i:i + chunk, :].to(F64)
        sums["aa"][c % n_blocks] += x.mT @ x
        sums["ab"][c % n_blocks] += x.mT @ y
        sums["bb"][c % n_blocks] += y.mT @ y
    return sums


@pytest.mark.parametrize("syrk_min", [1, 10**9])
def test_float32_block_sums_are_the_exact_integers(syrk_min, monkeypatch):
    """Binary operators: the block sums are held in float32 (half the memory of float64) and
    equal the float64 sums of the same products exactly, through numpy's syrk or the GEMM."""
    monkeypatch.setattr(moments, "SYRK_MIN", syrk_min)
    g = torch.Generator().manual_seed(11)
    a = (torch.rand(2, 3000, 11, generator=g) < 0.3).float()
    b = (torch.rand(2, 3000, 7, generator=g) < 0.6).float()
    acc = CovarianceAccumulator(11, 7, n_blocks=4, batch_shape=(2,))
    _fill(acc, a, b, 300)
    assert acc._store32 and acc.saa.dtype == torch.float32
    ref = _exact_block_sums(a, b, 300, 4)
    for name in ("aa", "ab", "bb"):
        assert torch.equal(getattr(acc, "s" + name).to(F64), ref[name])


def test_float32_block_sums_move_to_float64_before_they_could_round(monkeypatch):
    """A block whose sums could pass the exact range (lowered here to 700) moves every block to
    float64 first; a later non-integer chunk does too. The moments are the same bits as with
    float64 sums all along (integer sums are exact in any order)."""
    g = torch.Generator().manual_seed(12)
    a = (torch.rand(3000, 9, generator=g) < 0.4).float()
    b = (torch.rand(3000, 5, generator=g) < 0.5).float()
    plain = CovarianceAccumulator(9, 5, n_blocks=4)
    _fill(plain, a, b, 250)                    # 3 chunks of 250 per block: bound 750 < 2^24
    assert plain._store32
    monkeypatch.setattr(moments, "EXACT32", 700)
    low = CovarianceAccumulator(9, 5, n_blocks=4)
    _fill(low, a, b, 250)                      # the 3rd chunk of block 0 would reach 750
    assert not low._store32 and low.saa.dtype == F64 and low._exact_sums
    for x, y in ((plain.moments(), low.moments()),
                 (plain.block_replicates().stacked(), low.block_replicates().stacked())):
        for name in ("mean_a", "mean_b", "c_aa", "c_ab", "c_bb"):
            assert torch.equal(getattr(x, name), getattr(y, name)), name
    mixed = CovarianceAccumulator(9, 5, n_blocks=4)
    _fill(mixed, a[:2000], b[:2000], 250)
    mixed.update(a[2000:2250] * 0.5, b[2000:2250])
    assert not mixed._store32 and mixed.saa.dtype == F64 and not mixed._exact_sums
    ref = CovarianceAccumulator(9, 5, n_blocks=4)
    _fill(ref, a[:2000].double() + 0.0, b[:2000].double(), 250)
    ref.update(a[2000:2250].double() * 0.5, b[2000:2250].double())
    torch.testing.assert_close(mixed.moments().c_aa, ref.moments().c_aa, **TOL)
