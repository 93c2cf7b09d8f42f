"""The audit's cost model and up-front refusal (issue 16)."""

import pytest
import torch
from typer.testing import CliRunner

from rgaudit.cli import app
from rgaudit.errors import ResourceError
from rgaudit.experiments.audit import AuditConfig
from rgaudit.experiments.audit_plan import (
    MEMORY_TARGET,
    TIME_TARGET_S,
    basis_size,
    estimate_audit,
    plan_audit,
)
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import save_model
from rgaudit.rg.operators import parse_basis

GIB = 2**30


def test_basis_sizes_match_the_operator_sets():
    pilot = (torch.rand(200, 7, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    for spec in ("singles", "pairs", "pairs:5", "pairs:500", "order:2", "order:3", "full"):
        assert basis_size(spec, 7) == parse_basis(spec, 7, pilot).size, spec


def test_defaults_fit_unchanged_on_the_8x8_model():
    plan = plan_audit([64, 100, 100, 10], AuditConfig(), memory_limit=8 * GIB)
    assert plan.changes == [] and plan.config == AuditConfig()
    assert plan.estimate.memory_bytes < MEMORY_TARGET and plan.estimate.seconds < TIME_TARGET_S
    assert "20 inputs" in plan.summary() and plan.to_dict()["chosen"]["n_inputs"] == 20
    with_depth = plan_audit([64, 100, 100, 10], AuditConfig(), memory_limit=8 * GIB,
                            depth_study=True)
    assert with_depth.depth_inputs == 10 and with_depth.changes == []


def test_mnist_scale_defaults_are_scaled_to_fit_and_say_so():
    plan = plan_audit([784, 500, 500, 10], AuditConfig(), memory_limit=8 * GIB)
    assert plan.estimate.memory_bytes <= MEMORY_TARGET
    assert plan.estimate.seconds <= TIME_TARGET_S
    assert plan.config.n_inputs < 20 and any("n_inputs 20 →" in c for c in plan.changes)
    assert "scaled to fit" in plan.summary()
    d = plan.to_dict()
    assert d["chosen"]["n_inputs"] == plan.config.n_inputs and d["changes"] == plan.changes
    deep = plan_audit([784, 500, 500, 10], AuditConfig(), memory_limit=8 * GIB,
                      depth_study=True)
    assert deep.depth_inputs < 10 and "depth study on" in deep.summary()
    assert deep.estimate.memory_bytes <= MEMORY_TARGET


def test_user_sizes_are_kept_and_a_too_large_configuration_is_refused_up_front():
    cfg = AuditConfig(n_inputs=20)
    with pytest.raises(ResourceError, match=r"needs about .* GiB.*limit of 4 GiB") as err:
        plan_audit([784, 2000, 2000, 10], cfg, fixed={"n_inputs"}, memory_limit=4 * GIB)
    assert "estimated wall time" in str(err.value) and "--max-memory" in str(err.value)
    ok = plan_audit([784, 500, 500, 10], AuditConfig(mcrg_samples=3000),
                    fixed={"mcrg_samples"}, memory_limit=8 * GIB)
    assert ok.config.mcrg_samples == 3000


def test_memory_grows_with_inputs_and_basis_not_with_samples():
    base = estimate_audit([784, 500, 500, 10], AuditConfig(n_inputs=4))
    more = estimate_audit([784, 500, 500, 10], AuditConfig(n_inputs=4, mcrg_samples=64000))
    wider = estimate_audit([784, 500, 500, 10], AuditConfig(n_inputs=8))
    assert more.memory_bytes == base.memory_bytes and more.seconds > base.seconds
    assert wider.memory_bytes > 1.5 * base.memory_bytes - 1 * GIB


def test_cli_refuses_before_sampling(tmp_path):
    net = DeepRBM.random([784, 600, 600, 10], generator=torch.Generator().manual_seed(0),
                         dtype=torch.float32)
    path = save_model(net, tmp_path / "big", metadata={
        "dataset_spec": "digits28", "dataset": {"name": "digits28", "split_seed": 0}})
    res = CliRunner().invoke(app, ["audit", "--model", str(path), "--inputs", "30",
                                   "--max-memory", "0.5G", "--out", str(tmp_path / "runs")])
    assert res.exit_code != 0
    assert isinstance(res.exception, ResourceError), res.output
    assert "GiB" in str(res.exception) and not (tmp_path / "runs").exists()
