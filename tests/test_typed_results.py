"""The attack study, cloning and attack results are typed dataclasses whose ``to_dict()`` is the
JSON the string-keyed dicts were.

``tests/data/typed_results/`` holds outputs of the code before the results were typed (branch
s4-types at b2a4d2a+bca4b33, written by small runs): ``mlp.json``/``mlp.md`` (attack study of a
16-unit torch MLP, ``AttackStudyResult.to_dict()`` and ``render_markdown``; its config
gained the field ``"mlp_seed": 0`` in session 5), ``clone_ex.json``/
``clone_ex.md`` (cloning study on the local executor, ``CloningResult.to_dict()`` and
``cloning_report.markdown``), ``attack_walk.json`` (``AttackResult.to_dict()`` of a Fisher walk),
``zoo.json``/``zoo.md`` (the zoo before its analysis was typed, branch s4-zoo at 1a4ecf2:
``to_plain(ZooResult.to_dict())`` and ``zoo_report.markdown(doc, "rgaudit zoo (test)", 1.0)`` of
``run_zoo`` on the local executor with ``ZooConfig(n_rbm=4, n_torch=4, n_inputs=4,
judge_samples=20, ddn_steps=5, bisect_steps=3, mcrg_inputs=1, mcrg_samples=256, clever_inputs=1,
clever_batches=2, clever_batch_size=4, epochs_scale=0.1, n_boot=100, n_splits=4,
min_accuracy=0.0)``: 8 networks, so both the computed and the undefined correlations and
held-out checks occur), ``rbm_audit.json``/``rbm_audit.md`` (the RBM audit report before it
rendered from the typed result, branch s5-arch at 5c26c1a: ``write_audit_report(payload, run)``
with ``payload = run_audit(...).to_dict()`` plus ``plan`` and a two-depth ``depth`` study, on
the 64-16-10 network of ``tests/test_audit.py`` with ``AuditConfig(n_inputs=3,
mcrg_samples=256, direct_samples=256, judge_samples=100, large_basis="pairs:4",
bisect_steps=4, pgd_iter=3, n_diagnose=2)``; one method leaves a quarter of the inputs
unflipped, so ``null`` quartiles occur).
Read back into the typed results, they give the same JSON and the same Markdown; fresh small
runs give the same layout (keys, their order, value types). Deterministic: no statistical test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from stat_checks import least_squares_digits_rbm

DATA = Path(__file__).parent / "data" / "typed_results"


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def _layout(o: Any) -> Any:
    """Keys (in order) and value kinds of a JSON tree; lists by their first element."""
    if isinstance(o, dict):
        return [(k, _layout(v)) for k, v in o.items()]
    if isinstance(o, list):
        return ["list", _layout(o[0]) if o else None]
    if isinstance(o, bool):
        return "bool"
    if isinstance(o, int | float) or o is None:
        return "number"                       # null: a non-finite number
    return type(o).__name__


def _same_json(a: Any, b: Any) -> bool:
    """Equal JSON trees, NaN equal to NaN."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(
            _same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(
            _same_json(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def test_attack_study_result_reads_back_its_json_and_renders_the_same_markdown():
    from rgaudit.experiments.attack_study import (
        AttackStudyResult,
        FractionStats,
        MethodRow,
        MethodSummary,
        PairedComparison,
        StudyInputs,
        StudyModel,
        StudyTimings,
        WalkInfo,
    )
    from rgaudit.experiments.audit_results import AuditInputs, Quartiles
    from rgaudit.report.attack_report import render_compact, render_markdown

    doc = _load("mlp.json")
    res = AttackStudyResult.from_dict(doc)
    assert isinstance(res.model, StudyModel) and res.model.record["hidden"] == 16
    assert isinstance(res.inputs, StudyInputs) and isinstance(res.inputs, AuditInputs)
    assert isinstance(res.timings, StudyTimings)
    assert all(isinstance(r, MethodRow) for rs in res.rows.values() for r in rs)
    walk = next(r for r in res.rows["l2"] if r.name == "walk-autograd")
    assert isinstance(walk.walk, WalkInfo) and walk.walk.step_size == 0.2
    fim = next(r for r in res.rows["l2"] if r.name == "fim-autograd")
    assert fim.sign is not None and len(fim.sign) == 3 and fim.walk is None
    s = res.summary["l2"]["ddn"]
    assert isinstance(s, MethodSummary) and isinstance(s.applied, Quartiles)
    assert isinstance(res.paired["l2"], PairedComparison)
    assert res.paired["l2"].best_baseline in res.summary["l2"]
    assert all(isinstance(f, FractionStats) for f in res.fraction.values())
    # unflipped inputs are inf in memory, null in the JSON
    rnd = res.summary["l2"]["random"]
    assert rnd.applied.n_flipped == 0 and math.isinf(rnd.applied.median)
    assert _same_json(json.loads(json.dumps(res.to_dict())), doc)
    assert render_markdown(res) == (DATA / "mlp.md").read_text()
    assert render_markdown(doc) == render_markdown(res)         # a JSON document is accepted
    best = res.paired["l2"].best_baseline
    assert render_compact([("MLP", res)]).splitlines()[2].startswith(f"| MLP | {best} ")
    assert render_compact([("MLP", doc)]) == render_compact([("MLP", res)])


@pytest.mark.slow
def test_a_fresh_attack_study_has_the_saved_layout():
    from rgaudit.data import load_dataset
    from rgaudit.experiments.attack_study import (
        AttackStudyConfig,
        run_attack_study,
        train_torch_mlp,
    )

    ds = load_dataset("digits", seed=0)
    mlp = train_torch_mlp(ds, hidden=16, epochs=3)
    cfg = AttackStudyConfig(n_inputs=3, methods=("ddn", "fgm", "fim-autograd", "walk-autograd",
                                                 "random", "subspace"),
                            subspace_k=(1, 2), fraction_k=(1, 2), bisect_steps=4, ddn_steps=20,
                            walk_max_steps=5, walk_step=0.2)
    res = run_attack_study(mlp, ds.X_test, ds.y_test, cfg, model_info=dict(mlp.meta))
    assert _layout(json.loads(json.dumps(res.to_dict()))) == _layout(_load("mlp.json"))


def test_cloning_result_reads_back_its_json_and_renders_the_same_markdown():
    from rgaudit.experiments.cloning import CloningResult, TransferRates, VictimUtility
    from rgaudit.experiments.execution_summary import ExecutionSummary
    from rgaudit.report.cloning_report import markdown

    doc = _load("clone_ex.json")
    res = CloningResult.from_dict(doc)
    assert isinstance(res.execution, ExecutionSummary) and res.execution.computed == 3
    r = res.rows[0]
    assert isinstance(r.transfer, TransferRates) and list(r.transfer.rates) == ["fim", "fgm"]
    assert isinstance(r.utility, VictimUtility) and r.utility.n == 20
    assert _same_json(json.loads(json.dumps(res.to_dict())), doc)
    assert markdown(res, "cmd") == (DATA / "clone_ex.md").read_text() == markdown(doc, "cmd")


def test_served_api_record_keeps_the_server_answer():
    from rgaudit.experiments.cloning import ServedAPI

    info = {"kind": "deep-rbm", "input_shape": [8, 8], "n_features": 64, "n_classes": 10,
            "classes": list(range(10)), "bounds": [0.0, 1.0],
            "defence": {"defence": "rg", "eps": 0.1}, "limits": {"max_batch": 256},
            "later_field": 1}
    api = ServedAPI.from_info("http://h:1", info)
    assert api.n_classes == 10 and api.other == {"later_field": 1}
    assert api.to_dict() == {"url": "http://h:1", **info}
    assert list(api.to_dict()) == ["url", *info]
    assert ServedAPI.from_dict(api.to_dict()) == api


def test_a_fresh_attack_has_the_saved_layout():
    from rgaudit.data import load_dataset
    from rgaudit.experiments.attack_one import AttackConfig, SearchInfo, run_attack
    from rgaudit.experiments.audit_results import ModelRecord

    ds = load_dataset("digits", seed=0)
    net = least_squares_digits_rbm(ds)   # output layer by least squares: a usable classifier
    rec = {"path": "p", "dataset": "digits", "split_seed": 0, "split_seed_source": "x",
           "accuracy": None}
    cfg = AttackConfig(method="walk", n_inputs=3, samples=64, judge_samples=100, eps=0.5)
    res = run_attack(net, ds.X_test, ds.y_test, cfg, model_info=rec)
    assert isinstance(res.model, ModelRecord) and isinstance(res.info, SearchInfo)
    assert res.info.walk_steps is not None and res.info.sign is None
    d = json.loads(json.dumps(res.to_dict()))
    assert d["model"] == rec
    saved = _load("attack_walk.json")
    assert list(d["info"]) == list(saved["info"]) == ["search", "walk_steps", "seconds"]
    del d["model"], saved["model"]                 # the saved run recorded a shorter record
    assert _layout(d) == _layout(saved)


def test_zoo_result_reads_back_its_json_and_renders_the_same_markdown(tmp_path):
    from rgaudit.experiments.execution_summary import ExecutionSummary
    from rgaudit.experiments.zoo import (
        CorrelationRow,
        HeldOut,
        Spearman,
        StabilityPair,
        ZooConfig,
        ZooNetwork,
        ZooResult,
    )
    from rgaudit.report.io import to_plain
    from rgaudit.report.zoo_report import markdown, write_report

    doc = _load("zoo.json")
    res = ZooResult.from_dict(doc)
    assert isinstance(res.config, ZooConfig) and res.config.n_rbm == 4
    assert all(isinstance(n, ZooNetwork) for n in res.networks)
    rbm, mlp = res.networks[0], res.networks[4]
    assert rbm.spec.family == "rbm" and rbm.spec.hidden is None
    assert rbm.predictors.stability_pairs is not None
    assert isinstance(rbm.predictors.stability_pairs[0], StabilityPair)
    assert mlp.spec.hidden is not None and mlp.predictors.stability_pairs is None
    assert mlp.predictors.stab_n_kept is None and mlp.value("depth") == len(mlp.spec.hidden)
    assert len(rbm.robustness.per_input) == rbm.robustness.n == 4
    assert isinstance(res.execution, ExecutionSummary) and res.execution.computed == 8
    assert res.execution.summary_text is not None and "stages:" in res.execution.summary_text
    row = res.analysis.correlations["fim_top"]
    assert isinstance(row, CorrelationRow) and isinstance(row.all, Spearman)
    assert isinstance(row.all.held_out, HeldOut) and row.all.held_out.transform == "log"
    assert row.rbm.held_out is None and row.all.computed
    stab = res.analysis.correlations["stab_n_kept"]          # undefined ρ: null in the JSON
    assert not stab.torch.computed and stab.torch.n == 0 and math.isnan(stab.torch.rho)
    assert stab.rbm.held_out is not None and stab.rbm.held_out.random_splits_q is None
    assert _same_json(json.loads(json.dumps(to_plain(res.to_dict()))), doc)
    md = (DATA / "zoo.md").read_text()
    assert markdown(res, "rgaudit zoo (test)", 1.0) == md
    assert markdown(doc, "rgaudit zoo (test)", 1.0) == md       # a JSON document is accepted
    paths = write_report(res, tmp_path, "rgaudit zoo (test)", 1.0)
    assert [q.name for q in paths] == ["zoo.md", "zoo_scatter.png"]
    assert paths[0].read_text() == md and paths[1].stat().st_size > 0


def test_executor_records_give_back_the_executor_summary():
    from rgaudit.experiments.execution_summary import ExecutionSummary, PerInputExecution

    summary = {k: v for k, v in _load("zoo.json")["execution"].items() if k != "summary_text"}
    summary["ray_address"] = "local"                 # what a particular executor adds
    ex = ExecutionSummary.from_dict(summary)
    assert ex.summary_text is None and ex.extra == {"ray_address": "local"}
    assert list(ex.to_dict()) == list(summary) and _same_json(ex.to_dict(), summary)
    rec = {"executor": "local", "per_input_generators": "named roles", "execution": summary}
    run = PerInputExecution.from_dict(rec)
    assert run.execution == ex and _same_json(run.to_dict(), rec)


def _audit_images() -> list[str]:
    return ["fim_spectrum.png", "fim_eigenvectors.png", "attack_flip_rate.png",
            "attack_min_eps.png", "depth_study.png"]


def test_rbm_audit_result_reads_back_its_json_and_renders_the_same_report():
    from rgaudit.experiments.audit import AuditResult
    from rgaudit.experiments.depth import DepthResult
    from rgaudit.report.audit_report import audit_document, render_markdown
    from rgaudit.report.io import to_plain

    doc = _load("rbm_audit.json")
    res = AuditResult.from_dict(doc)
    depth = DepthResult.from_dict(doc["depth"])
    assert res.attacks["l2"]["apgd-dlr"].min_eps_summary.q3 == math.inf   # null read back
    assert math.inf in res.attacks["l2"]["apgd-dlr"].min_eps
    assert render_markdown(res, _audit_images()) == (DATA / "rbm_audit.md").read_text()
    # the JSON written from the typed parts is the saved one, key order included (the plan
    # is passed through as AuditPlan.to_dict())
    want = {k: v for k, v in doc.items()
            if k not in ("schema_version", "kind", "created", "plan")}
    assert json.dumps(to_plain(audit_document(res, depth=depth))) == json.dumps(want)
    with pytest.raises(ValueError, match="not an RBM audit result: no attacks"):
        AuditResult.from_dict({k: v for k, v in doc.items() if k != "attacks"})
    with pytest.raises(ValueError, match="--mcrg-samples must be ≥ 32"):
        AuditResult.from_dict({**doc, "config": {**doc["config"], "mcrg_samples": 8}})


def _cells(md: str, heading: str) -> dict[str, list[str]]:
    """The rows of the Markdown table under ``heading``: first cell → the other cells."""
    block = md.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [ln.strip("|").split(" | ") for ln in block.splitlines() if ln.startswith("| ")]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_rbm_audit_report_numbers_equal_its_json():
    """Every number of the report's tables, its verdict and its summary is the JSON's, to the
    printed digits (unflipped: "> ε_max")."""
    from rgaudit.experiments.audit import AuditResult
    from rgaudit.report.audit_report import render_markdown

    doc = _load("rbm_audit.json")
    md = render_markdown(AuditResult.from_dict(doc))

    def g(v: Any, nd: int = 3) -> str:
        return "—" if v is None else f"{v:.{nd}g}"

    for norm, per in doc["attacks"].items():
        table = _cells(md, f"## Minimal flipping ε ({norm})")
        for name, r in per.items():
            top = f"> {r['epsilons'][-1]:g}"
            want = [top if s[k] is None else g(s[k])
                    for s in (r["min_eps_summary"], r["min_eps_actual_summary"])
                    for k in ("median", "q1", "q3")]
            s = r["min_eps_summary"]
            assert table[name] == [*want, f"{s['n_flipped']} / {s['n']}"], (norm, name)
    fim_table = _cells(md, "## Input FIM")
    for name, f in doc["fim"].items():
        te, err = sorted(f["top_eig"]), sorted(f["top_eig_err"] or [])
        top = g(te[len(te) // 2]) + (f" ± {g(err[len(err) // 2], 2)}" if err else " (exact)")
        assert fim_table[name] == [top, g(f["median_cos_top_vs_direct"]),
                                   g(f["noise_floor_rel_median"], 2),
                                   g(f["n_significant_median"]), g(f["n_stiff_median"]),
                                   g(f["decades_median"], 2), g(f["effective_rank_median"], 2),
                                   g(f["seconds"])], name
    diag = _cells(md, "## Diagnosis")
    for p in doc["diagnosis"]["pairs"]:
        assert diag[p["pair"]] == [str(p["n_ops"]), ", ".join(g(v) for v in p["fisher_sv"][0][:4]),
                                   str(p["n_kept_fisher~1"]), str(p["regularised"])]
    # the verdict: the lowest median applied L2 of the non-random methods, first one on ties
    meds = {n: r["min_eps_actual_summary"]["median"] for n, r in doc["attacks"]["l2"].items()
            if n != "random" and r["min_eps_actual_summary"]["median"] is not None}
    best = min(meds, key=lambda n: meds[n])
    s = doc["attacks"]["l2"][best]["min_eps_summary"]
    assert (f"L2 perturbation of at most {g(meds[best], 2)} (" in md
            and f"found by {best}; {s['n_flipped']}/{s['n']} inputs" in md)
    tops = [row[0] for p in doc["diagnosis"]["pairs"] for row in p["fisher_sv"] if row]
    assert f"largest Fisher-normalised singular value {g(max(tops))} over" in md
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in doc["timings"].items())
    assert f"Timings: {timings}\n" in md
