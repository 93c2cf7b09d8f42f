"""Executors: identity-keyed random numbers, retries, resume, and Ray = local."""

import sys

import numpy as np
import pytest
import torch

from rgaudit.executors import Unit, UnitStore, make_executor, unit_seed_sequence
from rgaudit.executors.workload import audit_like_unit, failing_unit
from rgaudit.nets.deep_rbm import DeepRBM


def _draw(unit, ss, shared):
    return float(np.random.default_rng(ss).random()) + shared


def test_unit_random_numbers_depend_on_seed_and_key_only():
    a = unit_seed_sequence(3, "input-1").generate_state(4)
    assert np.array_equal(a, unit_seed_sequence(3, "input-1").generate_state(4))
    assert not np.array_equal(a, unit_seed_sequence(3, "input-2").generate_state(4))
    assert not np.array_equal(a, unit_seed_sequence(4, "input-1").generate_state(4))
    units = [Unit(f"u{i}") for i in range(5)]
    ex = make_executor("local")
    fwd = ex.map(_draw, units, seed=7, shared=0.0)
    back = ex.map(_draw, units[::-1], seed=7, shared=0.0)
    assert dict(zip([u.key for u in units], fwd.values, strict=True)) == \
        dict(zip([u.key for u in units[::-1]], back.values, strict=True))
    with pytest.raises(ValueError, match="unique"):
        ex.map(_draw, [Unit("a"), Unit("a")], seed=0, shared=0.0)


def test_local_failures_are_retried_then_reported(tmp_path):
    log = tmp_path / "attempts.log"
    units = [Unit(k) for k in "abc"]
    rep = make_executor("local", max_retries=2).map(
        failing_unit, units, seed=0, shared={"log": str(log), "fail": {"b"}})
    assert log.read_text().split().count("b") == 3          # first attempt + 2 retries
    assert list(rep.failures) == ["b"] and "fails on purpose" in rep.failures["b"]
    assert rep.outcomes[0].ok and rep.outcomes[2].ok
    assert rep.summary()["failed"] == 1
    with pytest.raises(RuntimeError, match="1 of 3 units failed"):
        rep.raise_on_failure()


def test_store_resumes_and_refuses_foreign_or_other_runs(tmp_path):
    log = tmp_path / "attempts.log"
    shared = {"log": str(log), "fail": set()}
    units = [Unit(k) for k in ("x", "y/z", "w")]
    first = make_executor("local").map(failing_unit, units[:2], seed=1, shared=shared,
                                       store=UnitStore(tmp_path / "run", {"seed": 1}))
    again = make_executor("local").map(failing_unit, units, seed=1, shared=shared,
                                       store=UnitStore(tmp_path / "run", {"seed": 1}))
    assert log.read_text().split() == ["x", "y/z", "w"]      # x and y/z were not recomputed
    assert again.values[:2] == first.values                  # bit-identical from JSON
    assert [o.cached for o in again.outcomes] == [True, True, False]
    assert not list((tmp_path / "run" / "units").glob(".tmp-*"))
    with pytest.raises(ValueError, match="other settings"):
        UnitStore(tmp_path / "run", {"seed": 2})
    (tmp_path / "foreign" / "units").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not written by rgaudit"):
        UnitStore(tmp_path / "foreign", {"seed": 1})


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'rgaudit\[ray\]'"):
        make_executor("ray")
    with pytest.raises(ValueError, match="--address"):
        make_executor("local", address="auto")


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_local_results_and_reports_failures(ray_instance, tmp_path):
    net = DeepRBM.random([12, 8, 6, 4], generator=torch.Generator().manual_seed(0))
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    units = [Unit(f"input-{i}", {"x": x[i].tolist(), "y": i % 4}) for i in range(5)]
    shared = {"net": net, "fim_samples": 512, "judge_samples": 100}
    local = make_executor("local").map(audit_like_unit, units, seed=5, shared=shared)
    ex = make_executor("ray", max_retries=1)
    assert not ex.owns                                       # the test's instance is reused
    remote = ex.map(audit_like_unit, units, seed=5, shared=shared)

    def strip(v):
        return {k: val for k, val in v.items() if k != "timings"}

    assert [strip(v) for v in remote.values] == [strip(v) for v in local.values]
    assert remote.summary()["computed"] == 5 and remote.summary()["failed"] == 0
    log = tmp_path / "attempts.log"
    rep = ex.map(failing_unit, [Unit(k) for k in "abcd"], seed=0,
                 shared={"log": str(log), "fail": {"c"}})
    assert log.read_text().split().count("c") == 2           # first attempt + 1 retry
    assert list(rep.failures) == ["c"] and "fails on purpose" in rep.failures["c"]
    assert [o.ok for o in rep.outcomes] == [True, True, False, True]
    # the audit's per-input work: the same JSON on Ray as locally
    from rgaudit.executors.audit_units import run_audit_units

    a_net, a_X, a_y, a_cfg = _tiny_audit()
    a_local = run_audit_units(a_net, a_X, a_y, a_cfg, make_executor("local"))
    a_ray = run_audit_units(a_net, a_X, a_y, a_cfg, ex)
    assert _audit_json(a_ray) == _audit_json(a_local)
    ex.close()
    assert ray_instance.is_initialized()                     # not the executor's to shut down


def _tiny_audit():
    from rgaudit.experiments.audit import AuditConfig

    net = DeepRBM.random([16, 10, 8, 4], generator=torch.Generator().manual_seed(0))
    X = torch.rand(40, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = net.predict(X, 500, torch.Generator().manual_seed(2))
    cfg = AuditConfig(n_inputs=2, n_diagnose=2, mcrg_samples=256, large_basis="pairs:4",
                      direct_samples=256, judge_samples=50, eps_l2=(0.5, 2.0),
                      eps_linf=(0.1, 0.5), bisect_steps=2, pgd_iter=2)
    return net, X, y, cfg


def _audit_json(result):
    import json

    from rgaudit.report.io import to_plain

    d = to_plain(result.to_dict())
    d.pop("timings")
    d["config"].pop("execution")
    d["config"].pop("executor")
    for norm in d["attacks"].values():
        for m in norm.values():
            m.pop("seconds")
    for f in d["fim"].values():
        f.pop("seconds", None)
    return json.dumps(d, sort_keys=True)


@pytest.mark.slow
def test_audit_units_have_the_batched_audit_schema():
    from rgaudit.executors.audit_units import run_audit_units
    from rgaudit.experiments.audit import audit_stage_count, run_audit
    from rgaudit.report.io import to_plain

    net, X, y, cfg = _tiny_audit()
    stages: list[str] = []
    batched = to_plain(run_audit(net, X, y, cfg, progress=stages.append).to_dict())
    assert len(stages) == audit_stage_count()      # the CLI's bar total counts these stages
    units = to_plain(run_audit_units(net, X, y, cfg, make_executor("local")).to_dict())

    def shape(d, pre=""):
        if isinstance(d, dict):
            return set().union(*[shape(v, f"{pre}/{k}") for k, v in d.items()]) if d else set()
        return {(pre, f"list{len(d)}" if isinstance(d, list) else type(d).__name__)}

    for part in ("fim", "attacks", "diagnosis", "inputs"):
        assert shape(units[part]) == shape(batched[part]), part
    assert units["inputs"]["indices"] == batched["inputs"]["indices"]


@pytest.mark.slow
def test_audit_cli_with_local_executor_resumes(tmp_path):
    import json

    from typer.testing import CliRunner

    from rgaudit.cli import app
    from rgaudit.data.registry import load_dataset
    from rgaudit.nets.io import save_model

    ds = load_dataset("digits", seed=0)
    net = DeepRBM.random([64, 16, 10], generator=torch.Generator().manual_seed(0), scale=4.0,
                         dtype=torch.float32)
    with torch.no_grad():                                   # output layer by least squares
        H = net.layer(1).prob_up(ds.X_train)
        A = torch.cat([H, torch.ones(H.shape[0], 1)], 1)
        sol = torch.linalg.lstsq(A, torch.nn.functional.one_hot(ds.y_train, 10) * 8.0 - 4).solution
        net.layer(2).W.copy_(sol[:-1].T)
        net.layer(2).a.copy_(sol[-1])
    model = save_model(net, tmp_path / "tiny")
    args = ["audit", "--model", str(model), "--inputs", "2", "--out", str(tmp_path / "runs"),
            "--mcrg-samples", "256", "--direct-samples", "256", "--judge-samples", "50",
            "--large-basis", "pairs:4", "--no-depth", "--executor", "local"]
    docs = []
    for _ in range(2):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        run_dir = tmp_path / "runs" / res.output.strip().splitlines()[-1].split("/")[-1]
        docs.append(json.loads((run_dir / "audit.json").read_text()))
    assert docs[0]["config"]["execution"]["computed"] == 2
    assert docs[1]["config"]["execution"]["cached"] == 2       # resumed from the run folder
    assert docs[0]["attacks"]["l2"]["fim-direct"]["min_eps"] == \
        docs[1]["attacks"]["l2"]["fim-direct"]["min_eps"]
    assert len(list((tmp_path / "runs").glob("audit-units-*"))) == 1
