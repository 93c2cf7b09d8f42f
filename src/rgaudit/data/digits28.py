"""The embedded 8×8 digits upscaled to 28×28 (``digits28``): an MNIST-sized set with no download.

Each 8×8 image (pixel / 16, in [0, 1]) is resized to 28×28 by **bilinear interpolation**
(:func:`scipy.ndimage.zoom` with ``order=1``, ``grid_mode=False``, ``mode="nearest"``): the
four corner pixel centres map onto each other and every output pixel is a convex combination of
at most four input pixels, so values stay in [0, 1] (clipped against rounding) and the result is
a pure, deterministic function of the scikit-learn data. The train/test split is the same
stratified split as ``digits`` (same seed → same images on both sides), so the two sets are
directly comparable. It adds no information: the images are smooth and highly correlated
(effective dimension ≤ 64), which makes it a scaling workload, not a harder learning task.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import zoom
from sklearn.datasets import load_digits as _sk_load_digits

from rgaudit.data.dataset import Dataset, make_dataset, stratified_split
from rgaudit.data.digits import TEST_FRACTION

SIDE = 28
SOURCE_SIDE = 8


def upscale(images: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Bilinear resize of square images.

    Parameters
    ----------
    images : ndarray of shape (n, s, s), values in [0, 1]
    side : int, default 28

    Returns
    -------
    ndarray of shape (n, side, side), float32 in [0, 1]
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected (n, s, s) square images, got shape {images.shape}")
    factor = side / images.shape[1]
    out = zoom(images, (1.0, factor, factor), order=1, mode="nearest", grid_mode=False)
    if out.shape[1:] != (side, side):  # zoom rounds the output size; never expected here
        raise ValueError(f"zoom gave {out.shape[1:]}, expected {(side, side)}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_digits28(*, seed: int = 0, test_fraction: float = TEST_FRACTION) -> Dataset:
    """The digits data upscaled to 28×28 with the ``digits`` split.

    Parameters
    ----------
    seed : int, default 0
        Seed of the stratified train/test split (the ``digits`` split for the same seed).
    test_fraction : float, default 0.25
        1347 training and 450 test images at the default.

    Returns
    -------
    Dataset
        ``X`` of shape (n, 784), float32 in [0, 1], ``shape == (28, 28)``, ``n_classes == 10``.
    """
    raw = _sk_load_digits()
    small = (raw.data / 16.0).reshape(-1, SOURCE_SIDE, SOURCE_SIDE)
    X = upscale(small).reshape(small.shape[0], SIDE * SIDE)
    y = raw.target.astype(np.int64)
    X_tr, y_tr, X_te, y_te = stratified_split(X, y, test_fraction, seed)
    return make_dataset("digits28", X_tr, y_tr, X_te, y_te, shape=(SIDE, SIDE), n_classes=10,
                        info={"source": "sklearn.datasets.load_digits, upscaled 8×8 → 28×28 "
                              "by bilinear interpolation (scipy.ndimage.zoom, order=1)",
                              "split_seed": seed, "test_fraction": test_fraction})
