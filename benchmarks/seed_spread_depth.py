"""Run-to-run spread vs jackknife error of the depth study's top FIM eigenvalue (depth 5).

The depth study's direct FIM (4000 chains per input, ``DepthConfig()`` network of depth 5, its ten
inputs: test indices 1..10). Two checks, as in docs/fisher.md ("Depth study"):

- batched, as the study runs it: all ten inputs at once, with the generator before named seed
  streams (``manual_seed(0)``) and stream ``"fim"`` of seeds 0..5 — per-input s.d. over the 7 runs;
- one input alone (test index 2), stream ``"fim"`` of seeds 0..11 — s.d. over the 12 runs.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/seed_spread_depth.py
"""

from __future__ import annotations

import numpy as np
import torch

from rgaudit.data import load_dataset
from rgaudit.experiments.depth import DepthConfig, train_depth
from rgaudit.fisher.direct import direct_fim
from rgaudit.fisher.eig import top_eigenpairs
from rgaudit.random import torch_generator


def _top(net: torch.nn.Module, x: torch.Tensor, n: int, g: torch.Generator
         ) -> tuple[np.ndarray, np.ndarray]:
    D = direct_fim(net, x, n, g)
    top = top_eigenpairs(D.fim, 1, replicates=D.replicates)
    assert top.stderr is not None
    return top.values[:, 0].numpy(), top.stderr[:, 0].numpy()


def main() -> None:
    ds, cfg = load_dataset("digits"), DepthConfig()
    net, _ = train_depth(ds, 5, cfg)
    net = net.to(torch.float64)
    x = ds.X_test[1:11].to(net.dtype)
    gens = [("before: manual_seed(0)", torch.Generator().manual_seed(0))]
    gens += [(f"stream fim, seed {s}", torch_generator(s, "fim")) for s in range(6)]
    runs = []
    for name, g in gens:
        v, se = _top(net, x, cfg.direct_samples, g)
        runs.append(v)
        print(f"batched, {name}: {np.round(v, 2)} (jackknife {np.round(se, 2)})", flush=True)
    print("batched: per-input s.d. over the runs", np.round(np.std(runs, axis=0, ddof=1), 2))
    one = [_top(net, x[1:2], cfg.direct_samples, torch_generator(s, "fim")) for s in range(12)]
    vals = np.array([v[0] for v, _ in one])
    print(f"one input (test index 2): {np.round(vals, 2)}, s.d. {np.std(vals, ddof=1):.3f}, "
          f"median jackknife {np.median([se[0] for _, se in one]):.3f}")


if __name__ == "__main__":
    main()
