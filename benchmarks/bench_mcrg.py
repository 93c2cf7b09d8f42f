"""Benchmark of the MCRG estimator against the floor of its covariance products.

For each (S samples, m operators per layer) the estimator (``mcrg_pairs``: float64 cast, shift,
the three moment products per chunk, jackknife sums, the final solve and the replicate solves)
is timed on a stream of binary configurations with the single-unit basis (operator evaluation is
then free, so the comparison isolates the estimator). The floor is the time of the three float64
products ``AᵀA``, ``AᵀB``, ``BᵀB`` over the same chunks on the same machine, in float64 (what
a plain float64 estimator multiplies) and in float32 (what the estimator multiplies for binary
operators, exactly, see :mod:`rgaudit.rg.moments`). Each measurement runs
in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own.

A second timing runs the whole chain (RBM sampling + pair basis) through ``mcrg_network`` for
reference.

``--scale`` (issue 16) measures m = 500, 1000, 2000 operators instead: the estimator's phases
separately (accumulation over the chunks; finalisation = full-sample solve + one Cholesky
factorisation per jackknife replicate; *errors* = the replicate solves and error bars of ``T``'s
entries, formed on first access of ``T_stderr``), and the same for the dense reference path
(``REPLICATE_SOLVES = "dense"``, the previous code), in **CPU
seconds** of the single-threaded subprocess as well as wall seconds (the development machine is
shared, so wall time is inflated by the load; CPU time is not, to first order), the float32
floor in the same units, and peak memory against S (m fixed) and against m. Since the
finalisation does not depend on S, the ratio to the floor falls with S as
``(a·S + F) / (f·S)``; the sample size at which it reaches 1.3 is ``F / (1.3 f − a)`` with
``a``, ``f`` the measured per-sample costs and ``F`` the finalisation time.

Usage::

    .venv/bin/python benchmarks/bench_mcrg.py [--threads 1] [--quick]
    .venv/bin/python benchmarks/bench_mcrg.py --scale [--m 500 1000] [--no-dense] [--no-memory]
    .venv/bin/python benchmarks/bench_mcrg.py --compare 40000 1000

Writes ``benchmarks/results/mcrg.json`` (``mcrg_scale.json`` with ``--scale``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [  # (S, m)
    (100_000, 100),
    (1_000_000, 100),
    (300_000, 300),
    (100_000, 1000),
]
QUICK = [(20_000, 100), (200_000, 100), (20_000, 400)]
SCALE = [(40_000, 500), (40_000, 1000), (40_000, 2000)]
# peak memory against S at fixed m; S/16 ≥ m so that the reused chunk of samples has full rank
# (at S = 10⁴ the 625-sample chunk made C singular: the regularised, eager path was measured)
SCALE_MEMORY_S = [(20_000, 1000), (160_000, 1000)]
CHUNK = 8192
#: repetitions of the same-process estimator/floor pair per m (about 10 / 20 / 90 CPU s)
PAIRED_REPEATS = {500: 7, 1000: 3, 2000: 3}
#: inputs of the chain FIM's first-layer derivative (MNIST) and operators of its class layer
CHAIN_D = 784
CHAIN_HEAD = 10


def _one(kind: str, s: int, m: int, threads: int) -> dict:
    import torch
    from threadpoolctl import threadpool_limits

    from rgaudit.nets.deep_rbm import DeepRBM
    from rgaudit.rg.mcrg import mcrg_network, mcrg_pairs
    from rgaudit.rg.operators import ProductBasis

    threadpool_limits(limits=threads)  # not torch.set_num_threads(≥ 2): rgaudit/threads.py
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    g, chunk, pool_a, pool_b = _pools(s, m)

    def chunks():
        done = 0
        while done < s:
            n = min(chunk, s - done)
            if kind == "compare":   # fresh samples: replicates that differ (timing runs reuse)
                b = (torch.rand(n, m, generator=g) < 0.5).float()
                a = (torch.rand(n, m, generator=g) < 0.3).float()
                a[:, : m // 2] = torch.maximum(a[:, : m // 2], b[:, : m // 2])
                yield b, a
            else:
                yield pool_b[:n], pool_a[:n]
            done += n

    t0 = time.perf_counter()
    c0 = time.process_time()
    phases: dict[str, float] = {}
    if kind in ("phases", "phases_dense", "compare"):   # accumulation, finalisation apart
        import rgaudit.rg.mcrg as mcrg_mod
        from rgaudit.rg.mcrg import PairAccumulator

        mcrg_mod.REPLICATE_SOLVES = "dense" if kind == "phases_dense" else "factored"
        ops = ProductBasis.singles(m)
        acc = PairAccumulator(ops, ops, n_blocks=16, batch_shape=(), device=torch.device("cpu"))
        n_chunks = -(-s // chunk)
        for c, (hp, hn) in enumerate(chunks()):
            acc.update(hp, hn, min(c * 16 // n_chunks, 15))
        phases = {"accumulate_cpu_s": time.process_time() - c0,
                  "accumulate_wall_s": time.perf_counter() - t0}
        c1, t1 = time.process_time(), time.perf_counter()
        pair = acc.finalise(0)
        phases.update(finalise_cpu_s=time.process_time() - c1,
                      finalise_wall_s=time.perf_counter() - t1)
        assert bool(torch.isfinite(pair.T).all())
        peak_fin = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        phases["rss_increase_before_errors_mib"] = (peak_fin - base_rss) / 1024
        if kind == "compare":   # the same accumulator through the dense reference path
            mcrg_mod.REPLICATE_SOLVES = "dense"
            ref = acc.finalise(0)
            phases["max_abs_diff"] = {
                name: float((getattr(pair, name) - getattr(ref, name)).nan_to_num().abs().max())
                for name in ("T", "T_replicates", "T_stderr")}
            phases["max_abs"] = {name: float(getattr(ref, name).nan_to_num().abs().max())
                                 for name in ("T", "T_replicates", "T_stderr")}
            phases["same_regularised"] = [
                (a.n_replicates_regularised, b.n_replicates_regularised)
                for a, b in zip(pair.solve_info, ref.solve_info, strict=True)]
        if kind == "phases":     # the audit's chain FIM from the factored replicates
            phases.update(_chain_phases(pair, acc_pairs=(pool_b, pool_a), s=s, m=m,
                                        chunk=chunk))
        c2, t2 = time.process_time(), time.perf_counter()
        err = pair.T_stderr     # forms every T_r (a no-op cost on the dense path)
        phases.update(errors_cpu_s=time.process_time() - c2,
                      errors_wall_s=time.perf_counter() - t2)
        assert err.shape == pair.T.shape
    elif kind == "estimator":
        ops = ProductBasis.singles(m)
        pair = mcrg_pairs(chunks(), ops, ops, n_blocks=16,
                          contiguous_blocks=-(-s // chunk))
        assert bool(torch.isfinite(pair.T).all())
    elif kind == "floor":  # float64 products, as a plain float64 estimator would do
        acc = [torch.zeros(m, m, dtype=torch.float64) for _ in range(3)]
        for b, a in chunks():
            a64, b64 = a.double(), b.double()
            acc[0] += a64.T @ a64
            acc[1] += a64.T @ b64
            acc[2] += b64.T @ b64
    elif kind == "floor32":  # the same products in float32
        acc = [torch.zeros(m, m) for _ in range(3)]
        for b, a in chunks():
            acc[0] += a.T @ a
            acc[1] += a.T @ b
            acc[2] += b.T @ b
    elif kind == "network":
        net = DeepRBM.random([64, m, m, 10], generator=g, dtype=torch.float32)
        x = torch.rand(1, 64, generator=g)
        mcrg_network(net, x, "singles", s, generator=1, pair_layers=[1], chunk=chunk)
    else:
        raise ValueError(kind)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "S": s, "m": m, "seconds": dt, "cpu_seconds": cpu,
            "peak_rss_mib": peak / 1024, "rss_increase_mib": (peak - base_rss) / 1024,
            "loadavg": os.getloadavg(), **phases}


def _pools(s: int, m: int) -> tuple:
    """Generator, chunk length and the reused chunk of binary samples (correlated A, B)."""
    import torch

    chunk = min(CHUNK, s // 16)
    g = torch.Generator().manual_seed(0)
    pool_a = (torch.rand(chunk, m, generator=g) < 0.3).float()
    pool_b = (torch.rand(chunk, m, generator=g) < 0.5).float()
    pool_a[:, : m // 2] = torch.maximum(pool_a[:, : m // 2], pool_b[:, : m // 2])  # correlate
    return g, chunk, pool_a, pool_b


def _paired(s: int, m: int, threads: int, repeats: int) -> dict:
    """The estimator and the float32 floor timed alternately in one process, ``repeats`` times.

    The ratio of two CPU times is a property of the code only if both run under the same
    conditions; timed in two fresh processes (the other columns) the same accumulation ran at
    0.87× and 1.17× its floor on the quiet machine (session 4): process-to-process spread, not
    the estimator. Here each repetition times the floor's three float32 products, then the
    estimator's accumulation and finalisation, on the same chunks in the same process; the
    median and range of the per-repetition ratios are reported.
    """
    import statistics

    import torch
    from threadpoolctl import threadpool_limits

    from rgaudit.rg.mcrg import PairAccumulator
    from rgaudit.rg.operators import ProductBasis

    threadpool_limits(limits=threads)
    _, chunk, pool_a, pool_b = _pools(s, m)
    sizes = [min(chunk, s - done) for done in range(0, s, chunk)]
    ops = ProductBasis.singles(m)
    reps = []
    for _ in range(repeats):
        c0 = time.process_time()
        acc = [torch.zeros(m, m) for _ in range(3)]
        for n in sizes:
            a, b = pool_a[:n], pool_b[:n]
            acc[0] += a.T @ a
            acc[1] += a.T @ b
            acc[2] += b.T @ b
        floor = time.process_time() - c0
        del acc
        c1 = time.process_time()
        pacc = PairAccumulator(ops, ops, n_blocks=16, batch_shape=(), device=torch.device("cpu"))
        for c, n in enumerate(sizes):
            pacc.update(pool_b[:n], pool_a[:n], min(c * 16 // len(sizes), 15))
        c2 = time.process_time()
        pair = pacc.finalise(0)
        c3 = time.process_time()
        assert bool(torch.isfinite(pair.T).all())
        del pacc, pair
        reps.append({"floor_f32_cpu_s": floor, "accumulate_cpu_s": c2 - c1,
                     "finalise_cpu_s": c3 - c2, "ratio": (c3 - c1) / floor,
                     "accumulate_ratio": (c2 - c1) / floor})
    ratios = [r["ratio"] for r in reps]
    acc_ratios = [r["accumulate_ratio"] for r in reps]
    return {"kind": "paired", "S": s, "m": m, "repeats": reps,
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "accumulate_ratio_median": statistics.median(acc_ratios),
            "loadavg": os.getloadavg()}


def _chain_phases(pair, *, acc_pairs, s: int, m: int, chunk: int) -> dict:
    """CPU seconds of the RG-chain FIM with jackknife replicates (``fisher.chain``) on top of
    the pair ``m → m`` just finalised, before any ``T_r`` is formed, for ``d = CHAIN_D`` inputs:

    * ``chain_square``: the chain ends at the ``m``-operator layer (``J_r = T_r ∂g/∂x``,
      associated from the input side: ``4 m² d`` per replicate), the worst case;
    * ``chain_head``: a class layer of ``CHAIN_HEAD`` operators on top (a second pair
      ``m → CHAIN_HEAD``, accumulated and finalised untimed): the audit's shape, associated from
      the output side (``O(CHAIN_HEAD · m²)`` per replicate).
    """
    import torch

    from rgaudit.fisher.chain import chain_fim_pairs
    from rgaudit.rg.mcrg import PairAccumulator
    from rgaudit.rg.operators import ProductBasis

    g = torch.Generator().manual_seed(1)
    dg1 = torch.randn(m, CHAIN_D, generator=g, dtype=torch.float64)
    out: dict[str, float] = {}
    c0 = time.process_time()
    sq = chain_fim_pairs(dg1, [pair], factored=True)
    out["chain_square_cpu_s"] = time.process_time() - c0
    assert sq.factors is not None and not pair.replicates_formed
    # the class layer: CHAIN_HEAD binary operators correlated with the m-operator layer
    pool_b, pool_a = acc_pairs
    head = torch.maximum(pool_a[:, :CHAIN_HEAD], pool_b[:, CHAIN_HEAD:2 * CHAIN_HEAD])
    acc2 = PairAccumulator(ProductBasis.singles(m), ProductBasis.singles(CHAIN_HEAD),
                           n_blocks=16, batch_shape=(), device=torch.device("cpu"))
    n_chunks = -(-s // chunk)
    done = c = 0
    while done < s:
        n = min(chunk, s - done)
        acc2.update(pool_a[:n], head[:n], min(c * 16 // n_chunks, 15))
        done, c = done + n, c + 1
    top = acc2.finalise(1)
    c0 = time.process_time()
    hd = chain_fim_pairs(dg1, [pair, top], factored=True)
    out["chain_head_cpu_s"] = time.process_time() - c0
    assert hd.factors is not None and not pair.replicates_formed
    return out


def _scale(threads: int, ms: list[int] | None = None, dense: bool = True,
           memory: bool = True) -> dict:
    """Issue 16: m = 500…2000, phases in CPU seconds, floor ratios, memory against S and m.

    ``estimator`` = accumulation + finalisation (``T``, its solve diagnostics and the
    replicates' Cholesky factors); ``errors`` = forming every ``T_r`` and the error bars of the
    entries of ``T`` on first access (``T_stderr``). With ``dense`` the reference path
    (every ``T_r`` solved in the finalisation, the previous code) is timed as well.
    """
    rows = []
    for s, m in SCALE:
        if ms is not None and m not in ms:
            continue
        paired = _run_sub("paired", s, m, threads)
        est = _run_sub("phases", s, m, threads)
        f32 = _run_sub("floor32", s, m, threads)
        ref = _run_sub("phases_dense", s, m, threads) if dense else None
        a = est["accumulate_cpu_s"] / s
        f = f32["cpu_seconds"] / s
        fin = est["finalise_cpu_s"]
        s_13 = fin / (1.3 * f - a) if 1.3 * f > a else float("inf")
        est_cpu = est["accumulate_cpu_s"] + est["finalise_cpu_s"]
        row = {"S": s, "m": m, **{k: est[k] for k in ("accumulate_cpu_s", "finalise_cpu_s",
                                                        "accumulate_wall_s", "finalise_wall_s",
                                                        "errors_cpu_s", "errors_wall_s")},
               "estimator_cpu_s": est_cpu,
               "estimator_wall_s": est["accumulate_wall_s"] + est["finalise_wall_s"],
               "with_errors_ratio_to_f32_floor_cpu": (est_cpu + est["errors_cpu_s"])
               / f32["cpu_seconds"],
               "chain_square_cpu_s": est["chain_square_cpu_s"],
               "chain_head_cpu_s": est["chain_head_cpu_s"],
               "with_chain_square_ratio_to_f32_floor_cpu": (est_cpu + est["chain_square_cpu_s"])
               / f32["cpu_seconds"],
               "with_chain_head_ratio_to_f32_floor_cpu": (est_cpu + est["chain_head_cpu_s"])
               / f32["cpu_seconds"],
               "dense_reference": None if ref is None else {
                   k: ref[k] for k in ("accumulate_cpu_s", "finalise_cpu_s", "errors_cpu_s",
                                       "peak_rss_mib", "rss_increase_mib", "loadavg")},
               "floor_f32_cpu_s": f32["cpu_seconds"], "floor_f32_wall_s": f32["seconds"],
               "ratio_to_f32_floor_cpu": est_cpu / f32["cpu_seconds"],
               "accumulate_ratio_to_f32_floor_cpu": est["accumulate_cpu_s"]
               / f32["cpu_seconds"],
               "S_for_ratio_1_3": s_13, "S_for_ratio_1_3_per_m": s_13 / m,
               "paired_ratio_median": paired["ratio_median"],
               "paired_ratio_range": [paired["ratio_min"], paired["ratio_max"]],
               "paired_accumulate_ratio_median": paired["accumulate_ratio_median"],
               "paired": paired,
               "estimator_peak_rss_mib": est["peak_rss_mib"],
               "floor_peak_rss_mib": f32["peak_rss_mib"],
               "estimator_rss_increase_mib": est["rss_increase_before_errors_mib"],
               "with_errors_rss_increase_mib": est["rss_increase_mib"],
               "loadavg": [est["loadavg"], f32["loadavg"]]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    mem_s = []
    for s, m in SCALE_MEMORY_S if memory else []:
        est = _run_sub("phases", s, m, threads)
        mem_s.append({"S": s, "m": m, "peak_rss_mib": est["peak_rss_mib"],
                      "rss_increase_mib": est["rss_increase_mib"],
                      "rss_increase_before_errors_mib": est["rss_increase_before_errors_mib"],
                      "cpu_seconds": est["cpu_seconds"], "loadavg": est["loadavg"]})
        print(json.dumps(mem_s[-1]), flush=True)
    return {"benchmark": "mcrg estimator at m = 500-2000 (issue 16)", "chunk": CHUNK,
            "n_blocks": 16, "threads": threads, "rows": rows, "memory_vs_S": mem_s,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "loadavg_at_end": os.getloadavg()}}


def _run_sub(kind: str, s: int, m: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--one", kind, str(s), str(m), str(threads)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--one", nargs=4)
    ap.add_argument("--scale", action="store_true", help="m = 500-2000 (issue 16)")
    ap.add_argument("--m", type=int, nargs="+", default=None,
                    help="with --scale: only these operator counts (of 500, 1000, 2000)")
    ap.add_argument("--no-dense", action="store_true",
                    help="with --scale: skip the dense reference path (the previous code)")
    ap.add_argument("--no-memory", action="store_true",
                    help="with --scale: skip the memory-against-S runs")
    ap.add_argument("--out", type=Path, default=None,
                    help="with --scale: write here instead of results/mcrg_scale.json")
    ap.add_argument("--compare", type=int, nargs=2, metavar=("S", "M"),
                    help="max |factored - dense| of T, T_r, T_stderr on one accumulator")
    args = ap.parse_args()
    if args.compare:
        print(json.dumps(_one("compare", args.compare[0], args.compare[1], args.threads)))
        return
    if args.one:
        kind, s, m, th = args.one
        if kind == "paired":
            print(json.dumps(_paired(int(s), int(m), int(th), PAIRED_REPEATS[int(m)])))
        else:
            print(json.dumps(_one(kind, int(s), int(m), int(th))))
        return
    if args.scale:
        doc = _scale(args.threads, args.m, dense=not args.no_dense, memory=not args.no_memory)
        out = args.out or Path(__file__).parent / "results" / "mcrg_scale.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {out}")
        return
    rows = []
    for s, m in QUICK if args.quick else CONFIGS:
        est = _run_sub("estimator", s, m, args.threads)
        flo = _run_sub("floor", s, m, args.threads)
        f32 = _run_sub("floor32", s, m, args.threads)
        row = {"S": s, "m": m, "estimator_s": est["seconds"], "floor_f64_s": flo["seconds"],
               "floor_f32_s": f32["seconds"], "ratio_to_f64_floor": est["seconds"] / flo["seconds"],
               "ratio_to_f32_floor": est["seconds"] / f32["seconds"],
               "estimator_peak_rss_mib": est["peak_rss_mib"],
               "floor_peak_rss_mib": flo["peak_rss_mib"]}
        if m <= 300:
            net = _run_sub("network", s, m, args.threads)
            row["network_chain_s"] = net["seconds"]
            row["network_peak_rss_mib"] = net["peak_rss_mib"]
        print(json.dumps(row), flush=True)
        rows.append(row)
    doc = {
        "benchmark": "mcrg estimator vs covariance-product floor",
        "chunk": CHUNK, "n_blocks": 16, "threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_at_end": os.getloadavg()},
        "rows": rows,
    }
    out = Path(__file__).parent / "results" / "mcrg.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
