"""Does numba compile anything inside bench_serve.py's timed window, and does numba start a
threading layer? (A check behind docs/serving.md's note on the session-3 in-process figures.)

Replays ``bench_serve.in_process``'s order for the RG poison (mean-field, L1 ε = 0.3): one
untimed batch-256 warm-up call, then batch-1 calls, each timed; a compilation would show as a
first batch-1 call of seconds instead of milliseconds.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_compile_check.py``
"""

from __future__ import annotations

import time

import numba
import torch

from rgaudit.data import load_dataset
from rgaudit.serve.loading import load_defended
from rgaudit.threads import pin_thread


def main() -> None:
    pin_thread(1)
    x = load_dataset("digits").X_test.to(torch.float64)
    dm = load_defended("default", defence="rg", eps=0.3, norm="l1", estimator="mean-field")
    clf, po = dm.classifier, dm.poisoner
    gen = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    po(clf.answer(x[:256]), x[:256], gen)
    print(f"batch-256 warm-up call (untimed in bench_serve): {time.perf_counter() - t:.3f} s")
    for i in range(5):
        t = time.perf_counter()
        po(clf.answer(x[i:i + 1]), x[i:i + 1], gen)
        print(f"batch-1 call {i} after the warm-up: {1e3 * (time.perf_counter() - t):.2f} ms")
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "none initialised"
    print(f"numba threading layer: {layer}; load average "
          f"{open('/proc/loadavg').read().split()[0]}")


if __name__ == "__main__":
    main()
