"""Are the direct FIM's jackknife error bars honest? Run-to-run spread against the jackknife.

Two parts (docs/fisher.md, "Calibration of the direct-FIM error bars"):

``depth5``
    The depth study's depth-5 network (``DepthConfig()``, test indices 1..10, 4000 chains per
    input, 16 blocks), all ten inputs in one ``direct_fim`` call as the study runs it, repeated
    with ``--seeds`` generators ``manual_seed(10_000 + s)``. Per input: the s.d. of the top
    eigenvalue over the runs against the rms and the median jackknife error; over all runs and
    inputs: ``z = (λ − mean_runs)/σ_jk`` against Student-t with 15 degrees of freedom
    (Kolmogorov–Smirnov, mean z², tail fractions); the jackknife bias estimate
    ``(B − 1)(mean_r λ_r − λ)``.
``exact``
    A network whose FIM is exact by enumeration but whose input is as large as the digits'
    (widths 64-8-6-4, weights scale 3, seed 3): ``--runs`` independent estimates of one input
    (one call, each row its own chains), top eigenvalue against the exact one: bias, s.d. over
    the runs against the rms jackknife error, mean z², at 4000 and 1000 chains.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/seed_spread_calibration.py \
        [--part depth5|exact|both] [--seeds 200] [--runs 200] [--out FILE.json]

About 1.4 s per seed for ``depth5`` and 1–2 min for ``exact`` on one quiet core.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
from scipy import stats

from rgaudit.fisher.direct import direct_fim
from rgaudit.fisher.eig import top_eigenpairs

N_BLOCKS = 16


def _top_with_replicates(fim: torch.Tensor, reps: torch.Tensor
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top eigenvalue (n,), its jackknife error (n,) and the replicates' tops (B, n)."""
    top = top_eigenpairs(fim, 1, replicates=reps)
    assert top.stderr is not None
    sym = 0.5 * (reps + reps.transpose(-1, -2))
    rep_top = torch.linalg.eigvalsh(sym)[..., -1]
    return top.values[:, 0].numpy(), top.stderr[:, 0].numpy(), rep_top.numpy()


def _z_summary(z: np.ndarray) -> dict[str, float]:
    t = stats.t(N_BLOCKS - 1)
    ks = stats.kstest(z.ravel(), t.cdf)
    return {"n": int(z.size), "mean_z2": float((z**2).mean()),
            "mean_z2_t15": (N_BLOCKS - 1) / (N_BLOCKS - 3), "ks_stat": float(ks.statistic),
            "ks_p": float(ks.pvalue), "frac_abs_z_gt_2": float((np.abs(z) > 2).mean()),
            "frac_abs_z_gt_2_t15": float(2 * t.sf(2)), "frac_abs_z_gt_3": float(
                (np.abs(z) > 3).mean()), "frac_abs_z_gt_3_t15": float(2 * t.sf(3))}


def depth5(n_seeds: int) -> dict[str, Any]:
    from rgaudit.data import load_dataset
    from rgaudit.experiments.depth import DepthConfig, train_depth

    ds, cfg = load_dataset("digits"), DepthConfig()
    net, _ = train_depth(ds, 5, cfg)
    net = net.to(torch.float64)
    x = ds.X_test[1:11].to(net.dtype)
    V, SE, BIAS = [], [], []
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(n_seeds):
        D = direct_fim(net, x, cfg.direct_samples, torch.Generator().manual_seed(10_000 + s))
        assert D.replicates is not None
        v, se, rep = _top_with_replicates(D.fim, D.replicates)
        V.append(v)
        SE.append(se)
        BIAS.append((N_BLOCKS - 1) * (rep.mean(0) - v))
        if s % 20 == 0:
            print(f"seed {s}/{n_seeds}, {time.perf_counter() - t0:.0f} s", flush=True)
    v, se, bias = np.array(V), np.array(SE), np.array(BIAS)          # (seeds, inputs)
    S = v.shape[0]
    sd = v.std(0, ddof=1)
    rms = np.sqrt((se**2).mean(0))
    z = (v - v.mean(0)) / se * np.sqrt(S / (S - 1))
    # one-sided: is the run-to-run variance larger than the mean jackknife variance?
    p_larger = stats.chi2.sf((S - 1) * sd**2 / rms**2, S - 1)
    return {"seeds": S, "test_indices": list(range(1, 11)), "mean": v.mean(0).tolist(),
            "run_sd": sd.tolist(), "rms_jackknife": rms.tolist(),
            "median_jackknife": np.median(se, 0).tolist(), "sd_over_rms": (sd / rms).tolist(),
            "p_run_var_larger": p_larger.tolist(), "kurtosis": stats.kurtosis(v, 0).tolist(),
            "jackknife_bias_mean": bias.mean(0).tolist(), "z": _z_summary(z),
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def exact(n_runs: int) -> dict[str, Any]:
    from rgaudit.fisher.exact import exact_fim
    from rgaudit.nets.deep_rbm import DeepRBM

    g = torch.Generator().manual_seed(3)
    net = DeepRBM.random([64, 8, 6, 4], generator=g, scale=3.0)
    x = torch.rand(1, 64, generator=g, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(exact_fim(net, x)[0])
    lam = float(ev[-1])
    out: dict[str, Any] = {"widths": [64, 8, 6, 4], "exact_top": lam,
                           "gap_over_top": float((ev[-1] - ev[-2]) / ev[-1]), "runs": n_runs}
    for S in (4000, 1000):
        D = direct_fim(net, x.expand(n_runs, 64), S, torch.Generator().manual_seed(1),
                       n_blocks=N_BLOCKS, input_batch=64)
        assert D.replicates is not None
        v, se, rep = _top_with_replicates(D.fim, D.replicates)
        bc = v - (N_BLOCKS - 1) * (rep.mean(0) - v)
        sd = v.std(ddof=1)
        out[f"S={S}"] = {
            "bias": float(v.mean() - lam), "bias_se": float(sd / np.sqrt(n_runs)),
            "bias_corrected_bias": float(bc.mean() - lam),
            "bias_corrected_se": float(bc.std(ddof=1) / np.sqrt(n_runs)),
            "run_sd": float(sd), "rms_jackknife": float(np.sqrt((se**2).mean())),
            "z_vs_exact": _z_summary((v - lam) / se)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("depth5", "exact", "both"), default="both")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    res: dict[str, Any] = {}
    if a.part in ("exact", "both"):
        res["exact"] = exact(a.runs)
        print(json.dumps(res["exact"], indent=1), flush=True)
    if a.part in ("depth5", "both"):
        res["depth5"] = depth5(a.seeds)
        print(json.dumps(res["depth5"], indent=1), flush=True)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
