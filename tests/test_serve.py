"""The prediction API over real HTTP: a uvicorn server on an ephemeral loopback port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from rgaudit.defence.baselines import make_poisoner
from rgaudit.models.base import RBMClassifier, TorchClassifier
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.serve.app import create_app
from rgaudit.serve.defended import DefendedModel, build_poisoner
from rgaudit.serve.runner import BackgroundServer
from rgaudit.serve.settings import ServeSettings

D, K = 16, 4


def _classifier(seed: int = 0) -> RBMClassifier:
    net = DeepRBM.random([D, 8, K], generator=torch.Generator().manual_seed(seed), scale=2.0)
    return RBMClassifier(net, (4, 4))


def _x(n: int, seed: int = 1) -> np.ndarray:
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64).numpy()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DefendedModel, Path]]:
    log = tmp_path_factory.mktemp("serve") / "queries.jsonl"
    clf = _classifier()
    model = DefendedModel(clf, build_poisoner(clf, "rg", eps=0.2, norm="l1"))
    app = create_app(model, ServeSettings(max_batch=8, max_body_bytes=4096, quota=40,
                                          log_path=log))
    with BackgroundServer(app) as srv:
        yield srv.url, model, log


@pytest.mark.parametrize("defence", ["none", "rg", "reverse-sigmoid", "mad"])
def test_served_answers_equal_the_library(defence: str) -> None:
    clf = _classifier()
    model = DefendedModel(clf, build_poisoner(clf, defence, eps=0.3, norm="l1"))
    x = _x(6)
    with BackgroundServer(create_app(model)) as srv:
        r = httpx.post(f"{srv.url}/v1/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["probabilities"])
    xt = torch.from_numpy(x)
    lib = make_poisoner(defence, eps=0.3, norm="l1", kind="simplex", net=clf.net, n_inputs=D)
    want = lib(clf.answer(xt), xt, torch.Generator().manual_seed(0)).y_poisoned.numpy()
    assert np.array_equal(got, want)                   # bit for bit through JSON
    assert r.json()["labels"] == want.argmax(-1).tolist()
    if defence != "none":
        assert not np.array_equal(got, clf.answer(xt).numpy())   # the defence did act


def test_model_info_health_and_openapi(served: tuple[str, DefendedModel, Path]) -> None:
    url, _, _ = served
    info = httpx.get(f"{url}/v1/model").json()
    assert info["n_features"] == D and info["n_classes"] == K and info["input_shape"] == [4, 4]
    assert info["defence"]["defence"] == "rg" and info["defence"]["eps"] == 0.2
    assert info["limits"]["max_batch"] == 8
    assert "weight" not in json.dumps(info).lower()
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "/v1/predict" in spec["paths"] and "/v1/model" in spec["paths"]


def _bad_requests() -> list[tuple[str, dict, int, str]]:
    ok = _x(1).tolist()
    js = {"content-type": "application/json"}
    return [
        ("malformed", {"content": b'{"inputs": [[0.1,', "headers": js}, 400, "malformed_json"),
        ("not utf-8", {"content": b"\xff\xfe", "headers": js}, 400, "malformed_json"),
        ("content type", {"content": json.dumps({"inputs": ok}),
                          "headers": {"content-type": "text/plain"}}, 415,
         "unsupported_media_type"),
        ("no content type", {"content": json.dumps({"inputs": ok}).encode()}, 415,
         "unsupported_media_type"),
        ("wrong shape", {"json": {"inputs": [[0.5] * (D - 1)]}}, 422, "wrong_shape"),
        ("ragged", {"json": {"inputs": [[0.5] * D, [0.5] * 3]}}, 422, "wrong_shape"),
        ("flat", {"json": {"inputs": [0.5] * 3}}, 422, "invalid_request"),
        ("NaN", {"content": '{"inputs": [[NaN' + ", 0.5" * (D - 1) + "]]}", "headers": js},
         422, "non_finite"),
        ("inf", {"content": '{"inputs": [[1e999' + ", 0.5" * (D - 1) + "]]}", "headers": js},
         422, "non_finite"),
        ("Infinity", {"content": '{"inputs": [[-Infinity' + ", 0.5" * (D - 1) + "]]}",
                      "headers": js}, 422, "non_finite"),
        ("huge integer", {"content": '{"inputs": [[1' + "0" * 400 + ", 0.5" * (D - 1) + "]]}",
                          "headers": js}, 422, "non_finite"),
        ("deeply nested", {"content": b'{"inputs": ' + b"[" * 1500 + b"]" * 1500 + b"}",
                           "headers": js}, 400, "malformed_json"),
        ("bool", {"json": {"inputs": [[True] * D]}}, 422, "invalid_request"),
        ("null", {"json": {"inputs": [[None] * D]}}, 422, "invalid_request"),
        ("out of range", {"json": {"inputs": [[1.5] + [0.5] * (D - 1)]}}, 422, "out_of_range"),
        ("negative", {"json": {"inputs": [[-0.1] + [0.5] * (D - 1)]}}, 422, "out_of_range"),
        ("string", {"json": {"inputs": [["0.5"] * D]}}, 422, "invalid_request"),
        ("empty batch", {"json": {"inputs": []}}, 422, "empty_batch"),
        ("no inputs", {"json": {}}, 422, "invalid_request"),
        ("not an object", {"json": [[0.5] * D]}, 422, "invalid_request"),
        ("unknown field", {"json": {"inputs": ok, "temperature": 2}}, 422, "invalid_request"),
        ("batch too large", {"json": {"inputs": [[0.5] * D] * 9}}, 413, "batch_too_large"),
        ("body too large", {"content": b" " * 5000, "headers": js}, 413, "body_too_large"),
        ("streamed body too large", {"content": iter([b" " * 3000, b" " * 3000]),
                                     "headers": js}, 413, "body_too_large"),
    ]


@pytest.mark.parametrize("case", _bad_requests(), ids=lambda c: c[0])
def test_bad_input_gets_4xx_and_server_keeps_serving(
        served: tuple[str, DefendedModel, Path], case: tuple[str, dict, int, str]) -> None:
    url, _, _ = served
    _, kwargs, status, code = case
    key = {"X-API-Key": "bad-inputs"}
    kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **key}}
    r = httpx.post(f"{url}/v1/predict", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in r.text and "/work" not in r.text and ".py" not in r.text
    ok = httpx.post(f"{url}/v1/predict", json={"inputs": _x(2).tolist()},
                    headers={"X-API-Key": f"after-{case[0]}"})
    assert ok.status_code == 200


def test_unknown_route_and_method_are_json_errors(
        served: tuple[str, DefendedModel, Path]) -> None:
    url, _, _ = served
    r = httpx.get(f"{url}/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{url}/v1/predict")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_quota_gives_429_per_key(served: tuple[str, DefendedModel, Path]) -> None:
    url, _, _ = served
    h = {"X-API-Key": "thief"}
    x = _x(8).tolist()
    for k in range(5):                                  # quota 40 answers = 5 batches of 8
        r = httpx.post(f"{url}/v1/predict", json={"inputs": x}, headers=h)
        assert r.status_code == 200 and r.json()["quota_remaining"] == 40 - 8 * (k + 1)
    r = httpx.post(f"{url}/v1/predict", json={"inputs": x[:1]}, headers=h)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    other = httpx.post(f"{url}/v1/predict", json={"inputs": x[:1]}, headers={"X-API-Key": "b"})
    assert other.status_code == 200


def test_query_log_records_each_query(served: tuple[str, DefendedModel, Path]) -> None:
    url, _, log = served
    before = log.read_text().count("\n") if log.exists() else 0
    h = {"X-API-Key": "logged"}
    httpx.post(f"{url}/v1/predict", json={"inputs": _x(3).tolist()}, headers=h)
    httpx.post(f"{url}/v1/predict", json={"inputs": []}, headers=h)
    lines = log.read_text().splitlines()
    assert len(lines) == before + 2
    ok, bad = (json.loads(s) for s in lines[-2:])
    assert ok["status"] == 200 and ok["n"] == 3 and len(ok["inputs_sha256"]) == 3
    assert ok["client"].startswith("key-") and "logged" not in lines[-2]   # key hashed
    assert bad["status"] == 422 and bad["error"] == "empty_batch"


def test_query_log_rotates_by_size(tmp_path: Path) -> None:
    from rgaudit.serve.querylog import QueryLog

    q = QueryLog(tmp_path / "q.jsonl", max_bytes=1024, backups=2)
    for i in range(100):
        q.write(i=i, pad="x" * 50)
    q.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["q.jsonl", "q.jsonl.1", "q.jsonl.2"]
    assert all(p.stat().st_size <= 1024 for p in tmp_path.iterdir())
    last = json.loads((tmp_path / "q.jsonl").read_text().splitlines()[-1])
    assert last["i"] == 99


class _Slow(DefendedModel):
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.4)
        return super().predict(x)


def test_overload_gives_503_not_a_queue() -> None:
    clf = _classifier()
    model = _Slow(clf, build_poisoner(clf, "none", eps=0.0, norm="l1"))
    app = create_app(model, ServeSettings(max_pending=1, queue_timeout_s=5.0))
    codes: list[int] = []
    with BackgroundServer(app) as srv:
        def hit() -> None:
            codes.append(httpx.post(f"{srv.url}/v1/predict", json={"inputs": _x(1).tolist()},
                                    timeout=10).status_code)
        threads = [threading.Thread(target=hit) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = httpx.post(f"{srv.url}/v1/predict", json={"inputs": _x(1).tolist()})
    assert sorted(set(codes)) == [200, 503] and codes.count(200) >= 1
    assert after.status_code == 200


def test_queue_timeout_gives_503() -> None:
    clf = _classifier()
    model = _Slow(clf, build_poisoner(clf, "none", eps=0.0, norm="l1"))
    app = create_app(model, ServeSettings(max_pending=4, queue_timeout_s=0.1))
    codes: list[int] = []
    with BackgroundServer(app) as srv:
        def hit() -> None:
            r = httpx.post(f"{srv.url}/v1/predict", json={"inputs": _x(1).tolist()}, timeout=10)
            codes.append(r.status_code)
            if r.status_code == 503:
                assert r.json()["error"]["code"] == "queue_timeout"
        threads = [threading.Thread(target=hit) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert codes.count(200) >= 1 and codes.count(503) >= 1


def test_rg_needs_an_rbm_family_model() -> None:
    module = torch.nn.Linear(D, K)
    clf = TorchClassifier(module, (D,), K)
    with pytest.raises(ValueError, match="RBM-family"):
        build_poisoner(clf, "rg", eps=0.2, norm="l1")
    for defence in ("none", "random", "reverse-sigmoid", "mad"):
        model = DefendedModel(clf, build_poisoner(clf, defence, eps=0.2, norm="l1"))
        p, labels = model.predict(_x(5))
        assert np.allclose(p.sum(-1), 1) and np.array_equal(
            labels, clf.answer(torch.from_numpy(_x(5)).float()).numpy().argmax(-1))


def test_require_key_gives_401() -> None:
    clf = _classifier()
    model = DefendedModel(clf, build_poisoner(clf, "none", eps=0.0, norm="l1"))
    with BackgroundServer(create_app(model, ServeSettings(api_keys=frozenset({"k"})))) as srv:
        r = httpx.post(f"{srv.url}/v1/predict", json={"inputs": _x(1).tolist()},
                       headers={"X-API-Key": "rotated"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unknown_api_key"
        r = httpx.post(f"{srv.url}/v1/predict", json={"inputs": _x(1).tolist()})
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        r = httpx.post(f"{srv.url}/v1/predict", json={"inputs": _x(1).tolist()},
                       headers={"X-API-Key": "k"})
        assert r.status_code == 200
