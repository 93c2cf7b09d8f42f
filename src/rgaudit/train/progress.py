"""The progress-callback protocol shared by the trainers (the CLI renders it with rich)."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    """``progress(stage, done, total, **info)``: ``done`` of ``total`` steps of ``stage`` are
    finished; ``info`` carries the latest numbers (loss, reconstruction error, …)."""

    def __call__(self, stage: str, done: int, total: int, **info: Any) -> None: ...


def no_progress(stage: str, done: int, total: int, **info: Any) -> None:
    """A progress callback that does nothing."""
