"""The extraction monitor over real HTTP (uvicorn on an ephemeral loopback port): off by
default, the report needs the admin key, a thief's flag is visible and logged, ``block`` gives
403 to the flagged client only."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from rgaudit.models.base import RBMClassifier
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.serve.app import create_app
from rgaudit.serve.defended import DefendedModel, build_poisoner
from rgaudit.serve.monitor import ADMIN_KEY_ENV, MonitorSettings
from rgaudit.serve.prada import PradaConfig
from rgaudit.serve.runner import BackgroundServer
from rgaudit.serve.settings import ServeSettings

D, K = 16, 4
ADMIN = "operator-secret-1"
#: small windows so that a test stream of ~100 queries reaches a verdict
FAST = PradaConfig(delta=0.85, min_distances=50, test_every=1)


def _model() -> DefendedModel:
    net = DeepRBM.random([D, 8, K], generator=torch.Generator().manual_seed(0), scale=2.0)
    clf = RBMClassifier(net, (4, 4))
    return DefendedModel(clf, build_poisoner(clf, "none", eps=0.2, norm="l1"))


def _honest(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random((n, D))


def _thief(rng: np.random.Generator) -> np.ndarray:
    """20 natural seeds, then 5 small sign steps around each (as in test_serve_prada: over 300
    seeds the final W of this pattern was at most 0.59, far below delta 0.85)."""
    base = rng.random((20, D))
    steps = np.clip(np.repeat(base, 5, 0) + 1e-3 * rng.choice([-1.0, 1.0], (100, D)), 0, 1)
    return np.concatenate([base, steps])


def _send(url: str, key: str, x: np.ndarray, batch: int = 10) -> list[int]:
    codes = []
    with httpx.Client(headers={"X-API-Key": key}) as cl:
        for s in range(0, len(x), batch):
            codes.append(cl.post(f"{url}/v1/predict",
                                 json={"inputs": x[s:s + batch].tolist()}).status_code)
    return codes


def test_monitor_is_off_by_default(tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    app = create_app(_model(), ServeSettings(log_path=log))
    with BackgroundServer(app) as srv:
        assert _send(srv.url, "thief", _thief(np.random.default_rng(0))) == [200] * 12
        r = httpx.get(f"{srv.url}/v1/monitor", headers={"X-Admin-Key": ADMIN})
    assert r.status_code == 404
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records and not any("prada_flagged" in rec for rec in records)


def test_monitor_flags_the_thief_and_reports_to_the_admin_only(tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    rng = np.random.default_rng(5)
    monitor = MonitorSettings(monitor="prada", admin_key=ADMIN, prada=FAST)
    app = create_app(_model(), ServeSettings(log_path=log), monitor)
    with BackgroundServer(app) as srv:
        assert set(_send(srv.url, "honest", _honest(rng, 200))) == {200}
        assert set(_send(srv.url, "thief", _thief(rng))) == {200}     # action "log": answered
        url = f"{srv.url}/v1/monitor"
        no_key = httpx.get(url)
        wrong = httpx.get(url, headers={"X-Admin-Key": "not-the-key"})
        client_key = httpx.get(url, headers={"X-API-Key": ADMIN})      # not the admin header
        ok = httpx.get(url, headers={"X-Admin-Key": ADMIN})
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "missing_admin_key"
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_admin_key"
    assert client_key.status_code == 401
    assert ok.status_code == 200, ok.text
    rep = ok.json()
    assert rep["monitor"] == "prada" and rep["delta"] == 0.85 and rep["flagged"] == 1
    by = {c["n_queries"]: c for c in rep["clients"]}
    honest, thief = by[200], by[120]
    assert not honest["flagged"] and honest["w"] > 0.85
    assert thief["flagged"] and thief["w"] < 0.85 and 50 < thief["flagged_at"] <= 120
    assert thief["client"].startswith("key-") and "thief" not in json.dumps(rep)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    mine = [r for r in records if r["client"] == thief["client"]]
    assert [r["prada_flagged"] for r in mine][-1] is True
    assert not any(r["prada_flagged"] for r in records if r["client"] == honest["client"])


def test_block_action_refuses_the_flagged_client_only() -> None:
    rng = np.random.default_rng(6)
    monitor = MonitorSettings(monitor="prada", action="block", admin_key=ADMIN, prada=FAST)
    with BackgroundServer(create_app(_model(), ServeSettings(), monitor)) as srv:
        codes = _send(srv.url, "thief", _thief(rng))
        r = httpx.post(f"{srv.url}/v1/predict", json={"inputs": _honest(rng, 1).tolist()},
                       headers={"X-API-Key": "thief"})
        other = _send(srv.url, "honest", _honest(rng, 60))
    assert codes[0] == 200 and r.status_code == 403
    assert r.json()["error"]["code"] == "client_flagged"
    assert "Traceback" not in r.text
    assert set(other) == {200}


def test_report_is_disabled_without_an_admin_key() -> None:
    monitor = MonitorSettings(monitor="prada", prada=FAST)
    with BackgroundServer(create_app(_model(), ServeSettings(), monitor)) as srv:
        r = httpx.get(f"{srv.url}/v1/monitor", headers={"X-Admin-Key": ADMIN})
    assert r.status_code == 403 and r.json()["error"]["code"] == "monitor_disabled"


def test_monitor_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from rgaudit.commands.serve import _monitor_settings

    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    off = _monitor_settings("none", "log", None, None)
    assert off.monitor == "none" and off.admin_key is None
    with pytest.raises(ValueError, match="need --monitor prada"):
        _monitor_settings("none", "log", 0.9, None)
    with pytest.raises(ValueError, match="--monitor must be one of"):
        _monitor_settings("prado", "log", None, None)
    with pytest.raises(ValueError, match="--monitor-action"):
        _monitor_settings("prada", "drop", None, None)
    with pytest.raises(ValueError, match="--prada-delta"):
        _monitor_settings("prada", "log", 2.0, None)
    with pytest.raises(ValueError, match="at least 8"):
        _monitor_settings("prada", "log", None, "short")
    monkeypatch.setenv(ADMIN_KEY_ENV, ADMIN)
    on = _monitor_settings("prada", "block", 0.9, None)
    assert on.admin_key == ADMIN and on.action == "block" and on.prada.delta == 0.9
    assert _monitor_settings("prada", "log", None, "from-option").admin_key == "from-option"
