"""What a served model says of itself (``GET /v1/model``): the one definition of those fields.

The server's response model (:class:`rgaudit.serve.schemas.ModelInfo`, pydantic) is built from
this dataclass, and a client's record of an API it reached
(:class:`rgaudit.experiments.cloning.ServedAPI`) extends it, so neither spells the fields out
again. The module imports only the standard library (the package ``rgaudit.models`` brings
torch, which every user of it has loaded already); above all not pydantic or the web stack,
which the studies that record a served API must not need.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ServedModelInfo:
    """What a client may know of the served model: shapes, classes, defence, limits."""

    kind: str
    input_shape: list[int]
    n_features: int
    n_classes: int
    classes: list[int]
    bounds: list[float]
    defence: dict[str, Any]
    limits: dict[str, Any]


#: the field names, in the order of the API's answer
SERVED_INFO_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ServedModelInfo))
