"""Scoped CPU thread limits covering torch's intra-op pool AND the BLAS/OpenMP pools.

Why not ``torch.set_num_threads``
---------------------------------
1. It does not reach numpy/scipy's BLAS and LAPACK (OpenBLAS): on a 2-core machine shared with
   other jobs, an unlimited LAPACK call in the audit's solves was measured 300× slower than
   single-threaded (oversubscription).
2. **It corrupts torch's batched LU.** With the torch 2.13 CPU wheel (MKL 2024.2, GNU OpenMP),
   any call ``torch.set_num_threads(n)`` with ``n ≥ 2`` — even to the value already in force —
   makes every later batched LU in the process wrong: ``torch.linalg.lu_factor`` returns
   garbage pivots for batches of ≥ 3 matrices of order ≳ 100, so ``torch.linalg.solve`` and
   ``inv`` raise "Pivots given to lu_solve must all be greater or equal to 1" (MKL prints
   "Parameter 6 was incorrect on entry to DLASWP") and ``slogdet`` returns wrong values
   *silently*. Cholesky, ``eigh``, SVD and QR are unaffected, and so is ``n = 1``.
   Reproduce: ``benchmarks/lapack_threads_probe.py``. This was the "threaded LAPACK" failure
   of earlier versions (docs/design.md).

So :func:`limit_threads` never calls it: ``threadpoolctl.threadpool_limits`` sets the OpenMP
thread count of torch's own ``libgomp`` (torch's intra-op pool and MKL follow it) and the
OpenBLAS pool of numpy/scipy, and restores every previous setting when the block exits, also on
an exception.

Scope: OpenMP thread counts belong to the calling thread (the OpenBLAS count is process-wide).
A limit set in one thread does not reach threads started elsewhere (a web server's worker
threads): such a thread calls :func:`pin_thread` before it computes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pinned = threading.local()


def _check(n: int) -> int:
    if int(n) < 1:
        raise ValueError(f"thread count must be >= 1 (or None for no limit), got {n}")
    return int(n)


def check_threads_option(n: int | None, option: str = "--threads") -> None:
    """A study config's thread setting: None (no limit) or ≥ 1; ``ValueError`` naming
    ``option`` otherwise (the configs of the audit, the depth study and the attack study)."""
    if n is not None and int(n) < 1:
        raise ValueError(f"{option} must be ≥ 1, got {n!r}")


@contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """Limit torch, BLAS and OpenMP to ``n`` threads inside the ``with`` block.

    Parameters
    ----------
    n : int or None
        Thread count (>= 1); ``None`` changes nothing.

    Raises
    ------
    ValueError
        If ``n`` is not None and < 1.
    """
    if n is None:
        yield
        return
    k = _check(n)
    import torch  # noqa: F401  (loads torch's libgomp, so threadpoolctl finds and limits it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=k):
        yield


def pin_thread(n: int | None) -> None:
    """Limit the calling thread (OpenMP: torch, MKL) and the BLAS pool to ``n`` threads for
    the rest of the thread's life; free when the thread is already pinned to ``n``.

    Parameters
    ----------
    n : int or None
        Thread count (>= 1); ``None`` changes nothing.
    """
    if n is None or getattr(_pinned, "n", None) == n:
        return
    k = _check(n)
    import torch  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=k)  # not a context: stays in force for this thread
    _pinned.n = k
