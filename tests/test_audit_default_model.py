"""``rgaudit audit`` without ``--model``: the README's ``make audit`` path.

The default model is trained on first use (minutes), so ``ensure_default_model`` is replaced by a
stub returning a tiny digits model; everything after it (data from the model's config, the
audit, the report folder) runs for real.
"""

from __future__ import annotations

import pytest
import typer
from cli_apps import app_with
from test_audit import _tiny_model
from typer.testing import CliRunner

from rgaudit.commands.audit import register
from rgaudit.nets.io import load_model
from rgaudit.report.io import read_result


def _app() -> typer.Typer:
    return app_with(register)


@pytest.mark.slow
def test_audit_without_model_uses_the_default_model(tmp_path, monkeypatch):
    folder = _tiny_model(tmp_path)
    calls = []

    def fake_default(*args, **kwargs):
        calls.append((args, kwargs))
        return load_model(folder)

    monkeypatch.setattr("rgaudit.experiments.train_default.ensure_default_model", fake_default)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(_app(), [
        "audit", "--inputs", "2", "--out", "runs", "--mcrg-samples", "64",
        "--direct-samples", "64", "--judge-samples", "50", "--large-basis", "pairs:4",
        "--no-depth"])
    assert res.exit_code == 0, res.output
    assert len(calls) == 1
    assert "no --model: using the default digits model" in " ".join(res.output.split())
    run_dir = tmp_path / "runs" / res.output.strip().splitlines()[-1].split("/")[-1]
    doc = read_result(run_dir / "audit.json", "audit")
    assert doc["model"]["path"] == "models/default"
    assert doc["model"]["dataset"] == "digits"
    assert len(doc["inputs"]["indices"]) == 2


def test_audit_without_model_refuses_other_data(monkeypatch, tmp_path):
    monkeypatch.setattr("rgaudit.experiments.train_default.ensure_default_model",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("not reached")))
    res = CliRunner().invoke(_app(), ["audit", "--data", "bars", "--out", str(tmp_path)])
    assert res.exit_code != 0
    assert "without --model" in " ".join(res.output.split())
