"""The scoped thread limiter covers torch and BLAS and restores both, also on errors."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from rgaudit.threads import limit_threads


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_limits_torch_and_blas_inside_and_restores_after():
    np.linalg.svd(np.ones((4, 4)))  # make sure numpy's BLAS is loaded
    old = torch.get_num_threads()
    # start from 2 threads everywhere, so that the limit to 1 is visible (CI sets 1 by env)
    with threadpool_limits(limits=2):
        torch.set_num_threads(2)
        try:
            blas_before = _blas_threads()
            assert blas_before and max(blas_before) == 2, threadpool_info()
            with limit_threads(1):
                assert torch.get_num_threads() == 1
                assert _blas_threads() == [1] * len(blas_before)
            assert torch.get_num_threads() == 2
            assert _blas_threads() == blas_before
        finally:
            torch.set_num_threads(old)


def test_restores_on_exception_and_none_is_a_no_op():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"), limit_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with limit_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match=">= 1"), limit_threads(0):
        pass
