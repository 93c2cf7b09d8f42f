"""scikit-learn's embedded 8×8 handwritten digits (1797 images, 10 classes, no download)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sk_load_digits

from rgaudit.data.dataset import Dataset, make_dataset, stratified_split

TEST_FRACTION = 0.25


def load_digits(*, seed: int = 0, test_fraction: float = TEST_FRACTION) -> Dataset:
    """The digits data scaled to [0, 1] (pixel / 16) with a stratified split.

    Parameters
    ----------
    seed : int, default 0
        Seed of the train/test split (the same seed always gives the same split).
    test_fraction : float, default 0.25
        1347 training and 450 test images at the default.

    Returns
    -------
    Dataset
        ``X`` of shape (n, 64), ``shape == (8, 8)``, ``n_classes == 10``.
    """
    raw = _sk_load_digits()
    X = (raw.data / 16.0).astype(np.float32)
    y = raw.target.astype(np.int64)
    X_tr, y_tr, X_te, y_te = stratified_split(X, y, test_fraction, seed)
    return make_dataset("digits", X_tr, y_tr, X_te, y_te, shape=(8, 8), n_classes=10,
                        info={"source": "sklearn.datasets.load_digits", "split_seed": seed,
                              "test_fraction": test_fraction})
