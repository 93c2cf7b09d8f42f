"""Autograd FIMs: KL finite-difference check, matrix-free versus dense, fact 6."""

from __future__ import annotations

import torch

from rgaudit.fisher.autograd import dense_fim, mean_field_fim, top_fim_eigs
from rgaudit.fisher.eig import abs_cosine, spectrum_summary, top_eigenpairs
from rgaudit.nets.deep_rbm import DeepRBM


def _mlp(d=20, n_out=6, seed=0):
    torch.manual_seed(seed)  # test-only: module initialisers read the global RNG
    return torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, n_out)).double()


def test_softmax_fim_matches_kl_second_order():
    m = _mlp()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 20, generator=g, dtype=torch.float64)
    F = dense_fim(m, x, "softmax")[0]
    for _ in range(3):
        v = torch.randn(20, generator=g, dtype=torch.float64)
        v /= v.norm()
        h = 1e-3
        p = torch.softmax(m(x), -1)
        q = torch.softmax(m(x + h * v), -1)
        kl = (p * (p / q).log()).sum()
        assert abs(kl - 0.5 * h**2 * v @ F @ v) < 1e-3 * (0.5 * h**2 * v @ F @ v)


def test_bernoulli_fim_matches_kl_second_order():
    g = torch.Generator().manual_seed(2)
    net = DeepRBM.random([12, 8, 5], generator=g, scale=2.0)
    x = torch.rand(1, 12, generator=g, dtype=torch.float64)
    F = mean_field_fim(net, x)[0]
    v = torch.randn(12, generator=g, dtype=torch.float64)
    v /= v.norm()
    h = 1e-3
    p = torch.sigmoid(net.mean_field_logits(x))
    q = torch.sigmoid(net.mean_field_logits(x + h * v))
    kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).sum()
    quad = 0.5 * h**2 * v @ F @ v
    assert abs(kl - quad) < 1e-3 * quad


def test_matrix_free_top_eigenpairs_match_dense():
    m = _mlp(d=40, n_out=8)
    x = torch.rand(40, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for kind in ("softmax", "bernoulli"):
        dense = top_eigenpairs(dense_fim(m, x.unsqueeze(0), kind)[0], 4)
        mf = top_fim_eigs(m, x, 4, kind)
        torch.testing.assert_close(mf.values, dense.values, rtol=1e-7, atol=1e-12)
        assert (abs_cosine(mf.vectors.T, dense.vectors.T) > 1 - 1e-7).all()


def test_fact6_scalar_output_fim_is_rank_one_along_gradient():
    m = _mlp(d=15, n_out=1)
    x = torch.rand(1, 15, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    F = dense_fim(m, x, "bernoulli")[0]
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m(xg).sum(), xg)
    s = spectrum_summary(F)
    assert s.eigenvalues[1] < 1e-12 * s.eigenvalues[0]
    top = top_eigenpairs(F, 1)
    assert abs_cosine(top.vectors[:, 0], grad[0]) > 1 - 1e-10
    p = torch.sigmoid(m(x))[0, 0]
    torch.testing.assert_close(F, p * (1 - p) * grad.T @ grad)


def test_mean_field_fim_is_float64_for_a_float32_net():
    from rgaudit.nets.deep_rbm import DeepRBM

    net32 = DeepRBM.random([10, 6, 3], generator=torch.Generator().manual_seed(1),
                           dtype=torch.float32)
    net64 = DeepRBM.random([10, 6, 3], dtype=torch.float64)
    net64.load_state_dict({k: v.double() for k, v in net32.state_dict().items()})
    x = torch.rand(2, 10, generator=torch.Generator().manual_seed(2))
    F = mean_field_fim(net32, x)
    assert F.dtype == torch.float64 and net32.dtype == torch.float32
    torch.testing.assert_close(F, mean_field_fim(net64, x.double()), rtol=1e-12, atol=0)


def test_spectrum_summary_counts_only_eigenvalues_above_the_noise_floor():
    d = 6
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64))
    w = torch.tensor([1.0, 0.1, 1e-3, 2e-5, -1e-5, -3e-5], dtype=torch.float64)
    F = Q @ torch.diag(w) @ Q.T
    s = spectrum_summary(F)
    assert s.eigenvalues[-1] < 0                       # not clamped
    assert abs(s.noise_floor - 3e-5) < 1e-15
    assert s.n_significant == 3 and s.n_stiff == 2
    assert abs(s.decades - 3.0) < 1e-9
    # with replicates: an eigenvalue within n_sigma jackknife σ of the floor is not significant
    reps = torch.stack([Q @ torch.diag(w + torch.tensor([0, 0, e, 0, 0, 0],
                                                        dtype=torch.float64)) @ Q.T
                        for e in (-1e-3, 1e-3, -1e-3, 1e-3)])
    s2 = spectrum_summary(F, replicates=reps, n_sigma=3.0)
    assert s2.stderr is not None and s2.n_significant == 2
