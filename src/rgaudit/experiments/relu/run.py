"""The whole random-ReLU study: scaling, near-linearity, depth and the trained network."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch

from rgaudit.experiments.relu.config import ReluStudyConfig
from rgaudit.experiments.relu.depth import ReluDepthResult, depth_study
from rgaudit.experiments.relu.near_linearity import NearLinearityResult, near_linearity_study
from rgaudit.experiments.relu.scaling import ScalingResult, scaling_study
from rgaudit.experiments.relu.trained import TrainedResult, digits_study

Progress = Callable[[str], None]
R = TypeVar("R")


@dataclass(frozen=True)
class ReluStudyResult:
    """Everything :func:`run_relu_study` measured, with its config and per-part wall seconds."""

    config: ReluStudyConfig
    scaling: ScalingResult
    near_linearity: NearLinearityResult
    depth: ReluDepthResult
    trained: TrainedResult
    seconds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and lists; floats may be non-finite.

        The report layer's :func:`rgaudit.report.io.to_plain` turns it into JSON (non-finite
        numbers become ``None``); the experiments do not import the report layer.
        """
        return asdict(self)


def run_relu_study(config: ReluStudyConfig, progress: Progress | None = None) -> ReluStudyResult:
    """Run the scaling, near-linearity, depth and trained-network studies of ``config``."""
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r} requested but CUDA is not available; "
                         "use --device cpu")
    secs: dict[str, float] = {}

    def timed(name: str, study: Callable[[ReluStudyConfig, Progress | None], R]) -> R:
        t = time.perf_counter()
        res = study(config, progress)
        secs[name] = time.perf_counter() - t
        return res

    return ReluStudyResult(
        config=config, scaling=timed("scaling", scaling_study),
        near_linearity=timed("near_linearity", near_linearity_study),
        depth=timed("depth", depth_study), trained=timed("trained", digits_study), seconds=secs)
