"""Time of the direct Monte Carlo FIM (sampling + genuine jackknife replicates).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/direct_fim_time.py [--inputs 20] [--samples 32000]
        [--model FOLDER --data SPEC]

By default a random 64-100-100-10 DeepRBM (the default digits model's shape), float64, inputs
uniform in [0, 1]; with ``--model`` an rgaudit model folder and the first ``--inputs`` test
inputs of ``--data`` (e.g. the 784-500-500-10 digits28 model: ``--model /tmp/d28 --data digits28
--inputs 3 --samples 4000``). Also prints the process's system CPU time (page faults of large
temporaries show there), wall time, this thread's CPU time and ``/proc/loadavg`` (times taken
on a loaded machine are not comparable with a quiet one; CPU time is the fairer figure there).
"""

from __future__ import annotations

import argparse
import resource
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
    ap.add_argument("--model", default=None, help="rgaudit model folder (default: random net)")
    ap.add_argument("--data", default="digits", help="data spec of --model's test inputs")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    if args.model is None:
        net = DeepRBM.random([64, 100, 100, 10], generator=g, dtype=torch.float64)
        x = torch.rand(args.inputs, 64, generator=g, dtype=torch.float64)
    else:
        from rgaudit.data import load_dataset
        from rgaudit.nets.io import load_model

        net = load_model(args.model)[0].to(torch.float64)
        x = load_dataset(args.data, seed=0).X_test[: args.inputs].to(torch.float64)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0, c0 = time.perf_counter(), time.thread_time()
    D = direct_fim(net, x, args.samples, torch.Generator().manual_seed(1))
    wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
    sys_s = resource.getrusage(resource.RUSAGE_SELF).ru_stime - r0.ru_stime
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    widths = "-".join(str(w) for w in net.widths)
    print(f"direct_fim {widths}, {args.inputs} inputs, {D.n_samples} chains each: "
          f"wall {wall:.1f} s, CPU {cpu:.1f} s (process system time {sys_s:.1f} s), "
          f"loadavg {' '.join(load)}")


if __name__ == "__main__":
    main()
