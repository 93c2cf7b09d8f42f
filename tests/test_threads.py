"""The scoped thread limiter covers torch and BLAS and restores both, also on errors."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from rgaudit.threads import limit_threads, pin_thread


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_limits_torch_and_blas_inside_and_restores_after():
    np.linalg.svd(np.ones((4, 4)))  # make sure numpy's BLAS is loaded
    # start from 2 threads everywhere, so that the limit to 1 is visible (CI sets 1 by env);
    # never torch.set_num_threads(2): it breaks torch's batched LU (rgaudit/threads.py)
    with threadpool_limits(limits=2):
        blas_before = _blas_threads()
        assert blas_before and max(blas_before) == 2, threadpool_info()
        assert torch.get_num_threads() == 2
        with limit_threads(1):
            assert torch.get_num_threads() == 1
            assert _blas_threads() == [1] * len(blas_before)
        assert torch.get_num_threads() == 2
        assert _blas_threads() == blas_before


def test_restores_on_exception_and_none_is_a_no_op():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"), limit_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with limit_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match=">= 1"), limit_threads(0):
        pass


_PROBE = r"""
import torch
from rgaudit.threads import limit_threads, pin_thread
g = torch.Generator().manual_seed(0)
a = torch.randn(60, 255, 255, dtype=torch.float64, generator=g)
c = a @ a.transpose(-1, -2) + torch.eye(255, dtype=torch.float64)
d = torch.randn(60, 255, 3, dtype=torch.float64, generator=g)
ref = torch.stack([torch.linalg.solve(ci, di) for ci, di in zip(c, d)])
assert torch.get_num_threads() == 2
with limit_threads(1):
    assert torch.get_num_threads() == 1
    x1 = torch.linalg.solve(c, d)
assert torch.get_num_threads() == 2
x2 = torch.linalg.solve(c, d)          # raised "Pivots given to lu_solve ..." before the fix
pin_thread(1)
assert torch.get_num_threads() == 1
x3 = torch.linalg.solve(c, d)
for x in (x1, x2, x3):
    assert float((x - ref).abs().max()) < 1e-10
print("ok")
"""


def test_batched_lu_is_sound_after_a_limit_with_two_threads():
    """Regression: the limiter used torch.set_num_threads, which (torch 2.13 + MKL) corrupts
    every later batched LU of the process once the count is set to 2 or more."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_pin_thread_stays_for_the_thread_only():
    seen: list[int] = []

    def worker() -> None:
        pin_thread(1)
        seen.append(torch.get_num_threads())
        pin_thread(1)                       # again: free, still 1
        seen.append(torch.get_num_threads())

    with threadpool_limits(limits=2):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert seen == [1, 1]
        assert torch.get_num_threads() == 2   # the calling thread is untouched
    with pytest.raises(ValueError, match=">= 1"):
        pin_thread(0)
