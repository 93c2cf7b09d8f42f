"""Request and response bodies of the prediction API (they appear in the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt


class PredictRequest(BaseModel):
    """A batch of flat inputs, one list of ``n_features`` numbers per input, in the model's
    bounds (see ``GET /v1/model``). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[list[StrictFloat | StrictInt]] = Field(
        ..., description="Batch of flat inputs (n, n_features); JSON numbers only.")


class PredictResponse(BaseModel):
    """Answers, in the order of the inputs."""

    probabilities: list[list[float]] = Field(
        ..., description="Returned class probabilities (n, n_classes); rows sum to 1.")
    labels: list[int] = Field(..., description="Predicted class of each input (argmax).")
    defence: str
    quota_remaining: int | None = Field(
        None, description="Answers this client may still receive (null: no quota).")


class ModelInfo(BaseModel):
    """What a client may know of the served model: shapes, classes, defence, limits."""

    kind: str
    input_shape: list[int]
    n_features: int
    n_classes: int
    classes: list[int]
    bounds: list[float]
    defence: dict[str, Any]
    limits: dict[str, Any]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error has this body; no stack trace or path ever appears in it."""

    error: ErrorDetail
