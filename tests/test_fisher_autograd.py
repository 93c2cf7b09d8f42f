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
