"""Data sets stored as NumPy ``.npz`` archives (``npz:PATH``), read without pickle.

Required arrays: ``X`` of shape (n, d) with values in [0, 1] and ``y`` of shape (n,) with integer
labels ``0 … n_classes-1``. Optional: ``X_test`` and ``y_test`` (otherwise a stratified 25% split
with the given seed) and ``shape`` (the image shape, e.g. ``[28, 28]``).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from rgaudit.data.dataset import (
    Dataset,
    check_features,
    check_labels,
    make_dataset,
    stratified_split,
)
from rgaudit.errors import DatasetError

TEST_FRACTION = 0.25


def _shape(arr: np.ndarray, path: Path) -> tuple[int, ...]:
    """The optional ``shape`` array: 1-D, positive integers."""
    arr = np.asarray(arr)
    if (arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer)
            or int(arr.min()) < 1):
        raise DatasetError(f"npz:{path}: 'shape' must be a 1-D array of positive integers "
                           f"(e.g. [28, 28]), got {arr.tolist()!r} of dtype {arr.dtype}")
    return tuple(int(s) for s in arr)


#: Bytes held per stored byte while loading: the array, its float32/int64 copy and the split.
NPZ_MEMORY_FACTOR = 4


def _check_sizes(path: Path) -> None:
    """Read every member's ``.npy`` header and refuse, before any payload is read, archives whose
    arrays would not fit the memory budget (zip bombs, headers claiming huge shapes).

    Raises
    ------
    DatasetError
        A member that is not a readable ``.npy`` array.
    ResourceError
        The arrays, as their headers describe them, need more memory than the budget.
    """
    from rgaudit.guards import check_memory

    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                total += math.prod(int(s) for s in shape) * max(int(dtype.itemsize), 1)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f"npz:{path}: not a readable .npz archive of .npy arrays "
                           f"({err})") from err
    check_memory(NPZ_MEMORY_FACTOR * total,
                 what=f"npz:{path} (its arrays hold {total:,} bytes by their headers)")


def load_npz(path: str | Path, *, seed: int = 0, test_fraction: float = TEST_FRACTION) -> Dataset:
    """Load ``npz:PATH``.

    Parameters
    ----------
    path : path-like
    seed : int, default 0
        Seed of the stratified split when the file has no ``X_test``/``y_test``.
    test_fraction : float, default 0.25

    Raises
    ------
    DatasetError
        Missing file or arrays, object arrays (pickle is never allowed), bad shapes or values.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"npz:{path}: no such file; save one with "
                           "numpy.savez(PATH, X=X, y=y)")
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"npz:{path}: not a readable .npz archive (a zip of .npy arrays); "
                           "write one with numpy.savez(PATH, X=X, y=y)")
    _check_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as err:
        raise DatasetError(f"npz:{path}: {err}; store plain numeric arrays (object arrays "
                           "need pickle, which rgaudit never loads)") from err
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f"npz:{path}: not a readable .npz archive ({err})") from err
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise DatasetError(f"npz:{path}: missing array(s) {missing}; found {sorted(arrays)}; "
                           "expected X (n, d) in [0, 1] and y (n,) integer labels")
    has_test = ("X_test" in arrays, "y_test" in arrays)
    if has_test[0] != has_test[1]:
        raise DatasetError(f"npz:{path}: X_test and y_test must be given together")
    shape = _shape(arrays["shape"], path) if "shape" in arrays else None
    name = f"npz:{path}"
    if has_test[0]:
        return make_dataset(name, arrays["X"], arrays["y"], arrays["X_test"], arrays["y_test"],
                            shape=shape, info={"source": str(path), "split": "file"})
    # validate before splitting so the messages name the file's arrays
    X = check_features(arrays["X"], f"{name} X")
    y = check_labels(arrays["y"], X.shape[0], f"{name} y")
    X_tr, y_tr, X_te, y_te = stratified_split(X, y, test_fraction, seed, what=f"{name} y")
    return make_dataset(name, X_tr, y_tr, X_te, y_te, shape=shape,
                        info={"source": str(path), "split": "stratified", "split_seed": seed,
                              "test_fraction": test_fraction})
