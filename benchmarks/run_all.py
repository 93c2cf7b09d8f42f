"""Run every benchmark in this folder, one process each; results land in benchmarks/results/.

Usage: ``make bench`` or ``python benchmarks/run_all.py [NAME ...]`` (mcrg, fim, relu, ising,
serve, ray, scale).
Benchmarks are measurements, not tests: run them on an otherwise idle machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("mcrg", "fim", "relu", "ising", "serve", "ray", "scale")


def main(argv: list[str]) -> int:
    names = argv or list(NAMES)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(NAMES)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        t0 = time.perf_counter()
        print(f"== bench_{name}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py")])
        print(f"== bench_{name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
