"""The memory guards' estimates against exact counts and measured peaks (issue 14 item 8).

The refusals in ``test_hostile_inputs.py`` are only as good as the estimates behind them. Here
each estimate is compared with the exact quantity it predicts: operator counts with the basis
the engine builds, and loader estimates with the peak of traced allocations (``tracemalloc``
sees numpy's buffers). An estimate must be an upper bound on the measured peak.
"""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from rgaudit.errors import ResourceError, UsageError
from rgaudit.guards import (
    MAX_LIST_VALUES,
    check_memory,
    check_seed,
    expand_int_list,
    operator_count,
    parse_memory,
    set_memory_limit,
)


@pytest.mark.parametrize("n", range(2, 9))
@pytest.mark.parametrize("spec", ["singles", "pairs", "pairs:3", "pairs:100", "order:1",
                                  "order:2", "order:3", "full"])
def test_operator_count_matches_the_basis_the_engine_builds(spec: str, n: int) -> None:
    from rgaudit.rg.operators import parse_basis

    pilot = (torch.rand(64, n, generator=torch.Generator().manual_seed(n)) > 0.5).float()
    assert operator_count(spec, n) == parse_basis(spec, n, pilot=pilot).size


def test_operator_count_is_exact_for_huge_layers() -> None:
    assert operator_count("full", 100) == 2**100 - 1
    assert operator_count("pairs", 10**6) == 10**6 + 10**6 * (10**6 - 1) // 2


def _peak(fn) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_bars_estimate_bounds_the_measured_peak() -> None:
    from rgaudit.data.bars import load_bars

    n, samples = 16, 3000
    peak = _peak(lambda: load_bars(n, samples))
    assert peak <= 24 * samples * n * n, peak


def test_npz_estimate_bounds_the_measured_peak(tmp_path: Path) -> None:
    from rgaudit.data.npz import NPZ_MEMORY_FACTOR, load_npz

    rng = np.random.default_rng(0)
    X = rng.random((4000, 64))
    y = np.arange(4000) % 4
    np.savez(tmp_path / "d.npz", X=X, y=y)
    peak = _peak(lambda: load_npz(tmp_path / "d.npz"))
    assert peak <= NPZ_MEMORY_FACTOR * (X.nbytes + y.nbytes), peak


def test_idx_estimate_bounds_the_measured_peak(tmp_path: Path) -> None:
    from rgaudit.data.idx import IDX_MEMORY_FACTOR, MAGIC_IMAGES, read_idx

    dims = (3000, 28, 28)
    payload = bytes(np.random.default_rng(0).integers(0, 256, size=np.prod(dims), dtype=np.uint8))
    head = MAGIC_IMAGES.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    (tmp_path / "img.gz").write_bytes(gzip.compress(head + payload))
    peak = _peak(lambda: read_idx(tmp_path / "img.gz", MAGIC_IMAGES))
    assert peak <= IDX_MEMORY_FACTOR * len(payload), peak


def test_limit_sources_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGAUDIT_MAX_MEMORY", "1M")
    with pytest.raises(ResourceError, match="2 MiB of memory, over the limit of 1 MiB"):
        check_memory(2 * 2**20, what="x")
    set_memory_limit(4 * 2**20)  # --max-memory wins over the environment
    try:
        check_memory(2 * 2**20, what="x")
    finally:
        set_memory_limit(None)
    with pytest.raises(ResourceError, match="unbounded|over the limit"):
        check_memory(float("nan"), what="x")
    with pytest.raises(ResourceError):
        check_memory(2**2000, what="x")  # an exact Python int far beyond float range


@pytest.mark.parametrize("text, value", [("4G", 4 * 2**30), ("512M", 512 * 2**20),
                                         ("1.5GiB", int(1.5 * 2**30)), ("2GB", 2 * 10**9),
                                         ("1000", 1000)])
def test_parse_memory(text: str, value: int) -> None:
    assert parse_memory(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "1e30T", "4X"])
def test_parse_memory_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="--max-memory"):
        parse_memory(text)


def test_int_lists_are_bounded_before_expansion() -> None:
    assert expand_int_list("1-3,8", "--dims") == (1, 2, 3, 8)
    assert expand_int_list("-2", "--x") == (-2,)
    with pytest.raises(UsageError, match="over the bound"):
        expand_int_list("1-10000000000", "--depths")  # instant: never builds the range
    with pytest.raises(UsageError, match="more than"):
        expand_int_list(",".join(["1"] * (MAX_LIST_VALUES + 1)), "--dims")


def test_seed_range_names_the_option() -> None:
    assert check_seed(2**63 - 1) == 2**63 - 1
    for bad in (-1, 2**63, 2**64):
        with pytest.raises(UsageError, match="--seed"):
            check_seed(bad)
