"""``rgaudit audit --inputs``: a value the user gives is kept or refused, never lowered (issue 16).

Deterministic (no sampling happens: the plan is checked and the command stopped right after).
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import rgaudit.experiments.audit_plan as plan_mod
from rgaudit.cli import app
from rgaudit.errors import ResourceError
from rgaudit.experiments.audit import AuditConfig
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import save_model

GIB = 2**30


class _Stop(Exception):
    pass


def _model(tmp_path, widths=(784, 500, 500, 10)):
    net = DeepRBM.random(list(widths), generator=torch.Generator().manual_seed(0),
                         dtype=torch.float32)
    return save_model(net, tmp_path / "m", metadata={
        "dataset_spec": "digits28", "dataset": {"name": "digits28", "split_seed": 0}})


def _plan_args(tmp_path, monkeypatch, extra):
    """Run the command up to the plan; return what plan_audit received."""
    seen = {}
    real = plan_mod.plan_audit

    def spy(widths, cfg, **kw):
        seen.update(cfg=cfg, plan=real(widths, cfg, **kw), **kw)
        raise _Stop

    monkeypatch.setattr(plan_mod, "plan_audit", spy)
    res = CliRunner().invoke(app, ["audit", "--model", str(_model(tmp_path)), "--no-depth",
                                   "--max-memory", "64G", "--out", str(tmp_path / "runs"),
                                   *extra])
    assert isinstance(res.exception, _Stop), res.output
    return seen


def test_default_inputs_may_be_lowered_by_the_plan(tmp_path, monkeypatch):
    seen = _plan_args(tmp_path, monkeypatch, [])
    assert "n_inputs" not in seen["fixed"] and seen["cfg"].n_inputs == AuditConfig().n_inputs
    assert seen["plan"].config.n_inputs < 20          # the MNIST-scale plan lowers the default


def test_explicit_inputs_equal_to_the_default_are_kept(tmp_path, monkeypatch):
    seen = _plan_args(tmp_path, monkeypatch, ["--inputs", "20"])
    assert "n_inputs" in seen["fixed"]
    assert seen["plan"].config.n_inputs == 20 and not any(
        c.startswith("n_inputs") for c in seen["plan"].changes)


def test_explicit_inputs_that_do_not_fit_are_refused_with_the_estimate(tmp_path):
    est = plan_mod.estimate_audit([784, 500, 500, 10], AuditConfig(n_inputs=20))
    limit = est.memory_bytes / GIB * 0.8                        # 20 inputs cannot fit
    assert plan_mod.plan_audit([784, 500, 500, 10], AuditConfig(),
                               memory_limit=int(limit * GIB)).config.n_inputs < 20
    res = CliRunner().invoke(app, ["audit", "--model", str(_model(tmp_path)), "--inputs", "20",
                                   "--no-depth", "--max-memory", f"{limit:.2f}G",
                                   "--out", str(tmp_path / "runs")])
    assert isinstance(res.exception, ResourceError), res.output
    msg = str(res.exception)
    assert "20 inputs" in msg and "GiB" in msg and "estimated wall time" in msg
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("given", [3, 20])
def test_plan_keeps_a_fixed_input_count(given):
    plan = plan_mod.plan_audit([784, 500, 500, 10], AuditConfig(n_inputs=given),
                               fixed={"n_inputs"}, memory_limit=64 * GIB)
    assert plan.config.n_inputs == given
