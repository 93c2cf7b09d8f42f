"""The zoo: design, exact predictor pieces, the statistics, and resuming an interrupted run."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from rgaudit.executors import UnitStore, make_executor, unit_seed_sequence
from rgaudit.experiments import zoo
from rgaudit.experiments.zoo import ZooConfig, zoo_members


def test_design_spans_depth_width_length_decay_and_torch_models():
    units = zoo_members(ZooConfig())
    rbm = [u.payload for u in units if u.payload["family"] == "rbm"]
    other = [u.payload for u in units if u.payload["family"] != "rbm"]
    assert len(rbm) >= 24 and len(other) >= 8
    assert {p["depth"] for p in rbm} == {1, 2, 3, 4, 5}
    assert len({p["width"] for p in rbm}) >= 3
    assert {p["length"] for p in rbm} == {"short", "long"}
    assert len({p["weight_decay"] for p in rbm}) == 2
    assert {p["family"] for p in other} == {"mlp", "cnn"}
    assert len({u.key for u in units}) == len(units)


def test_config_errors_name_the_option():
    with pytest.raises(ValueError, match="--n-inputs"):
        ZooConfig(n_inputs=1)
    with pytest.raises(ValueError, match="--min-accuracy"):
        ZooConfig(min_accuracy=1.5)


def test_lipschitz_bound_uses_the_exact_conv_matrix():
    gen = torch.Generator().manual_seed(0)
    cnn = zoo._CNN(2, 3).to(torch.float64)
    x = torch.rand(1, 64, generator=gen, dtype=torch.float64)
    mats = zoo._linear_maps(cnn, x)
    assert [m.shape for m in mats] == [(2 * 64, 64), (3 * 16, 2 * 64), (10, 3 * 16)]
    conv = cnn.body[0]
    v = torch.randn(64, generator=gen, dtype=torch.float64)
    ref = nn.functional.conv2d(v.reshape(1, 1, 8, 8), conv.weight, None, 1, 1).reshape(-1)
    torch.testing.assert_close(mats[0] @ v, ref)
    expect = np.prod([np.linalg.norm(m.numpy(), 2) for m in mats])
    assert zoo.lipschitz_bound(cnn, x) == pytest.approx(expect, rel=1e-10)


def test_eigenspace_fraction_is_one_along_the_top_eigenvector():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(torch.float64)
    x = torch.rand(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    from rgaudit.fisher.autograd import dense_fim

    V = torch.linalg.eigh(dense_fim(model, x, "softmax"))[1]
    top = V[:, :, -1] * 0.3
    out = zoo.fim_predictors(model, x, top, torch.ones(4, dtype=torch.bool), 1)
    assert out["eig_fraction"] == pytest.approx(1.0, abs=1e-10)
    low = V[:, :, 0]
    out = zoo.fim_predictors(model, x, low, torch.ones(4, dtype=torch.bool), 1)
    assert out["eig_fraction"] == pytest.approx(0.0, abs=1e-10)


def test_correlation_statistics_on_exact_cases():
    rng = np.random.default_rng(0)
    x = np.arange(1.0, 13.0)
    res = zoo.spearman_with_ci(x, 5.0 - 0.3 * np.log(x), 500, rng)
    assert res.rho == pytest.approx(-1.0) and res.ci == pytest.approx([-1.0, -1.0])
    ho = zoo.held_out(x, 5.0 - 0.3 * np.log(x), [f"k{i}" for i in range(12)], 20, rng)
    assert ho.fixed_split_rho == pytest.approx(1.0)          # the fit ranks the held-out half
    assert ho.random_splits_frac_positive == 1.0
    noise = rng.standard_normal(12)
    from scipy.stats import spearmanr

    assert zoo.spearman_with_ci(x, noise, 200, rng).rho == pytest.approx(
        spearmanr(x, noise).statistic)


TINY = dict(n_rbm=2, n_torch=1, n_inputs=4, judge_samples=20, ddn_steps=5, bisect_steps=3,
            mcrg_inputs=1, mcrg_samples=256, clever_inputs=1, clever_batches=2,
            clever_batch_size=4, epochs_scale=0.1, n_boot=100, n_splits=2)


@pytest.mark.slow
def test_interrupted_zoo_resumes_and_skips_finished_units(tmp_path, monkeypatch):
    cfg = ZooConfig(**TINY)
    real = zoo.zoo_unit
    calls = []

    def interrupted(unit, ss, shared):
        if len(calls) == 1:
            raise KeyboardInterrupt                         # Ctrl-C during the second unit
        calls.append(unit.key)
        return real(unit, ss, shared)

    monkeypatch.setattr(zoo, "zoo_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        zoo.run_zoo(cfg, make_executor("local"), store=UnitStore(tmp_path, cfg.to_dict()))
    first = calls[0]
    assert len([p for p in (tmp_path / "units").glob("*.json")
                if not p.name.startswith(".")]) == 1

    def counting(unit, ss, shared):
        calls.append(unit.key)
        return real(unit, ss, shared)

    monkeypatch.setattr(zoo, "zoo_unit", counting)
    res = zoo.run_zoo(cfg, make_executor("local"), store=UnitStore(tmp_path, cfg.to_dict()))
    keys = [u.key for u in zoo_members(cfg)]
    assert calls[1:] == keys[1:] and first == keys[0]       # the finished unit was skipped
    assert [n.key for n in res.networks] == keys and not res.failures
    assert res.execution.cached == 1 and res.execution.computed == 2
    # the resumed unit's stored result is exactly what a fresh computation gives
    from rgaudit.data.registry import load_dataset

    fresh = real(zoo_members(cfg)[0], unit_seed_sequence(cfg.seed, keys[0]),
                 {"config": cfg, "dataset": load_dataset("digits")})
    stored = res.networks[0].to_dict()
    fresh.pop("timings"), stored.pop("timings")
    assert json.dumps(fresh, sort_keys=True) == json.dumps(stored, sort_keys=True)
    # the result document `rgaudit zoo` writes from this result matches the shipped schema
    from rgaudit.report.io import read_result, to_plain, write_result
    from rgaudit.schemas import validate

    path = write_result(tmp_path / "result.json", "zoo",
                        {**to_plain(res.to_dict()), "command": "rgaudit zoo", "wall_seconds": 1.0})
    validate(read_result(path, "zoo"))


def test_cli_rejects_bad_executor_and_foreign_folder(tmp_path):
    from typer.testing import CliRunner

    from rgaudit.cli import app
    from rgaudit.errors import OutputExistsError

    # --executor takes its values from rgaudit.choices.EXECUTORS: a typo is a usage error that
    # names the allowed values, before any folder is made
    r = CliRunner().invoke(app, ["zoo", "--executor", "nope", "--out", str(tmp_path / "z")],
                           env={"COLUMNS": "250", "NO_COLOR": "1"})
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and all(f"'{v}'" in text for v in ("nope", "local", "ray")), text
    assert not (tmp_path / "z").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not rgaudit's")
    r = CliRunner().invoke(app, ["zoo", "--out", str(tmp_path / "mine")])
    assert isinstance(r.exception, OutputExistsError), r.output
    assert "not written by rgaudit" in str(r.exception)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "not rgaudit's"

