"""Speed-up of a fixed audit-like workload on Ray (1 and 2 workers) against the local path,
and Ray's start-up overhead.

Workload: :func:`rgaudit.executors.workload.audit_like_unit` on ``--inputs`` digits-sized
inputs of a random DeepRBM 64-64-32-10 (per input: direct Monte Carlo FIM with
``--fim-samples`` chains, minimal flipping ε along its top eigenvector judged with
``--judge-samples`` chains). Measured:

- local: ``LocalExecutor.map`` after one warm-up unit (imports, first-call costs);
- Ray start-up: ``ray.init(num_cpus=n)`` until it returns, and the first round trip of a no-op
  task (worker process start); ``ray.shutdown``;
- Ray map: with 1 and 2 CPUs, after warming every worker with one no-op task; the results are
  checked to equal the local ones.

``/proc/loadavg`` is recorded before and after every measurement: the machine this ran on is
shared, and timings under load are not idle-machine timings.

Run: ``.venv/bin/python benchmarks/bench_ray.py``; writes ``benchmarks/results/ray.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from rgaudit.executors import Unit, make_executor
from rgaudit.executors.workload import audit_like_unit
from rgaudit.nets.deep_rbm import DeepRBM


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unavailable"


def noop(unit: Unit, ss: Any, shared: Any) -> int:
    return os.getpid()


def strip(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "timings"} for d in values]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--fim-samples", type=int, default=4000)
    ap.add_argument("--judge-samples", type=int, default=400)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ray.json"))
    args = ap.parse_args()
    import ray

    net = DeepRBM.random([64, 64, 32, 10], scale=0.3, generator=torch.Generator().manual_seed(0))
    X = torch.rand(args.inputs, 64, generator=torch.Generator().manual_seed(1),
                   dtype=torch.float64)
    units = [Unit(f"input-{i}", {"x": X[i].tolist(), "y": i % 10}) for i in range(len(X))]
    shared = {"net": net, "fim_samples": args.fim_samples, "judge_samples": args.judge_samples}
    out: dict[str, Any] = {"workload": vars(args), "cpu_count": os.cpu_count(),
                           "python": platform.python_version(), "torch": torch.__version__,
                           "ray": ray.__version__, "note": "shared, loaded machine: see loadavg"}

    local = make_executor("local")
    local.map(audit_like_unit, [Unit("warm-up", units[0].payload)], seed=0, shared=shared)
    la0 = loadavg()
    rep = local.map(audit_like_unit, units, seed=0, shared=shared)
    out["local"] = {"wall_seconds": rep.wall_seconds, "loadavg_before": la0,
                    "loadavg_after": loadavg(), "summary": rep.summary()}
    print(f"local: {rep.wall_seconds:.2f} s  (loadavg {la0})", flush=True)
    reference = strip(rep.values)

    out["ray"] = {}
    for n in [int(w) for w in args.workers.split(",")]:
        la0 = loadavg()
        t0 = time.perf_counter()
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t0
        ex = make_executor("ray")
        t1 = time.perf_counter()
        ex.map(noop, [Unit("first")], seed=0)
        t_first = time.perf_counter() - t1
        ex.map(noop, [Unit(f"warm-{i}") for i in range(2 * n)], seed=0)
        ex.map(audit_like_unit, [Unit(f"warm-{i}", units[0].payload) for i in range(n)],
               seed=0, shared=shared)
        la1 = loadavg()
        rep = ex.map(audit_like_unit, units, seed=0, shared=shared)
        same = strip(rep.values) == reference
        t2 = time.perf_counter()
        ray.shutdown()
        t_down = time.perf_counter() - t2
        out["ray"][str(n)] = {
            "init_seconds": t_init, "first_task_seconds": t_first, "shutdown_seconds": t_down,
            "wall_seconds": rep.wall_seconds,
            "speedup_vs_local": out["local"]["wall_seconds"] / rep.wall_seconds,
            "identical_to_local": same, "loadavg_before_init": la0,
            "loadavg_before_map": la1, "loadavg_after": loadavg(), "summary": rep.summary()}
        print(f"ray {n} worker(s): init {t_init:.1f} s, first task {t_first:.1f} s, map "
              f"{rep.wall_seconds:.2f} s (×{out['ray'][str(n)]['speedup_vs_local']:.2f} vs "
              f"local), identical: {same}  (loadavg {la1})", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
