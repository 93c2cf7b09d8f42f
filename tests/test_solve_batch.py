"""rg.solve.solve_batch equals solve_cov + solve_replicates element by element (issue 15.2)."""

import torch

from rgaudit.rg.solve import solve_batch, solve_cov, solve_replicates

F64 = torch.float64


def _cov(n, m, gen, rank=None):
    a = torch.randn(n, 4 * m, rank or m, generator=gen, dtype=F64)
    x = a @ torch.randn(n, rank or m, m, generator=gen, dtype=F64)
    x = x - x.mean(-2, keepdim=True)
    return x.transpose(-1, -2) @ x / x.shape[-2]


def test_solve_batch_matches_the_single_solves():
    gen = torch.Generator().manual_seed(0)
    nb, m, p, nr = 5, 6, 4, 7
    c = _cov(nb, m, gen)
    c[1, 2, :] = 0                         # element 1: operator 2 constant (dropped)
    c[1, :, 2] = 0
    c[3] = _cov(1, m, gen, rank=4)[0] + 1e-14 * torch.eye(m, dtype=F64)  # ill-conditioned
    d = torch.randn(nb, m, p, generator=gen, dtype=F64)
    c_r = c + 1e-3 * _cov(nr * nb, m, gen).reshape(nr, nb, m, m)
    c_r[:, 1, 2, :] = 0
    c_r[:, 1, :, 2] = 0
    c_r[2, 4] = _cov(1, m, gen, rank=3)[0]  # one singular replicate of a regular element
    d_r = d + 1e-3 * torch.randn(nr, nb, m, p, generator=gen, dtype=F64)
    x, x_r, infos = solve_batch(c, d, c_reps=c_r, d_reps=d_r)
    assert x_r is not None
    for b in range(nb):
        xb, info = solve_cov(c[b], d[b])
        xr, info = solve_replicates(c_r[:, b], d_r[:, b], info)
        full = torch.zeros(m, p, dtype=F64)
        full[info.kept] = xb
        torch.testing.assert_close(x[b], full, rtol=1e-9, atol=1e-12)
        full_r = torch.zeros(nr, m, p, dtype=F64)
        full_r[:, info.kept] = xr
        torch.testing.assert_close(x_r[:, b], full_r, rtol=1e-9, atol=1e-12)
        got = infos[b]
        assert got.kept.tolist() == info.kept.tolist()
        assert got.dropped.tolist() == info.dropped.tolist()
        assert got.regularised == info.regularised and got.lam == info.lam
        assert got.n_replicates_regularised == info.n_replicates_regularised
    assert infos[1].dropped.tolist() == [2] and infos[3].regularised
    assert infos[4].n_replicates_regularised >= 1


def test_a_replicate_with_every_kept_operator_constant_gets_t_zero_not_a_crash():
    """Regression (digits28 784-500-500-10 audit on 4 inputs): a jackknife replicate whose
    kept operators are all constant has C_r = 0, so the ridge trace(C_r)/m/max_cond was 0 and
    the "regularised" solve raised. It now borrows the largest replicate's ridge: T_r = 0
    (D_r = 0 too), on the batched path and on the one-element path."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, dtype=torch.float64, generator=g)
    c = a @ a.T + torch.eye(3, dtype=torch.float64)
    d = torch.randn(3, 2, dtype=torch.float64, generator=g)
    c_reps = torch.stack([c * (1 + 0.01 * k) for k in range(4)])
    d_reps = torch.stack([d * (1 + 0.01 * k) for k in range(4)])
    c_reps[1], d_reps[1] = 0.0, 0.0                    # the degenerate replicate
    x, x_r, infos = solve_batch(c[None], d[None], c_reps=c_reps[:, None],
                                d_reps=d_reps[:, None])
    assert x_r is not None
    assert torch.equal(x_r[1, 0], torch.zeros(3, 2, dtype=torch.float64))
    for k in (0, 2, 3):                                # the others: their exact solves
        torch.testing.assert_close(x_r[k, 0], torch.linalg.solve(c_reps[k], d_reps[k]),
                                   rtol=1e-12, atol=1e-12)
    assert infos[0].n_replicates_regularised == 1
    xs, info = solve_cov(c, d)
    xr1 = solve_replicates(c_reps, d_reps, info, max_cond=1e10)[0]
    assert torch.equal(xr1[1], torch.zeros(3, 2, dtype=torch.float64))
