"""Direct Monte Carlo FIM against the exact FIM of a tiny network (fixed seed, judged
against its own jackknife error bars with the multiplicity-aware rule of stat_checks).

Family-wise false-failure rate: four 3σ checks with 16 jackknife blocks (top eigenvalue and
trace, 2 inputs; P(|t_15| > 3) ≈ 0.9 % each) plus one ``agrees_within_errors`` (1 % for its
max-|z| half): at most ≈ 4.6 % by the union bound.
"""

from __future__ import annotations

import torch
from stat_checks import agrees_within_errors

from rgaudit.fisher.direct import direct_fim
from rgaudit.fisher.eig import top_eigenpairs
from rgaudit.fisher.exact import exact_fim, exact_output_log_q
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.moments import jackknife_stderr


def test_direct_fim_agrees_with_exact_within_error_bars():
    g = torch.Generator().manual_seed(0)
    net = DeepRBM.random([6, 5, 4, 3], generator=g, scale=3.0)
    x = torch.rand(2, 6, generator=g, dtype=torch.float64)
    F = exact_fim(net, x)
    D = direct_fim(net, x, 40_000, torch.Generator().manual_seed(1))
    # q is unbiased and far more precise than F
    q = exact_output_log_q(net, x).exp()
    assert (D.q - q).abs().max() < 0.01
    # top eigenvalue and trace, each within 3 jackknife standard errors
    top = top_eigenpairs(D.fim, 1, replicates=D.replicates)
    top_exact = torch.linalg.eigvalsh(F)[:, -1]
    assert ((top.values[:, 0] - top_exact).abs() < 3 * top.stderr[:, 0]).all()
    tr = D.fim.diagonal(dim1=-2, dim2=-1).sum(-1)
    tr_se = jackknife_stderr(D.replicates.diagonal(dim1=-2, dim2=-1).sum(-1))
    assert ((tr - F.diagonal(dim1=-2, dim2=-1).sum(-1)).abs() < 3 * tr_se).all()
    # every distinct entry (F is symmetric): mean z² and a Bonferroni max-|z| bound
    iu = torch.triu_indices(6, 6)
    agrees_within_errors(D.fim[:, iu[0], iu[1]], D.stderr[:, iu[0], iu[1]],
                         F[:, iu[0], iu[1]], D.replicates.shape[0])


def test_depth_one_closed_form_and_unit_gradient():
    g = torch.Generator().manual_seed(2)
    net = DeepRBM.random([5, 3], generator=g)
    x = torch.rand(4, 5, generator=g, dtype=torch.float64)
    D = direct_fim(net, x, 100, g)
    torch.testing.assert_close(D.fim, exact_fim(net, x))
    # ∇ P(y_j = 1 | x) = σ'(z_j) W_1[j]
    p = net.layer(1).prob_up(x)
    j = torch.tensor([0, 1, 2, 0])
    ref = (p * (1 - p))[torch.arange(4), j].unsqueeze(-1) * net.layer(1).W[j]
    torch.testing.assert_close(D.unit_prob_grad(j), ref)
