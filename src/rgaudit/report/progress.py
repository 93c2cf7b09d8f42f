"""One rich adapter for the progress protocol (``progress(stage, done, total, **info)``):
a bar with counts, elapsed time and ETA."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def progress_columns() -> tuple[Any, ...]:
    """The columns of every rgaudit progress bar: description, bar, ``done/total``, elapsed,
    ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


@contextmanager
def rich_progress(console: Any = None, *, transient: bool = True) -> Iterator[Any]:
    """Context manager yielding a ``progress(stage, done, total, **info)`` callback.

    Each stage gets its own bar (description, ``done/total``, elapsed, ETA); ``info`` numbers
    (loss, …) are shown after the description.
    """
    from rich.progress import Progress

    with Progress(*progress_columns(), console=console, transient=transient) as prog:
        bar = prog.add_task("starting", total=None)

        def update(stage: str, done: int, total: int, **info: Any) -> None:
            extra = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in info.items())
            prog.update(bar, description=f"{stage} {extra}".strip(), completed=done,
                        total=total)

        yield update
