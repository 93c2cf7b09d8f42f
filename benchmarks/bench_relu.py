"""Time batched input gradients of random ReLU networks: analytic backward vs autograd.

Run: ``.venv/bin/python benchmarks/bench_relu.py [--device cpu]``; writes
``benchmarks/results/relu.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from rgaudit.nets.relu import sample_relu_nets, sphere_inputs, width_profile

CASES = (  # (d, hidden width, depth, n_nets, batch)
    (256, 256, 4, 32, 16),
    (1024, 1024, 4, 8, 16),
    (4096, 256, 8, 16, 16),
)


def _best(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _timed(call, sync):
    def run() -> None:
        call()
        sync()

    return run


def main(device: str = "cpu", out: Path = Path("benchmarks/results/relu.json")) -> list[dict]:
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for d, width, depth, n_nets, batch in CASES:
        widths = width_profile(d, depth, "fixed", width=width)
        nets = sample_relu_nets(n_nets, widths, generator=gen)
        x = sphere_inputs(n_nets, batch, d, generator=gen)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        analytic_all = _timed(lambda n=nets, v=x: n.grad_all(v), sync)
        analytic_last = _timed(lambda n=nets, v=x: n.grad(v), sync)
        autograd_last = _timed(lambda n=nets, v=x: n.autograd_grad(v), sync)

        row = {"d": d, "width": width, "depth": depth, "n_nets": n_nets, "batch": batch,
               "analytic_all_depths_s": _best(analytic_all),
               "analytic_deepest_s": _best(analytic_last),
               "autograd_deepest_s": _best(autograd_last)}
        row["gradients_per_s_analytic"] = n_nets * batch / row["analytic_deepest_s"]
        rows.append(row)
        print(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor()}
    out.write_text(json.dumps({"kind": "bench-relu", "meta": meta, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/relu.json"))
    args = parser.parse_args()
    main(args.device, args.out)
