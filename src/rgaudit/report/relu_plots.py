"""Plots and Markdown for the random-ReLU study; everything takes ``ReluStudyResult.to_dict()``.

Working from the plain dict means a saved ``result.json`` can be re-rendered without rerunning.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rgaudit.report.figures import save_figure  # noqa: E402

DPI = 80


def _save(fig: Any, path: Path) -> Path:
    return save_figure(fig, path, DPI)


def plot_scaling(result: dict, path: Path) -> Path:
    """Log–log median ``‖δ‖/‖x‖`` vs ``d`` per depth and width profile, with a −1/2 line."""
    cells = result["scaling"]["cells"]
    profiles = list(dict.fromkeys(c["profile"] for c in cells))
    fig, axes = plt.subplots(1, len(profiles), figsize=(5 * len(profiles), 4), squeeze=False)
    for ax, prof in zip(axes[0], profiles, strict=True):
        pc = sorted((c for c in cells if c["profile"] == prof), key=lambda c: c["d"])
        dims = np.array([c["d"] for c in pc], dtype=float)
        depths = pc[0]["depths"]
        cmap = plt.get_cmap("viridis", len(depths))
        for k, depth in enumerate(depths):
            med = np.array([c["median_ratio"][k] for c in pc])
            lo = np.array([c["median_ratio_ci"][k][0] for c in pc])
            hi = np.array([c["median_ratio_ci"][k][1] for c in pc])
            label = "linear (L=0)" if depth == 0 else f"L={depth}"
            ax.errorbar(dims, med, yerr=[med - lo, hi - med], marker="o", ms=3, capsize=2,
                        color="k" if depth == 0 else cmap(k), label=label,
                        ls="--" if depth == 0 else "-")
        ref = 0.6745 / np.sqrt(dims)
        ax.plot(dims, ref, color="r", lw=1, ls=":", label=r"$0.674\,d^{-1/2}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("input dimension d")
        ax.set_ylabel(r"median $\|\delta\|/\|x\|$ (c = 1)")
        width = pc[0]["widths"][1] if len(pc[0]["widths"]) > 1 else None
        title = "hidden widths = d" if prof == "constant" else f"hidden width = {width}"
        ax.set_title(title)
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_near_linearity(result: dict, path: Path) -> Path:
    """Relative gradient change and affine error against ``r/‖x‖``, per ``d``, depth, direction."""
    curves = result["near_linearity"]["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    dims = sorted({c["d"] for c in curves})
    depths = sorted({c["depth"] for c in curves})
    colors = plt.get_cmap("plasma", len(dims) + 1)
    styles = ["-", "--", ":", "-."]
    for c in curves:
        color = colors(dims.index(c["d"]))
        ls = styles[depths.index(c["depth"]) % len(styles)]
        ax = axes[0] if c["direction"] == "random" else axes[1]
        ax.plot(c["r_rel"], c["grad_change_median"], color=color, ls=ls,
                label=f"d={c['d']}, L={c['depth']}")
        ax.axvline(c["step_rel"], color=color, lw=0.5, alpha=0.5)
    for ax, title in zip(axes, ("random direction", "gradient direction"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 5)
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_xlabel(r"$r/\|x\|$  (thin lines: one-step size)")
        ax.set_ylabel(r"median $\|\nabla f(y)-\nabla f(x)\|/\|\nabla f(x)\|$")
        ax.set_title(title)
    axes[0].legend(fontsize=6, ncol=2)
    return _save(fig, path)


def plot_angles(result: dict, path: Path) -> Path:
    """Hidden-layer angle of two inputs: networks, exact pair sampler, arc-cosine recursion."""
    dep = result["depth"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for i, a in enumerate(dep["angles"]):
        col = plt.get_cmap("tab10")(i)
        ax.plot(a["layers"], a["theory"], color=col, lw=1, label=f"theory θ0={a['theta0']:.2f}")
        ax.errorbar(a["layers"], a["simulated_mean"], yerr=a["simulated_sem"], fmt="o", ms=3,
                    color=col, capsize=2)
        ax.plot(a["layers"], a["pair_sampler_mean"], "x", ms=4, color=col)
    ax.set_xlabel("layer")
    ax.set_ylabel("angle (rad)")
    ax.set_title(f"width {dep['width']}: o networks (±sem), x exact pair sampler")
    ax.legend(fontsize=7)
    ax = axes[1]
    depths = np.array(dep["collapse_depths"], dtype=float)
    x = np.where(depths == 0, 0.5, depths)
    ax.plot(x, dep["collapse_median_ratio"], "o-", color="k", label=r"median $\|\delta\|/\|x\|$")
    ax.plot(x, np.array(dep["collapse_output_angle"]) / math.pi, "s--", color="gray",
            label="angle at layer L / π (two inputs)")
    for j, c in enumerate(dep["multipliers"]):
        ax.plot(x, [s[j] for s in dep["collapse_success"]], marker=".", label=f"success c={c:g}")
    ax.set_xscale("log")
    ax.set_xlabel("depth L (0 = linear, drawn at 0.5)")
    ax.set_title(f"collapse: d={dep['collapse_d']}, width {dep['collapse_width']}")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_trained(result: dict, path: Path) -> Path:
    """Near-linearity of the digits MLP at random init and after training."""
    tr = result["trained"]
    fig, ax = plt.subplots(figsize=(5, 4))
    for key, col in (("init", "C0"), ("trained", "C3")):
        for direction, ls in (("random", "--"), ("gradient", "-")):
            nl = tr[key]["near_linearity"].get(direction)
            if nl:
                ax.plot(nl["r_rel"], np.maximum(nl["grad_change_median"], 1e-4), ls=ls, color=col,
                        label=f"{tr[key]['name']}, {direction}")
        ax.axvline(tr[key]["median_ratio"], color=col, lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$r/\|x\|$  (vertical: median one-step size)")
    ax.set_ylabel("median relative gradient change")
    ax.set_title("digits MLP (logit margin)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def write_plots(result: dict, folder: Path, suffix: str = "") -> list[Path]:
    """All plots as ``relu_*.png`` in ``folder``; ``suffix`` is added before ``.png``."""
    folder = Path(folder)
    return [
        plot_scaling(result, folder / f"relu_scaling{suffix}.png"),
        plot_near_linearity(result, folder / f"relu_near_linearity{suffix}.png"),
        plot_angles(result, folder / f"relu_depth{suffix}.png"),
        plot_trained(result, folder / f"relu_trained{suffix}.png"),
    ]


def _fmt(v: float | None, nd: int = 3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def render_markdown(result: dict) -> str:
    """Markdown report: slopes ± CI, success per multiplier, near-linearity, depth, trained."""
    sc = result["scaling"]
    cfg = result["config"]
    lines = ["# Random ReLU networks: one-step adversarial examples", "",
             f"seed {cfg['seed']}, device {cfg['device']}, multipliers {cfg['multipliers']}; "
             f"{cfg['n_nets']} networks × {cfg['batch']} inputs per cell.", "",
             "## Scaling of median ‖δ‖/‖x‖ with d", "",
             f"Slope of log median vs log d; 95 % interval: percentile bootstrap over networks "
             f"({sc['n_boot']} resamples, networks resampled within each d); OLS SE for reference.",
             "", "| profile | L | dims | slope | 95 % CI | boot SE | OLS SE |",
             "|---|---|---|---|---|---|---|"]
    for f in sc["fits"]:
        lines.append(f"| {f['profile']} | {f['depth']} | {f['dims'][0]}–{f['dims'][-1]} | "
                     f"{_fmt(f['slope'])} | [{_fmt(f['ci_low'])}, {_fmt(f['ci_high'])}] | "
                     f"{_fmt(f['boot_se'])} | {_fmt(f['ols_se'])} |")
    for s in sc["skipped"]:
        lines.append(f"\nSkipped {s['profile']} d={s['d']}: {s['reason']}.")
    cs = sc["multipliers"]
    lines += ["", "## Sign-flip success per step multiplier c (largest d of each profile)", "",
              "| profile | d | L | median ‖δ‖/‖x‖ | " + " | ".join(f"c={c:g}" for c in cs) + " |",
              "|---" * (4 + len(cs)) + "|"]
    profiles = list(dict.fromkeys(c["profile"] for c in sc["cells"]))
    for prof in profiles:
        cell = max((c for c in sc["cells"] if c["profile"] == prof), key=lambda c: c["d"])
        for k, depth in enumerate(cell["depths"]):
            lines.append(f"| {prof} | {cell['d']} | {depth} | {cell['median_ratio'][k]:.4f} | "
                         + " | ".join(f"{v:.3f}" for v in cell["success"][k]) + " |")
    lines += ["", "## Near-linearity", "",
              "Breakdown: first r/‖x‖ where the median relative gradient change reaches "
              "the threshold.", "",
              "| d | L | direction | one-step ‖δ‖/‖x‖ | breakdown r/‖x‖ | breakdown / step | "
              "affine err at step |", "|---|---|---|---|---|---|---|"]
    for c in result["near_linearity"]["curves"]:
        rr = np.array(c["r_rel"])
        at = float(np.interp(np.log(c["step_rel"]), np.log(rr), c["affine_err_median"]))
        br = c["breakdown_r_rel"]
        lines.append(f"| {c['d']} | {c['depth']} | {c['direction']} | {c['step_rel']:.4f} | "
                     f"{_fmt(br)} | {_fmt(None if br is None else br / c['step_rel'], 1)} | "
                     f"{at:.3g} |")
    dep = result["depth"]
    lines += ["", "## Depth", "", f"Hidden angle of two inputs, width {dep['width']} "
              f"({dep['angle_n_nets']} networks; exact pair sampler "
              f"{dep['angles'][0]['pair_sampler_n']} replicates), max |simulated − theory| "
              "over layers:", "", "| θ0 | networks | pair sampler | angle at last layer (theory) |",
              "|---|---|---|---|"]
    for a in dep["angles"]:
        th = np.array(a["theory"])
        lines.append(f"| {a['theta0']:.3f} | "
                     f"{np.abs(np.array(a['simulated_mean']) - th).max():.4f} | "
                     f"{np.abs(np.array(a['pair_sampler_mean']) - th).max():.4f} | "
                     f"{th[-1]:.3f} |")
    lines += ["", f"Collapse (d={dep['collapse_d']}, width {dep['collapse_width']}, "
              f"{dep['collapse_n_nets']} networks):", "",
              "| L | median ‖δ‖/‖x‖ | angle at layer L | "
              + " | ".join(f"c={c:g}" for c in dep["multipliers"]) + " |",
              "|---" * (3 + len(dep["multipliers"])) + "|"]
    for k, depth in enumerate(dep["collapse_depths"]):
        lines.append(f"| {depth} | {dep['collapse_median_ratio'][k]:.4f} | "
                     f"{dep['collapse_output_angle'][k]:.3f} | "
                     + " | ".join(f"{v:.3f}" for v in dep["collapse_success"][k]) + " |")
    tr = result["trained"]
    lines += ["", "## Trained network (scikit-learn digits, logit margin)", "",
              f"MLP {tr['widths']}, {tr['epochs']} epochs: train accuracy "
              f"{tr['train_accuracy']:.3f}, test accuracy {tr['test_accuracy']:.3f}. "
              f"Reference 1/√d = {1 / math.sqrt(tr['trained']['d']):.3f}.", "",
              "| network | inputs | median ‖δ‖/‖x‖ [q25, q75] | success c "
              + ", ".join(f"{c:g}" for c in tr["trained"]["multipliers"])
              + " | clipped to [0,1] |", "|---|---|---|---|---|"]
    for key in ("init", "trained"):
        a = tr[key]
        q = a["ratio_quartiles"]
        lines.append(f"| {a['name']} | {a['n_inputs']} | {q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}] | "
                     + ", ".join(f"{v:.3f}" for v in a["success"]) + " | "
                     + ", ".join(f"{v:.3f}" for v in a["success_clipped"]) + " |")
    secs = result.get("seconds", {})
    lines += ["", "Wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()), ""]
    return "\n".join(lines)
