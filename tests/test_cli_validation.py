"""Bad command-line inputs give a clean usage error up front, never a traceback or a NaN."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from rgaudit.cli import app
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import save_model

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "250", "NO_COLOR": "1"})


def _clean_error(res, *needles: str, code: int = 2) -> None:
    """Exit ``code`` without a Python traceback; the message names every needle."""
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    text = " ".join(res.output.split())
    for needle in needles:
        assert needle in text, (needle, res.output)


@pytest.fixture(scope="module")
def bars_model(tmp_path_factory):
    """A random 16-8-2 network recorded as trained on bars:4 with split seed 0."""
    net = DeepRBM.random([16, 8, 2], generator=torch.Generator().manual_seed(0), scale=1.0,
                         dtype=torch.float32)
    return save_model(net, tmp_path_factory.mktemp("m") / "bars", metadata={
        "dataset_spec": "bars:4", "dataset": {"name": "bars:4:2000", "split_seed": 0}})


# --- diagnose ---------------------------------------------------------------------------------

def test_diagnose_defaults_to_model_data(bars_model, monkeypatch, tmp_path):
    seen = {}

    class Stop(Exception):
        pass

    def fake(net, x, y, **kw):
        seen["x"] = x
        raise Stop

    monkeypatch.setattr("rgaudit.experiments.diagnose.run_diagnose", fake)
    res = _run("diagnose", str(bars_model), "--per-class", "0", "--out", str(tmp_path))
    assert isinstance(res.exception, Stop), res.output
    assert seen["x"].shape[1] == 16


def test_diagnose_data_mismatch_is_clean(bars_model, tmp_path):
    res = _run("diagnose", str(bars_model), "--data", "digits", "--out", str(tmp_path))
    _clean_error(res, "disagrees", "bars:4")


def test_diagnose_bad_model_folder_is_clean(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _run("diagnose", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    _clean_error(res, "MODEL")


# --- direct FIM -------------------------------------------------------------------------------

def test_direct_fim_rejects_too_few_samples():
    from rgaudit.fisher.direct import direct_fim

    net = DeepRBM.random([6, 4, 2], generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="n_samples >= n_blocks"):
        direct_fim(net, torch.rand(6), 0)
    with pytest.raises(ValueError, match="n_samples >= n_blocks"):
        direct_fim(net, torch.rand(6), 15, n_blocks=16)


# --- audit / attack ---------------------------------------------------------------------------

@pytest.mark.parametrize("opt,val", [("--mcrg-samples", "0"), ("--direct-samples", "0"),
                                     ("--judge-samples", "0"), ("--inputs", "0")])
def test_audit_sample_minimums(bars_model, opt, val, tmp_path):
    res = _run("audit", "--model", str(bars_model), opt, val, "--out", str(tmp_path))
    _clean_error(res, opt)


def test_audit_bad_large_basis_before_computing(bars_model, monkeypatch, tmp_path):
    def boom(*a, **k):
        raise AssertionError("computation started")

    monkeypatch.setattr("rgaudit.commands.audit._load", boom)
    for spec in ("bogus", "pairs:x", "order:0", "pairs:0"):
        res = _run("audit", "--model", str(bars_model), "--large-basis", spec,
                   "--out", str(tmp_path))
        _clean_error(res, "--large-basis")


def test_audit_bad_model_is_clean(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _run("audit", "--model", str(tmp_path / "empty"), "--out", str(tmp_path))
    _clean_error(res, "--model")


@pytest.mark.parametrize("eps", ["nan", "inf"])
def test_attack_rejects_non_finite_eps(bars_model, eps):
    res = _run("attack", str(bars_model), "--eps", eps)
    _clean_error(res, "--eps")  # nan fails click's min=0 check, inf the finiteness check


@pytest.mark.parametrize("opt", ["--samples", "--judge-samples", "--inputs"])
def test_attack_sample_minimums(bars_model, opt):
    res = _run("attack", str(bars_model), "--eps", "1", opt, "0")
    _clean_error(res, opt)


def test_attack_help_documents_every_option():
    res = _run("attack", "--help")
    text = " ".join(res.output.split())
    for phrase in ("Inputs to attack", "Chains per stochastic judgement",
                   "Seed of the attack", "cpu, cuda"):
        assert phrase in text


# --- train / info -----------------------------------------------------------------------------

@pytest.mark.parametrize("opt", ["--k", "--epochs", "--pretrain-epochs", "--eval-samples",
                                 "--threads"])
def test_train_option_minimums(opt, tmp_path):
    res = _run("train", "--data", "bars:2:40", opt, "-1", "--out", str(tmp_path / "m"))
    _clean_error(res, opt)


def test_train_zero_means_skip_and_zero_k_rejected(tmp_path):
    assert "0 skips" in " ".join(_run("train", "--help").output.split())
    _clean_error(_run("train", "--k", "0", "--out", str(tmp_path / "m")), "--k")
    _clean_error(_run("train", "--threads", "0", "--out", str(tmp_path / "m")), "--threads")


def test_train_bad_objective_before_training(monkeypatch, tmp_path):
    monkeypatch.setattr("rgaudit.data.load_dataset",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded data")))
    res = _run("train", "--objective", "bogus", "--out", str(tmp_path / "m"))
    _clean_error(res, "--objective", "mean_field")  # a usage error: exit status 2


@pytest.mark.parametrize("widths", ["64,,10", "64,10,", ",64,10", "64,x,10", "64"])
def test_train_bad_widths(widths, tmp_path):
    res = _run("train", "--widths", widths, "--out", str(tmp_path / "m"))
    _clean_error(res, "--widths")


def test_parse_widths_rejects_empty_entry():
    from rgaudit.commands.train import parse_widths

    assert parse_widths("64, 100,10") == (64, 100, 10)
    with pytest.raises(ValueError, match="empty entry"):
        parse_widths("64,,10")


def test_train_unwritable_out_is_clean():
    res = _run("train", "--data", "bars:2:40", "--widths", "4,2", "--epochs", "0",
               "--pretrain-epochs", "0", "--eval-samples", "1", "--out", "/dev/null/x")
    _clean_error(res, "cannot save", "/dev/null/x")  # checked before training: exit 2


@pytest.mark.parametrize("meta", [
    {},
    {"accuracy": "high", "training": "recipe"},
    {"accuracy": {"mean_field": 0.9}, "training": {"finetune": 3}},
    {"accuracy": {"mean_field": {"accuracy": "x"}, "stochastic": {}},
     "training": {"pretrain": {"k": 1}}},
])
def test_info_tolerates_missing_or_mistyped_fields(meta, tmp_path):
    net = DeepRBM.random([4, 3, 2], generator=torch.Generator().manual_seed(0))
    path = save_model(net, tmp_path / "m", metadata=meta)
    res = _run("info", str(path))
    assert res.exit_code == 0, (res.output, res.exception)
    assert "?" in res.output


# --- relu-scaling / ising ---------------------------------------------------------------------

@pytest.mark.parametrize("args,opt", [(["--n-nets", "0"], "--n-nets"),
                                      (["--max-weight-mib", "0"], "--max-weight-mib"),
                                      (["--max-weight-mib", "-5"], "--max-weight-mib"),
                                      (["--width", "0"], "--width")])
def test_relu_option_minimums(args, opt, tmp_path):
    _clean_error(_run("relu-scaling", "--quick", *args, "--out", str(tmp_path)), opt)


def test_relu_cap_that_skips_every_cell_fails_up_front(monkeypatch, tmp_path):
    monkeypatch.setattr("rgaudit.experiments.relu.run.run_relu_study",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    res = _run("relu-scaling", "--dims", "4096,16384", "--max-weight-mib", "1",
               "--out", str(tmp_path))
    _clean_error(res, "--max-weight-mib", "skips every cell")


def test_relu_help_shows_defaults():
    text = " ".join(_run("relu-scaling", "--help").output.split())
    for default in ("64,256,1024,4096,16384", "1-8", "(default: 256)", "(default: 24)",
                    "(default: 600)"):
        assert default in text, default


@pytest.mark.parametrize("args,opt", [(["--threads", "0"], "--threads"),
                                      (["--even", "9"], "--even"),
                                      (["--odd", "0"], "--odd"),
                                      (["--sweeps", "10"], "--sweeps"),
                                      (["--L", "20", "--levels", "3"], "--L")])
def test_ising_errors_name_the_option(args, opt, tmp_path):
    res = _run("ising", *args, "--out", str(tmp_path))
    _clean_error(res, opt)
    assert "n_even" not in res.output and "n_sweeps" not in res.output
