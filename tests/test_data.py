"""Data loaders on small files written here, and rejection of malformed ones."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from rgaudit.data import Dataset, load_dataset
from rgaudit.data.bars import bars_and_stripes
from rgaudit.errors import DatasetError

RNG = np.random.default_rng(0)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0000080N, big-endian dims, payload)."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, *, gz: bool, n_train: int = 20, n_test: int = 10,
                     side: int = 4, overrides: dict[str, bytes] | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        data = (overrides or {}).get(name, idx_bytes(array))
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_folder(tmp_path / "mnist", gz=gz)
    ds = load_dataset(f"idx:{tmp_path / 'mnist'}")
    assert isinstance(ds, Dataset)
    assert ds.X_train.shape == (20, 16) and ds.X_test.shape == (10, 16)
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.shape == (4, 4) and ds.n_classes == 10
    expected = arrays["train-images-idx3-ubyte"].reshape(20, 16) / 255.0
    np.testing.assert_allclose(ds.X_train.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.to_dict()["n_train"] == 20


def test_idx_wrong_magic(tmp_path: Path) -> None:
    bad = idx_bytes(RNG.integers(0, 256, (20, 4, 4)), magic=0x00000903)
    write_idx_folder(tmp_path, gz=False, overrides={"train-images-idx3-ubyte": bad})
    with pytest.raises(DatasetError, match="magic number 0x00000903, expected 0x00000803"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_labels_file_as_images(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=True, overrides={
        "t10k-images-idx3-ubyte": idx_bytes(np.zeros(10, dtype=np.uint8))})
    with pytest.raises(DatasetError, match="magic number"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_truncated_payload(tmp_path: Path) -> None:
    good = idx_bytes(RNG.integers(0, 256, (20, 4, 4)))
    write_idx_folder(tmp_path, gz=False, overrides={"train-images-idx3-ubyte": good[:-7]})
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_inconsistent_sizes(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False, overrides={
        "train-labels-idx1-ubyte": idx_bytes(np.arange(19) % 10)})
    with pytest.raises(DatasetError, match="20 train images but 19 train labels"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False, overrides={
        "t10k-labels-idx1-ubyte": idx_bytes(np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12]))})
    with pytest.raises(DatasetError, match="label 12 out of range 0 … 9"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_missing_file_and_folder(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset(f"idx:{tmp_path}")
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(f"idx:{tmp_path / 'nope'}")


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=True)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:30])
    with pytest.raises(DatasetError, match="corrupt gzip"):
        load_dataset(f"idx:{tmp_path}")


def test_npz_with_and_without_test_split(tmp_path: Path) -> None:
    X = RNG.random((40, 6)).astype(np.float32)
    y = np.arange(40) % 4
    np.savez(tmp_path / "a.npz", X=X, y=y)
    ds = load_dataset(f"npz:{tmp_path / 'a.npz'}", seed=3)
    assert ds.X_train.shape == (30, 6) and ds.X_test.shape == (10, 6)
    assert ds.n_classes == 4 and ds.shape == (6,)
    assert sorted(np.bincount(ds.y_test.numpy()).tolist()) == [2, 2, 3, 3]  # stratified
    again = load_dataset(f"npz:{tmp_path / 'a.npz'}", seed=3)
    assert torch.equal(ds.X_train, again.X_train)  # the split is a function of the seed
    np.savez(tmp_path / "b.npz", X=X[:30], y=y[:30], X_test=X[30:], y_test=y[30:],
             shape=np.array([2, 3]))
    ds = load_dataset(f"npz:{tmp_path / 'b.npz'}")
    assert ds.shape == (2, 3)
    np.testing.assert_array_equal(ds.X_test.numpy(), X[30:])


@pytest.mark.parametrize(("arrays", "message"), [
    ({"X": np.full((8, 3), 2.0), "y": np.arange(8) % 2}, r"values must lie in \[0, 1\]"),
    ({"X": np.full((8, 3), np.nan), "y": np.arange(8) % 2}, "NaN or inf"),
    ({"X": np.zeros((8, 3, 2)), "y": np.arange(8) % 2}, "expected a non-empty"),
    ({"X": np.zeros((8, 3)), "y": np.arange(7) % 2}, "7 labels for 8 samples"),
    ({"X": np.zeros((8, 3)), "y": (np.arange(8) % 2).astype(float)}, "labels must be integers"),
    ({"X": np.zeros((8, 3)), "y": np.arange(8) - 1}, "negative label"),
    ({"X": np.zeros((8, 3))}, r"missing array\(s\) \['y'\]"),
    ({"X": np.zeros((8, 3)), "y": np.arange(8) % 2, "X_test": np.zeros((2, 3))},
     "must be given together"),
    ({"X": np.zeros((8, 3)), "y": np.arange(8) % 2, "X_test": np.zeros((2, 4)),
      "y_test": np.zeros(2, dtype=int)}, "same width"),
    ({"X": np.zeros((8, 3)), "y": np.arange(8) % 2, "X_test": np.zeros((2, 3)),
      "y_test": np.array([0, 5])}, "never occur in the training"),  # class 5 is never trained
])
def test_npz_rejections(tmp_path: Path, arrays: dict, message: str | None) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    if message is None:
        assert load_dataset(f"npz:{path}").n_classes == 6
        return
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"npz:{path}")


def test_npz_never_unpickles(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([object()] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(DatasetError, match="pickle"):
        load_dataset(f"npz:{path}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")


def test_digits() -> None:
    ds = load_dataset("digits")
    assert ds.X_train.shape == (1347, 64) and ds.X_test.shape == (450, 64)
    assert ds.shape == (8, 8) and ds.n_classes == 10
    assert float(ds.X_train.min()) == 0.0 and float(ds.X_train.max()) == 1.0
    counts = torch.bincount(ds.y_test, minlength=10).to(torch.float64)
    per_class = torch.bincount(torch.cat([ds.y_train, ds.y_test]), minlength=10)
    assert ((counts - 0.25 * per_class).abs() <= 1).all()  # stratified
    assert torch.equal(load_dataset("digits").X_test, ds.X_test)  # fixed split
    assert not torch.equal(load_dataset("digits", seed=1).X_test, ds.X_test)


def test_bars_and_stripes() -> None:
    X, y = bars_and_stripes(3, 500, np.random.default_rng(0))
    img = X.reshape(-1, 3, 3)
    rows_const = (img == img[:, :, :1]).all(axis=(1, 2))  # every row uniform: stripes
    cols_const = (img == img[:, :1, :]).all(axis=(1, 2))
    assert rows_const[y == 0].all() and cols_const[y == 1].all()
    assert not (rows_const & cols_const).any()  # all-on/all-off excluded
    ds = load_dataset("bars:3:100", seed=2)
    assert ds.shape == (3, 3) and ds.n_classes == 2 and ds.X_train.shape == (75, 9)
    assert torch.equal(ds.X_train, load_dataset("bars:3:100", seed=2).X_train)


@pytest.mark.parametrize("spec", ["mnist", "bars:x", "bars:1:2:3", "idx:", "digits:3"])
def test_unknown_specs(spec: str) -> None:
    with pytest.raises(DatasetError):
        load_dataset(spec)
