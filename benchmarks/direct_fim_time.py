"""Time of the direct Monte Carlo FIM (sampling + genuine jackknife replicates).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/direct_fim_time.py [--inputs 20] [--samples 32000]

A random 64-100-100-10 DeepRBM (the default digits model's shape), float64, inputs uniform in
[0, 1]. Prints wall time, this thread's CPU time and ``/proc/loadavg`` (times taken on a loaded
machine are not comparable with a quiet one; CPU time is the fairer figure there).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rgaudit.fisher.direct import direct_fim
from rgaudit.nets.deep_rbm import DeepRBM


def main() -> None:
    """Run once and print the timings."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=20)
    ap.add_argument("--samples", type=int, default=32000)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    net = DeepRBM.random([64, 100, 100, 10], generator=g, dtype=torch.float64)
    x = torch.rand(args.inputs, 64, generator=g, dtype=torch.float64)
    w0, c0 = time.perf_counter(), time.thread_time()
    D = direct_fim(net, x, args.samples, torch.Generator().manual_seed(1))
    wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"direct_fim 64-100-100-10, {args.inputs} inputs, {D.n_samples} chains each: "
          f"wall {wall:.1f} s, CPU {cpu:.1f} s, loadavg {' '.join(load)}")


if __name__ == "__main__":
    main()
