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
from typing import Any, Protocol

import numpy as np
import torch

from rgaudit.physics.blocking import MajorityRuleKernel
from rgaudit.physics.ising import K_CRITICAL, ChainStats, ising_chain, spins_to_units
from rgaudit.physics.lattice_ops import EVEN_SHAPES, ODD_SHAPES, LatticeOperators
from rgaudit.physics.rbm_kernel import (
    BlockRBMFit,
    BlockRBMKernel,
    block_histogram,
    fit_block_rbm,
    kernel_mutual_information,
    majority_table,
)
from rgaudit.random import numpy_rng, torch_generator
from rgaudit.rg.mcrg import LayerPair, mcrg_chain
from rgaudit.rg.moments import jackknife_stderr
from rgaudit.rg.solve import solve_cov
from rgaudit.rg.spectra import eigen_sorted

Tensor = torch.Tensor


class BlockingKernel(Protocol):
    """A blocking kernel: ``sample(prev (..., L²), generator) → (..., (L/2)²)`` binary units."""

    def sample(self, prev: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw of the blocked configuration for each configuration in ``prev``."""
        ...


KernelFactory = Callable[[int], BlockingKernel]
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

    Validated on construction (``ValueError`` naming the ``rgaudit ising`` option). The MCRG
    study also needs the last lattice to be at least 4×4 (:meth:`check_study`); the
    Swendsen–Wang source alone (:class:`IsingSource`) accepts any ``L`` ≥ 2·2^levels.
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

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"--levels must be ≥ 1, got {self.levels}")
        if self.size % (2**self.levels) or self.size >> self.levels < 2:
            raise ValueError(
                f"--L {self.size} must be divisible by 2**levels = {2**self.levels} "
                f"(--levels {self.levels}) and leave a lattice of at least 2×2"
            )
        if not (1 <= self.n_even <= len(EVEN_SHAPES) and 1 <= self.n_odd <= len(ODD_SHAPES)):
            raise ValueError(
                f"need 1 ≤ --even ≤ {len(EVEN_SHAPES)} and 1 ≤ --odd ≤ {len(ODD_SHAPES)}, got "
                f"{self.n_even}, {self.n_odd}"
            )
        for value, option in ((self.n_chains, "--chains"), (self.n_sweeps, "--sweeps"),
                              (self.sweeps_between, "sweeps_between"),
                              (self.sweeps_per_chunk, "--sweeps-per-chunk")):
            if value < 1:
                raise ValueError(f"{option} must be ≥ 1, got {value}")
        if self.n_thermal < 0:
            raise ValueError(f"--thermal must be ≥ 0, got {self.n_thermal}")
        if self.n_blocks < 2:
            raise ValueError(f"--blocks must be ≥ 2 (jackknife), got {self.n_blocks}")
        if self.n_sweeps < self.sweeps_per_chunk * self.n_blocks:
            raise ValueError(
                f"--sweeps {self.n_sweeps} gives fewer chunks than --blocks {self.n_blocks} "
                f"(--sweeps-per-chunk {self.sweeps_per_chunk}); pass --sweeps ≥ "
                f"{self.sweeps_per_chunk * self.n_blocks}"
            )

    def check_study(self) -> None:
        """The MCRG study's own precondition: the last lattice is at least 4×4 (smaller ones
        make the larger operators of the truncations coincide). ``ValueError`` otherwise."""
        if self.size >> self.levels < 4:
            raise ValueError(
                f"--L {self.size} must be divisible by 2**levels = {2**self.levels} "
                f"(--levels {self.levels}) and leave a lattice of at least 4×4"
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


@dataclass(frozen=True)
class IsingOperators:
    """Operator names of each sector, in truncation order (the first ``N_c`` of a sector form
    the truncation to ``N_c`` couplings)."""

    even: list[str]
    odd: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        return {"even": list(self.even), "odd": list(self.odd)}


@dataclass(frozen=True)
class ObservableStats:
    """Mean over chains and measurements, its standard error corrected by ``τ_int``, ``τ_int``
    (in SW updates) and the Sokal window of one observable."""

    mean: float
    stderr: float
    tau_int: float
    window: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ChainSummary:
    """Energy and |m| per site of the original lattice (None when fewer than four
    measurements were recorded: no autocorrelation time then)."""

    energy: ObservableStats | None = None
    abs_mag: ObservableStats | None = None

    @classmethod
    def from_stats(cls, stats: ChainStats) -> ChainSummary:
        """The summary of :meth:`rgaudit.physics.ising.ChainStats.summary`, typed."""
        d = stats.summary()
        return cls(*(ObservableStats(**d[k]) if k in d else None
                     for k in ("energy", "abs_mag")))

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {k: v.to_dict() for k, v in (("energy", self.energy), ("abs_mag", self.abs_mag))
                if v is not None}


@dataclass
class IsingMCRGResult:
    """Result of :func:`run_ising_mcrg`.

    Attributes
    ----------
    config : IsingMCRGConfig
    kernel : str
    operators : IsingOperators
        Names of each sector in truncation order.
    eigen : list of Eigen
    chain : ChainSummary
        ``τ_int`` and means of energy and |m| of the original lattice.
    n_samples : int
    seconds : float
    engine_spectra : list of list of float
        Per level, real parts of the four largest-|Λ| eigenvalues of the engine's full T (both
        sectors together; off-diagonal sector blocks vanish only statistically) — a cross-check.
    """

    config: IsingMCRGConfig
    kernel: str
    operators: IsingOperators
    eigen: list[Eigen] = field(default_factory=list)
    chain: ChainSummary = field(default_factory=ChainSummary)
    n_samples: int = 0
    seconds: float = 0.0
    engine_spectra: list[list[float]] = field(default_factory=list)

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
            "operators": self.operators.to_dict(),
            "targets": {
                "y_t": Y_T_EXACT,
                "y_h": Y_H_EXACT,
                "lambda_t": 2.0,
                "lambda_h": 2.0**Y_H_EXACT,
            },
            "eigen": [asdict(e) for e in self.eigen],
            "chain": self.chain.to_dict(),
            "n_samples": self.n_samples,
            "seconds": self.seconds,
            "engine_full_T_leading_real": self.engine_spectra,
        }


def leading_eigenvalues(c: Tensor, d: Tensor, k: int = 2) -> Tensor:
    """Real parts of the ``k`` largest eigenvalues of ``T = C⁻¹D`` (NaN-padded), shape (k,)."""
    t, info = solve_cov(c, d)
    t = t[:, info.kept]  # the same operators label rows (level n) and columns (level n − 1)
    ev = torch.linalg.eigvals(t).real.sort(descending=True).values
    out = torch.full((k,), float("nan"), dtype=torch.float64)
    out[: min(k, ev.numel())] = ev[:k]
    return out


def stability_eigen(pair: LayerPair, index: list[int], level: int, sector: str) -> Eigen:
    """Leading eigenvalues of the truncated ``T = C⁻¹D`` on the operators ``index``.

    Parameters
    ----------
    pair : LayerPair
        Engine result for levels ``level − 1 → level`` (all operators of both sectors).
    index : list of int
        The operators of the truncation (rows and columns).
    level : int
    sector : str

    Returns
    -------
    Eigen
        Value on all samples, error from the blocked jackknife over the replicates.
    """
    ix = torch.tensor(index)

    def fn(c: Tensor, d: Tensor) -> Tensor:
        lam = leading_eigenvalues(c[ix][:, ix], d[ix][:, ix])
        return torch.cat([lam, torch.log(lam[:1].clamp_min(1e-300)) / LN2])

    value = fn(pair.C_next, pair.D)
    pairs = zip(pair.C_next_replicates, pair.D_replicates, strict=True)
    reps = torch.stack([fn(c, d) for c, d in pairs])
    err = jackknife_stderr(reps)
    _, info = solve_cov(pair.C_next[ix][:, ix], pair.D[ix][:, ix])
    v, e = value.tolist(), err.tolist()
    return Eigen(
        level, sector, len(index), v[0], e[0], v[2], e[2], v[1], e[1], info.cond, info.regularised
    )


class IsingSource:
    """Swendsen–Wang configurations as an engine source ``source(s, generator) -> (s, L²)``.

    The chains draw from their own numpy generator (the engine's torch generator, passed to every
    source call, drives only the kernels); configurations of all chains at consecutive
    measurements are streamed in order and cut into the chunk sizes the engine asks for.
    """

    def __init__(self, cfg: IsingMCRGConfig, rng: np.random.Generator, stats: ChainStats) -> None:
        self._it = ising_chain(
            cfg.size,
            coupling=cfg.coupling,
            n_chains=cfg.n_chains,
            n_sweeps=cfg.n_sweeps,
            n_thermal=cfg.n_thermal,
            sweeps_between=cfg.sweeps_between,
            rng=rng,
            stats=stats,
        )
        self._buf = np.empty((0, cfg.size * cfg.size), dtype=np.uint8)

    def __call__(self, s: int, generator: torch.Generator | None = None) -> Tensor:
        parts = [self._buf]
        have = self._buf.shape[0]
        while have < s:
            units = spins_to_units(next(self._it))
            parts.append(units)
            have += units.shape[0]
        allh = np.concatenate(parts, axis=0)
        self._buf = allh[s:]
        return torch.from_numpy(allh[:s]).to(torch.float32)


def run_ising_mcrg(
    cfg: IsingMCRGConfig,
    *,
    kernel_factory: KernelFactory = MajorityRuleKernel,
    kernel_name: str = "majority",
    progress: Callable[[int, int], None] | None = None,
) -> IsingMCRGResult:
    """Stability-matrix eigenvalues of a blocking kernel at every level and truncation.

    The sampling, operator evaluation, moment accumulation and jackknife replicates are those of
    the generic engine :func:`rgaudit.rg.mcrg.mcrg_chain` (source = Swendsen–Wang chains,
    kernels = ``kernel_factory(L/2^j)``, one operator set per position holding the even and the
    odd operators). Each sector and truncation is then solved on its sub-blocks of ``C`` and
    ``D`` — exactly what separate engine runs with those operator sets would give on the same
    samples.

    Parameters
    ----------
    cfg : IsingMCRGConfig
    kernel_factory : callable, default MajorityRuleKernel
        ``kernel_factory(L)`` returns the kernel blocking an L×L lattice (with ``.sample``).
    kernel_name : str
        Recorded in the result.
    progress : callable, optional
        Called as ``progress(done_samples, total_samples)``.

    Returns
    -------
    IsingMCRGResult
    """
    cfg.check_study()
    t0 = time.perf_counter()
    rng = numpy_rng(cfg.seed, "ising.chains")
    gen = torch_generator(cfg.seed, "ising.tie-break")
    sizes = [cfg.size >> n for n in range(cfg.levels + 1)]
    kernels = [kernel_factory(s).sample for s in sizes[:-1]]
    even = list(EVEN_SHAPES.items())[: cfg.n_even]
    odd = list(ODD_SHAPES.items())[: cfg.n_odd]
    bases = [LatticeOperators(s, dict(even + odd)) for s in sizes]
    stats = ChainStats()
    res = mcrg_chain(
        IsingSource(cfg, rng, stats),
        kernels,
        bases,
        cfg.n_chains * cfg.n_sweeps,
        chunk=cfg.n_chains * cfg.sweeps_per_chunk,
        n_blocks=cfg.n_blocks,
        generator=gen,
        progress=progress,
        contiguous_blocks=True,
    )
    result = IsingMCRGResult(
        cfg,
        kernel_name,
        IsingOperators([k for k, _ in even], [k for k, _ in odd]),
        chain=ChainSummary.from_stats(stats),
        n_samples=res.n_samples,
    )
    ne, no = cfg.n_even, cfg.n_odd
    for level in range(1, cfg.levels + 1):
        pair = res.layers[level - 1]
        assert pair is not None
        for n_ops in range(1, ne + 1):
            result.eigen.append(stability_eigen(pair, list(range(n_ops)), level, "even"))
        for n_ops in range(1, no + 1):
            ix = list(range(ne, ne + n_ops))
            result.eigen.append(stability_eigen(pair, ix, level, "odd"))
        vals, _ = eigen_sorted(pair.T)
        result.engine_spectra.append([float(v) for v in vals.real[:4]])
    result.eigen.sort(key=lambda e: (e.sector, e.level, e.n_ops))
    result.seconds = time.perf_counter() - t0
    return result


@dataclass(frozen=True)
class KernelTraining:
    """Settings of the RBM kernel's training run: lattice ``size``, SW ``chains`` ×
    ``sweeps`` configurations at ``coupling``, drawn from stream ``seed_stream`` (root seed,
    role) of :mod:`rgaudit.random`."""

    size: int
    chains: int
    sweeps: int
    seed_stream: tuple[int, str]
    coupling: float

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "chains": self.chains, "sweeps": self.sweeps,
                "seed_stream": list(self.seed_stream), "coupling": self.coupling}


@dataclass
class RBMKernelStudy:
    """The trained RBM kernel and its MCRG exponents.

    Attributes
    ----------
    fit : BlockRBMFit
    majority_mutual_information : float
        ``I(h; v_B)`` (bits) of the majority rule on the same training histogram.
    train : KernelTraining
        Settings of the training run (size, chains, sweeps, seed stream, coupling).
    mcrg : IsingMCRGResult
    """

    fit: BlockRBMFit
    majority_mutual_information: float
    train: KernelTraining
    mcrg: IsingMCRGResult

    def to_dict(self) -> dict:
        """Plain data."""
        return {
            "fit": self.fit.to_dict(),
            "table": self.table,
            "majority_mutual_information_bits": self.majority_mutual_information,
            "train": self.train.to_dict(),
            "mcrg": self.mcrg.to_dict(),
        }

    @property
    def table(self) -> list[float]:
        """``P(h=1 | block state k)`` for k = 0..15."""
        k = BlockRBMKernel(2, self.fit.weights, self.fit.hidden_bias)
        return k.prob(_STATE_UNITS).flatten().tolist()


_STATE_UNITS = torch.tensor(
    [[(k >> i) & 1 for i in range(4)] for k in range(16)], dtype=torch.float32
)


def run_rbm_kernel_study(
    cfg: IsingMCRGConfig,
    *,
    train_sweeps: int = 200,
    train_chains: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> RBMKernelStudy:
    """Train the local RBM kernel on Ising configurations, then run the MCRG study with it.

    Training data: ``train_chains × train_sweeps`` SW configurations of the L×L model at
    ``cfg.coupling`` from a generator stream independent of the MCRG run's (stream
    ``"ising.kernel-data"`` of ``cfg.seed``; the fit's initialisation: ``"ising.kernel-fit"``).
    The fit maximises the exact likelihood of the 2×2 block states
    (:func:`rgaudit.physics.rbm_kernel.fit_block_rbm`).
    """
    rng = numpy_rng(cfg.seed, "ising.kernel-data")
    hist = torch.zeros(16, dtype=torch.float64)
    for spins in ising_chain(
        cfg.size,
        coupling=cfg.coupling,
        n_chains=train_chains,
        n_sweeps=train_sweeps,
        n_thermal=cfg.n_thermal,
        rng=rng,
    ):
        hist += block_histogram(torch.from_numpy(spins_to_units(spins)), cfg.size)
    fit = fit_block_rbm(hist, generator=torch_generator(cfg.seed, "ising.kernel-fit"))
    mi_major = kernel_mutual_information(hist, majority_table())

    def factory(size: int) -> BlockRBMKernel:
        return BlockRBMKernel(size, fit.weights, fit.hidden_bias)

    mcrg = run_ising_mcrg(cfg, kernel_factory=factory, kernel_name="rbm", progress=progress)
    train = KernelTraining(cfg.size, train_chains, train_sweeps, (cfg.seed, "ising.kernel-data"),
                           cfg.coupling)
    return RBMKernelStudy(fit, mi_major, train, mcrg)
