"""Scoped CPU thread limits covering torch's intra-op pool AND the BLAS/OpenMP pools.

``torch.set_num_threads`` alone does not reach numpy/scipy's BLAS and LAPACK (OpenBLAS, MKL):
on a 2-core machine shared with other jobs, an unlimited LAPACK call in the audit's solves was
measured 300× slower than single-threaded (oversubscription). :func:`limit_threads` limits both
— BLAS/OpenMP through ``threadpoolctl.threadpool_limits`` — and restores every previous setting
when the block exits, also on an exception, so no library function leaves the caller's thread
counts changed.

Thread counts are process-global: while one block is active, other Python threads of the same
process see the limit too (this is a property of torch and of the BLAS libraries, not of this
helper). Nested blocks restore correctly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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
    if int(n) < 1:
        raise ValueError(f"thread count must be >= 1 (or None for no limit), got {n}")
    import torch
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    with threadpool_limits(limits=int(n)):
        torch.set_num_threads(int(n))
        try:
            yield
        finally:
            torch.set_num_threads(old)
