"""Data sets: scikit-learn digits, MNIST-style IDX files, NumPy archives, bars-and-stripes."""

from rgaudit.data.dataset import Dataset
from rgaudit.data.registry import load_dataset

__all__ = ["Dataset", "load_dataset"]
