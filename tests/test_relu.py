"""Random ReLU networks: gradients, Fisher identity, angle recursion, one-step attack, scaling, CLI.

Tolerances come from the estimators' error bars (stated next to each assertion), seeds are fixed.

Family-wise false-failure rate: three exact one-sided binomial tests at 1 % (3 %), three slope
checks at 3 bootstrap SE (≈ 0.27 % each, 0.8 %), the angle recursion bounds (0.02 rad ≥ 4 SE of
the pair sampler, 4 sd for the full networks: < 0.1 %): ≈ 4 % by the union bound.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import typer
from scipy import stats
from typer.testing import CliRunner

from rgaudit.attacks.one_step import classifier_one_step, fim_step, gradient_step, one_step_attack
from rgaudit.commands.relu import register
from rgaudit.experiments.relu.config import ReluStudyConfig
from rgaudit.experiments.relu.depth import (
    arccos_recursion,
    hidden_angles,
    pair_gram_chain,
    pairs_at_angle,
)
from rgaudit.experiments.relu.scaling import scaling_study
from rgaudit.fisher.autograd import dense_fim
from rgaudit.fisher.eig import top_eigenpairs
from rgaudit.nets.relu import relu_mlp, sample_relu_nets, sphere_inputs, width_profile
from rgaudit.schemas import validate


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_analytic_and_autograd_gradients_match_finite_differences() -> None:
    g = _gen(0)
    nets = sample_relu_nets(3, [12, 20, 7, 15], generator=g, bias_scale=0.3, dtype=torch.float64)
    x = sphere_inputs(3, 4, 12, generator=g, dtype=torch.float64)
    f, grad = nets.grad_all(x)  # (3,4,4), (3,4,4,12)
    h = 1e-6
    eye = torch.eye(12, dtype=torch.float64)
    fd = torch.stack([(nets.forward_all(x + h * e) - nets.forward_all(x - h * e)) / (2 * h)
                      for e in eye], dim=-1)  # (3,4,4,12)
    # piecewise linear: central differences are exact up to rounding (~1e-10) unless a kink
    # lies within h of x, which has probability ~1e-6 here
    torch.testing.assert_close(grad, fd, rtol=1e-7, atol=1e-7)
    for depth in range(4):
        fa, ga = nets.truncate(depth).autograd_grad(x)
        torch.testing.assert_close(ga, grad[..., depth, :], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fa, f[..., depth], rtol=1e-12, atol=1e-12)


def test_euler_identity_step_size_is_cosine_to_input() -> None:
    """Without biases f is 1-homogeneous: x·∇f(x) = f(x) (exact, rounding-level tolerance)."""
    g = _gen(1)
    nets = sample_relu_nets(2, width_profile(30, 3, "fixed", width=25), generator=g,
                            dtype=torch.float64)
    x = sphere_inputs(2, 5, 30, generator=g, dtype=torch.float64)
    f, grad = nets.grad_all(x)
    torch.testing.assert_close((grad * x.unsqueeze(2)).sum(-1), f, rtol=1e-10, atol=1e-12)


def test_fisher_top_eigenvector_is_gradient_and_fim_step_equals_gradient_step() -> None:
    g = _gen(2)
    d = 40
    nets = sample_relu_nets(1, [d, 60, 60], generator=g, dtype=torch.float64)

    def fn(v: torch.Tensor) -> torch.Tensor:
        return nets.forward(v.reshape(1, d))[0, 0]

    x = sphere_inputs(1, 1, d, generator=g, dtype=torch.float64)[0, 0]
    fim = dense_fim(lambda v: fn(v[0]).reshape(1, 1), x.unsqueeze(0), kind="bernoulli")[0]
    p = torch.sigmoid(fn(x))
    top = top_eigenpairs(fim, 1)
    lam, v = top.values[0], top.vectors[:, 0]
    _, grad = nets.grad(x.view(1, d))
    grad = grad[0, 0]
    ghat = grad / grad.norm()
    assert abs(float(v @ ghat)) == pytest.approx(1.0, abs=1e-12)
    assert float(lam) == pytest.approx(float(p * (1 - p) * grad @ grad), rel=1e-10)
    second = torch.linalg.eigvalsh(fim)[-2]
    assert abs(float(second)) <= 1e-12 * float(lam)  # rank one up to rounding
    for c in (1.0, 2.0):
        torch.testing.assert_close(fim_step(fn, x, c), gradient_step(fn, x, c),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_angle_recursion_matches_simulation_at_width_2048() -> None:
    width, depth = 2048, 10
    g = _gen(3)
    for theta0 in (math.pi / 2, 3 * math.pi / 4):
        theory = torch.tensor(arccos_recursion(theta0, depth), dtype=torch.float64)
        # exact O(m) two-input sampler, 200 replicates: standard error ≈ 0.03/√200 ≈ 0.002 rad
        ang = pair_gram_chain(width, depth, theta0, 200, generator=g)
        sem = ang.std(0) / math.sqrt(ang.shape[0])
        assert float(sem.max()) < 0.005  # so that the 0.02 rad claim is actually tested
        assert float((ang.mean(0) - theory).abs().max()) < 0.02
    # full networks (m×m weights), 2 nets: each deviates by ~0.03 rad (1 sd) at depth 10,
    # so the mean of two agrees with the recursion within 4 sd of the mean ≈ 0.09 rad
    nets = sample_relu_nets(2, [width] * (depth + 1), generator=g)
    x, y = pairs_at_angle(2, width, math.pi / 2, generator=g)
    full = hidden_angles(nets, x, y)[:, 0].double().mean(0)
    theory = torch.tensor(arccos_recursion(math.pi / 2, depth), dtype=torch.float64)
    assert float((full - theory).abs().max()) < 4 * 0.03 / math.sqrt(2)


def test_one_step_attack_flips_sign_with_high_probability() -> None:
    g = _gen(4)
    n, d = 200, 256
    nets = sample_relu_nets(n, width_profile(d, 2, "constant"), generator=g)
    x = sphere_inputs(n, 1, d, generator=g)  # one input per network: independent trials
    out = one_step_attack(nets, x, multipliers=(1.5, 2.0, 4.0), depths=(0, 2))
    succ = out.success[:, 0]  # (n, depths, c)
    assert bool(succ[:, 0].all())  # the linear function flips for every c > 1
    for j in range(3):
        k = int(succ[:, 1, j].sum())
        # reject "flip probability <= 0.9" at the 1 % level (one-sided exact binomial test)
        assert stats.binomtest(k, n, 0.9, alternative="greater").pvalue < 0.01, k
    assert float(out.ratio[:, 0, 1].median()) < 3 / math.sqrt(d)


@pytest.mark.slow
def test_scaling_slope_is_minus_half_within_bootstrap_error() -> None:
    res = scaling_study(ReluStudyConfig(dims=(32, 128, 512, 2048), depths=(1, 2),
                                        profiles=("fixed",), width=64, n_nets=32, batch=4, seed=5,
                                        n_boot=400))
    assert {f.depth for f in res.fits} == {0, 1, 2}
    for fit in res.fits:
        assert fit.boot_se < 0.06  # enough networks for the check to mean something
        assert abs(fit.slope + 0.5) < 3 * fit.boot_se, fit  # ~99.7 % two-sided


def test_classifier_attack_accepts_any_module() -> None:
    g = _gen(6)
    model = relu_mlp([20, 32, 5], generator=g)
    x = torch.rand(50, 20, generator=g)
    res = classifier_one_step(model, x, multipliers=(2.0,), generator=g)
    assert res.n_inputs == 50 and res.d == 20
    # the same step computed independently: margin, its gradient, x - 2 m g/|g|^2
    xg = x.clone().requires_grad_(True)
    z = model(xg)
    top2 = z.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]  # own predictions: the label is the argmax
    (grad,) = torch.autograd.grad(margin.sum(), xg)
    with torch.no_grad():
        step = (margin / (grad**2).sum(1)).unsqueeze(1) * grad
        z2 = model(x - 2.0 * step)
        flipped = z2.argmax(1) != z.argmax(1)
    assert res.success[0] == pytest.approx(float(flipped.double().mean()), abs=1e-12)
    ratio = (margin.abs() / grad.norm(dim=1) / x.norm(dim=1)).detach()
    assert res.median_ratio == pytest.approx(float(ratio.double().quantile(0.5)), rel=1e-5)
    assert set(res.near_linearity) == {"random", "gradient"}
    with pytest.raises(ValueError, match="shape"):
        classifier_one_step(model, x[0])


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="width"):
        width_profile(10, 2, "fixed")
    nets = sample_relu_nets(2, [5, 4], generator=_gen(7))
    with pytest.raises(ValueError, match="last dimension"):
        nets.forward(torch.zeros(3, 6))


def test_cli_quick_run_writes_valid_json(tmp_path) -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keep typer in multi-command mode
        pass

    out = tmp_path / "relu"
    res = CliRunner().invoke(app, ["relu-scaling", "--quick", "--out", str(out), "--seed", "3"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "result.json").read_text())
    assert data["schema_version"] == 1 and data["kind"] == "relu-scaling"
    validate(data)
    assert data["config"]["seed"] == 3
    assert data["scaling"]["fits"] and data["trained"]["trained"]["n_inputs"] > 0
    _report_numbers_equal_json((out / "report.md").read_text(), data)
    assert list(out.glob("relu_*.png"))
    assert not list(out.glob("*.tmp*"))


def _rows(md: str, header_start: str) -> list[list[str]]:
    """Cells of the body rows of the first Markdown table whose header starts so."""
    lines = md.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _report_numbers_equal_json(md: str, data: dict) -> None:
    """Every number of the slope, success, collapse and trained tables is its JSON value."""
    fits = data["scaling"]["fits"]
    rows = _rows(md, "| profile | L | dims |")
    assert len(rows) == len(fits)
    for row, f in zip(rows, fits, strict=True):
        assert row == [f["profile"], str(f["depth"]), f"{f['dims'][0]}–{f['dims'][-1]}",
                       f"{f['slope']:.3f}", f"[{f['ci_low']:.3f}, {f['ci_high']:.3f}]",
                       f"{f['boot_se']:.3f}", f"{f['ols_se']:.3f}"]
    rows = _rows(md, "| profile | d | L |")
    cells = data["scaling"]["cells"]
    expect = []
    for prof in dict.fromkeys(c["profile"] for c in cells):
        cell = max((c for c in cells if c["profile"] == prof), key=lambda c: c["d"])
        expect += [[prof, str(cell["d"]), str(L), f"{cell['median_ratio'][k]:.4f}",
                    *[f"{v:.3f}" for v in cell["success"][k]]]
                   for k, L in enumerate(cell["depths"])]
    assert rows == expect
    dep = data["depth"]
    rows = _rows(md, "| L | median ‖δ‖/‖x‖ | angle at layer L |")
    assert rows == [[str(L), f"{dep['collapse_median_ratio'][k]:.4f}",
                     f"{dep['collapse_output_angle'][k]:.3f}",
                     *[f"{v:.3f}" for v in dep["collapse_success"][k]]]
                    for k, L in enumerate(dep["collapse_depths"])]
    tr = data["trained"]
    rows = _rows(md, "| network | inputs |")
    assert [r[:2] for r in rows] == [[tr[k]["name"], str(tr[k]["n_inputs"])]
                                    for k in ("init", "trained")]
    for row, key in zip(rows, ("init", "trained"), strict=True):
        q = tr[key]["ratio_quartiles"]
        assert row[2] == f"{q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}]"
        assert row[3] == ", ".join(f"{v:.3f}" for v in tr[key]["success"])


def test_relu_mlp_draws_only_from_its_generator() -> None:
    torch.manual_seed(11)
    expect = torch.rand(3)
    torch.manual_seed(11)
    a = relu_mlp([6, 5, 2], generator=_gen(9))
    torch.testing.assert_close(torch.rand(3), expect)  # torch's global stream untouched
    b = relu_mlp([6, 5, 2], generator=_gen(9))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # N(0, 1/fan_in): 30 draws, the sample sd has relative error ~13 %, 0.5 is ~4 of those
    assert float(a[0].weight.detach().std()) == pytest.approx(6**-0.5, rel=0.5)
    assert not any(float(m.bias.detach().abs().max()) for m in (a[0], a[2]))
