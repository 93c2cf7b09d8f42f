"""Request and response bodies of the prediction API (they appear in the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, create_model

from rgaudit.models.served_info import ServedModelInfo


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


#: ``GET /v1/model``: the fields of :class:`rgaudit.models.served_info.ServedModelInfo` (defined
#: there once; a client's record of the API extends that dataclass), all required
_INFO_FIELDS: dict[str, Any] = {name: (hint, ...)
                                for name, hint in get_type_hints(ServedModelInfo).items()}
ModelInfo: type[BaseModel] = create_model("ModelInfo", __doc__=ServedModelInfo.__doc__,
                                          **_INFO_FIELDS)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error has this body; no stack trace or path ever appears in it."""

    error: ErrorDetail
