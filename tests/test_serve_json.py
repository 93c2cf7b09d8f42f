"""The API's JSON fast path: pydantic-core's parser and serialiser give the same numbers as the
standard library, and every body the fast parser refuses is decided by the standard library as
before (so each 4xx stays what it was; the HTTP cases are in ``test_serve.py``)."""

from __future__ import annotations

import json

import numpy as np
import pydantic_core
import pytest

from rgaudit.serve.errors import ApiError
from rgaudit.serve.inputs import parse_json as _parse_json


def _floats(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    wide = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    vals = np.concatenate([rng.random(n), wide,
                           [0.0, -0.0, 5e-324, 1e-5, 1 - 2**-53, 1.7976931348623157e308]])
    return vals.tolist()


def test_fast_parse_equals_the_standard_library_bit_for_bit() -> None:
    vals = _floats(5000, 0)
    body = json.dumps({"inputs": [vals, [1, 2, 10**30, -7]]}).encode()
    got, want = _parse_json(body), json.loads(body)
    assert got == want
    assert [type(v) for v in got["inputs"][1]] == [int] * 4
    assert all(np.float64(a).tobytes() == np.float64(b).tobytes()
               for a, b in zip(got["inputs"][0], want["inputs"][0], strict=True))


@pytest.mark.parametrize("body", [b'\xef\xbb\xbf{"inputs": [[0.5]]}', b'{"x": "\\ud800"}'])
def test_bodies_the_fast_parser_refuses_go_to_the_standard_library(body: bytes) -> None:
    assert _parse_json(body) == json.loads(body)


def test_refusals_are_classified_as_before() -> None:
    with pytest.raises(ApiError) as err:
        _parse_json(b'{"inputs": [[NaN, 0.5]]}')
    assert err.value.status == 422 and err.value.code == "non_finite"
    with pytest.raises(json.JSONDecodeError):
        _parse_json(b'{"inputs": [[0.1,')
    with pytest.raises(RecursionError):
        _parse_json(b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(ValueError):                       # the app answers 400 to both
        _parse_json(b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):
        _parse_json(b'{"inputs": "\xff"}')


def test_fast_serialiser_round_trips_every_float() -> None:
    vals = _floats(5000, 1)
    back = json.loads(pydantic_core.to_json({"probabilities": [vals], "labels": [3],
                                             "quota_remaining": None}))
    assert back["labels"] == [3] and back["quota_remaining"] is None
    assert all(np.float64(a).tobytes() == np.float64(b).tobytes()
               for a, b in zip(back["probabilities"][0], vals, strict=True))
