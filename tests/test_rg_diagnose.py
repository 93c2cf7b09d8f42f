"""The diagnose experiment, report and command on a tiny network."""

import json

import torch
import typer
from typer.testing import CliRunner

from rgaudit.commands.diagnose import register
from rgaudit.experiments.diagnose import class_fixed_points, run_diagnose
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import save_model
from rgaudit.report.diagnose_report import render_markdown
from rgaudit.schemas import validate


def _net(seed=0, widths=(64, 6, 6, 10), dtype=torch.float32):
    return DeepRBM.random(list(widths), generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_run_diagnose_studies_and_markdown():
    net = _net()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 64, generator=g)
    fx = torch.rand(6, 64, generator=g)
    fy = torch.tensor([0, 0, 0, 1, 1, 1])
    res = run_diagnose(net, x, None, ops="pairs", n_samples=2048, basis_specs=["singles"],
                       sample_counts=[512], fixed_point_inputs=fx, fixed_point_labels=fy,
                       fixed_point_samples=64, seed=3)
    studies = {(s.study, s.basis, s.pair) for s in res.spectra}
    assert ("main", "pairs", 1) in studies and ("basis", "singles", 2) in studies
    assert ("samples", "pairs", 1) in studies
    for s in res.spectra:
        assert (s.fisher_raw <= 1 + 1e-9).all() and s.fisher.shape == s.fisher_raw.shape
        # untied 6 → 6 pair: equal names h0…h5 on both layers, but no shared operator set
        assert s.eig_abs is None
    assert res.depth == [] and res.settings["tied"] is False
    assert res.fixed_points is not None and res.fixed_points.kl_class.shape == (2, 2)
    d = res.to_dict()
    assert d["settings"]["n_samples"] == 2048
    assert "T^(2)" in render_markdown(res)


def test_class_fixed_points_separate_distinct_outputs():
    # A 1-layer "network" whose outputs follow the input: two classes of inputs with very
    # different output distributions must be further apart between than within classes.
    net = DeepRBM([4, 3], dtype=torch.float64)
    with torch.no_grad():
        net.layer(1).W.copy_(torch.tensor([[4.0, 4, 0, 0], [0, 0, 4, 4], [2, -2, 2, -2]]))
    x = torch.tensor([[1.0, 1, 0, 0]] * 3 + [[0.0, 0, 1, 1]] * 3, dtype=torch.float64)
    fp = class_fixed_points(net, x, torch.tensor([0, 0, 0, 1, 1, 1]), 8)
    wb = fp.within_between()
    assert wb["kl_within"] < 1e-12 < wb["kl_between"]
    assert fp.couplings.shape == (6, 7)


def test_diagnose_command_writes_outputs(tmp_path, monkeypatch):
    net = _net(widths=(64, 5, 5, 10))
    save_model(net, tmp_path / "model")
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer in multi-command mode
        pass

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["diagnose", str(tmp_path / "model"), "--inputs", "2", "--ops",
                                 "pairs", "--samples", "1024", "--bases", "singles",
                                 "--per-class", "1", "--fp-samples", "32", "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "result.json").read_text())
    assert doc["kind"] == "diagnose" and doc["settings"]["ops"] == "pairs"
    validate(doc)
    assert (out / "rg_spectra.png").exists()
    _report_numbers_equal_json((out / "report.md").read_text(), doc)


def _report_numbers_equal_json(md: str, doc: dict, top: int = 3) -> None:
    """Every spectrum row of report.md shows its JSON values (s_i ± err, raw s_1, S, ops)."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| study | pair |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    assert len(rows) == len(doc["spectra"]) > 0
    for row, s in zip(rows, doc["spectra"], strict=True):
        mean, err = s["fisher_mean"], s["fisher_mean_err"]
        vals = [f"{mean[i]:.3f} ± {err[i]:.3f}" if i < len(mean) else "" for i in range(top)]
        assert row[:5 + top] == [s["study"], f"T^({s['pair'] + 1})", s["basis"],
                                 f"{s['n_ops'][0]}, {s['n_ops'][1]}", str(s["n_samples"]), *vals]
        assert row[5 + top] == f"{s['fisher_raw_mean'][0]:.3f}"
        assert row[-3:] == [f"{s['max_cond']:.3g}", str(s["regularised"]), str(s["floored"])]


def test_run_diagnose_tied_net_reports_raw_eigenvalues():
    net = DeepRBM.random([5, 5, 5, 5], tied=True, generator=torch.Generator().manual_seed(2))
    x = torch.rand(2, 5, generator=torch.Generator().manual_seed(3))
    res = run_diagnose(net, x, None, ops="singles", n_samples=1024, basis_specs=["singles"],
                       sample_counts=[512], seed=1)
    assert all(s.eig_abs is not None for s in res.spectra)
    assert len(res.depth) == 1
