"""MNIST-style IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.

The spec ``idx:PATH`` names a folder holding the four standard files, each either raw or ``.gz``::

    train-images-idx3-ubyte   train-labels-idx1-ubyte
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

A folder (not four paths) because every MNIST-like release ships exactly these names, and the
official split is kept as the train/test split. Pixels are scaled by 1/255 to [0, 1].
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from rgaudit.data.dataset import Dataset, make_dataset
from rgaudit.errors import DatasetError

FILES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
#: Magic numbers: two zero bytes, type code 0x08 (unsigned byte), number of dimensions.
MAGIC_IMAGES = 0x00000803
MAGIC_LABELS = 0x00000801
N_CLASSES = 10


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    # Some mirrors write "train-images.idx3-ubyte"
    alt = stem.replace("-idx", ".idx")
    for candidate in (folder / alt, folder / f"{alt}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"idx:{folder}: missing {stem} (or {stem}.gz); the folder must hold the "
                       f"four MNIST files {', '.join(FILES.values())}")


#: Bytes held per payload byte while loading: the uint8 array and its float32 copy.
IDX_MEMORY_FACTOR = 5


def _read_bytes(path: Path, expected_magic: int) -> bytes:
    """The file's bytes, decompressed if gzip; the header is checked against the memory budget
    before the payload is decompressed (a gzip bomb is refused, never inflated)."""
    from rgaudit.guards import check_memory

    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
    if not is_gzip:  # the bytes are on disk: their size is the payload's
        size = path.stat().st_size
        check_memory(IDX_MEMORY_FACTOR * size, what=f"{path} ({size:,} bytes)")
        return path.read_bytes()
    ndim = expected_magic & 0xFF
    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(4 + 4 * ndim)
            if len(head) == 4 + 4 * ndim and int.from_bytes(head[:4], "big") == expected_magic:
                dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
                size = math.prod(dims)
                check_memory(IDX_MEMORY_FACTOR * size,
                             what=f"{path} (its header claims {tuple(dims)} = {size:,} bytes)")
                # one byte more than the header promises reveals an over-long payload
                return head + fh.read(size + 1)
            return head + fh.read(1 << 16)  # bad header: read_idx reports it
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: corrupt gzip stream ({err}); download the file "
                           "again") from err


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes.

    Parameters
    ----------
    path : path-like
        Raw or gzip-compressed (detected from the content, not the name).
    expected_magic : int
        :data:`MAGIC_IMAGES` (3-D) or :data:`MAGIC_LABELS` (1-D).

    Returns
    -------
    ndarray of uint8, shape (n, rows, cols) for images or (n,) for labels

    Raises
    ------
    DatasetError
        Wrong magic number, header or payload size that does not match the dimensions.
    """
    path = Path(path)
    data = _read_bytes(path, expected_magic)
    if len(data) < 4:
        raise DatasetError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == MAGIC_IMAGES else "labels"
        raise DatasetError(f"{path}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                           f"(unsigned-byte IDX {kind}); wrong file or not an IDX file")
    ndim = expected_magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated header ({len(data)} bytes, need {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if any(d == 0 for d in dims):
        raise DatasetError(f"{path}: zero dimension in header {dims}")
    size = math.prod(dims)  # Python ints: no overflow for absurd headers
    if len(data) - header != size:
        raise DatasetError(f"{path}: header says {dims} = {size} bytes of data but the file "
                           f"holds {len(data) - header}; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(folder: str | Path) -> Dataset:
    """Load an MNIST-style folder (``idx:PATH``) with its official train/test split.

    Returns
    -------
    Dataset
        ``X`` of shape (n, rows*cols) in [0, 1], ``shape == (rows, cols)``, 10 classes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"idx:{folder}: not a folder; give the folder that holds "
                           f"{FILES['X_train']} and the three other MNIST files")
    paths = {key: _find(folder, stem) for key, stem in FILES.items()}
    arrays = {}
    for key, path in paths.items():
        magic = MAGIC_IMAGES if key.startswith("X") else MAGIC_LABELS
        arrays[key] = read_idx(path, magic)
    for split in ("train", "test"):
        X, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
        if X.shape[0] != y.shape[0]:
            raise DatasetError(f"idx:{folder}: {X.shape[0]} {split} images but {y.shape[0]} "
                               f"{split} labels; the files do not belong together")
        if int(y.max()) >= N_CLASSES:
            raise DatasetError(f"idx:{folder}: {split} label {int(y.max())} out of range "
                               f"0 … {N_CLASSES - 1}")
    if arrays["X_train"].shape[1:] != arrays["X_test"].shape[1:]:
        raise DatasetError(f"idx:{folder}: train images are {arrays['X_train'].shape[1:]} but "
                           f"test images {arrays['X_test'].shape[1:]}")
    shape = tuple(arrays["X_train"].shape[1:])
    flat = {k: (v.reshape(v.shape[0], -1).astype(np.float32) / 255.0 if k.startswith("X")
                else v.astype(np.int64)) for k, v in arrays.items()}
    return make_dataset(f"idx:{folder}", flat["X_train"], flat["y_train"], flat["X_test"],
                        flat["y_test"], shape=shape, n_classes=N_CLASSES,
                        info={"source": {k: str(p) for k, p in paths.items()}})
