"""How ``train`` and ``audit`` scale with input dimension, width and depth (issue 16).

One factor at a time around a base network (``d = 196``, width 250, depth 3, i.e.
196-250-250-10): input dimension ``d ∈ {64, 196, 784}`` (the digits at 8×8, upscaled to 14×14
and 28×28, :func:`rgaudit.data.digits28.upscale`), hidden width ``∈ {100, 250, 500, 1000}``,
depth (weight layers) ``∈ {2, 3, 4, 5}`` — 10 networks instead of the 48 of the full grid.
The input-dimension and width rows are trained with a short recipe (:data:`TRAIN`: 2 CD epochs
per layer, 3 fine-tuning epochs, 50 evaluation chains); that recipe does not train networks of
depth 4–5 (stochastic accuracy 0.50 and 0.10 = chance), so **every depth row**, depth 3
included (a row of its own, not the base), is trained with the depth study's recipe
(:data:`DEEP_TRAIN`: 5 CD epochs per layer, 30 fine-tuning epochs) and the depth axis is fitted
on those four rows only: the axis then compares trained networks under one recipe. Every network
is audited with a fixed small configuration (:data:`AUDIT`: 2 inputs, 1000 MCRG chains, …), each
step in a fresh single-threaded subprocess whose wall time, CPU time (user + system) and peak
resident memory are recorded together with ``/proc/loadavg``. The audit's own cost model
(:func:`rgaudit.experiments.audit_plan.estimate_audit`) is evaluated for the same configuration
so that its error is visible. ``--axis d|width|depth`` runs one axis only (with the base row,
except for depth, whose rows carry their own depth-3 network).

Exponents: ``scipy.stats.linregress`` of log(cost) on log(factor) along each axis (CPU time,
which the machine's load inflates much less than wall time, and peak memory). With the fitted
exponents a user predicts their own model as ``cost ≈ base · (d/196)^α_d · (w/250)^α_w ·
(depth/3)^α_N``.

Usage::

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--axis d|width|depth]

Writes ``benchmarks/results/scale.json`` (``scale_<axis>.json`` with ``--axis``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

BASE = {"d": 196, "width": 250, "depth": 3}
AXES = {"d": [64, 196, 784], "width": [100, 250, 500, 1000], "depth": [2, 3, 4, 5]}
QUICK_AXES = {"d": [64, 196], "width": [100, 250], "depth": [2, 3]}
TRAIN = {"pretrain_epochs": 2, "finetune_epochs": 3, "eval_samples": 50}
#: recipe of the depth rows (that of experiments/depth.py's depth study)
DEEP_TRAIN = {"pretrain_epochs": 5, "finetune_epochs": 30, "eval_samples": 50}
RECIPES = {"short": TRAIN, "deep": DEEP_TRAIN}
AUDIT = {"n_inputs": 2, "n_diagnose": 1, "mcrg_samples": 1000, "large_basis": "pairs:16",
         "direct_samples": 1000, "judge_samples": 200, "eps_l2": (0.5, 2.0),
         "eps_linf": (0.05, 0.2), "bisect_steps": 4, "pgd_iter": 5}


def _widths(d: int, width: int, depth: int) -> list[int]:
    return [d] + [width] * (depth - 1) + [10]


def _dataset(d: int):
    import numpy as np
    from sklearn.datasets import load_digits

    from rgaudit.data.dataset import make_dataset, stratified_split
    from rgaudit.data.digits28 import upscale

    side = int(round(d**0.5))
    raw = load_digits()
    small = (raw.data / 16.0).reshape(-1, 8, 8)
    X = (small if side == 8 else upscale(small, side)).reshape(len(small), side * side)
    X_tr, y_tr, X_te, y_te = stratified_split(X.astype(np.float32), raw.target, 0.25, 0)
    return make_dataset(f"digits{side}", X_tr, y_tr, X_te, y_te, shape=(side, side),
                        n_classes=10)


def _one(step: str, d: int, width: int, depth: int, folder: str, recipe: str = "short"
         ) -> dict:
    import torch

    from rgaudit.nets.io import load_model, save_model

    torch.set_num_threads(1)
    ds = _dataset(d)
    widths = _widths(d, width, depth)
    t0, c0 = time.perf_counter(), time.process_time()
    out: dict = {}
    if step == "train":
        from dataclasses import replace

        from rgaudit.train.pipeline import TrainConfig, train_default

        base = TrainConfig()
        rec = RECIPES[recipe]
        cfg = replace(base, widths=tuple(widths), threads=1,
                      eval_samples=rec["eval_samples"],
                      pretrain=replace(base.pretrain, epochs=rec["pretrain_epochs"]),
                      finetune=replace(base.finetune, epochs=rec["finetune_epochs"]))
        net, report = train_default(ds, cfg)
        save_model(net, Path(folder) / "model", metadata=report)
        out["stochastic_accuracy"] = report["accuracy"]["stochastic"]["accuracy"]
    else:
        from rgaudit.experiments.audit import AuditConfig, run_audit
        from rgaudit.experiments.audit_plan import estimate_audit

        net, _ = load_model(Path(folder) / "model")
        cfg = AuditConfig(**AUDIT)
        est = estimate_audit(widths, cfg)
        res = run_audit(net, ds.X_test, ds.y_test, cfg)
        out["timings"] = res.timings
        out["model_estimate_s"] = est.seconds
        out["model_estimate_mib"] = est.memory_bytes / 2**20
    out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0,
               peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def _run(step: str, d: int, width: int, depth: int, folder: str, recipe: str = "short"
         ) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--one", step, str(d), str(width),
                           str(depth), folder, recipe], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{step} {d}/{width}/{depth} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(process_wall_s=time.perf_counter() - t0, loadavg_before=load,
               loadavg_after=os.getloadavg())
    return res


def _fit(rows: list[dict], axis: str, key: str) -> dict:
    from scipy.stats import linregress

    # the depth axis has its own rows (deep recipe, depth 3 included); the others share base
    own = ("depth",) if axis == "depth" else (axis, "base")
    pts = [(r[axis], r[key]) for r in rows if r["axis"] in own]
    pts = sorted({p[0]: p for p in pts}.values())
    if len(pts) < 2:
        return {}
    import math

    fit = linregress([math.log(p[0]) for p in pts], [math.log(p[1]) for p in pts])
    return {"exponent": fit.slope, "stderr": fit.stderr, "r": fit.rvalue, "points": len(pts)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--axis", choices=sorted(AXES), help="run one axis only")
    ap.add_argument("--one", nargs=6)
    args = ap.parse_args()
    if args.one:
        step, d, w, n, folder, recipe = args.one
        print(json.dumps(_one(step, int(d), int(w), int(n), folder, recipe)))
        return
    axes = QUICK_AXES if args.quick else AXES
    if args.axis:
        axes = {args.axis: axes[args.axis]}
    configs = [] if set(axes) == {"depth"} else [("base", BASE["d"], BASE["width"],
                                                  BASE["depth"])]
    for axis, values in axes.items():
        for v in values:
            c = dict(BASE, **{axis: v})
            if c != BASE or axis == "depth":
                configs.append((axis, c["d"], c["width"], c["depth"]))
    rows = []
    t_all = time.perf_counter()
    for axis, d, w, n in configs:
        recipe = "deep" if axis == "depth" else "short"
        with tempfile.TemporaryDirectory() as folder:
            tr = _run("train", d, w, n, folder, recipe)
            au = _run("audit", d, w, n, folder)
        row = {"axis": axis, "d": d, "width": w, "depth": n, "widths": _widths(d, w, n),
               "recipe": recipe, "train_wall_s": tr["wall_s"], "train_cpu_s": tr["cpu_s"],
               "train_peak_rss_mib": tr["peak_rss_mib"],
               "train_stochastic_accuracy": tr["stochastic_accuracy"],
               "audit_wall_s": au["wall_s"], "audit_cpu_s": au["cpu_s"],
               "audit_peak_rss_mib": au["peak_rss_mib"], "audit_timings": au["timings"],
               "audit_model_estimate_s": au["model_estimate_s"],
               "audit_model_estimate_mib": au["model_estimate_mib"],
               "loadavg": [tr["loadavg_before"], au["loadavg_after"]]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    fits = {axis: {key: _fit(rows, axis, key) for key in
                   ("train_cpu_s", "audit_cpu_s", "train_peak_rss_mib", "audit_peak_rss_mib",
                    "train_wall_s", "audit_wall_s")} for axis in axes}
    from rgaudit.experiments.audit import AuditConfig

    doc = {"benchmark": "train/audit cost vs input dimension, width, depth (issue 16)",
           "base": BASE, "axes": axes, "train_recipe": TRAIN, "depth_recipe": DEEP_TRAIN,
           "audit_config": asdict(AuditConfig(**AUDIT)), "threads": 1,
           "total_wall_s": time.perf_counter() - t_all, "rows": rows, "fits": fits,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "loadavg_at_end": os.getloadavg()}}
    name = "scale" + (f"_{args.axis}" if args.axis else "") + ("_quick" if args.quick else "")
    out = Path(__file__).parent / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(fits, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
