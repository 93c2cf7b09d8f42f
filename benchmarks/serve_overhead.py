"""Where the time of one batch-1 request goes over loopback HTTP (a diagnostic for issue 12).

Starts one server process per configuration (the default digits model behind ``--defence``,
``rgaudit.serve.app.create_app`` on uvicorn with the chosen HTTP parser and event loop), sends
``--requests`` sequential batch-1 requests from one client in this process over one persistent
connection (``http.client.HTTPConnection``, keep-alive, a pre-encoded body), and reports, per
configuration: wall latency p50/p99 seen by the client, the server process's CPU time per
request (``/proc/<pid>/stat`` user+system), this client's CPU time per request, and with
``--stamps`` the server's own split of each request (an ASGI timing middleware in the server
process: time in the application vs the whole request, thread CPU time of the event loop).

The client shares the machine's cores with the server. Loopback only; bounded by
``--requests`` and ``--seconds`` per configuration.

Run (the figures of docs/serving.md, ~6 min): ``OMP_NUM_THREADS=1 .venv/bin/python
benchmarks/serve_overhead.py --requests 1500 --seconds 6 --repeat 3 --defence rg --defence none
--config httptools/uvloop --config h11/asyncio --variant default --variant nofast+noinline
--out benchmarks/results/serve_overhead.jsonl``. Variants: ``default`` (what is served),
``nofast`` (the FastAPI route instead of the fast path), ``noinline`` (every computation in the
worker thread). ``--profile FILE`` writes a cProfile (CPU time) of the event-loop thread;
``--client httpx`` uses a reused ``httpx.Client`` (session 3's benchmark client) instead of
``http.client``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent

SERVER = r"""
import sys, time, json, os
import uvicorn
from rgaudit.serve.loading import load_defended
from rgaudit.serve.app import create_app
from rgaudit.serve.runner import uvicorn_config
from rgaudit.serve.settings import ServeSettings
from rgaudit.threads import pin_thread
defence, port, http_impl, loop, profile, stamps, variant = sys.argv[1:8]
pin_thread(1)
dm = load_defended("default", defence=defence, eps=0.3, norm="l1",
                   estimator="mean-field" if defence == "rg" else None)
dm.measure(2)
inline = 0 if "noinline" in variant else 1
app = create_app(dm, ServeSettings(max_pending=64, queue_timeout_s=300, inline_max_batch=inline),
                 threads=1)
if "noroute" not in variant and "nofast" in variant:      # the FastAPI route instead
    from rgaudit.serve.app import PredictFastPath
    app.user_middleware = [m for m in app.user_middleware if m.cls is not PredictFastPath]
import gc
gcs = {"n": [0, 0, 0], "s": [0.0, 0.0, 0.0], "max_s": [0.0, 0.0, 0.0]}
_gc_t = [0.0]
def _gc_cb(phase, info):
    if phase == "start":
        _gc_t[0] = time.perf_counter()
    else:
        g, dt = info["generation"], time.perf_counter() - _gc_t[0]
        gcs["n"][g] += 1
        gcs["s"][g] += dt
        gcs["max_s"][g] = max(gcs["max_s"][g], dt)
gc.callbacks.append(_gc_cb)
if stamps == "1":
    inner = app
    acc = {"n": 0, "app_s": 0.0, "loop_cpu_s": 0.0}
    async def timed(scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/v1/predict":
            if scope["type"] == "http" and scope["path"] == "/stamps":
                body = json.dumps({**acc, "gc": gcs}).encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
            return await inner(scope, receive, send)
        t, c = time.perf_counter(), time.thread_time()
        await inner(scope, receive, send)
        acc["n"] += 1
        acc["app_s"] += time.perf_counter() - t
        acc["loop_cpu_s"] += time.thread_time() - c
    app_run = timed
else:
    app_run = app
cfg = uvicorn_config(app_run, "127.0.0.1", int(port), http=http_impl, loop=loop)
server = uvicorn.Server(cfg)
if profile != "-":
    import cProfile, signal
    prof = cProfile.Profile(time.thread_time)   # CPU time of the event loop thread
    def stop(*_):
        server.should_exit = True
    signal.signal(signal.SIGTERM, stop)
    prof.enable()
    server.run()
    prof.disable()
    prof.dump_stats(profile)
else:
    server.run()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user+system) of each thread of process ``pid``, keyed ``name/tid``."""
    out = {}
    tck = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat.rsplit(")", 1)[1].split()
        out[f"{name}/{task.name}"] = (int(f[11]) + int(f[12])) / tck
    return out


def request(conn: http.client.HTTPConnection | httpx.Client, body: bytes) -> int:
    if isinstance(conn, httpx.Client):                 # session 3's benchmark client
        return conn.post("/v1/predict", content=body,
                         headers={"content-type": "application/json"}).status_code
    conn.request("POST", "/v1/predict", body, {"content-type": "application/json"})
    r = conn.getresponse()
    r.read()
    return r.status


def run(defence: str, http_impl: str, loop: str, n: int, seconds: float, body: bytes,
        profile: str, stamps: bool, variant: str, client: str) -> dict[str, object]:
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"rgaudit-overhead-{os.getpid()}.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, defence, str(port), http_impl,
                                 loop, profile, "1" if stamps else "0", variant],
                                stdout=fh, stderr=fh,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
            try:
                conn: http.client.HTTPConnection | httpx.Client = (
                    httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
                    if client == "httpx" else
                    http.client.HTTPConnection("127.0.0.1", port, timeout=60))
                if request(conn, body) == 200:
                    break
            except (OSError, httpx.HTTPError):
                time.sleep(0.2)
        for _ in range(50):                                   # warm-up
            request(conn, body)
        lat, codes = [], {}
        c0, cc0 = cpu_seconds(proc.pid), time.process_time()
        th0 = thread_cpu(proc.pid)
        stop = time.monotonic() + seconds
        for _ in range(n):
            t = time.perf_counter()
            code = request(conn, body)
            lat.append(time.perf_counter() - t)
            codes[code] = codes.get(code, 0) + 1
            if time.monotonic() > stop:
                break
        c1, cc1 = cpu_seconds(proc.pid), time.process_time()
        th1 = thread_cpu(proc.pid)
        row: dict[str, object] = {
            "defence": defence, "http": http_impl, "loop": loop, "variant": variant,
            "client": client, "requests": len(lat),
            "ms_p50": 1e3 * float(np.percentile(lat, 50)),
            "ms_p99": 1e3 * float(np.percentile(lat, 99)),
            "ms_mean": 1e3 * float(np.mean(lat)),
            "server_cpu_ms_per_request": 1e3 * (c1 - c0) / len(lat),
            "client_cpu_ms_per_request": 1e3 * (cc1 - cc0) / len(lat),
            "server_thread_cpu_ms_per_request": {
                k: round(1e3 * (v - th0.get(k, 0.0)) / len(lat), 3) for k, v in th1.items()
                if v - th0.get(k, 0.0) > 0},
            "status": codes, "loadavg": Path("/proc/loadavg").read_text().strip()}
        if stamps:
            st = json.loads(httpx.get(f"http://127.0.0.1:{port}/stamps").content)
            row["server_app_ms_mean"] = 1e3 * st["app_s"] / st["n"]
            row["server_loop_cpu_ms_mean"] = 1e3 * st["loop_cpu_s"] / st["n"]
            row["server_gc"] = st["gc"]    # collections per generation, seconds, longest
        conn.close()
        return row
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defence", action="append", default=None)
    ap.add_argument("--config", action="append", default=None,
                    help="HTTP/LOOP, e.g. httptools/uvloop (repeatable)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--variant", action="append", default=None,
                    help="server variant: default, nofast (FastAPI route instead of the fast "
                    "path), noinline (always the worker thread), nofast+noinline (repeatable)")
    ap.add_argument("--client", choices=["http.client", "httpx"], default="http.client",
                    help="the client: the standard library's (default) or a reused httpx.Client "
                    "(what bench_serve.py used in session 3)")
    ap.add_argument("--out", default=None, help="append the rows (JSON lines) to this file")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds over all configurations (alternating)")
    ap.add_argument("--stamps", action="store_true", help="ASGI timing middleware")
    ap.add_argument("--profile", default="-", help="cProfile output path of the server")
    args = ap.parse_args()
    import torch

    from rgaudit.data import load_dataset

    x = load_dataset("digits").X_test.to(torch.float64).numpy()
    body = json.dumps({"inputs": x[:1].tolist()}).encode()
    for rep in range(args.repeat):            # configurations alternate: load drifts
        for defence in args.defence or ["none", "rg"]:
            for cfg in args.config or ["h11/asyncio", "httptools/uvloop"]:
                for variant in args.variant or ["default"]:
                    http_impl, loop = cfg.split("/")
                    row = run(defence, http_impl, loop, args.requests, args.seconds, body,
                              args.profile, args.stamps, variant, args.client)
                    line = json.dumps({"repeat": rep, **row})
                    print(line, flush=True)
                    if args.out:
                        with open(args.out, "a") as fh:
                            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
