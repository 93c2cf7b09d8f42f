"""``POST /v1/predict`` over its fast path (a pure ASGI middleware, :class:`PredictFastPath`)
answers exactly as the FastAPI route it bypasses; small batches computed on the event loop
answer as the worker thread does; a slow model is never computed on the loop; the OpenAPI
schema documents every error status, 403 included."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from test_serve import _bad_requests, _Slow

from rgaudit.models.base import RBMClassifier
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.serve.app import ERROR_STATUSES, PredictFastPath, create_app
from rgaudit.serve.defended import DefendedModel, build_poisoner
from rgaudit.serve.runner import BackgroundServer, http_stack, stack_line
from rgaudit.serve.schemas import PredictRequest
from rgaudit.serve.settings import ServeSettings

D, K = 16, 4


def _model(defence: str = "rg") -> DefendedModel:
    net = DeepRBM.random([D, 8, K], generator=torch.Generator().manual_seed(0), scale=2.0)
    clf = RBMClassifier(net, (4, 4))
    return DefendedModel(clf, build_poisoner(clf, defence, eps=0.2, norm="l1"))


def _x(n: int, seed: int = 1) -> np.ndarray:
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64).numpy()


def _without_fast_path(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not PredictFastPath]
    return app


def test_fast_path_and_route_give_the_same_responses() -> None:
    settings = ServeSettings(max_batch=8, max_body_bytes=4096, quota=40)
    fast = create_app(_model(), settings)
    route = _without_fast_path(create_app(_model(), settings))
    assert any(m.cls is PredictFastPath for m in fast.user_middleware)
    def cases() -> list[tuple[str, dict]]:       # fresh each time: one body is an iterator
        out = [(name, kw) for name, kw, _, _ in _bad_requests()]
        out += [("ok", {"json": {"inputs": _x(3).tolist()}}),
                ("ok batch 1", {"json": {"inputs": _x(1).tolist()}}),
                ("other key", {"json": {"inputs": _x(1).tolist()},
                               "headers": {"X-API-Key": "b"}})]
        return out + [(f"quota {k}", {"json": {"inputs": _x(8).tolist()}}) for k in range(6)]

    with BackgroundServer(fast) as a, BackgroundServer(route) as b:
        statuses = set()
        for (name, kwa), (_, kwb) in zip(cases(), cases(), strict=True):
            ra = httpx.post(f"{a.url}/v1/predict", **kwa)
            rb = httpx.post(f"{b.url}/v1/predict", **kwb)
            assert (ra.status_code, ra.content) == (rb.status_code, rb.content), name
            for h in ("content-type", "content-length", "retry-after"):
                assert ra.headers.get(h) == rb.headers.get(h), (name, h)
            statuses.add(ra.status_code)
        assert {200, 400, 413, 415, 422, 429} <= statuses
        assert httpx.get(f"{a.url}/v1/predict").status_code == 405      # not intercepted
        assert httpx.post(f"{a.url}/v1/predict/", json={}).status_code \
            == httpx.post(f"{b.url}/v1/predict/", json={}).status_code
    assert fast.state.accounting.usage("anonymous") == route.state.accounting.usage("anonymous")


@pytest.mark.parametrize("defence", ["rg", "random"])
def test_answers_on_the_event_loop_equal_the_worker_threads(defence: str) -> None:
    x = _x(12, seed=5)
    served = {}
    for inline in (1, 0):
        app = create_app(_model(defence), ServeSettings(inline_max_batch=inline,
                                                        inline_max_s=0.1))
        with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url) as c:
            served[inline] = np.concatenate([np.asarray(
                c.post("/v1/predict", json={"inputs": x[i:i + 1].tolist()}).json()
                ["probabilities"]) for i in range(len(x))])
        inline_answers = app.state.predict.inline_answers
        if inline:       # the first measures; a stall > 0.1 s would send the next to the thread
            assert len(x) - 3 <= inline_answers <= len(x) - 1
        else:
            assert inline_answers == 0
    np.testing.assert_array_equal(served[1], served[0])
    model = _model(defence)                              # and the library's answers
    want = np.concatenate([model.predict(x[i:i + 1])[0] for i in range(len(x))])
    np.testing.assert_array_equal(served[1], want)


def test_a_slow_model_is_never_computed_on_the_event_loop() -> None:
    slow = _Slow(_model().classifier, _model().poisoner)       # 0.4 s per answer
    app = create_app(slow, ServeSettings(inline_max_batch=1))
    with BackgroundServer(app) as srv:
        for _ in range(3):
            assert httpx.post(f"{srv.url}/v1/predict",
                              json={"inputs": _x(1).tolist()}).status_code == 200
    assert app.state.predict.inline_answers == 0


def test_openapi_documents_every_error_and_the_request_body() -> None:
    spec = create_app(_model()).openapi()
    post = spec["paths"]["/v1/predict"]["post"]
    assert set(post["responses"]) == {"200", *map(str, ERROR_STATUSES)}
    assert "403" in post["responses"] and "client_flagged" in post["responses"]["403"][
        "description"]
    for status in ERROR_STATUSES:
        ref = post["responses"][str(status)]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse")
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert json.dumps(body, sort_keys=True) == json.dumps(PredictRequest.model_json_schema(),
                                                          sort_keys=True)


def test_the_http_stack_is_named() -> None:
    http, loop = http_stack()
    assert http in ("httptools", "h11") and loop in ("uvloop", "asyncio")
    assert "httptools parser on the uvloop event loop" in stack_line("httptools", "uvloop")
    assert "not installed" not in stack_line("httptools", "uvloop")
    line = stack_line("h11", "asyncio")
    assert "h11 parser" in line and "httptools and uvloop not installed" in line
