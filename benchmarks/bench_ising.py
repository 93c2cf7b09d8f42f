"""Time Swendsen–Wang cluster updates against checkerboard Metropolis sweeps (2D Ising, K_c).

Run: ``.venv/bin/python benchmarks/bench_ising.py``; writes ``benchmarks/results/ising.json``.
Both updates run in the same process on the same chains; one "update" = one sweep of the whole
lattice (SW: bond percolation + cluster labelling + flips; Metropolis: one proposal per site).
The figure of merit that matters for MCRG is updates per independent sample: the table also
reports τ_int of the energy (1 + 2Σρ, in updates) for each algorithm on the benchmark lattice.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from rgaudit.physics.ising import (
    K_CRITICAL,
    ChainStats,
    metropolis_sweep,
    random_spins,
    swendsen_wang_sweep,
)

CASES = ((64, 32, 200), (256, 4, 50))  # (L, chains, timed updates)


def _rate(update, spins: np.ndarray, n: int, rng: np.random.Generator) -> float:
    update(spins, K_CRITICAL, rng)  # warm-up (numba compile is cached)
    t = time.perf_counter()
    for _ in range(n):
        update(spins, K_CRITICAL, rng)
    return n * spins.shape[0] / (time.perf_counter() - t)


def _tau(update, spins: np.ndarray, n: int, rng: np.random.Generator) -> float:
    stats = ChainStats()
    for _ in range(n):
        update(spins, K_CRITICAL, rng)
        stats.record(spins)
    return stats.summary()["energy"]["tau_int"]


def main(out: Path = Path("benchmarks/results/ising.json")) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for size, chains, n in CASES:
        spins = random_spins(chains, size, rng)
        for _ in range(200 if size <= 64 else 50):  # equilibrate with SW
            swendsen_wang_sweep(spins, K_CRITICAL, rng)
        sw = _rate(swendsen_wang_sweep, spins, n, rng)
        mp = _rate(metropolis_sweep, spins.copy(), n, rng)
        row = {
            "L": size,
            "chains": chains,
            "timed_updates_per_chain": n,
            "sw_updates_per_s": sw,
            "metropolis_sweeps_per_s": mp,
            "sw_site_updates_per_s": sw * size * size,
            "metropolis_site_updates_per_s": mp * size * size,
        }
        if size <= 64:
            s2 = random_spins(chains, size, rng)
            for _ in range(200):
                swendsen_wang_sweep(s2, K_CRITICAL, rng)
            tau_sw = _tau(swendsen_wang_sweep, s2.copy(), 2000, rng)
            tau_mp = _tau(metropolis_sweep, s2.copy(), 4000, rng)
            row.update(
                tau_int_energy_sw=tau_sw,
                tau_int_energy_metropolis=tau_mp,
                independent_samples_per_s_sw=sw / tau_sw,
                independent_samples_per_s_metropolis=mp / tau_mp,
            )
        rows.append(row)
        print(json.dumps(row))
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "coupling": K_CRITICAL,
        "note": "numpy/numba single thread; other jobs may share the CPUs",
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ising.json"))
    main(ap.parse_args().out)
