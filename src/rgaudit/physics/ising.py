"""2D Ising model on an L×L square lattice with periodic boundaries: cluster and local samplers.

Weight ``P(s) ∝ exp(K Σ_<ij> s_i s_j)``, spins ``s = ±1`` (int8), nearest-neighbour bonds counted
once. Energy per site ``e = −(1/N) Σ_<ij> s_i s_j`` (J = 1), so ``e(K_c) → −√2`` as ``L → ∞``.

Two update rules, both vectorised over many independent chains and seeded only through an
explicit :class:`numpy.random.Generator` (all random numbers are drawn from it in numpy; the
compiled kernels are deterministic functions of those numbers):

- :func:`swendsen_wang_sweep` — Swendsen–Wang cluster update: bonds between equal neighbours are
  activated with probability ``1 − exp(−2K)``, clusters found by union–find (compiled with
  numba), every cluster flipped with probability ½.
- :func:`metropolis_sweep` — single-spin Metropolis, checkerboard order (one sweep = one proposal
  per site), numpy only. Used as a cross-check and as the benchmark baseline.

:func:`integrated_autocorr_time` estimates ``τ_int`` with Sokal's automatic window.
Spins are converted to the project's {0,1} units with :func:`spins_to_units` (``h = (s+1)/2``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from math import exp, log, sqrt

import numba
import numpy as np

K_CRITICAL = 0.5 * log(1.0 + sqrt(2.0))
"""Critical coupling ``K_c = ½ ln(1 + √2) ≈ 0.440687``."""

E_CRITICAL_INFINITE = -sqrt(2.0)
"""Onsager's energy per site at ``K_c`` in the thermodynamic limit."""


def _check_lattice(spins: np.ndarray) -> None:
    if spins.ndim != 3 or spins.shape[1] != spins.shape[2] or spins.dtype != np.int8:
        raise ValueError(
            f"spins must be an int8 array of shape (n_chains, L, L), got {spins.dtype} "
            f"{spins.shape}"
        )


def random_spins(n_chains: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Independent uniformly random (infinite-temperature) configurations.

    Returns
    -------
    ndarray of int8, shape (n_chains, size, size), values ±1.
    """
    if n_chains < 1 or size < 2:
        raise ValueError(f"need n_chains >= 1 and L >= 2, got {n_chains}, {size}")
    return (2 * rng.integers(0, 2, size=(n_chains, size, size), dtype=np.int8) - 1).astype(np.int8)


@numba.njit(cache=True)
def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True)
def _sw_kernel(spins: np.ndarray, u_bond: np.ndarray, flip: np.ndarray, p_bond: float) -> None:
    """In-place SW update; spins (C,L,L) int8, u_bond (C,2,L,L) float32, flip (C,L*L) bool."""
    n_chains, size, _ = spins.shape
    n = size * size
    parent = np.empty(n, dtype=np.int64)
    for c in range(n_chains):
        for i in range(n):
            parent[i] = i
        for x in range(size):
            xd = x + 1 if x + 1 < size else 0
            for y in range(size):
                yr = y + 1 if y + 1 < size else 0
                s = spins[c, x, y]
                i = x * size + y
                if spins[c, x, yr] == s and u_bond[c, 0, x, y] < p_bond:
                    a = _find(parent, i)
                    b = _find(parent, x * size + yr)
                    if a != b:
                        parent[a] = b
                if spins[c, xd, y] == s and u_bond[c, 1, x, y] < p_bond:
                    a = _find(parent, i)
                    b = _find(parent, xd * size + y)
                    if a != b:
                        parent[a] = b
        for i in range(n):
            if flip[c, _find(parent, i)]:
                spins[c, i // size, i % size] = -spins[c, i // size, i % size]


def swendsen_wang_sweep(spins: np.ndarray, coupling: float, rng: np.random.Generator) -> None:
    """One Swendsen–Wang update of every chain, in place.

    Parameters
    ----------
    spins : ndarray of int8, shape (n_chains, L, L)
        Configurations (±1), modified in place.
    coupling : float
        ``K > 0``.
    rng : numpy.random.Generator
        Source of all random numbers (``2·L²`` bond uniforms and ``L²`` flip bits per chain).
    """
    _check_lattice(spins)
    if coupling <= 0:
        raise ValueError(f"the cluster update needs a ferromagnetic coupling K > 0, got {coupling}")
    c, size, _ = spins.shape
    u_bond = rng.random((c, 2, size, size), dtype=np.float32)
    flip = rng.random((c, size * size), dtype=np.float32) < 0.5
    _sw_kernel(spins, u_bond, flip, float(1.0 - exp(-2.0 * coupling)))


def _neighbour_sum(spins: np.ndarray) -> np.ndarray:
    return (
        np.roll(spins, 1, axis=1)
        + np.roll(spins, -1, axis=1)
        + np.roll(spins, 1, axis=2)
        + np.roll(spins, -1, axis=2)
    ).astype(np.int8)


def metropolis_sweep(spins: np.ndarray, coupling: float, rng: np.random.Generator) -> None:
    """One checkerboard single-spin Metropolis sweep of every chain, in place.

    The two sublattices are updated in turn; within one sublattice all proposals are independent.
    Needs an even ``L`` (the checkerboard must be consistent across the periodic boundary).

    Parameters
    ----------
    spins : ndarray of int8, shape (n_chains, L, L)
    coupling : float
    rng : numpy.random.Generator
    """
    _check_lattice(spins)
    size = spins.shape[1]
    if size % 2:
        raise ValueError(f"checkerboard Metropolis needs an even L, got {size}")
    parity = (np.add.outer(np.arange(size), np.arange(size)) % 2).astype(bool)
    # acceptance exp(-2 K s·nb) for s·nb in {-4,-2,0,2,4}; index by s·nb + 4
    table = np.minimum(1.0, np.exp(-2.0 * coupling * np.arange(-4, 5))).astype(np.float32)
    for colour in (False, True):
        mask = parity == colour
        local = spins * _neighbour_sum(spins)
        accept = rng.random(spins.shape, dtype=np.float32) < table[local + 4]
        flip = accept & mask
        spins[flip] = -spins[flip]


def energy_per_site(spins: np.ndarray) -> np.ndarray:
    """``e = −(1/N) Σ_<ij> s_i s_j`` for each chain.

    Parameters
    ----------
    spins : ndarray, shape (n_chains, L, L)

    Returns
    -------
    ndarray of float64, shape (n_chains,)
    """
    s = spins.astype(np.int32)
    bonds = s * np.roll(s, 1, axis=1) + s * np.roll(s, 1, axis=2)
    return -bonds.sum(axis=(1, 2)) / float(s.shape[1] * s.shape[2])


def magnetisation_per_site(spins: np.ndarray) -> np.ndarray:
    """``m = (1/N) Σ_i s_i`` for each chain, shape (n_chains,)."""
    return spins.astype(np.int32).sum(axis=(1, 2)) / float(spins.shape[1] * spins.shape[2])


def spins_to_units(spins: np.ndarray) -> np.ndarray:
    """Spins ``±1`` of shape (..., L, L) to {0,1} units of shape (..., L·L), ``h = (s+1)/2``."""
    flat = spins.reshape(*spins.shape[:-2], spins.shape[-2] * spins.shape[-1])
    return ((flat + 1) // 2).astype(np.uint8)


def integrated_autocorr_time(series: np.ndarray, c: float = 5.0) -> tuple[float, int]:
    """Integrated autocorrelation time with Sokal's automatic window.

    ``τ_int(W) = 1 + 2 Σ_{t=1}^{W} ρ(t)`` (so ``τ_int = 1`` for independent samples and the
    variance of a mean of ``n`` samples is ``τ_int σ²/n``); ``W`` is the smallest window with
    ``W ≥ c·τ_int(W)``. ``ρ`` is averaged over chains (FFT, chain means subtracted).

    Parameters
    ----------
    series : ndarray, shape (n_chains, n_steps) or (n_steps,)
    c : float, default 5
        Window constant (Sokal recommends 4–10).

    Returns
    -------
    tau : float
    window : int
    """
    x = np.atleast_2d(np.asarray(series, dtype=np.float64))
    n = x.shape[1]
    if n < 4:
        raise ValueError(f"need at least 4 steps for an autocorrelation time, got {n}")
    x = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(x, n=2 * n, axis=1)
    acf = np.fft.irfft(f * np.conj(f), axis=1)[:, :n].mean(axis=0)
    if acf[0] <= 0:
        return 1.0, 0
    rho = acf / acf[0]
    taus = 1.0 + 2.0 * np.cumsum(rho[1:])
    windows = np.arange(1, n)
    ok = windows >= c * taus
    w = int(windows[np.argmax(ok)]) if ok.any() else n - 1
    return float(taus[w - 1]), w


@dataclass
class ChainStats:
    """Per-sweep observables of a run, for autocorrelation times.

    Attributes
    ----------
    energy : list of ndarray, each of shape (n_chains,)
    abs_mag : list of ndarray, each of shape (n_chains,)
    """

    energy: list[np.ndarray] = field(default_factory=list)
    abs_mag: list[np.ndarray] = field(default_factory=list)

    def record(self, spins: np.ndarray) -> None:
        """Append the energy and |m| per site of the current configurations."""
        self.energy.append(energy_per_site(spins))
        self.abs_mag.append(np.abs(magnetisation_per_site(spins)))

    def summary(self) -> dict:
        """Means, naive standard errors corrected by τ_int, and τ_int of e and |m|."""
        out: dict = {}
        for name, vals in (("energy", self.energy), ("abs_mag", self.abs_mag)):
            if len(vals) < 4:
                continue
            arr = np.stack(vals, axis=1)  # (n_chains, n_steps)
            tau, w = integrated_autocorr_time(arr)
            err = float(arr.std(ddof=1) * sqrt(max(tau, 1.0) / arr.size))
            out[name] = {"mean": float(arr.mean()), "stderr": err, "tau_int": tau, "window": w}
        return out


UPDATES = {"swendsen_wang": swendsen_wang_sweep, "metropolis": metropolis_sweep}


def ising_chain(
    size: int,
    *,
    coupling: float = K_CRITICAL,
    n_chains: int = 16,
    n_sweeps: int = 1000,
    n_thermal: int = 100,
    sweeps_between: int = 1,
    algorithm: str = "swendsen_wang",
    rng: np.random.Generator,
    stats: ChainStats | None = None,
) -> Iterator[np.ndarray]:
    """Yield equilibrium configurations of ``n_chains`` independent chains.

    Parameters
    ----------
    size : int
        Linear size ``L``.
    coupling : float, default K_c
    n_chains : int
        Independent chains, each started from a random configuration.
    n_sweeps : int
        Number of yielded measurements per chain (after thermalisation).
    n_thermal : int
        Updates discarded at the start.
    sweeps_between : int
        Updates between two yielded measurements.
    algorithm : {"swendsen_wang", "metropolis"}
    rng : numpy.random.Generator
    stats : ChainStats, optional
        If given, energy and |m| of every yielded configuration are recorded into it.

    Yields
    ------
    ndarray of int8, shape (n_chains, L, L)
        The current configurations (a view that the next update overwrites: copy or consume).
    """
    if algorithm not in UPDATES:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {sorted(UPDATES)}")
    if n_sweeps < 1 or n_thermal < 0 or sweeps_between < 1:
        raise ValueError("need n_sweeps >= 1, n_thermal >= 0, sweeps_between >= 1")
    update = UPDATES[algorithm]
    spins = random_spins(n_chains, size, rng)
    for _ in range(n_thermal):
        update(spins, coupling, rng)
    for _ in range(n_sweeps):
        for _ in range(sweeps_between):
            update(spins, coupling, rng)
        if stats is not None:
            stats.record(spins)
        yield spins


def exact_energy_per_site(size: int, coupling: float) -> float:
    """Exact ``⟨e⟩`` by enumeration of all ``2^(L²)`` configurations (``L ≤ 4``).

    Parameters
    ----------
    size : int
        Linear size, at most 4 (65 536 configurations).
    coupling : float
    """
    if size > 4:
        raise ValueError(f"exact enumeration is limited to L <= 4, got {size}")
    n = size * size
    idx = np.arange(2**n, dtype=np.int64)
    bits = ((idx[:, None] >> np.arange(n)) & 1).astype(np.int8)
    spins = (2 * bits - 1).reshape(-1, size, size)
    e = energy_per_site(spins)  # (2^n,)
    log_w = -coupling * n * e
    w = np.exp(log_w - log_w.max())
    return float((w * e).sum() / w.sum())
