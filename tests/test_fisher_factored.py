"""Factored chain-FIM replicates (issue 16): the same numbers as the dense replicate stack.

Every assertion compares two deterministic computations of the same quantity (dense ``d × d``
replicates versus factors ``J_bᵀ C_b J_b``) on the same samples: exact up to rounding, checked
to 1e-10 relative to the matrix scale. No statistical check, so no false-failure rate.
"""

from __future__ import annotations

import math

import pytest
import torch

from rgaudit.experiments import audit as audit_mod
from rgaudit.experiments.audit import SPECTRUM_SIGMA, TOP_K, AuditConfig, compute_fims
from rgaudit.fisher.autograd import mean_field_fim
from rgaudit.fisher.chain import chain_fim, chain_fim_jackknife, chain_jacobian, fim_from_mcrg
from rgaudit.fisher.direct import direct_fim
from rgaudit.fisher.eig import abs_cosine, spectrum_summary, top_eigenpairs
from rgaudit.fisher.factored import FactoredFIM, factored_dense, factored_eigvalsh
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.mcrg import mcrg_network

TOL = 1e-10


def _close(a: torch.Tensor, b: torch.Tensor, scale: float | None = None) -> None:
    scale = float(b.abs().max()) if scale is None else scale
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= TOL * max(scale, 1e-300), (err, scale)


def _t(v) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def _dense_eigvalsh(J: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    F = J.transpose(-1, -2) @ C @ J
    return torch.linalg.eigvalsh(0.5 * (F + F.transpose(-1, -2))).flip(-1)


@pytest.mark.parametrize("r,d", [(3, 7), (7, 3), (5, 5), (1, 9)])
def test_factored_spectrum_equals_dense(r, d):
    g = torch.Generator().manual_seed(r * 10 + d)
    J = torch.randn(4, 2, r, d, generator=g, dtype=torch.float64)
    A = torch.randn(4, 2, r, r, generator=g, dtype=torch.float64)
    C = A @ A.transpose(-1, -2) + 0.1 * torch.randn(4, 2, r, r, generator=g, dtype=torch.float64)
    w = factored_eigvalsh(J, C)
    assert w.shape == (4, 2, d)
    assert bool((w[..., 1:] <= w[..., :-1]).all())                        # descending
    _close(w, _dense_eigvalsh(J, C))
    _close(factored_dense(J, C), 0.5 * (J.transpose(-1, -2) @ (C + C.transpose(-1, -2)) @ J))


def test_factored_spectrum_of_a_zero_chain_is_zero():
    """A frozen output (T = 0) gives J = 0: QR of a zero matrix, all eigenvalues exactly 0."""
    w = factored_eigvalsh(torch.zeros(3, 8, dtype=torch.float64), torch.eye(3))
    assert torch.equal(w, torch.zeros(8, dtype=torch.float64))


def test_chain_jacobian_association_order_is_the_same_matrix():
    """Left-first association (few output operators) gives the right-first product."""
    g = torch.Generator().manual_seed(0)
    dg1 = torch.randn(40, 30, generator=g, dtype=torch.float64)
    Ts = [torch.randn(2, 40, 40, generator=g, dtype=torch.float64),
          torch.randn(2, 3, 40, generator=g, dtype=torch.float64)]
    ref = Ts[1] @ (Ts[0] @ dg1)
    _close(chain_jacobian(dg1, Ts), ref)
    with pytest.raises(ValueError, match="must have 40 columns"):
        chain_jacobian(dg1, [Ts[0][..., :5]])


def _net(widths, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    net = DeepRBM.random(widths, generator=g, scale=scale)
    x = torch.rand(2, widths[0], generator=g, dtype=torch.float64)
    return net, x


@pytest.mark.parametrize("widths,basis", [([5, 4, 3, 2], "full"), ([6, 3, 4, 3, 2], "full"),
                                          ([3, 4, 3], "full"), ([7, 5, 4, 3], "singles")])
def test_factored_replicates_equal_dense_on_exact_test_networks(widths, basis):
    """The networks of tests/test_fisher_chain.py (plus r ≥ d and a singles chain)."""
    net, x = _net(widths)
    res = mcrg_network(net, x, basis, 4000, generator=3)
    W1 = net.layer(1).W
    dense = fim_from_mcrg(res, W1)
    fac = fim_from_mcrg(res, W1, factored=True)
    assert dense.replicates is not None and dense.stderr is not None
    assert fac.factors is not None and fac.replicates is None and fac.stderr is None
    assert isinstance(fac.factors, FactoredFIM)
    assert fac.factors.n_replicates == dense.replicates.shape[0]
    scale = float(dense.fim.abs().max())
    _close(fac.fim, dense.fim, scale)
    _close(fac.factors.dense(), dense.replicates, scale)
    _close(fac.factors.entry_stderr(), dense.stderr, scale)
    we, wd = fac.replicate_eigvalsh(), dense.replicate_eigvalsh()
    assert we is not None and wd is not None and we.shape == wd.shape
    _close(we, wd, scale)
    assert fac.meta == dense.meta
    # what the audit reports from them: top-k eigenvalue errors
    se_ref = top_eigenpairs(dense.fim, TOP_K, replicates=dense.replicates).stderr
    se_new = audit_mod.jackknife_stderr(we[..., :TOP_K])
    _close(se_new, se_ref, scale)


def _reference_compute_fims(net, x, cfg, gen):
    """The audit's FIM stage before issue 16's storage change (dense replicate stacks), for
    the estimators and summaries it reports."""
    fims, reps, info = {}, {}, {}
    W1 = net.layer(1).W.detach()
    for label, basis in (("rg-singles", "singles"), ("rg-large", cfg.large_basis)):
        res = mcrg_network(net, x, basis, cfg.mcrg_samples, generator=gen)
        ch = fim_from_mcrg(res, W1)
        fims[label], reps[label] = ch.fim, ch.replicates
        info[label] = {}
    dfim = direct_fim(net, x, cfg.direct_samples, gen)
    fims["direct"], reps["direct"] = dfim.fim, dfim.replicates
    fims["mean-field"], reps["mean-field"] = mean_field_fim(net, x), None
    info["direct"], info["mean-field"] = {}, {}
    ref = top_eigenpairs(dfim.fim, 1).vectors[..., 0]
    for name, F in fims.items():
        R = reps[name]
        v = top_eigenpairs(F, 1).vectors[..., 0]
        top = top_eigenpairs(F, TOP_K, replicates=R)
        spec = [spectrum_summary(F[i], replicates=None if R is None else R[:, i],
                                 n_sigma=SPECTRUM_SIGMA) for i in range(F.shape[0])]
        info[name] = {"top_eigs": top.values, "top_eigs_err": top.stderr,
                      "cos": abs_cosine(v, ref), "v": v,
                      "spec": spec}
    return fims, info


def test_compute_fims_reports_the_numbers_of_the_dense_path():
    """The audit's FIM stage, new storage against the old dense one, same generator."""
    net, x = _net([6, 5, 4, 3], seed=1, scale=2.0)
    x = x.to(net.dtype)
    cfg = AuditConfig(mcrg_samples=512, direct_samples=512, large_basis="pairs:3")
    fims, info, _, _ = compute_fims(net, x, cfg, torch.Generator().manual_seed(5),
                                    lambda s: None)
    rfims, rinfo = _reference_compute_fims(net, x, cfg, torch.Generator().manual_seed(5))
    assert list(fims) == list(rfims)
    for name, F in fims.items():
        scale = float(rfims[name].abs().max())
        _close(F, rfims[name], scale)
        got, ref = info[name].to_dict(), rinfo[name]
        _close(_t(got["top_eigs"]), ref["top_eigs"], scale)
        if ref["top_eigs_err"] is None:
            assert got["top_eigs_err"] is None
        else:
            _close(_t(got["top_eigs_err"]), ref["top_eigs_err"], scale)
        _close(_t(got["cos_top_vs_direct"]), ref["cos"], 1.0)
        _close(_t(got["top_vectors"]), ref["v"][:4], 1.0)
        spec = ref["spec"]
        med = {k: float(_t([getattr(s, k) for s in spec]).median())
               for k in ("n_significant", "n_stiff", "decades", "effective_rank", "noise_floor")}
        for key in ("n_significant", "n_stiff"):
            assert got[f"{key}_median"] == med[key]
        for key in ("decades", "effective_rank", "noise_floor"):
            assert math.isclose(got[f"{key}_median"], med[key], rel_tol=TOL,
                                abs_tol=TOL * scale)
        logs = torch.tensor([s.log10 for s in spec], dtype=torch.float64).median(0).values
        ref_logs = [float(v) if math.isfinite(v) else None for v in logs.tolist()]
        assert [v is None for v in got["spectrum_log10_median"]] == [
            v is None for v in ref_logs]
        _close(_t([v for v in got["spectrum_log10_median"] if v is not None]),
               _t([v for v in ref_logs if v is not None]), 1.0)


def test_chain_fim_jackknife_factored_without_replicates_is_plain():
    out = chain_fim_jackknife(torch.eye(2, dtype=torch.float64), [], torch.eye(2),
                              factored=True)
    assert out.factors is None and out.replicate_eigvalsh() is None
    torch.testing.assert_close(out.fim, chain_fim(torch.eye(2, dtype=torch.float64), [],
                                                  torch.eye(2)))
