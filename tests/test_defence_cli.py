"""A quick `clone-attack` run through the CLI writes valid JSON, a report and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from rgaudit.commands.cloning import register
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import save_model
from rgaudit.report.io import read_result
from rgaudit.schemas import validate


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.mark.slow
def test_protect_and_clone_attack(tmp_path: Path) -> None:
    net = DeepRBM.random([64, 12, 10], generator=torch.Generator().manual_seed(0), scale=3.0)
    model = save_model(net, tmp_path / "m")
    runner = CliRunner()
    res = runner.invoke(_app(), ["protect", str(model), "--eps", "0.2", "--norm", "kl",
                                 "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    cfg = read_result(tmp_path / "p.json", "poisoning-config")
    validate(cfg)
    assert cfg["defence"] == "rg" and cfg["norm"] == "kl" and cfg["eps"] == 0.2
    out = tmp_path / "run"
    res = runner.invoke(_app(), ["clone-attack", str(model), "--defence", "none", "--defence",
                                 "rg", "--eps", "0.3", "--queries", "40", "--attacker",
                                 "distill-mlp", "--attacker", "label-only", "--epochs", "5",
                                 "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "result.json").read_text())
    assert doc["kind"] == "cloning" and len(doc["rows"]) == 4
    validate(doc)
    n_eval = doc["victim"]["n_eval"]
    for row in doc["rows"]:
        # fractions of the evaluation set: integer counts out of n_eval
        for key in ("accuracy", "fidelity"):
            assert abs(row[key] * n_eval - round(row[key] * n_eval)) < 1e-6, (key, row[key])
        assert row["utility"]["top1_preserved"] == 1.0
        assert row["utility"]["mean_l1"] <= 0.3 + 1e-9
    assert (out / "report.md").read_text().startswith("# Cloning study")
    assert (out / "cloning_fidelity_vs_eps.png").is_file()


def test_bad_norm_is_a_clear_error(tmp_path: Path) -> None:
    net = DeepRBM.random([64, 4, 10], generator=torch.Generator().manual_seed(0))
    model = save_model(net, tmp_path / "m")
    res = CliRunner().invoke(_app(), ["protect", str(model), "--norm", "linf", "--out",
                                      str(tmp_path / "p.json")])
    assert res.exit_code != 0 and "norm" in res.output


@pytest.mark.parametrize("args,msg", [
    (["--queries", "0"], "positive"),
    (["--queries", "-5"], "positive"),
    (["--queries", "2.5"], "integers"),
    (["--eps", "nan"], "finite"),
    (["--eps", "inf"], "finite"),
    (["--eps", "0.1,-0.2"], "non-negative"),
    (["--eps-adv", "0"], "eps-adv"),
    (["--eps-adv", "nan"], "eps-adv"),
    (["--data", "no-such-data"], "cannot load data set"),      # DatasetError → clean error
])
def test_clone_attack_rejects_bad_inputs(tmp_path: Path, args: list[str], msg: str) -> None:
    net = DeepRBM.random([64, 4, 10], generator=torch.Generator().manual_seed(0))
    model = save_model(net, tmp_path / "m")
    res = CliRunner().invoke(_app(), ["clone-attack", str(model), *args, "--out",
                                      str(tmp_path / "run")])
    assert res.exit_code == 2                                  # typer usage error, no traceback
    assert msg in " ".join(res.output.split()), res.output
    assert not (tmp_path / "run" / "result.json").exists()


def test_clone_attack_checks_feature_count(tmp_path: Path) -> None:
    net = DeepRBM.random([20, 4, 10], generator=torch.Generator().manual_seed(0))
    model = save_model(net, tmp_path / "m")
    res = CliRunner().invoke(_app(), ["clone-attack", str(model), "--data", "digits",
                                      "--out", str(tmp_path / "run")])
    assert res.exit_code != 0 and "features" in " ".join(res.output.split()), res.output


def test_protect_fails_early_for_an_unusable_estimator(tmp_path: Path) -> None:
    net = DeepRBM.random([64, 30, 10], generator=torch.Generator().manual_seed(0))
    model = save_model(net, tmp_path / "m")
    res = CliRunner().invoke(_app(), ["protect", str(model), "--estimator", "exact", "--out",
                                      str(tmp_path / "p.json")])
    assert res.exit_code != 0 and "cannot poison" in " ".join(res.output.split()), res.output
    assert not (tmp_path / "p.json").exists()
