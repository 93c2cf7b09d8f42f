"""JSON Schemas of rgaudit's result files, shipped as package data.

``load_schema(kind)`` reads ``<kind>.schema.json`` through :mod:`importlib.resources` (works
from a wheel or a zip); ``validate(doc)`` checks a result document against the schema of its
``kind`` with :mod:`jsonschema`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


def kinds() -> list[str]:
    """Result kinds that have a schema."""
    return sorted(p.name.removesuffix(".schema.json") for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".schema.json"))


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of result ``kind`` (e.g. ``"audit-any"``)."""
    res = resources.files(__name__) / f"{kind}.schema.json"
    if not res.is_file():
        raise ValueError(f"no JSON Schema for result kind {kind!r}; known: {kinds()}")
    return json.loads(res.read_text(encoding="utf-8"))


def validate(doc: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``doc`` does not match its kind's schema."""
    import jsonschema

    schema = load_schema(str(doc.get("kind")))
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
