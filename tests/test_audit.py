"""Quick audit of a tiny model through the CLI writes a valid JSON result."""

from __future__ import annotations

import math

import pytest
import torch
import typer
from typer.testing import CliRunner

from rgaudit.commands.attack import register as register_attack
from rgaudit.commands.audit import register as register_audit
from rgaudit.data import load_dataset
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import save_model
from rgaudit.report.io import read_result


def register(app: typer.Typer) -> None:
    """``audit`` and ``attack`` (one module each)."""
    register_audit(app)
    register_attack(app)


def _tiny_model(tmp_path):
    """A quickly fitted 64-16-10 network: random first layer, output layer by least squares."""
    ds = load_dataset("digits", seed=0)
    g = torch.Generator().manual_seed(0)
    net = DeepRBM.random([64, 16, 10], generator=g, scale=4.0, dtype=torch.float32)
    with torch.no_grad():
        H = net.layer(1).prob_up(ds.X_train)
        Y = torch.nn.functional.one_hot(ds.y_train, 10).float() * 8 - 4
        A = torch.cat([H, torch.ones(H.shape[0], 1)], 1)
        sol = torch.linalg.lstsq(A, Y).solution
        net.layer(2).W.copy_(sol[:-1].T)
        net.layer(2).a.copy_(sol[-1])
    return save_model(net, tmp_path / "tiny")


@pytest.mark.slow
def test_quick_audit_cli_writes_valid_json(tmp_path):
    model = _tiny_model(tmp_path)
    app = typer.Typer()
    register(app)

    @app.command()
    def _noop() -> None:  # a second command keeps typer in multi-command mode
        pass

    res = CliRunner().invoke(app, [
        "audit", "--model", str(model), "--inputs", "4", "--out", str(tmp_path / "runs"),
        "--mcrg-samples", "800", "--direct-samples", "800", "--judge-samples", "200",
        "--large-basis", "pairs:8", "--no-depth"])
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs" / res.output.strip().splitlines()[-1].split("/")[-1]
    doc = read_result(run_dir / "audit.json", "audit")
    from rgaudit.schemas import validate

    validate(doc)                           # the shipped JSON Schema of the result kind
    assert set(doc["fim"]) == {"rg-singles", "rg-large", "direct", "mean-field"}
    for norm in ("l2", "linf"):
        assert {"fim-direct", "fgm" if norm == "l2" else "fgsm", "pgd", "deepfool",
                "random"} <= set(doc["attacks"][norm])
        for r in doc["attacks"][norm].values():
            # a fraction of the 4 attacked inputs (not, e.g., a mean of probabilities)
            assert all(abs(4 * f - round(4 * f)) < 1e-9 for f in r["flip_rate"]), r
    assert (run_dir / "report.html").read_text().count("data:image/png;base64") >= 3
    assert math.isfinite(doc["timings"]["total"])

    res = CliRunner().invoke(app, ["attack", str(model), "--method", "pgd", "--eps", "1.0",
                                   "--inputs", "3", "--judge-samples", "200"])
    assert res.exit_code == 0, res.output
    assert "flip rate" in res.output


def test_data_split_comes_from_the_model_not_the_seed(tmp_path):
    """--seed must not change the train/test split: it is read from the model's config."""
    from rich.console import Console

    from rgaudit.commands._model_data import data_for_model
    from rgaudit.commands._model_data import load_model_and_data as _load

    ds3 = load_dataset("digits", seed=3)
    from rgaudit.nets.io import load_model

    net, _ = load_model(_tiny_model(tmp_path))
    path = save_model(net, tmp_path / "split3", metadata={
        "dataset_spec": "digits", "dataset": ds3.to_dict()})
    _, info, ds = _load(path, None, "cpu", Console(quiet=True))
    assert info["split_seed"] == 3 and info["split_seed_source"] == "model config"
    assert torch.equal(ds.X_test, ds3.X_test)
    # no model test image is a training image of the model's split
    train = {tuple(r.tolist()) for r in ds3.X_train}
    assert sum(tuple(r.tolist()) in train for r in ds.X_test) < 0.05 * ds.X_test.shape[0]
    assert data_for_model({"dataset_spec": "digits", "dataset": {"split_seed": 0}},
                          "digits") == ("digits", 0, "model config")
    with pytest.raises(typer.BadParameter, match="disagrees"):
        data_for_model({"dataset_spec": "digits", "dataset": {"split_seed": 0}}, "bars:8")
    app = typer.Typer()
    register(app)

    @app.command()
    def _noop() -> None:
        pass

    res = CliRunner().invoke(app, ["attack", str(path), "--method", "random", "--eps", "0.5",
                                   "--inputs", "2", "--judge-samples", "50", "--seed", "1",
                                   "--data", "bars:8"])
    assert res.exit_code != 0 and "disagrees" in res.output
