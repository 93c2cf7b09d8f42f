"""The direct FIM's rare outliers came from the pilot baseline of rare output states.

docs/fisher.md ("Calibration of the direct-FIM error bars") found two outlier runs in 2000
(input, seed) pairs of the depth-5 network, each dominated by one output state ``y`` whose pilot
baseline ``b_y`` (250 chains) was far above its main-run ``q̂_y`` (4000 chains): then
``ĝ_y = mean((t_y − b_y) s) ≈ −b_y mean(s)`` is noise of size ``b_y |s| / √S`` and
``ĝ_y ĝ_yᵀ / q̂_y`` explodes. Since then :func:`rgaudit.fisher.direct.resolved_baseline` gives
``b_y = 0`` to every state the pilot does not resolve (``b_y ≤ 3 ×`` its pilot standard
error). This script re-runs the batched depth-5 direct FIM for the given seeds (generator
``manual_seed(10_000 + s)``, as benchmarks/seed_spread_calibration.py) twice:

- ``before``: ``RESOLVED_SIGMA = 0``, every state keeps its pilot baseline (the estimator before
  the change, the same random numbers and arithmetic);
- ``now``: the default ``RESOLVED_SIGMA = 3``.

It prints each input's top eigenvalue and jackknife error for both, and per input the run-to-run
s.d., the rms and the largest jackknife error over the seeds.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/seed_spread_baseline.py [SEED ...]

(default seeds: 154 and 8, the two outlier runs, then 0..29). With ``--default-audit`` instead:
the default model's direct FIM as the audit sizes it (20 inputs, 32 000 chains), before and now.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import rgaudit.fisher.direct as direct_mod
from rgaudit.data import load_dataset
from rgaudit.experiments.depth import DepthConfig, train_depth
from rgaudit.fisher.eig import top_eigenpairs


def main(seeds: list[int]) -> None:
    ds, cfg = load_dataset("digits"), DepthConfig()
    net, _ = train_depth(ds, 5, cfg)
    net = net.to(torch.float64)
    x = ds.X_test[1:11].to(net.dtype)
    default = direct_mod.RESOLVED_SIGMA
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"before": [], "now": []}
    for s in seeds:
        for name in out:
            direct_mod.RESOLVED_SIGMA = 0.0 if name == "before" else default
            try:
                D = direct_mod.direct_fim(net, x, cfg.direct_samples,
                                          torch.Generator().manual_seed(10_000 + s))
            finally:
                direct_mod.RESOLVED_SIGMA = default
            top = top_eigenpairs(D.fim, 1, replicates=D.replicates)
            assert top.stderr is not None
            out[name].append((top.values[:, 0].numpy(), top.stderr[:, 0].numpy()))
            print(f"seed {s} {name:6s} top {np.round(out[name][-1][0], 2)} "
                  f"jackknife {np.round(out[name][-1][1], 2)}", flush=True)
    for name, runs in out.items():
        v = np.array([r[0] for r in runs])
        se = np.array([r[1] for r in runs])
        print(f"{name}: run s.d. {np.round(v.std(0, ddof=1), 2)}")
        print(f"{name}: rms jackknife {np.round(np.sqrt((se**2).mean(0)), 2)}")
        print(f"{name}: max jackknife {np.round(se.max(0), 2)}")


def default_audit() -> None:
    """The default model's direct FIM as the audit sizes it (32 000 chains), test inputs 0..19,
    generator ``manual_seed(0)``, before and now: how far the change moves the audit's figures."""
    from rgaudit.commands.audit import dataset_for_model
    from rgaudit.experiments.audit import AuditConfig
    from rgaudit.experiments.train_default import ensure_default_model

    net, cfg_m = ensure_default_model()
    ds, *_ = dataset_for_model(net, cfg_m, None)
    x = ds.X_test[:20].to(net.dtype)
    default, vals = direct_mod.RESOLVED_SIGMA, {}
    for name, sigma in (("before", 0.0), ("now", default)):
        direct_mod.RESOLVED_SIGMA = sigma
        try:
            D = direct_mod.direct_fim(net, x, AuditConfig().direct_samples,
                                      torch.Generator().manual_seed(0))
        finally:
            direct_mod.RESOLVED_SIGMA = default
        top = top_eigenpairs(D.fim, 1, replicates=D.replicates)
        assert top.stderr is not None
        vals[name] = (top.values[:, 0].numpy(), top.stderr[:, 0].numpy())
        v, se = vals[name]
        print(f"{name}: median top {np.median(v):.3f}, median jackknife {np.median(se):.3f}, "
              f"max jackknife {se.max():.3f}", flush=True)
    diff = np.abs(vals["now"][0] - vals["before"][0]) / vals["before"][1]
    print(f"|now − before| / jackknife: median {np.median(diff):.3f}, max {diff.max():.3f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--default-audit"]:
        default_audit()
    else:
        main([int(a) for a in sys.argv[1:]] or [154, 8, *range(30)])
