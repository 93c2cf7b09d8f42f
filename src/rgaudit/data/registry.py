"""``load_dataset(spec)``: one entry point for every data source.

Specs
-----
``digits``                 scikit-learn's 8×8 digits (default)
``digits28``               the same digits upscaled to 28×28 (bilinear; MNIST-sized, no download)
``bars[:N[:SAMPLES]]``     synthetic N×N bars-and-stripes (default 4, 2000 samples)
``idx:FOLDER``             MNIST / Fashion-MNIST IDX files, raw or .gz
``npz:FILE``               a NumPy archive with X, y (and optionally X_test, y_test, shape)
"""

from __future__ import annotations

from rgaudit.data.bars import load_bars
from rgaudit.data.dataset import Dataset
from rgaudit.data.digits import load_digits
from rgaudit.data.digits28 import load_digits28
from rgaudit.data.idx import load_idx
from rgaudit.data.npz import load_npz
from rgaudit.errors import DatasetError

SPECS = ("digits", "digits28", "bars[:N[:SAMPLES]]", "idx:FOLDER", "npz:FILE")


def load_dataset(spec: str = "digits", *, seed: int = 0) -> Dataset:
    """Load a data set from its spec.

    Parameters
    ----------
    spec : str, default "digits"
        See the module docstring.
    seed : int, default 0
        Seed of the train/test split (and of the samples, for ``bars``).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        Unknown spec or a malformed file.
    """
    spec = str(spec).strip()
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return load_digits(seed=seed)
    if kind == "digits28" and not arg:
        return load_digits28(seed=seed)
    if kind == "bars":
        try:
            parts = [int(p) for p in arg.split(":")] if arg else []
        except ValueError as err:
            raise DatasetError(f"bad bars spec {spec!r}; use bars, bars:N or "
                               "bars:N:SAMPLES with integers") from err
        if len(parts) > 2:
            raise DatasetError(f"bad bars spec {spec!r}; use bars:N:SAMPLES")
        return load_bars(*parts, seed=seed)
    if kind == "idx" and arg:
        return load_idx(arg)
    if kind == "npz" and arg:
        return load_npz(arg, seed=seed)
    raise DatasetError(f"unknown data set {spec!r}; use one of {', '.join(SPECS)}")
