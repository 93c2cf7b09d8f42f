"""One config/result convention (issue 15 item 4): every study takes one frozen config validated
on construction, with messages naming the CLI option; typed results whose ``to_dict`` is the
JSON; one definition of each option's allowed values (``rgaudit.choices``)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import get_args

import pytest
import torch
from typer.testing import CliRunner

from rgaudit import choices
from rgaudit.experiments.attack_one import AttackConfig
from rgaudit.experiments.audit import (
    AttackRow,
    AuditConfig,
    Diagnosis,
    FimInfo,
    PairDiagnosis,
    Quartiles,
    SpectrumInfo,
    _quartiles,
)
from rgaudit.experiments.cloning import (
    CloningConfig,
    CloningResult,
    CloningRow,
    CloningSettings,
    PoisonDamage,
    TransferRates,
    VictimInfo,
    VictimUtility,
)
from rgaudit.experiments.diagnose import (
    DiagnoseConfig,
    DiagnosedInputs,
    DiagnoseExecution,
    DiagnoseResult,
    DiagnoseSource,
    run_diagnose,
)
from rgaudit.experiments.execution_summary import ExecutionSummary
from rgaudit.experiments.ising import IsingMCRGConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "rgaudit"

# (config class, bad field values, the CLI option the message must name)
BAD = [
    (AuditConfig, {"n_inputs": 0}, "--inputs"),
    (AuditConfig, {"mcrg_samples": 8}, "--mcrg-samples"),
    (AuditConfig, {"direct_samples": 4}, "--direct-samples"),
    (AuditConfig, {"judge_samples": 0}, "--judge-samples"),
    (AuditConfig, {"large_basis": "pairs:x"}, "--large-basis"),
    (AuditConfig, {"large_basis": "bogus"}, "--large-basis"),
    (AuditConfig, {"threads": 0}, "--threads"),
    (DiagnoseConfig, {"ops": "order:0"}, "--ops"),
    (DiagnoseConfig, {"basis_specs": ("singles", "nonsense")}, "--bases"),
    (DiagnoseConfig, {"n_samples": 10}, "--samples"),
    (DiagnoseConfig, {"fixed_point_samples": 0}, "--fp-samples"),
    (CloningConfig, {"defences": ("none", "magic")}, "--defence"),
    (CloningConfig, {"attackers": ("nobody",)}, "--attacker"),
    (CloningConfig, {"norm": "l3"}, "--norm"),
    (CloningConfig, {"eps": (0.1, -1.0)}, "--eps"),
    (CloningConfig, {"eps": (math.inf,)}, "--eps"),
    (CloningConfig, {"n_queries": (0,)}, "--queries"),
    (CloningConfig, {"eps_adv": 0.0}, "--eps-adv"),
    (CloningConfig, {"estimator": "magic"}, "--estimator"),
    (CloningConfig, {"mlp_epochs": 0}, "--epochs"),
    (IsingMCRGConfig, {"size": 20, "levels": 3}, "--L"),
    (IsingMCRGConfig, {"n_even": 9}, "--even"),
    (IsingMCRGConfig, {"n_odd": 0}, "--odd"),
    (IsingMCRGConfig, {"n_sweeps": 10}, "--sweeps"),
    (IsingMCRGConfig, {"n_blocks": 1}, "--blocks"),
    (AttackConfig, {"method": "magic"}, "--method"),
    (AttackConfig, {"norm": "l3"}, "--norm"),
    (AttackConfig, {"fim": "magic"}, "--fim"),
    (AttackConfig, {"method": "ddn", "norm": "linf"}, "--norm l2"),
    (AttackConfig, {"eps": 0.0}, "--eps"),
    (AttackConfig, {"eps": math.nan}, "--eps"),
    (AttackConfig, {"eps_max": math.inf}, "--eps-max"),
    (AttackConfig, {"n_inputs": 0}, "--inputs"),
    (AttackConfig, {"samples": 31}, "--samples"),
    (AttackConfig, {"judge_samples": 0}, "--judge-samples"),
    (AttackConfig, {"bisect_steps": 31}, "--bisect-steps"),
]


@pytest.mark.parametrize("cls,bad,option", BAD)
def test_configs_validate_on_construction_naming_the_option(cls, bad, option):
    with pytest.raises(ValueError) as err:
        cls(**bad)
    assert option in str(err.value), str(err.value)


@pytest.mark.parametrize("cls", [AuditConfig, DiagnoseConfig, CloningConfig, IsingMCRGConfig,
                                 AttackConfig])
def test_configs_are_frozen_and_replace_revalidates(cls):
    cfg = cls()                                   # the defaults are valid
    name = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, name, getattr(cfg, name))
    bad = next(b for c, b, _ in BAD if c is cls)
    with pytest.raises(ValueError):
        dataclasses.replace(cfg, **bad)


def test_attack_config_search_top_and_box_diameter():
    assert AttackConfig().search_max == 4.0 and AttackConfig(norm="linf").search_max == 0.5
    assert AttackConfig(eps_max=2.5).search_max == 2.5
    AttackConfig(eps=8.0).check_eps(64)             # the diameter of [0, 1]^64 in L2 is 8
    with pytest.raises(ValueError, match="--eps 8.01 exceeds the diameter"):
        AttackConfig(eps=8.01).check_eps(64)
    with pytest.raises(ValueError, match="--eps"):
        AttackConfig(norm="linf", eps=1.5).check_eps(64)


def test_cloning_settings_is_the_config():
    assert CloningSettings is CloningConfig


def test_ising_study_precondition_is_separate_from_the_source_config():
    cfg = IsingMCRGConfig(size=4, levels=1)       # a valid Swendsen–Wang source (2×2 blocks)
    with pytest.raises(ValueError, match="at least 4×4"):
        cfg.check_study()
    IsingMCRGConfig(size=8, levels=1).check_study()


# --- one definition of each option's allowed values -------------------------------------------

def test_choice_tuples_are_their_literal_aliases():
    pairs = [(choices.AttackNorm, choices.ATTACK_NORMS), (choices.BudgetNorm,
             choices.BUDGET_NORMS), (choices.Defence, choices.DEFENCES),
             (choices.GenerationEstimator, choices.GENERATION_ESTIMATORS),
             (choices.FimEstimator, choices.FIM_ESTIMATORS),
             (choices.AttackMethod, choices.ATTACK_METHODS),
             (choices.Attacker, choices.ATTACKERS), (choices.IsingKernel, choices.ISING_KERNELS),
             (choices.ExecutorName, choices.EXECUTORS), (choices.OutputKind, choices.OUTPUT_KINDS)]
    for alias, values in pairs:
        assert get_args(alias) == values and len(set(values)) == len(values)


def test_library_names_are_the_one_definition():
    from rgaudit.attacks import base
    from rgaudit.defence import baselines, budget, cloning_attacks, generation_fim
    from rgaudit.executors import base as executors
    from rgaudit.experiments import attack_one, audit

    assert base.NORMS is choices.ATTACK_NORMS
    assert budget.NORMS is choices.BUDGET_NORMS and budget.KINDS is choices.OUTPUT_KINDS
    assert baselines.DEFENCES is choices.DEFENCES
    assert generation_fim.ESTIMATORS is choices.GENERATION_ESTIMATORS
    assert cloning_attacks.ATTACKERS is choices.ATTACKERS
    assert executors.EXECUTORS is choices.EXECUTORS
    assert attack_one.ONE_METHODS is choices.ATTACK_METHODS
    assert audit.FIM_ESTIMATORS is choices.FIM_ESTIMATORS


def test_no_command_or_study_spells_out_a_value_set_again():
    """A literal tuple of one of the sets (in any order) outside rgaudit/choices.py."""
    sets = [set(v) for v in (choices.ATTACK_NORMS, choices.BUDGET_NORMS, choices.DEFENCES,
                             choices.GENERATION_ESTIMATORS, choices.FIM_ESTIMATORS,
                             choices.ISING_KERNELS)]
    tuple_re = re.compile(r"\(((?:\s*\"[a-z0-9:-]+\",?)+)\s*\)")
    offenders = []
    for path in [*(SRC / "commands").glob("*.py"), *(SRC / "experiments").glob("*.py")]:
        for m in tuple_re.finditer(path.read_text()):
            words = set(re.findall(r"\"([a-z0-9:-]+)\"", m.group(1)))
            if len(words) > 1 and words in sets:
                offenders.append((path.name, m.group(0)))
    assert offenders == []


def _cli(*args: str):
    from rgaudit.cli import app

    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    return res.exit_code, " ".join(res.output.split())


@pytest.mark.parametrize("args,option,values", [
    (["ising", "--kernel", "bogus"], "--kernel", choices.ISING_KERNELS),
    (["attack", "m", "--norm", "l3"], "--norm", choices.ATTACK_NORMS),
    (["attack", "m", "--fim", "exact"], "--fim", choices.FIM_ESTIMATORS),
    (["protect", "m", "--norm", "linf", "--out", "p.json"], "--norm", choices.BUDGET_NORMS),
])
def test_cli_choices_come_from_rgaudit_choices(args, option, values):
    code, text = _cli(*args)
    assert code == 2 and option in text, text
    assert all(f"'{v}'" in text for v in values), text


def test_clone_attack_errors_come_from_the_config(tmp_path):
    code, text = _cli("clone-attack", "default", "--defence", "magic", "--out", str(tmp_path))
    assert code == 2 and "--defence" in text and "reverse-sigmoid" in text, text
    code, text = _cli("clone-attack", "default", "--eps-adv", "0", "--out", str(tmp_path))
    assert code == 2 and "--eps-adv must be finite and > 0" in text, text
    assert not any(tmp_path.iterdir())         # refused before anything is written


# --- typed results, JSON at the boundary ------------------------------------------------------

def test_quartiles_keep_the_json_key_order():
    flipped = _quartiles(torch.tensor([0.1, 0.2, float("inf"), 0.4]))
    assert list(flipped.to_dict()) == ["q1", "median", "q3", "n_flipped", "n"]
    assert flipped.n_flipped == 3 and flipped.n == 4
    none = _quartiles(torch.tensor([float("inf")] * 3))
    assert list(none.to_dict()) == ["median", "q1", "q3", "n_flipped", "n"]
    assert Quartiles.from_dict(flipped.to_dict()) == flipped


def test_audit_records_round_trip_through_their_json_form():
    q = Quartiles(0.1, 0.2, 0.3, 2, 2)
    row = AttackRow([0.5, 1.0], [0.0, 1.0], "the method's direction", [0.2, 0.3], q,
                    [0.2, 0.3], [0.05, 0.07], q, [True, True], None, 0.25, 1.5)
    d = row.to_dict()
    assert list(d)[:5] == ["epsilons", "flip_rate", "min_eps_along", "min_eps",
                           "min_eps_summary"] and d["min_eps_summary"] == q.to_dict()
    assert AttackRow.from_dict(d) == row
    pair = PairDiagnosis("0->1", [4, 3], [[1.0]], [[0.1]], [1], False, 2.0, [0])
    diag = Diagnosis("singles", [pair])
    assert "n_kept_fisher~1" in diag.to_dict()["pairs"][0]
    assert Diagnosis.from_dict(diag.to_dict()) == diag
    spec = SpectrumInfo([[2.0]], None, [2.0], None, [0.3], 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, "λ")
    info = FimInfo({"samples": 64, "seconds": 0.5}, spec, [1.0], 1.0, [[0.5, 0.5]])
    d = info.to_dict()
    assert list(d)[:3] == ["samples", "seconds", "top_eigs"] and list(d)[-1] == "top_vectors"
    assert FimInfo.from_dict(d) == info


def test_cloning_result_json_has_the_old_shape():
    dmg = PoisonDamage(0.1, 0.2, 0.9)
    row = CloningRow("rg", 0.1, 30, "distill-mlp", 0.8, 0.9, TransferRates(12, {"fgm": 0.3}),
                     VictimUtility(1.0, 0.0, 0.0, 0.0, 30), dmg)
    res = CloningResult(CloningConfig(), VictimInfo([64, 10], 0.9, 100, 80, "exact"), [row])
    d = res.to_dict()
    assert list(d) == ["settings", "victim", "seconds", "rows"]
    assert "execution" not in d["settings"] and "served" not in d["victim"]
    assert d["rows"][0]["poison"] == {"median_fisher_damage": 0.1, "mean_fisher_damage": 0.2,
                                      "median_abs_cos_top": 0.9}
    assert d["rows"][0]["transfer"] == {"n_correct": 12, "fgm": 0.3}
    assert list(d["rows"][0]["utility"]) == ["top1_preserved", "mean_l1", "max_l1", "mean_kl",
                                             "n"]
    assert CloningRow.from_dict(d["rows"][0]) == row
    res.execution = ExecutionSummary.from_dict(_SUMMARY)
    assert res.settings["execution"] == _SUMMARY
    assert CloningResult.from_dict(res.to_dict()) == res


#: what ``MapReport.summary()`` returns (keys in its order), with an executor's own extra key
_SUMMARY = {"executor": "local", "workers": 1, "units": 3, "computed": 3, "cached": 0,
            "failed": 0, "wall_seconds": 0.25, "startup_seconds": 0.0,
            "unit_seconds_total": 0.24, "unit_seconds_median": 0.06, "unit_seconds_max": 0.12,
            "utilisation": 0.99, "stage_seconds_total": {}, "slowest": [["rg:eps=0.1", 0.12]],
            "workers_used": ["vm:1"], "address": "auto"}


def test_execution_summary_round_trips_the_executor_summary():
    s = ExecutionSummary.from_dict(_SUMMARY)
    assert s.computed == 3 and s.slowest == [("rg:eps=0.1", 0.12)]
    assert s.extra == {"address": "auto"}
    assert s.to_dict() == _SUMMARY and list(s.to_dict()) == list(_SUMMARY)


def test_diagnose_settings_json_and_legacy_keywords():
    from rgaudit.nets.deep_rbm import DeepRBM

    net = DeepRBM.random([6, 4, 3, 2], generator=torch.Generator().manual_seed(0),
                         dtype=torch.float32)
    x = torch.rand(2, 6, generator=torch.Generator().manual_seed(1))
    cfg = DiagnoseConfig(ops="singles", n_samples=64, basis_specs=("singles",),
                         sample_counts=(32,), n_blocks=4, seed=5)
    typed = run_diagnose(net, x, None, cfg)
    legacy = run_diagnose(net, x, None, ops="singles", n_samples=64, basis_specs=["singles"],
                          sample_counts=[32], n_blocks=4, seed=5)
    assert legacy.config == cfg
    for a, b in zip(typed.spectra, legacy.spectra, strict=True):
        torch.testing.assert_close(a.fisher, b.fisher, rtol=0, atol=0)
    assert list(typed.settings) == ["ops", "n_samples", "basis_specs", "sample_counts",
                                    "n_inputs", "seed", "device", "n_blocks", "widths", "tied",
                                    "labels"]
    res = DiagnoseResult(cfg, DiagnosedInputs(2, [6, 4, 3, 2], False, None),
                         execution=DiagnoseExecution("local", "ss", _SUMMARY),
                         source=DiagnoseSource("m", "bars:4", 0, None))
    assert list(res.settings)[-7:] == ["executor", "per_input_generators", "execution",
                                       "model", "data", "split_seed", "model_dataset"]
    assert res.settings["execution"] == _SUMMARY
    assert res.execution is not None and res.execution.execution.workers == 1
    # the spectra's counts are rg.spectra.Count objects; the JSON has their dicts
    from rgaudit.rg.spectra import Count

    c = typed.spectra[0].counts["fisher~1"]
    assert len(c) == 2 and all(isinstance(k, Count) for k in c)
    assert typed.spectra[0].to_dict()["counts"]["fisher~1"] == [k.to_dict() for k in c]


def test_ising_result_parts_are_typed_with_the_old_json():
    """Operators, chain summary and the RBM kernel's training record are dataclasses whose
    ``to_dict`` is the JSON the dicts were."""
    import numpy as np

    from rgaudit.experiments.ising import (
        ChainSummary,
        IsingMCRGResult,
        IsingOperators,
        KernelTraining,
    )
    from rgaudit.physics.ising import ChainStats

    stats, rng = ChainStats(), np.random.default_rng(0)
    for _ in range(8):
        stats.energy.append(rng.normal(size=3))
        stats.abs_mag.append(rng.random(3))
    chain = ChainSummary.from_stats(stats)
    assert chain.energy is not None and chain.to_dict() == stats.summary()
    assert ChainSummary.from_stats(ChainStats()).to_dict() == {}     # < 4 measurements
    res = IsingMCRGResult(IsingMCRGConfig(), "majority", IsingOperators(["nn"], ["m"]),
                          chain=chain)
    d = res.to_dict()
    assert d["operators"] == {"even": ["nn"], "odd": ["m"]} and d["chain"] == stats.summary()
    train = KernelTraining(8, 2, 10, (0, "ising.kernel-data"), 0.44)
    assert train.to_dict() == {"size": 8, "chains": 2, "sweeps": 10,
                               "seed_stream": [0, "ising.kernel-data"], "coupling": 0.44}
