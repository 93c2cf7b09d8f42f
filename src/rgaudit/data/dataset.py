"""The :class:`Dataset` container and the checks every loader applies to its arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from rgaudit.errors import DatasetError

Tensor = torch.Tensor


@dataclass(frozen=True)
class Dataset:
    """A labelled classification data set with a fixed train/test split.

    Attributes
    ----------
    name : str
        The spec it was loaded from (``"digits"``, ``"idx:/data/mnist"``, …).
    X_train : Tensor of shape (n_train, n_features), float32 in [0, 1]
    y_train : Tensor of shape (n_train,), int64 in ``0 … n_classes-1``
    X_test : Tensor of shape (n_test, n_features), float32 in [0, 1]
    y_test : Tensor of shape (n_test,), int64
    n_classes : int
    shape : tuple of int
        Image shape of one input for plots, e.g. ``(8, 8)``; ``prod(shape) == n_features``.
    info : dict
        Provenance (source files, split seed, test fraction).
    """

    name: str
    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    n_classes: int
    shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        """Input width ``n_0``."""
        return int(self.X_train.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """Plain summary (no arrays) for configs and reports."""
        return {"name": self.name, "n_train": int(self.X_train.shape[0]),
                "n_test": int(self.X_test.shape[0]), "n_features": self.n_features,
                "n_classes": int(self.n_classes), "shape": list(self.shape), **self.info}


def check_features(X: np.ndarray, what: str) -> np.ndarray:
    """Check an input matrix: 2-D, finite, values in [0, 1]; return it as float32.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    what : str
        Where it came from, for the error message.

    Raises
    ------
    DatasetError
    """
    X = np.asarray(X)
    if X.dtype == np.bool_:
        raise DatasetError(f"{what}: boolean array; cast it to float first, e.g. "
                           "X.astype(numpy.float32)")
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DatasetError(f"{what}: expected a non-empty (n_samples, n_features) array, got "
                           f"shape {X.shape}; flatten images to one row per sample")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise DatasetError(f"{what}: expected real numbers, got dtype {X.dtype}")
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise DatasetError(f"{what}: contains NaN or inf ({int((~np.isfinite(X)).sum())} "
                           "entries); clean or impute the data first")
    lo, hi = float(X.min()), float(X.max())
    if lo < 0.0 or hi > 1.0:
        raise DatasetError(f"{what}: values must lie in [0, 1] (grey levels), found range "
                           f"[{lo:g}, {hi:g}]; rescale, e.g. X / X.max()")
    return X


#: Most classes a data set may have (one output unit per class; labels index a bincount).
MAX_CLASSES = 65_536


def check_labels(y: np.ndarray, n_samples: int, what: str,
                 n_classes: int | None = None) -> np.ndarray:
    """Check a label vector: 1-D integers, ``n_samples`` long, in ``0 … n_classes-1``.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
    n_samples : int
        Number of rows of the matching feature matrix.
    what : str
    n_classes : int, optional
        Upper bound (exclusive); if None only non-negativity is checked.

    Returns
    -------
    ndarray of shape (n_samples,), int64
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise DatasetError(f"{what}: labels must be a 1-D array of class indices, got shape "
                           f"{y.shape} (one-hot labels? use argmax)")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{what}: labels must be integers, got dtype {y.dtype}; store "
                           "class indices 0 … n_classes-1")
    if y.shape[0] != n_samples:
        raise DatasetError(f"{what}: {y.shape[0]} labels for {n_samples} samples; the sizes "
                           "must match")
    if y.size and int(y.min()) < 0:
        raise DatasetError(f"{what}: negative label {int(y.min())}; labels must be 0 … "
                           "n_classes-1")
    if y.size and int(y.max()) >= MAX_CLASSES:
        raise DatasetError(f"{what}: label {int(y.max())} would mean {int(y.max()) + 1:,} "
                           f"classes; rgaudit supports at most {MAX_CLASSES:,} (one output unit "
                           "each); store class indices 0 … n_classes-1")
    if n_classes is not None and y.size and int(y.max()) >= n_classes:
        raise DatasetError(f"{what}: label {int(y.max())} out of range 0 … {n_classes - 1}")
    return y.astype(np.int64)


def stratified_split(X: np.ndarray, y: np.ndarray, test_fraction: float,
                     seed: int, what: str = "data"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/test split with a fixed seed (scikit-learn's ``train_test_split``).

    Raises
    ------
    DatasetError
        A class with fewer than 2 samples, or too few samples for one of every class on
        both sides of the split.
    """
    counts = np.bincount(y)
    present = counts[counts > 0]
    n, k = int(y.shape[0]), int(present.size)
    n_test = int(np.ceil(test_fraction * n))
    if present.min() < 2:
        raise DatasetError(f"{what}: class {int(np.flatnonzero(counts == present.min())[0])} "
                           f"has {int(present.min())} sample(s); the stratified train/test "
                           "split needs at least 2 per class (give X_test/y_test or more data)")
    if n_test < k or n - n_test < k:
        raise DatasetError(f"{what}: {n} samples split {n - n_test} train / {n_test} test "
                           f"cannot hold all {k} classes on both sides; need at least "
                           f"{int(np.ceil(k / min(test_fraction, 1 - test_fraction)))} samples")
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, stratify=y,
                                              random_state=seed)
    return X_tr, y_tr, X_te, y_te


def _show(values: np.ndarray, limit: int = 8) -> str:
    """``{0, 3, 7}`` (at most ``limit`` values, then ``…``)."""
    items = [str(int(v)) for v in values[:limit]] + (["…"] if values.size > limit else [])
    return "{" + ", ".join(items) + "}"


def make_dataset(name: str, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                 y_test: np.ndarray, *, shape: tuple[int, ...] | None = None,
                 n_classes: int | None = None, info: dict[str, Any] | None = None) -> Dataset:
    """Validate arrays and wrap them as a :class:`Dataset` of torch tensors.

    Parameters
    ----------
    X_train, X_test : ndarray of shape (n, n_features), values in [0, 1]
    y_train, y_test : ndarray of shape (n,), integer class indices
    shape : tuple of int, optional
        Image shape; a square image is assumed when ``n_features`` is a perfect square.
    n_classes : int, optional
        Defaults to the number of training classes, which must be labelled ``0 … K-1``;
        every test label must occur among the training labels.
    """
    X_train = check_features(X_train, f"{name} X_train")
    X_test = check_features(X_test, f"{name} X_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise DatasetError(f"{name}: train inputs have {X_train.shape[1]} features, test inputs "
                           f"{X_test.shape[1]}; both splits must have the same width")
    y_train = check_labels(y_train, X_train.shape[0], f"{name} y_train", n_classes)
    y_test = check_labels(y_test, X_test.shape[0], f"{name} y_test", n_classes)
    classes = np.unique(y_train)
    if classes.size < 2:
        raise DatasetError(f"{name}: the training labels hold {classes.size} class(es); a "
                           "classifier needs at least two")
    if n_classes is None:
        if classes[-1] != classes.size - 1:
            raise DatasetError(
                f"{name}: training labels are {_show(classes)}, not 0 … {classes.size - 1}; "
                f"relabel the {classes.size} classes as 0 … {classes.size - 1} "
                "(e.g. numpy.unique(y, return_inverse=True)[1])")
        n_classes = int(classes.size)
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if unseen.size:
        raise DatasetError(f"{name}: test label(s) {_show(unseen)} never occur in the training "
                           "labels; every test class must be trained on")
    d = X_train.shape[1]
    if shape is None:
        side = int(round(d**0.5))
        shape = (side, side) if side * side == d else (d,)
    if int(np.prod(shape)) != d:
        raise DatasetError(f"{name}: image shape {tuple(shape)} does not hold {d} features")
    return Dataset(name=name, X_train=torch.from_numpy(X_train), y_train=torch.from_numpy(y_train),
                   X_test=torch.from_numpy(X_test), y_test=torch.from_numpy(y_test),
                   n_classes=int(n_classes), shape=tuple(int(s) for s in shape),
                   info=dict(info or {}))
