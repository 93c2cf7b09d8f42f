"""Data loaders reject bad labels, splits, headers and shapes with a DatasetError that says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rgaudit.data import load_dataset
from rgaudit.data.dataset import make_dataset
from rgaudit.data.idx import MAGIC_IMAGES, read_idx
from rgaudit.errors import DatasetError


def _npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


X8 = np.full((8, 3), 0.5)


def test_n_classes_come_from_training_labels(tmp_path):
    ds = load_dataset(_npz(tmp_path, X=X8, y=np.arange(8) % 3, X_test=X8[:2],
                           y_test=np.array([0, 2])))
    assert ds.n_classes == 3


def test_test_label_absent_from_training(tmp_path):
    with pytest.raises(DatasetError, match=r"test label\(s\) \{2\} never occur"):
        load_dataset(_npz(tmp_path, X=X8, y=np.arange(8) % 2, X_test=X8[:2],
                          y_test=np.array([0, 2])))


def test_sparse_labels_rejected(tmp_path):
    y = np.array([0, 1000, 2000] * 4)
    with pytest.raises(DatasetError, match=r"not 0 … 2.*relabel"):
        load_dataset(_npz(tmp_path, X=np.full((12, 3), 0.5), y=y))


@pytest.mark.parametrize("with_test", [True, False])
def test_single_class_rejected(tmp_path, with_test):
    extra = {"X_test": X8[:2], "y_test": np.zeros(2, dtype=int)} if with_test else {}
    with pytest.raises(DatasetError, match="at least two"):
        load_dataset(_npz(tmp_path, X=X8, y=np.zeros(8, dtype=int), **extra))


def test_single_class_rejected_with_fixed_n_classes():
    y = np.zeros(4, dtype=np.int64)
    with pytest.raises(DatasetError, match="at least two"):
        make_dataset("idx:x", np.zeros((4, 4)), y, np.zeros((2, 4)), y[:2], n_classes=10)


def test_too_few_samples_per_class_for_split(tmp_path):
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    spec = _npz(tmp_path, X=X8, y=y)
    with pytest.raises(DatasetError, match=r"d\.npz.*class 1 has 1 sample.*at least 2"):
        load_dataset(spec)


def test_too_few_samples_for_all_classes_on_both_sides(tmp_path):
    y = np.arange(8) % 4  # 4 classes, 2 test samples
    with pytest.raises(DatasetError, match=r"d\.npz.*need at least 16 samples"):
        load_dataset(_npz(tmp_path, X=X8, y=y))


def test_idx_header_overflow(tmp_path):
    path = tmp_path / "img"
    dims = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    path.write_bytes(MAGIC_IMAGES.to_bytes(4, "big")
                     + b"".join(d.to_bytes(4, "big") for d in dims) + bytes(16))
    with pytest.raises(DatasetError, match=str(0xFFFFFFFF**3)):
        read_idx(path, MAGIC_IMAGES)


@pytest.mark.parametrize("shape", [np.array([[2, 2]]), np.array([2.0, 2.0]), np.array([4, -1]),
                                   np.array([0, 4]), np.array([], dtype=int)])
def test_npz_shape_must_be_1d_positive_ints(tmp_path, shape):
    X = np.full((8, 4), 0.5)
    with pytest.raises(DatasetError, match="1-D array of positive integers"):
        load_dataset(_npz(tmp_path, X=X, y=np.arange(8) % 2, X_test=X[:2],
                          y_test=np.array([0, 1]), shape=shape))


def test_bool_features_suggest_float(tmp_path):
    X = np.zeros((8, 3), dtype=bool)
    with pytest.raises(DatasetError, match="cast it to float"):
        load_dataset(_npz(tmp_path, X=X, y=np.arange(8) % 2))
