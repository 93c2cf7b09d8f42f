"""Library code leaves the caller's global random state as it found it."""

import numpy as np
import torch

from rgaudit.defence.cloning_attacks import scoped_global_rng


def test_scoped_global_rng_seeds_inside_and_restores_outside():
    torch.manual_seed(123)
    np.random.seed(456)  # noqa: NPY002
    expect_t = torch.rand(3)
    expect_n = np.random.rand(3)  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(456)  # noqa: NPY002
    with scoped_global_rng(1, 2):
        inside_n = np.random.rand(2)  # noqa: NPY002
        inside_t = torch.rand(2)
    # the caller's streams continue as if nothing had happened
    torch.testing.assert_close(torch.rand(3), expect_t)
    np.testing.assert_array_equal(np.random.rand(3), expect_n)  # noqa: NPY002
    # and the scope itself is reproducible
    with scoped_global_rng(1, 2):
        np.testing.assert_array_equal(np.random.rand(2), inside_n)  # noqa: NPY002
        torch.testing.assert_close(torch.rand(2), inside_t)
