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


def test_atomic_write_gives_ordinary_file_permissions(tmp_path):
    import os

    from rgaudit.report.io import atomic_write_text

    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(umask)
    assert path.read_text() == "{}"
    assert (path.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind
