"""Markdown summary and plots (matplotlib, Agg) of a ``DiagnoseResult``."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rgaudit.experiments.diagnose import DiagnoseResult, SpectrumSummary  # noqa: E402
from rgaudit.report.figures import save_figure  # noqa: E402
from rgaudit.report.io import atomic_write_text  # noqa: E402


def _fmt(v: float, e: float) -> str:
    return f"{v:.3f} ± {e:.3f}"


def plot_spectra(result: DiagnoseResult, path: str | os.PathLike, *, top: int = 10) -> Path:
    """Input-averaged top Fisher-normalised singular values per layer pair (main run)."""
    main = [s for s in result.spectra if s.study == "main"]
    fig, axes = plt.subplots(1, max(len(main), 1), figsize=(4.5 * max(len(main), 1), 3.5),
                             squeeze=False)
    for ax, s in zip(axes[0], main, strict=False):
        mean, err = s.mean_fisher()
        k = min(top, len(mean))
        ax.errorbar(range(1, k + 1), mean[:k].numpy(), yerr=err[:k].numpy(), fmt="o", ms=4,
                    capsize=2, label="Fisher-normalised s")
        if s.eig_abs is not None and s.eig_abs_err is not None:  # set together
            ax.errorbar(range(1, k + 1), s.eig_abs.mean(0)[:k].numpy(),
                        yerr=s.eig_abs_err.mean(0)[:k].numpy(), fmt="s", ms=3, capsize=2,
                        label="|Λ| (shared basis)")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"T^({s.pair + 1}): layers {s.pair}→{s.pair + 1}, {s.basis}")
        ax.set_xlabel("rank μ")
        ax.set_ylim(0, 1.05 if s.eig_abs is None else None)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_convergence(result: DiagnoseResult, path: str | os.PathLike) -> Path:
    """Leading Fisher-normalised value versus samples and versus basis size, per pair."""
    pairs = sorted({s.pair for s in result.spectra})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for p in pairs:
        samp = sorted([s for s in result.spectra if s.pair == p and s.study in ("samples", "main")
                       and s.basis == result.config.ops], key=lambda s: s.n_samples)
        if samp:
            m = [s.mean_fisher() for s in samp]
            axes[0].errorbar([s.n_samples for s in samp], [float(v[0][0]) for v in m],
                             yerr=[float(v[1][0]) for v in m], marker="o", capsize=2,
                             label=f"T^({p + 1})")
        bas = sorted([s for s in result.spectra if s.pair == p and s.study == "basis"],
                     key=lambda s: s.n_ops[1])
        if bas:
            m = [s.mean_fisher() for s in bas]
            axes[1].errorbar([s.n_ops[0] + s.n_ops[1] for s in bas], [float(v[0][0]) for v in m],
                             yerr=[float(v[1][0]) for v in m], marker="o", capsize=2,
                             label=f"T^({p + 1})")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("samples per input S")
    axes[1].set_xlabel("operators (lower + upper layer)")
    for ax in axes:
        ax.set_ylabel("leading s (input mean)")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_fixed_points(result: DiagnoseResult, path: str | os.PathLike) -> Path | None:
    """Class × class mean symmetrised KL between output Hamiltonians."""
    fp = result.fixed_points
    if fp is None:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(fp.kl_class.numpy(), cmap="viridis")
    fig.colorbar(im, ax=ax, label="mean symmetrised KL")
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    ax.set_title("output effective Hamiltonians")
    return save_figure(fig, path)


def _spectrum_rows(spectra: list[SpectrumSummary], top: int) -> list[str]:
    rows = ["| study | pair | basis | ops (lower, upper) | S | " +
            " | ".join(f"s_{i + 1}" for i in range(top)) +
            " | raw s_1 | #kept | max cond | reg. | floor |",
            "|---|---|---|---|---|" + "---|" * top + "---|---|---|---|---|"]
    for s in spectra:
        mean, err = s.mean_fisher()
        raw = s.mean_fisher(raw=True)[0]
        vals = [_fmt(float(mean[i]), float(err[i])) if i < len(mean) else "" for i in range(top)]
        kept = s.counts.get("fisher~1", [])
        rng = f"{min(c.lo for c in kept)}–{max(c.hi for c in kept)}" if kept else "-"
        rows.append(f"| {s.study} | T^({s.pair + 1}) | {s.basis} | {s.n_ops[0]}, {s.n_ops[1]} | "
                    f"{s.n_samples} | " + " | ".join(vals) +
                    f" | {float(raw[0]):.3f} | {rng} | {s.max_cond:.3g} | "
                    f"{s.regularised} | {s.floored} |")
    return rows


def render_markdown(result: DiagnoseResult, images: list[str] | None = None, *,
                    top: int = 3) -> str:
    """The Markdown summary."""
    c, i = result.config, result.inputs
    lines = [
        "# rgaudit diagnose", "",
        f"Network widths {i.widths}, {i.n_inputs} inputs, main basis "
        f"`{c.ops}`, S = {c.n_samples} chains per input, "
        f"{c.n_blocks} jackknife blocks, seed {c.seed}, device {c.device}.",
        "",
        "Fisher-normalised singular values s of `C_{k+1}^{1/2} T C_k^{-1/2}` (canonical "
        "correlations between the operators of adjacent layers), jackknife bias-corrected "
        "(`n θ − (n−1) θ̄`; `raw s_1`: the plug-in leading value, in [0, 1] but biased upwards "
        "at finite S), averaged over inputs (error: larger of the input spread and the "
        "propagated jackknife error). `#kept`: range over inputs of the number of "
        "bias-corrected s ≥ 0.95 ('information kept'), lo = s − 2σ ≥ 0.95, hi = s + 2σ ≥ 0.95. "
        "`reg.`: inputs whose solve was regularised; `floor`: inputs whose Fisher normalisation "
        "needed an eigenvalue floor (pseudo-inverse) of a singular covariance.", "",
        *_spectrum_rows(result.spectra, top), "",
    ]
    if result.depth:
        lines += ["## Depth (eq. 19)", "", "| pairs | ‖T_{i+1} − T_i‖/‖T_i‖ (input mean) |",
                  "|---|---|"]
        for d in result.depth:
            lines.append(f"| T^({d.pair + 1}) → T^({d.pair + 2}) | "
                         f"{_fmt(float(d.rel_change.mean()), float(d.rel_change_err.mean()))} |")
        lines.append("")
    if result.fixed_points is not None:
        wb = result.fixed_points.within_between()
        lines += ["## Class fixed points", "",
                  f"Output effective Hamiltonians of {len(result.fixed_points.labels)} inputs "
                  f"({result.fixed_points.n_samples} chains each): mean symmetrised KL within "
                  f"classes {wb['kl_within']:.4g}, between classes {wb['kl_between']:.4g}; "
                  f"coupling distance (orders ≤ {result.fixed_points.max_order}) within "
                  f"{wb['coupling_within']:.4g}, between {wb['coupling_between']:.4g}.", ""]
    for note in result.notes:
        lines.append(f"- {note}")
    lines.append("")
    for img in images or []:
        lines.append(f"![{img}]({img})")
    return "\n".join(lines) + "\n"


def write_report(result: DiagnoseResult, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``report.md`` and the PNG plots into ``out_dir``; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_spectra(result, out / "rg_spectra.png"),
             plot_convergence(result, out / "rg_convergence.png")]
    fp = plot_fixed_points(result, out / "rg_fixed_points.png")
    if fp is not None:
        paths.append(fp)
    md = render_markdown(result, [p.name for p in paths])
    paths.append(atomic_write_text(out / "report.md", md))
    return paths
