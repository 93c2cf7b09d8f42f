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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
