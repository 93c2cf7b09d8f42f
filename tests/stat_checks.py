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
