"""Saving matplotlib figures: one place for layout, resolution and releasing the figure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG by suffix) and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like
        Output file; its folder is created if missing.
    dpi : int, default 110

    Returns
    -------
    Path
    """
    import matplotlib.pyplot as plt

    from rgaudit.report.io import atomic_path

    path = Path(path)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # a reader never sees half a PNG
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
