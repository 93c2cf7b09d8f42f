"""Shared statistical checks for tests of Monte Carlo estimators against exact values."""

from __future__ import annotations

from scipy import stats


def agrees_within_errors(est, err, exact, n_rep):
    """Aggregate and multiplicity-aware check of ``z = (est − exact)/err``.

    With ``n_rep`` jackknife blocks, ``z`` is roughly Student-t with ``n_rep − 1`` degrees of
    freedom: ``E[z²] = ν/(ν−2)`` (1.15 for 16 blocks). Entries are correlated, so the mean of
    z² is checked against twice its nominal value; the largest |z| against the Bonferroni
    quantile for family-wise error 1% over all entries.
    """
    z = ((est - exact) / err).flatten()
    nu = n_rep - 1
    mean_z2 = float((z**2).mean())
    z_max = float(stats.t.isf(0.01 / (2 * z.numel()), nu))
    assert mean_z2 < 2 * nu / (nu - 2), f"mean z² = {mean_z2:.2f}"
    assert float(z.abs().max()) < z_max, f"max |z| = {float(z.abs().max()):.2f} ≥ {z_max:.2f}"


def agrees_where_estimated(est, err, exact, n_rep, unestimated):
    """:func:`agrees_within_errors` on the entries not flagged ``unestimated`` (a bool mask).

    Also checks that every other entry has a finite, positive error bar: an error of 0 or NaN
    outside the mask would be a collapsed error bar that escaped detection.
    """
    import torch

    keep = ~unestimated
    assert torch.isfinite(err[keep]).all() and (err[keep] > 0).all(), "unflagged bad error bar"
    agrees_within_errors(est[keep], err[keep], exact[keep], n_rep)


def large_weight_binary_net(widths, seed, n_inputs=2):
    """The large-weight, binary-input regime: weights N(0, 1) (not N(0, 1/n)), biases
    N(0, 0.25), binary inputs. Returns ``(net, x)`` with ``x`` of shape (n_inputs, widths[0])."""
    import torch

    from rgaudit.nets.deep_rbm import DeepRBM

    g = torch.Generator().manual_seed(seed)
    net = DeepRBM.random(widths, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for layer in net.layers:
            layer.W.mul_(layer.W.shape[1] ** 0.5)
    x = (torch.rand(n_inputs, widths[0], generator=g, dtype=torch.float64) < 0.5).double()
    return net, x


def least_squares_digits_rbm(ds):
    """A 64-16-10 DeepRBM on digits with random first-layer weights (seed 0, scale 4, float64)
    and its output layer fitted by least squares to ±4 one-hot targets: a usable classifier
    in a fraction of a second."""
    import torch

    from rgaudit.nets.deep_rbm import DeepRBM

    net = DeepRBM.random([64, 16, 10], generator=torch.Generator().manual_seed(0), scale=4.0,
                         dtype=torch.float64)
    with torch.no_grad():
        H = net.layer(1).prob_up(ds.X_train.double())
        Y = torch.nn.functional.one_hot(ds.y_train, 10).double() * 8 - 4
        A = torch.cat([H, torch.ones(H.shape[0], 1, dtype=torch.float64)], 1)
        sol = torch.linalg.lstsq(A, Y).solution
        net.layer(2).W.copy_(sol[:-1].T)
        net.layer(2).a.copy_(sol[-1])
    return net
