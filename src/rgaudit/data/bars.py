"""Synthetic bars-and-stripes: n×n binary images of lit rows (class 0) or lit columns (class 1)."""

from __future__ import annotations

import numpy as np

from rgaudit.data.dataset import Dataset, make_dataset, stratified_split
from rgaudit.errors import DatasetError


def bars_and_stripes(n: int, n_samples: int, rng: np.random.Generator,
                     flip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sample bars-and-stripes images.

    Each image picks an orientation (0: horizontal stripes, 1: vertical bars) and switches every
    row (or column) on with probability ½, excluding the all-off and all-on lines (which have no
    orientation). ``flip`` then flips each pixel independently.

    Parameters
    ----------
    n : int
        Side length (``n ≥ 2``).
    n_samples : int
    rng : numpy.random.Generator
    flip : float, default 0
        Pixel noise probability.

    Returns
    -------
    X : ndarray of shape (n_samples, n*n), float32 in {0, 1}
    y : ndarray of shape (n_samples,), int64 in {0, 1}
    """
    y = rng.integers(0, 2, size=n_samples)
    lines = rng.integers(0, 2, size=(n_samples, n))
    bad = (lines.sum(1) == 0) | (lines.sum(1) == n)
    while bad.any():
        lines[bad] = rng.integers(0, 2, size=(int(bad.sum()), n))
        bad = (lines.sum(1) == 0) | (lines.sum(1) == n)
    img = np.where(y[:, None, None] == 0, lines[:, :, None], lines[:, None, :])
    img = np.broadcast_to(img, (n_samples, n, n)).astype(np.float32)
    if flip > 0:
        img = np.abs(img - (rng.random(img.shape) < flip)).astype(np.float32)
    return img.reshape(n_samples, n * n), y.astype(np.int64)


def load_bars(n: int = 4, n_samples: int = 2000, *, seed: int = 0, flip: float = 0.0,
              test_fraction: float = 0.25) -> Dataset:
    """A seeded bars-and-stripes data set (``bars:N[:SAMPLES]``); shape ``(n, n)``, 2 classes."""
    if n < 2 or n_samples < 4:
        raise DatasetError(f"bars:{n}:{n_samples}: need side ≥ 2 and at least 4 samples")
    from rgaudit.guards import check_memory

    # int64 images from np.where, their float32 copy, the split and the tensors: ~24 B a pixel
    check_memory(24 * n_samples * n * n, what=f"bars:{n}:{n_samples} ({n_samples:,} images of "
                 f"{n}×{n} pixels)")
    rng = np.random.default_rng(seed)
    X, y = bars_and_stripes(n, n_samples, rng, flip)
    X_tr, y_tr, X_te, y_te = stratified_split(X, y, test_fraction, seed,
                                              what=f"bars:{n}:{n_samples}")
    return make_dataset(f"bars:{n}:{n_samples}", X_tr, y_tr, X_te, y_te, shape=(n, n),
                        n_classes=2, info={"source": "synthetic bars-and-stripes", "seed": seed,
                                           "flip": flip, "test_fraction": test_fraction})
