"""Markdown table and scatter plots of a zoo run (:mod:`rgaudit.experiments.zoo`).

The functions take the typed :class:`~rgaudit.experiments.zoo.ZooResult`, or a JSON document
written from it, which they read back first (:meth:`ZooResult.from_dict`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from rgaudit.experiments.zoo import Spearman, ZooResult
from rgaudit.report.figures import save_figure

MARKERS = {"rbm": ("o", "C0"), "mlp": ("s", "C1"), "cnn": ("^", "C2")}


def _f(v: Any, fmt: str = ".2f") -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _typed(result: ZooResult | dict[str, Any]) -> ZooResult:
    return result if isinstance(result, ZooResult) else ZooResult.from_dict(result)


def _cell(c: Spearman) -> str:
    if not c.n or c.rho != c.rho:
        return f"— (n={c.n})"
    lo, hi = c.ci
    return f"{c.rho:+.2f} [{_f(lo, '+.2f')}, {_f(hi, '+.2f')}] (n={c.n})"


def verdict(result: ZooResult | dict[str, Any]) -> list[str]:
    """Plain statements read off the correlation table (no hand-written conclusions)."""
    tab = _typed(result).analysis.correlations

    def sig(c: Spearman) -> bool:
        lo, hi = c.ci
        return lo == lo and (lo > 0 or hi < 0)

    def strength(name: str) -> float:
        r = tab[name].all.rho
        return abs(r) if r == r else -1.0

    lines = []
    rg = [n for n, r in tab.items() if r.family == "rg"]
    ref = [n for n, r in tab.items() if r.family == "reference" and n != "depth"]
    best_rg = max(rg, key=strength)
    best_ref = max(ref, key=strength)
    lines.append(f"Strongest RG/Fisher predictor over the whole zoo: {best_rg} "
                 f"(ρ = {_cell(tab[best_rg].all)}); strongest reference predictor: "
                 f"{best_ref} (ρ = {_cell(tab[best_ref].all)}).")
    sig_rg = [n for n in rg if sig(tab[n].all)]
    lines.append("RG/Fisher predictors whose 95% interval excludes 0 (whole zoo): "
                 + (", ".join(sig_rg) if sig_rg else "none") + ".")
    sig_stab = [n for n in ("stab_n_kept", "stab_top") if sig(tab[n].rbm)]
    lines.append("MCRG stability predictors whose interval excludes 0 (RBM family): "
                 + (", ".join(sig_stab) if sig_stab else "none") + ".")
    return lines


def markdown(result: ZooResult | dict[str, Any], command: str | None = None,
             wall: float | None = None) -> str:
    """Correlation table, held-out check, per-network table and execution summary."""
    result = _typed(result)
    a = result.analysis
    cfg = result.config
    lines = ["# Zoo: do RG/Fisher diagnostics predict adversarial robustness?", ""]
    if command:
        lines += [f"Command: `{command}`" + (f" — wall time {wall:.0f} s" if wall else ""), ""]
    lines += [f"{a.n_networks} networks measured, {a.n_used} used (test accuracy ≥ "
              f"{a.min_accuracy}), {len(result.failures)} failed. Robustness: median "
              f"minimal applied L2 (inputs in [0, 1]^64) that flips the model's own prediction "
              f"along the DDN perturbation, over the first {cfg.n_inputs} test inputs "
              "(misclassified inputs count 0).", "", *verdict(result), "",
              "## Spearman ρ with robustness (95% bootstrap interval)", "",
              "Negative ρ: a larger predictor goes with a *less* robust network.", "",
              "| predictor | kind | all networks | RBM family | PyTorch family | held-out ρ "
              "(fixed split; median of random splits) | all, correctly classified inputs only |",
              "|---|---|---|---|---|---|---|"]
    for name, row in a.correlations.items():
        ho = row.all.held_out or row.rbm.held_out
        lines.append(f"| {name} | {row.family} | {_cell(row.all)} | {_cell(row.rbm)} "
                     f"| {_cell(row.torch)} | {_f(ho and ho.fixed_split_rho, '+.2f')}; "
                     f"{_f(ho and ho.random_splits_median_rho, '+.2f')} | "
                     f"{_cell(row.all_correct_only)} |")
    lines += ["", "Last column: the same ρ with robustness taken as the median over the inputs "
              "the network classifies correctly (misclassified inputs left out instead of "
              "counted 0), so that accuracy is not mixed into robustness.",
              "", "Held-out check: a line `robustness ≈ a + b·log(predictor)` fitted on half the "
              "networks ranks the other half; ρ between that ranking and the measured "
              "robustness (fixed split by key hash; median over "
              f"{cfg.n_splits} random half/half splits). Stability predictors: RBM family.",
              "", "## Networks", "",
              "| network | acc | robustness median [q1, q3] | unflipped | top FIM eig | "
              "eff. rank | eig. fraction | stab ≥1−δ | CLEVER | ‖∇ loss‖ | Lipschitz | s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(result.networks, key=lambda r: r.key):
        p, rb = r.predictors, r.robustness
        lines.append(
            f"| {r.key} | {_f(p.accuracy)} | {_f(rb.median)} [{_f(rb.q1)}, "
            f"{_f(rb.q3)}] | {rb.n_unflipped} | {_f(p.fim_top, '.3g')} | "
            f"{_f(p.fim_eff_rank, '.2f')} | {_f(p.eig_fraction)} | "
            f"{_f(p.stab_n_kept, '.1f')} | {_f(p.clever)} | "
            f"{_f(p.grad_norm, '.3g')} | {_f(p.lipschitz, '.3g')} | "
            f"{sum(r.timings.values()):.0f} |")
    if a.excluded:
        lines += ["", "Left out of the correlations (accuracy below the threshold): "
                  + ", ".join(f"{e.key} (acc {e.accuracy:.2f})" for e in a.excluded)]
    if result.failures:
        lines += ["", "Failed after retries: " + ", ".join(result.failures)]
    lines += ["", "## Where the time went", "", "```", result.execution.summary_text or "",
              "```"]
    return "\n".join(lines) + "\n"


def plot_scatter(result: ZooResult | dict[str, Any], path: str | Path) -> Path:
    """One panel per predictor: robustness (median, q1–q3 bars) against the predictor."""
    result = _typed(result)
    corr = result.analysis.correlations
    names = list(corr)
    excluded = {e.key for e in result.analysis.excluded}
    nets = [r for r in result.networks if r.key not in excluded]
    cols = 3
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs_all = []
        for fam, (mk, col) in MARKERS.items():
            pts = [(v, r.robustness) for r in nets if r.spec.family == fam
                   and (v := r.value(name)) is not None and math.isfinite(v)]
            if not pts:
                continue
            x = [v for v, _ in pts]
            y = [rb.median for _, rb in pts]
            lo = [rb.median - rb.q1 for _, rb in pts]
            hi = [rb.q3 - rb.median for _, rb in pts]
            ax.errorbar(x, y, yerr=[lo, hi], fmt=mk, color=col, ms=4, lw=0.7, capsize=2,
                        label=fam)
            xs_all += x
        if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) > 30:
            ax.set_xscale("log")
        ax.set_title(f"{name}: ρ = {_f(corr[name].all.rho, '+.2f')}", fontsize=9)
        ax.set_xlabel(corr[name].description, fontsize=7)
        ax.set_ylabel("min. flipping L2 (median, q1–q3)", fontsize=7)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle("Zoo: robustness (minimal applied L2 to flip, input range [0, 1]) against "
                 "each predictor; bars: quartiles over inputs", fontsize=10)
    return save_figure(fig, path)


def write_report(result: ZooResult | dict[str, Any], out: str | Path, command: str | None = None,
                 wall: float | None = None) -> list[Path]:
    """Write ``zoo.md`` and ``zoo_scatter.png`` into ``out``."""
    from rgaudit.report.io import atomic_write_text

    out = Path(out)
    md = atomic_write_text(out / "zoo.md", markdown(result, command, wall))
    png = plot_scatter(result, out / "zoo_scatter.png")
    return [md, png]
