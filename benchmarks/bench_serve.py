"""Serve the default digits model (64-100-100-10) over loopback HTTP and measure throughput and
latency, and time the poisoning library in-process.

Part 1, in-process (no HTTP), per defence (none, random, RG; L1 budget 0.3): answers/s at batch
256 and p50/p99 latency at batch 1 (the classifier's answer plus the poison), in wall time and
in CPU time of the computing thread; for RG also the NumPy step search (``engine="numpy"``, what
served before the compiled search) and the largest difference between the RG poison and the
per-answer search it replaced (``tests/poison_reference.py``) on the first digits test answers.

Part 2, HTTP: one ``rgaudit serve`` process (``--threads 1``: one core; uvicorn with httptools
and uvloop when installed, recorded as ``http_stack``) per defence on an ephemeral 127.0.0.1
port; 1, 4 and 16 concurrent clients send batches of 1 and of 256 for a bounded time each. A
client is a thread of this process holding one persistent keep-alive connection
(``http.client.HTTPConnection``, the standard library's thin client; pre-encoded bodies of
digits test inputs): little Python per request, but it runs on the same cores as the server
and its CPU time is recorded per cell (``client_cpu_ms_per_request``). Per cell: answers/s,
requests/s, p50/p99 latency (wall, send to full response read), the server process's CPU time
per request (/proc), status counts, load average, and the server's resident memory before and
after. Every request is valid: any 5xx is a failure.

Bounded: ``--seconds`` per cell (default 3), at most ``--max-requests`` per cell, cells not
started within ``--time-limit`` seconds (default 360) are skipped and recorded as skipped; the
servers are stopped at the end (also on error). Loopback only. ``--quick``: a ~1 min smoke run.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_serve.py [--quick]``; writes
``benchmarks/results/serve.json`` (``serve_quick.json`` with ``--quick``). The clients share
the machine with the server: on a 2-core machine the numbers are a lower bound of what a
dedicated core serves.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unavailable"


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (from /proc), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _percentiles(xs: list[float]) -> tuple[float, float]:
    return 1e3 * float(np.percentile(xs, 50)), 1e3 * float(np.percentile(xs, 99))


def in_process(model: str, eps: float, n_ref: int, estimator: str, defences: list[str],
               n_lat: int, n_batch: int, n_auto: int) -> dict[str, Any]:
    """Time each defence in-process (the classifier's answer plus the poison): answers per
    second at batch 256 (median of ``n_batch`` batches) and p50/p99 latency of ``n_lat`` batch-1
    answers, each in wall time and in CPU time of this thread (``time.thread_time``); for RG
    also the NumPy step search (``engine="numpy"``, the implementation before the compiled
    one), the largest difference from the per-answer reference search, and ``n_auto`` batch-1
    answers with the default estimator ``auto`` (:func:`auto_estimator`)."""
    from rgaudit.data import load_dataset
    from rgaudit.serve.loading import load_defended

    sys.path.insert(0, str(ROOT / "tests"))
    from poison_reference import rg_reference

    x = load_dataset("digits").X_test.to(torch.float64)
    xb = x[:256]
    out: dict[str, Any] = {}
    runs = [(d, "compiled") for d in defences] + [("rg", "numpy")] * ("rg" in defences)
    for defence, engine in runs:
        dm = load_defended(model, defence=defence, eps=eps, norm="l1",
                           estimator=estimator if defence == "rg" else None)
        clf, po = dm.classifier, dm.poisoner
        po.engine = engine
        gen = torch.Generator().manual_seed(0)
        po(clf.answer(xb), xb, gen)                              # warm-up (and compilation)
        times, cpu = [], []
        for _ in range(n_batch):
            t, c = time.perf_counter(), time.thread_time()
            po(clf.answer(xb), xb, gen)
            times.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - c)
        lat, lat_cpu = [], []
        for i in range(n_lat):
            xi = x[i % len(x)][None]
            t, c = time.perf_counter(), time.thread_time()
            po(clf.answer(xi), xi, gen)
            lat.append(time.perf_counter() - t)
            lat_cpu.append(time.thread_time() - c)
        w50, w99 = _percentiles(lat)
        c50, c99 = _percentiles(lat_cpu)
        row: dict[str, Any] = {
            "defence": defence, "engine": engine, "batches": n_batch, "batch1_answers": n_lat,
            "batch256_seconds_median": float(np.median(times)),
            "batch256_answers_per_s": 256 / float(np.median(times)),
            "batch256_answers_per_cpu_s": 256 / float(np.median(cpu)),
            "batch1_ms_p50": w50, "batch1_ms_p99": w99,
            "batch1_cpu_ms_p50": c50, "batch1_cpu_ms_p99": c99, "loadavg": loadavg()}
        if defence == "rg":
            y = clf.answer(x[:n_ref])
            got = po(y, x[:n_ref]).y_poisoned.numpy()
            want, _, _ = rg_reference(po.fims(y).numpy(), y.numpy(), eps, "l1", "simplex")
            row["reference_answers"] = n_ref
            row["max_abs_diff_vs_reference"] = float(np.abs(got - want).max())
        out[f"{defence}/{engine}"] = row
        print(f"in-process {defence:>6} ({engine:>8}): batch 256 "
              f"{row['batch256_answers_per_s']:6.0f} answers/s wall, "
              f"{row['batch256_answers_per_cpu_s']:6.0f} answers/CPU-s; batch 1 wall p50 "
              f"{w50:.2f} ms p99 {w99:.2f} ms, CPU p50 {c50:.2f} ms p99 {c99:.2f} ms"
              + (f"; max |diff| vs per-answer reference {row['max_abs_diff_vs_reference']:.1e}"
                 if defence == "rg" else "") + f"; load {row['loadavg']}", flush=True)
    if "rg" in defences and n_auto > 0:
        out["rg/auto"] = auto_estimator(model, eps, x, n_auto)
    return out


def auto_estimator(model: str, eps: float, x: torch.Tensor, n: int) -> dict[str, Any]:
    """Batch-1 cost of the RG poison with the library's default generation-FIM estimator
    (``auto``: an MCRG chain per answer on the digits network), on ``n`` answers."""
    from rgaudit.serve.loading import load_defended

    dm = load_defended(model, defence="rg", eps=eps, norm="l1", estimator="auto")
    clf, po = dm.classifier, dm.poisoner
    lat, lat_cpu = [], []
    for i in range(n + 1):
        xi = x[i][None]
        t, c = time.perf_counter(), time.thread_time()
        po(clf.answer(xi), xi)
        if i:                                                    # the first is a warm-up
            lat.append(time.perf_counter() - t)
            lat_cpu.append(time.thread_time() - c)
    row = {"defence": "rg", "estimator": "auto", "batch1_answers": n,
           "batch1_ms_median": 1e3 * float(np.median(lat)),
           "batch1_cpu_ms_median": 1e3 * float(np.median(lat_cpu)), "loadavg": loadavg()}
    print(f"in-process     rg (estimator auto): batch 1 median {row['batch1_ms_median']:.0f} ms "
          f"wall, {row['batch1_cpu_ms_median']:.0f} ms CPU ({n} answers); load {row['loadavg']}",
          flush=True)
    return row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, defence: str, eps: float, log: Path,
                 estimator: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-c", "from rgaudit.cli import main; main()", "serve", model,
           "--defence", defence, "--eps", str(eps), "--norm", "l1", "--port", str(port),
           "--max-batch", "256", "--max-pending", "64", "--queue-timeout", "300",
           "--threads", "1", *(["--estimator", estimator] if defence == "rg" else [])]
    with log.open("ab") as fh:                             # never a pipe: it could fill up
        proc = subprocess.Popen(cmd, stdout=fh, stderr=fh,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


CLIENT = ("http.client.HTTPConnection: one persistent keep-alive connection per client thread, "
          "pre-encoded body, in the benchmark process (it shares the machine's cores with the "
          "server)")


def _post(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request("POST", "/v1/predict", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def load_cell(url: str, body: bytes, batch: int, clients: int, seconds: float,
              max_requests: int) -> dict[str, Any]:
    """``clients`` threads send ``body`` to ``POST /v1/predict`` over keep-alive connections
    (:data:`CLIENT`) for ``seconds`` (each at least once, at most ``max_requests`` in all)."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    lat: list[float] = []
    status: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    count = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        first = True
        while first or time.monotonic() < stop:            # every client sends at least one
            first = False
            with lock:
                if count[0] >= max_requests:
                    break
                count[0] += 1
            t = time.perf_counter()
            try:
                code = _post(conn, body)
            except (OSError, http.client.HTTPException):    # counted, not fatal; reconnect
                code = -1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                status[code] = status.get(code, 0) + 1
        conn.close()

    t0, cpu0 = time.perf_counter(), os.times()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu1 = time.perf_counter() - t0, os.times()
    ok = status.get(200, 0)
    client_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"batch": batch, "clients": clients, "requests": len(lat), "seconds": wall,
            "requests_per_s": len(lat) / wall, "answers_per_s": ok * batch / wall,
            "ms_p50": 1e3 * float(np.percentile(lat, 50)) if lat else float("nan"),
            "ms_p99": 1e3 * float(np.percentile(lat, 99)) if lat else float("nan"),
            "client_cpu_ms_per_request": 1e3 * client_cpu / max(len(lat), 1),
            "status": {str(k): v for k, v in sorted(status.items())},
            "n_5xx": sum(v for k, v in status.items() if k >= 500),
            "n_transport_errors": status.get(-1, 0)}


def http_part(model: str, eps: float, seconds: float, max_requests: int,
              defences: list[str], log: Path, estimator: str, clients_list: list[int],
              deadline: float) -> list[dict[str, Any]]:
    from rgaudit.data import load_dataset

    x = load_dataset("digits").X_test.to(torch.float64).numpy()
    bodies = {b: json.dumps({"inputs": x[:b].tolist()}).encode() for b in (1, 256)}
    out = []
    for defence in defences:
        proc, url = start_server(model, defence, eps, log, estimator)
        try:
            httpx.post(f"{url}/v1/predict", content=bodies[256],
                       headers={"content-type": "application/json"}, timeout=60)
            mem0 = rss_mib(proc.pid)
            cells = []
            for batch in (1, 256):
                for clients in clients_list:
                    if time.monotonic() > deadline:
                        print(f"{defence:>6} batch {batch:>3} clients {clients:>2}: skipped "
                              "(--time-limit reached)", flush=True)
                        cells.append({"batch": batch, "clients": clients, "skipped": True})
                        continue
                    c0 = cpu_seconds(proc.pid)
                    cell = load_cell(url, bodies[batch], batch, clients, seconds, max_requests)
                    c1 = cpu_seconds(proc.pid)
                    cell["loadavg"] = loadavg()
                    cell["wall_s"] = cell["seconds"]
                    if c0 is not None and c1 is not None and c1 > c0:
                        cell["server_cpu_s"] = c1 - c0
                        cell["server_cpu_ms_per_request"] = 1e3 * (c1 - c0) / cell["requests"]
                        cell["answers_per_server_cpu_s"] = (
                            cell["status"].get("200", 0) * batch / (c1 - c0))
                    cells.append(cell)
                    print(f"{defence:>6} batch {batch:>3} clients {clients:>2}: "
                          f"{cell['answers_per_s']:8.1f} answers/s, p50 {cell['ms_p50']:.1f} ms, "
                          f"p99 {cell['ms_p99']:.1f} ms, status {cell['status']}, server CPU "
                          f"{cell.get('server_cpu_ms_per_request', float('nan')):.2f} ms/request, "
                          f"client CPU {cell['client_cpu_ms_per_request']:.2f} ms/request, "
                          f"{cell.get('answers_per_server_cpu_s', float('nan')):.0f} "
                          "answers/server-CPU-s, "
                          f"load {cell['loadavg']}", flush=True)
            out.append({"defence": defence, "eps": 0.0 if defence == "none" else eps,
                        "rss_mib_before": mem0, "rss_mib_after": rss_mib(proc.pid),
                        "cells": cells})
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per HTTP cell")
    ap.add_argument("--max-requests", type=int, default=5000, help="requests per HTTP cell")
    ap.add_argument("--reference-answers", type=int, default=64)
    ap.add_argument("--defence", action="append", default=None,
                    help="defences served (repeatable; default none, random, rg)")
    ap.add_argument("--estimator", default="mean-field",
                    help="generation-FIM estimator of the rg defence (the published figures: "
                    "mean-field; the library default 'auto' runs an MCRG chain per answer on the "
                    "digits network, orders of magnitude slower)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run (~1 min): 1 s cells, 1 and 4 clients, 100 batch-1 "
                    "answers, 16 reference answers; writes serve_quick.json unless --out")
    ap.add_argument("--time-limit", type=float, default=360.0,
                    help="HTTP cells not started within this many seconds of the start are "
                    "skipped (recorded as such)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not (0 < args.seconds <= 30 and 1 <= args.max_requests <= 100_000):
        ap.error("--seconds must lie in (0, 30] and --max-requests in [1, 100000]")
    if args.quick:
        args.seconds, args.reference_answers = min(args.seconds, 1.0), 16
    out = Path(args.out or HERE / "results" / ("serve_quick.json" if args.quick
                                               else "serve.json"))
    torch.set_num_threads(1)
    t0, m0 = time.time(), time.monotonic()
    cpu0 = os.times()
    load0 = loadavg()
    defences = args.defence or ["none", "random", "rg"]
    lib = in_process(args.model, args.eps, args.reference_answers, args.estimator, defences,
                     n_lat=100 if args.quick else 300, n_batch=3 if args.quick else 5,
                     n_auto=2 if args.quick else 5)
    log = Path(tempfile.gettempdir()) / f"rgaudit-bench-serve-{os.getpid()}.log"
    log.write_text("")
    print(f"server output: {log}", flush=True)
    http = http_part(args.model, args.eps, args.seconds, args.max_requests, defences, log,
                     args.estimator, [1, 4] if args.quick else [1, 4, 16],
                     m0 + args.time_limit)
    cpu1 = os.times()
    cells = [c for d in http for c in d["cells"] if not c.get("skipped")]
    result = {"benchmark": "serve", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "quick": args.quick,
              "python": platform.python_version(), "torch": torch.__version__,
              "numpy": np.__version__, "cpus": os.cpu_count(),
              "loadavg_start": load0, "loadavg_end": loadavg(),
              "wall_seconds": time.time() - t0,
              "this_process_cpu_seconds": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
              "rg_estimator": args.estimator, "client": CLIENT, "in_process": lib, "http": http,
              "skipped_cells": sum(c.get("skipped", False) for d in http for c in d["cells"]),
              "zero_5xx": all(c["n_5xx"] == 0 and c["n_transport_errors"] == 0 for c in cells)}
    from rgaudit.serve.runner import http_stack

    result["http_stack"] = "uvicorn, {} parser, {} event loop".format(*http_stack())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} after {result['wall_seconds']:.0f} s; zero 5xx: {result['zero_5xx']}; "
          f"load {result['loadavg_end']}")
    return 0 if result["zero_5xx"] else 1


if __name__ == "__main__":
    sys.exit(main())
