"""Time from SIGINT to the one-line message and to exit of a long ``rgaudit ising`` run.

Usage: ``PYTHONPATH=src python benchmarks/sigint_latency.py [--repeats N]``; prints one line per
repeat with the exit status, both latencies and ``/proc/loadavg`` (docs/design.md, "Memory and
time guards").
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = ["ising", "--L", "16", "--levels", "2", "--chains", "4", "--sweeps", "1000000"]


def measure(out: Path, err_path: Path) -> tuple[int, float | None, float]:
    """Run the command, send SIGINT 5 s after its run folder appears, time message and exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from rgaudit.cli import main; main()", *COMMAND, "--out",
             str(out)], env=env, stdout=subprocess.DEVNULL, stderr=err,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        while not (out / ".rgaudit-run.json").exists():
            time.sleep(0.1)
        time.sleep(5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        t_msg = None
        while proc.poll() is None:
            if t_msg is None and "interrupted" in err_path.read_text():
                t_msg = time.monotonic() - sent
            time.sleep(0.05)
        t_exit = time.monotonic() - sent
    if t_msg is None and "interrupted" in err_path.read_text():
        t_msg = t_exit
    return int(proc.returncode), t_msg, t_exit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            out = Path(tmp) / "run"
            shutil.rmtree(out, ignore_errors=True)
            code, t_msg, t_exit = measure(out, Path(tmp) / "stderr.txt")
            with open("/proc/loadavg") as fh:
                load = fh.read().strip()
            msg = f"{t_msg:.2f} s" if t_msg is not None else "none"
            print(f"repeat {rep}: exit {code}, message after {msg}, exit after {t_exit:.2f} s; "
                  f"loadavg {load}", flush=True)


if __name__ == "__main__":
    main()
