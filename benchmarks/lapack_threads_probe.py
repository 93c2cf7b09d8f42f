"""Does torch's batched LU survive thread-count changes? (docs/design.md, rgaudit/threads.py)

Runs one fresh interpreter per scenario (thread settings are process state) and reports, for a
batch of 60 well-conditioned 255 × 255 float64 matrices, whether ``torch.linalg.lu_factor``
gives valid pivots and ``torch.linalg.solve`` the per-matrix answer after:
``none`` (no change), ``limit_threads`` (rgaudit's scoped limit to 1, then restored),
``torch.set_num_threads(1)`` and ``torch.set_num_threads(2)``.

    OMP_NUM_THREADS=2 python benchmarks/lapack_threads_probe.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, torch
mode = sys.argv[1]
g = torch.Generator().manual_seed(0)
a = torch.randn(60, 255, 255, dtype=torch.float64, generator=g)
c = a @ a.transpose(-1, -2) + torch.eye(255, dtype=torch.float64)
d = torch.randn(60, 255, 4, dtype=torch.float64, generator=g)
ref = torch.stack([torch.linalg.solve(ci, di) for ci, di in zip(c, d)])
if mode == "limit_threads":
    from rgaudit.threads import limit_threads
    with limit_threads(1):
        pass
elif mode.startswith("set"):
    torch.set_num_threads(int(mode[3:]))
piv_ok = bool(torch.linalg.lu_factor(c).pivots.min() >= 1)
try:
    err = float((torch.linalg.solve(c, d) - ref).abs().max())
except RuntimeError as e:
    err = str(e).splitlines()[0][:60]
print(json.dumps({"mode": mode, "threads": torch.get_num_threads(), "pivots_valid": piv_ok,
                  "solve_max_error": err}))
"""


def main() -> None:
    rows = []
    for mode in ("none", "limit_threads", "set1", "set2"):
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True,
                             text=True, env=os.environ.copy(), check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1])


if __name__ == "__main__":
    main()
