"""MCRG on the 2D Ising model: stability matrices of a blocking kernel at levels 1..n.

Swendsen's estimator (DESIGN.md fact 5). Configurations of the L×L model at coupling ``K`` are
blocked repeatedly by the same kernel (majority rule, or a trained kernel), ``h₀ → h₁ → … → h_n``,
all from the SAME original configurations. At level ``n`` (lattice ``L/2^{n−1}`` → ``L/2^n``)

    C = Cov(O(h_n), O(h_n)),   D = Cov(O(h_n), O(h_{n−1})),   T⁽ⁿ⁾ = C⁻¹ D,

with the same operator shapes on both lattices (extensive sums). Level 1 uses the original
lattice's operators for ``D``. Even and odd operators decouple by spin-flip symmetry and are
solved separately. A truncation to ``N_c`` couplings uses the first ``N_c`` operators of the
sector (the ``[:N_c, :N_c]`` blocks of ``C`` and ``D``). Eigenvalues ``λ`` of ``T``, exponents
``y = ln λ / ln 2``; errors by the blocked jackknife over sample chunks.

Numerics only: no file I/O; :class:`IsingMCRGResult` has ``to_dict()`` for the report layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from math import log

import numpy as np
import torch

from rgaudit.physics.blocking import MajorityRuleKernel
from rgaudit.physics.ising import K_CRITICAL, ChainStats, ising_chain, spins_to_units
from rgaudit.physics.lattice_ops import LatticeOperators, even_operators, odd_operators
from rgaudit.rg.moments import CovarianceAccumulator, Moments, jackknife
from rgaudit.rg.solve import solve_cov

Tensor = torch.Tensor
KernelFactory = Callable[[int], object]
"""Maps an input lattice size ``L`` to a kernel with ``sample(prev (..., L²), generator)``."""

Y_T_EXACT = 1.0
Y_H_EXACT = 15.0 / 8.0
LN2 = log(2.0)


@dataclass(frozen=True)
class IsingMCRGConfig:
    """Settings of one MCRG study.

    Attributes
    ----------
    size : int
        Linear size ``L`` of the original lattice (divisible by ``2**levels``).
    levels : int
        Number of blocking levels.
    n_even, n_odd : int
        Largest even (≤ 7) and odd (≤ 4) truncations; every smaller one is reported too.
    n_chains : int
        Independent Swendsen–Wang chains.
    n_sweeps : int
        Measurements per chain (after ``n_thermal`` discarded updates).
    n_thermal : int
    sweeps_between : int
        SW updates between measurements.
    sweeps_per_chunk : int
        Measurements per chain in one moment chunk (one jackknife block receives whole chunks).
    n_blocks : int
        Jackknife blocks.
    coupling : float
    seed : int
        Seeds the chains (numpy) and the kernels' coins (torch).
    """

    size: int = 64
    levels: int = 4
    n_even: int = 7
    n_odd: int = 4
    n_chains: int = 32
    n_sweeps: int = 2000
    n_thermal: int = 200
    sweeps_between: int = 1
    sweeps_per_chunk: int = 25
    n_blocks: int = 20
    coupling: float = K_CRITICAL
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` on inconsistent settings."""
        if self.levels < 1 or self.size % (2**self.levels) or self.size >> self.levels < 4:
            raise ValueError(
                f"L = {self.size} must be divisible by 2**levels = {2**self.levels} and leave "
                "a lattice of at least 4×4"
            )
        if not (1 <= self.n_even <= 7 and 1 <= self.n_odd <= 4):
            raise ValueError(
                f"need 1 <= n_even <= 7 and 1 <= n_odd <= 4, got {self.n_even}, {self.n_odd}"
            )
        if self.n_sweeps < self.sweeps_per_chunk * self.n_blocks:
            raise ValueError(
                f"n_sweeps = {self.n_sweeps} gives fewer chunks than n_blocks = {self.n_blocks} "
                f"(sweeps_per_chunk = {self.sweeps_per_chunk})"
            )


@dataclass(frozen=True)
class Eigen:
    """Leading eigenvalue of one truncated stability matrix.

    Attributes
    ----------
    level, n_ops : int
    sector : str
        ``"even"`` or ``"odd"``.
    lam, lam_err : float
        Leading eigenvalue (real part) and its jackknife error.
    y, y_err : float
        ``ln λ / ln 2`` and its jackknife error.
    lam2, lam2_err : float
        Second eigenvalue (NaN when ``n_ops = 1``).
    cond : float
        Condition number of ``C``.
    regularised : bool
    """

    level: int
    sector: str
    n_ops: int
    lam: float
    lam_err: float
    y: float
    y_err: float
    lam2: float
    lam2_err: float
    cond: float
    regularised: bool


@dataclass
class IsingMCRGResult:
    """Result of :func:`run_ising_mcrg`.

    Attributes
    ----------
    config : IsingMCRGConfig
    kernel : str
    operators : dict
        ``{"even": [...], "odd": [...]}`` names in truncation order.
    eigen : list of Eigen
    chain : dict
        ``τ_int`` and means of energy and |m| of the original lattice.
    n_samples : int
    seconds : float
    """

    config: IsingMCRGConfig
    kernel: str
    operators: dict
    eigen: list[Eigen] = field(default_factory=list)
    chain: dict = field(default_factory=dict)
    n_samples: int = 0
    seconds: float = 0.0

    def get(self, sector: str, level: int, n_ops: int) -> Eigen:
        """The entry of one table cell."""
        for e in self.eigen:
            if (e.sector, e.level, e.n_ops) == (sector, level, n_ops):
                return e
        raise KeyError(f"no entry for sector={sector}, level={level}, n_ops={n_ops}")

    def to_dict(self) -> dict:
        """Plain data (JSON-ready through ``rgaudit.report.io``)."""
        return {
            "config": asdict(self.config),
            "kernel": self.kernel,
            "operators": self.operators,
            "targets": {
                "y_t": Y_T_EXACT,
                "y_h": Y_H_EXACT,
                "lambda_t": 2.0,
                "lambda_h": 2.0**Y_H_EXACT,
            },
            "eigen": [asdict(e) for e in self.eigen],
            "chain": self.chain,
            "n_samples": self.n_samples,
            "seconds": self.seconds,
        }


def leading_eigenvalues(c: Tensor, d: Tensor, k: int = 2) -> Tensor:
    """Real parts of the ``k`` largest eigenvalues of ``T = C⁻¹D`` (NaN-padded), shape (k,)."""
    t, info = solve_cov(c, d)
    t = t[:, info.kept]  # the same operators label rows (level n) and columns (level n − 1)
    ev = torch.linalg.eigvals(t).real.sort(descending=True).values
    out = torch.full((k,), float("nan"), dtype=torch.float64)
    out[: min(k, ev.numel())] = ev[:k]
    return out


def stability_eigen(acc: CovarianceAccumulator, level: int, sector: str, n_ops: int) -> Eigen:
    """Leading eigenvalues of the ``n_ops``-truncated ``T = C⁻¹D`` with jackknife errors.

    Parameters
    ----------
    acc : CovarianceAccumulator
        ``A`` = operators of level ``level``, ``B`` = operators of level ``level − 1``.
    level : int
    sector : str
    n_ops : int
    """
    sl = slice(0, n_ops)

    def fn(m: Moments) -> Tensor:
        lam = leading_eigenvalues(m.c_aa[sl, sl], m.c_ab[sl, sl])
        return torch.cat([lam, torch.log(lam[:1].clamp_min(1e-300)) / LN2])

    est = jackknife(acc, fn)
    mom = acc.moments()
    _, info = solve_cov(mom.c_aa[sl, sl], mom.c_ab[sl, sl])
    v, e = est.value.tolist(), est.stderr.tolist()
    return Eigen(
        level, sector, n_ops, v[0], e[0], v[2], e[2], v[1], e[1], info.cond, info.regularised
    )


def _tie_seed(seed: int) -> int:
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def run_ising_mcrg(
    cfg: IsingMCRGConfig,
    *,
    kernel_factory: KernelFactory = MajorityRuleKernel,
    kernel_name: str = "majority",
    progress: Callable[[int, int], None] | None = None,
) -> IsingMCRGResult:
    """Stability-matrix eigenvalues of a blocking kernel at every level and truncation.

    Parameters
    ----------
    cfg : IsingMCRGConfig
    kernel_factory : callable, default MajorityRuleKernel
        ``kernel_factory(L)`` returns the kernel blocking an L×L lattice.
    kernel_name : str
        Recorded in the result.
    progress : callable, optional
        Called as ``progress(done, total)`` after every chunk.

    Returns
    -------
    IsingMCRGResult
    """
    cfg.validate()
    t0 = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    gen = torch.Generator().manual_seed(_tie_seed(cfg.seed))
    sizes = [cfg.size >> n for n in range(cfg.levels + 1)]
    kernels = [kernel_factory(s) for s in sizes[:-1]]
    ops: dict[str, list[LatticeOperators]] = {
        "even": [even_operators(s, cfg.n_even) for s in sizes],
        "odd": [odd_operators(s, cfg.n_odd) for s in sizes],
    }
    accs = {
        sec: [
            CovarianceAccumulator(o[0].size, o[0].size, n_blocks=cfg.n_blocks, with_bb=False)
            for _ in range(cfg.levels)
        ]
        for sec, o in ops.items()
    }
    stats = ChainStats()
    chain = ising_chain(
        cfg.size,
        coupling=cfg.coupling,
        n_chains=cfg.n_chains,
        n_sweeps=cfg.n_sweeps,
        n_thermal=cfg.n_thermal,
        sweeps_between=cfg.sweeps_between,
        rng=rng,
        stats=stats,
    )
    n_chunks = cfg.n_sweeps // cfg.sweeps_per_chunk
    buf: list[np.ndarray] = []
    done = 0
    for spins in chain:
        buf.append(spins_to_units(spins))
        if len(buf) < cfg.sweeps_per_chunk:
            continue
        h = torch.from_numpy(np.concatenate(buf, axis=0)).to(torch.float32)
        buf = []
        values = {sec: [o[0].evaluate(h)] for sec, o in ops.items()}
        for n, kernel in enumerate(kernels, start=1):
            h = kernel.sample(h, gen)
            for sec, o in ops.items():
                values[sec].append(o[n].evaluate(h))
                accs[sec][n - 1].update(values[sec][n], values[sec][n - 1])
        done += 1
        if progress is not None:
            progress(done, n_chunks)
    result = IsingMCRGResult(
        cfg,
        kernel_name,
        {sec: o[0].names for sec, o in ops.items()},
        chain=stats.summary(),
        n_samples=accs["even"][0].n_samples,
    )
    for sec, maxn in (("even", cfg.n_even), ("odd", cfg.n_odd)):
        for level in range(1, cfg.levels + 1):
            for n_ops in range(1, maxn + 1):
                result.eigen.append(stability_eigen(accs[sec][level - 1], level, sec, n_ops))
    result.seconds = time.perf_counter() - t0
    return result
