"""MCRG of the 4×4 Ising model against an exact reference (all 2^16 configurations enumerated).

The majority-rule blocking 4×4 → 2×2 (random tie-break) is exact too: given a configuration the
four block spins are independent with probabilities ``MajorityRuleKernel.prob``, so the joint law
of (h0, h1) is a 65 536 × 16 table. From it the exact ``C = Cov(O(h1), O(h1))``,
``D = Cov(O(h1), O(h0))`` and the leading eigenvalue of every truncated ``T = C⁻¹D`` follow; the
Swendsen–Wang chains + the generic engine (``rg.mcrg.mcrg_chain``, exactly as
``experiments.ising.run_ising_mcrg`` calls it) must agree within their jackknife errors.

Operators: nn, nnn (even; d2 is constant on the 2×2 lattice) and m, tri (odd).

False-failure rates (16 jackknife blocks, Student t with 15 degrees of freedom): the 4 leading
eigenvalues at |z| < 4 (1.2e-3 each, 0.5 % together), and the C and D entries with two
``stat_checks.agrees_within_errors`` calls (Bonferroni max-|z| at 1 % each; their mean-z² half
has no stated rate). Family-wise about 2.5 % by the union bound. Fixed seeds: deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stat_checks import agrees_within_errors

from rgaudit.experiments.ising import IsingMCRGConfig, IsingSource, stability_eigen
from rgaudit.physics.blocking import MajorityRuleKernel
from rgaudit.physics.ising import K_CRITICAL, ChainStats, exact_energy_per_site
from rgaudit.physics.lattice_ops import EVEN_SHAPES, ODD_SHAPES, LatticeOperators
from rgaudit.rg.exact import all_states
from rgaudit.rg.mcrg import mcrg_chain
from rgaudit.rg.moments import jackknife_stderr

SHAPES = {k: EVEN_SHAPES[k] for k in ("nn", "nnn")} | {k: ODD_SHAPES[k] for k in ("m", "tri")}
TRUNCATIONS = {"even": ([0], [0, 1]), "odd": ([2], [2, 3])}


def exact_moments(coupling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``C`` (4, 4) and ``D`` (4, 4, rows: level 1, columns: level 0) by enumeration."""
    ops4, ops2 = LatticeOperators(4, SHAPES), LatticeOperators(2, SHAPES)
    h0 = all_states(16)  # (65536, 16)
    O0 = ops4.evaluate(h0)
    log_w = coupling * O0[:, 0]  # Boltzmann weight exp(K Σ_nn s_i s_j)
    w = torch.exp(log_w - log_w.max())
    w = w / w.sum()
    # the weights are right: ⟨e⟩ = −⟨Σ_nn⟩/16 against the physics module's own enumeration
    assert abs(float(-(w * O0[:, 0]).sum()) / 16
               - exact_energy_per_site(4, coupling)) < 1e-12
    p = MajorityRuleKernel(4).prob(h0).double()  # (65536, 4): P(block up | h0)
    h1 = all_states(4)  # (16, 4)
    P = torch.ones(h0.shape[0], h1.shape[0], dtype=torch.float64)
    for b in range(4):
        P = P * torch.where(h1[:, b].bool(), p[:, b : b + 1], 1 - p[:, b : b + 1])
    joint = w[:, None] * P  # (65536, 16)
    O1 = ops2.evaluate(h1)
    q1 = joint.sum(0)
    m1, m0 = q1 @ O1, w @ O0
    C = O1.T @ (q1[:, None] * O1) - torch.outer(m1, m1)
    D = O1.T @ joint.T @ O0 - torch.outer(m1, m0)
    return C, D


def _leading(C: torch.Tensor, D: torch.Tensor, ix: list[int]) -> float:
    t = torch.linalg.solve(C[ix][:, ix], D[ix][:, ix])
    return float(torch.linalg.eigvals(t).real.max())


def test_exact_reference_is_a_consistent_markov_kernel():
    C, D = exact_moments(K_CRITICAL)
    assert torch.allclose(C, C.T, atol=1e-12)
    assert float(torch.linalg.eigvalsh(C).min()) > 0  # no constant or dependent operator
    # at K = 0 the spins are independent: nn and nnn sums then have no covariance with m
    C0, _ = exact_moments(0.0)
    assert abs(float(C0[0, 2])) < 1e-12 and abs(float(C0[1, 3])) < 1e-10


@pytest.mark.slow
def test_sampled_mcrg_agrees_with_exact_4x4_reference():
    cfg = IsingMCRGConfig(size=4, levels=1, n_chains=16, n_sweeps=1600, n_thermal=100,
                          sweeps_per_chunk=25, n_blocks=16, coupling=K_CRITICAL, seed=3)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    res = mcrg_chain(IsingSource(cfg, rng, ChainStats()), [MajorityRuleKernel(4).sample],
                     [LatticeOperators(4, SHAPES), LatticeOperators(2, SHAPES)],
                     cfg.n_chains * cfg.n_sweeps, chunk=cfg.n_chains * cfg.sweeps_per_chunk,
                     n_blocks=cfg.n_blocks, generator=torch.Generator().manual_seed(4),
                     contiguous_blocks=True)
    pair = res.layers[0]
    assert pair is not None
    C, D = exact_moments(cfg.coupling)
    n_rep = pair.n_replicates
    agrees_within_errors(pair.C_next, jackknife_stderr(pair.C_next_replicates), C, n_rep)
    agrees_within_errors(pair.D, jackknife_stderr(pair.D_replicates), D, n_rep)
    for sector, truncations in TRUNCATIONS.items():
        for ix in truncations:
            e = stability_eigen(pair, ix, 1, sector)
            exact = _leading(C, D, ix)
            print(f"{sector} {ix}: sampled {e.lam:.4f} ± {e.lam_err:.4f}, exact {exact:.4f}")
            assert abs(e.lam - exact) < 4 * e.lam_err, (sector, ix, e.lam, e.lam_err, exact)
            assert e.lam_err < 0.05 * exact  # the check has power
