"""`clone-attack --target`: the cloning attackers against a served API over HTTP, end to end;
`rgaudit protect` output served through `--config`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from rgaudit.commands.cloning import register
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import save_model
from rgaudit.serve.app import create_app
from rgaudit.serve.loading import load_defended
from rgaudit.serve.runner import BackgroundServer


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = DeepRBM.random([64, 12, 10], generator=torch.Generator().manual_seed(0), scale=3.0)
    return save_model(net, tmp_path_factory.mktemp("m") / "m")


@pytest.mark.slow
def test_clone_attack_over_http(model_dir: Path, tmp_path: Path) -> None:
    served = load_defended(str(model_dir), defence="rg", eps=0.3, norm="l1")
    out = tmp_path / "run"
    with BackgroundServer(create_app(served)) as srv:
        res = CliRunner().invoke(_app(), [
            "clone-attack", str(model_dir), "--defence", "none", "--defence", "rg",
            "--eps", "0.3", "--queries", "30", "--attacker", "distill-mlp", "--attacker",
            "knockoff-prob", "--attacker", "label-only", "--epochs", "3", "--target", srv.url,
            "--out", str(out)])
        assert res.exit_code == 0, res.output
    doc = json.loads((out / "result.json").read_text())
    rows = {(r["defence"], r["attacker"]): r for r in doc["rows"]}
    assert {d for d, _ in rows} == {"none", "rg", "served:rg"}
    assert doc["victim"]["served"]["defence"]["defence"] == "rg"
    served_row, lib_row = rows[("served:rg", "distill-mlp")], rows[("rg", "distill-mlp")]
    # the deployed defence returns exactly the library's answers: same utility, same clone
    assert served_row["utility"] == lib_row["utility"]
    assert served_row["utility"]["top1_preserved"] == 1.0
    assert served_row["accuracy"] == lib_row["accuracy"]
    # the label-only thief sees only the argmax, which every defence keeps
    assert rows[("served:rg", "label-only")]["accuracy"] == rows[("none", "label-only")]["accuracy"]
    assert "served:rg" in (out / "report.md").read_text()


def test_clone_attack_target_errors(model_dir: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(_app(), ["clone-attack", str(model_dir), "--queries", "10",
                                      "--target", "ftp://x", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "http://HOST:PORT" in res.output
    res = CliRunner().invoke(_app(), ["clone-attack", str(model_dir), "--queries", "10",
                                      "--target", "http://127.0.0.1:9", "--out",
                                      str(tmp_path / "o")])
    assert res.exit_code != 0 and "cannot reach" in res.output


def test_serve_config_from_protect(model_dir: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(_app(), ["protect", str(model_dir), "--eps", "0.25", "--norm", "l2",
                                      "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    from_config = load_defended(str(model_dir), config=tmp_path / "p.json")
    direct = load_defended(str(model_dir), defence="rg", eps=0.25, norm="l2")
    assert from_config.poisoner.config() == direct.poisoner.config()
    x = np.random.default_rng(0).random((5, 64))
    assert np.array_equal(from_config.predict(x)[0], direct.predict(x)[0])
    with pytest.raises(ValueError, match="cannot be combined"):
        load_defended(str(model_dir), config=tmp_path / "p.json", eps=0.1)
    other = save_model(DeepRBM.random([64, 12, 10], generator=torch.Generator().manual_seed(1)),
                       tmp_path / "other")
    with pytest.raises(ValueError, match="another model"):
        load_defended(str(other), config=tmp_path / "p.json")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_rgaudit_serve_command(model_dir: Path, tmp_path: Path) -> None:
    """The real command in a subprocess: starts, answers, logs, stops on SIGTERM."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    port, log = _free_port(), tmp_path / "q.jsonl"
    cmd = [sys.executable, "-c", "from rgaudit.cli import main; main()", "serve", str(model_dir),
           "--defence", "rg", "--eps", "0.2", "--port", str(port), "--log", str(log)]
    out = (tmp_path / "server.out").open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        info = httpx.get(f"{url}/v1/model").json()
        assert info["defence"]["defence"] == "rg" and info["n_features"] == 64
        x = np.random.default_rng(1).random((3, 64))
        r = httpx.post(f"{url}/v1/predict", json={"inputs": x.tolist()}, timeout=30)
        assert r.status_code == 200
        want = load_defended(str(model_dir), defence="rg", eps=0.2, norm="l1").predict(x)[0]
        assert np.array_equal(np.asarray(r.json()["probabilities"]), want)
    finally:
        proc.terminate()
        proc.wait(30)
        out.close()
    assert json.loads(log.read_text().splitlines()[-1])["status"] == 200
