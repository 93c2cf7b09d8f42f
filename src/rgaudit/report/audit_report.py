"""Render an RBM audit (:class:`~rgaudit.experiments.audit.AuditResult`): JSON, Markdown and a
self-contained HTML page with its plots.

Everything shown is read from the typed result, whose ``to_dict()`` is the JSON, and from the
typed depth study and attack study passed next to it, so the report's numbers are the JSON's.
Plots (PNG, matplotlib Agg): FIM spectra on a log scale, top eigenvectors as images (8×8 for
digits; any square input), flip rate versus ε per method, minimal-ε box plots, and the depth
study when there is one. The HTML embeds the PNGs as base64, so it is one file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rgaudit.report.figures import save_figure  # noqa: E402
from rgaudit.report.html import render_html
from rgaudit.report.io import atomic_write_text, to_plain, write_result  # noqa: E402

if TYPE_CHECKING:
    from rgaudit.experiments.attack_study import AttackStudyResult
    from rgaudit.experiments.audit import AttackRow, AttackTable, AuditResult, FimInfo
    from rgaudit.experiments.audit_plan import AuditPlan
    from rgaudit.experiments.depth import DepthResult

DPI = 90


def _save(fig: Any, path: Path) -> Path:
    return save_figure(fig, path, DPI)


def _finite(v: float | None) -> float | None:
    """``v`` where it is a finite number, else None (what the JSON holds for it)."""
    return v if v is not None and math.isfinite(v) else None


def plot_fim_spectra(fim: dict[str, FimInfo], path: Path) -> Path:
    """Median normalised FIM spectrum per estimator, log10 scale."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, info in fim.items():
        spectrum = info.spectrum.spectrum_log10_median
        if spectrum:
            # only eigenvalues significantly above the noise floor |λ_min| are drawn
            s = [v if v is not None and math.isfinite(v) else float("nan") for v in spectrum]
            ax.plot(range(1, len(s) + 1), s, marker=".", label=name)
    ax.set_xlabel("eigenvalue rank")
    ax.set_ylabel("log10(λ / λ_max), median over inputs\n(significant eigenvalues only)")
    ax.set_xscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Input FIM spectra: stiff vs sloppy")
    return _save(fig, path)


def plot_eigenvectors(fim: dict[str, FimInfo], path: Path) -> Path | None:
    """Top eigenvector of each estimator for the first inputs, as square images."""
    names = [n for n, i in fim.items() if i.top_vectors]
    if not names:
        return None
    n_in = len(fim[names[0]].top_vectors)
    d = len(fim[names[0]].top_vectors[0])
    side = int(round(math.sqrt(d)))
    if side * side != d:
        return None
    fig, axes = plt.subplots(n_in, len(names), figsize=(1.6 * len(names), 1.6 * n_in),
                             squeeze=False)
    for j, name in enumerate(names):
        for i, v in enumerate(fim[name].top_vectors):
            ax = axes[i][j]
            m = max(abs(t) for t in v) or 1.0
            ax.imshow([v[r * side:(r + 1) * side] for r in range(side)], cmap="RdBu_r",
                      vmin=-m, vmax=m)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
    return _save(fig, path)


def plot_flip_rates(attacks: AttackTable, path: Path) -> Path:
    """Flip rate versus budget per method, one panel per norm."""
    fig, axes = plt.subplots(1, len(attacks), figsize=(5 * len(attacks), 3.6), squeeze=False)
    for ax, (norm, per) in zip(axes[0], attacks.items(), strict=True):
        for name, r in per.items():
            ax.plot(r.epsilons, r.flip_rate, marker="o", ms=3, label=name)
        ax.set_xlabel(f"budget ε ({norm})")
        ax.set_ylabel("flip rate (stochastic net)")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _label(name: str, r: AttackRow, along: str) -> str:
    """The method's name; PGD's says when its minimal ε was searched along the ε_max step."""
    return name + along if name == "pgd" and "ε_max" in r.min_eps_along else name


def plot_min_eps(attacks: AttackTable, path: Path) -> Path:
    """Box plots of the applied minimal flipping perturbation ‖clip(x + ε s) − x‖ (unflipped
    inputs drawn at the grid's top)."""
    fig, axes = plt.subplots(1, len(attacks), figsize=(5 * len(attacks), 3.6), squeeze=False)
    for ax, (norm, per) in zip(axes[0], attacks.items(), strict=True):
        names = list(per)
        data = []
        for n in names:
            top = per[n].epsilons[-1]
            vals = getattr(per[n], f"min_eps_actual_{norm}", None) or per[n].min_eps
            data.append([e if e is not None and math.isfinite(e) else top for e in vals])
        ax.boxplot(data)
        labels = [_label(n, per[n], " (ε_max dir.)") for n in names]
        ax.set_xticks(range(1, len(names) + 1), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(f"applied minimal flipping ‖δ‖ ({norm})")
    return _save(fig, path)


def plot_depth(depth: DepthResult, path: Path) -> Path:
    """Top FIM eigenvalue, Fisher-normalised spectra and minimal ε versus depth."""
    rows = depth.rows
    L = [r.depth for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].errorbar(L, [r.top_eig_median for r in rows],
                     yerr=[_finite(r.top_eig_err_median) or 0.0 for r in rows], marker="o")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("depth N")
    axes[0].set_ylabel("top FIM eigenvalue (median)")
    for r in rows:
        sv = r.fisher_sv_top
        axes[1].plot(range(1, len(sv) + 1), sv, marker=".", label=f"N={r.depth}")
    axes[1].set_xlabel("pair (layer k → k+1)")
    axes[1].set_ylabel("top Fisher-normalised s")
    axes[1].legend(fontsize=7)
    axes[2].plot(L, [_finite(r.min_eps_median) for r in rows], marker="o")
    axes[2].set_xlabel("depth N")
    axes[2].set_ylabel("median minimal ε (L2, direct-FIM dir.)")
    return _save(fig, path)


def write_plots(result: AuditResult, folder: Path, *, depth: DepthResult | None = None,
                attack_study: AttackStudyResult | None = None) -> list[Path]:
    """Write every plot the result (and the depth and attack studies, if run) supports into
    ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = [plot_fim_spectra(result.fim, folder / "fim_spectrum.png"),
           plot_eigenvectors(result.fim, folder / "fim_eigenvectors.png"),
           plot_flip_rates(result.attacks, folder / "attack_flip_rate.png"),
           plot_min_eps(result.attacks, folder / "attack_min_eps.png")]
    if depth is not None and depth.rows:
        out.append(plot_depth(depth, folder / "depth_study.png"))
    if attack_study is not None:
        from rgaudit.report.attack_report import plot_fraction

        out.append(plot_fraction(attack_study, folder / "eigenspace_fraction.png"))
    return [p for p in out if p is not None]


def _fmt(v: Any, nd: int = 3) -> str:
    """A number to ``nd`` significant digits; "—" where the JSON holds null (None, a
    non-finite float)."""
    if isinstance(v, float):
        return f"{v:.{nd}g}" if math.isfinite(v) else "—"
    return "—" if v is None else str(v)


def _median(values: list[float]) -> float | None:
    v = sorted(x for x in values if x is not None)
    return v[len(v) // 2] if v else None


def _median_input_norm(result: AuditResult) -> float | None:
    """Upper median of ‖x‖₂ over the recorded input images (None without images)."""
    images = result.inputs.images or []
    return _median([math.sqrt(sum(float(v) ** 2 for v in img)) for img in images])


def _applied_l2_medians(result: AuditResult, skip: tuple[str, ...] = ()
                        ) -> list[tuple[float, str]]:
    """(median applied minimal L2, method) of the methods that flipped at least half of the
    inputs, in the result's order of methods."""
    rows = []
    for name, r in result.attacks.get("l2", {}).items():
        med = r.min_eps_actual_summary.median
        if name not in skip and math.isfinite(med):
            rows.append((med, name))
    return rows


def _summary(result: AuditResult) -> list[str]:
    """Plain-language findings, each computed from the numbers in ``result``."""
    out = ["## Summary", ""]
    pairs = result.diagnosis.pairs
    tops = [row[0] for p in pairs for row in (p.fisher_sv or []) if row]
    kept = sum(sum(p.n_kept_fisher_1 or []) for p in pairs)
    if tops:
        verdict = (f"{kept} (pair, input) directions keep their Fisher information (s ≥ 0.95): "
                   "relevant directions are present" if kept else
                   "no hidden-layer pair keeps Fisher information along any direction "
                   "(criterion s ≥ 0.95): no relevant direction detected")
        out.append(f"- **Relevant directions:** {verdict}; largest Fisher-normalised singular "
                   f"value {_fmt(max(tops))} over {len(pairs)} layer pairs and the diagnosed "
                   "inputs. This is a statement about these inputs and this operator basis.")
    fim = result.fim
    if "rg-singles" in fim and "direct" in fim:
        out.append(f"- **RG-chain FIM vs direct Monte Carlo FIM:** median |cos| of the top "
                   f"eigenvectors {_fmt(fim['rg-singles'].median_cos_top_vs_direct)} "
                   "(singles basis).")
    norm = _median_input_norm(result)
    rows = sorted(_applied_l2_medians(result))   # lowest first (ties by name)
    if rows:
        best = ", ".join(f"{n} {_fmt(m)}" for m, n in rows[:4])
        rel = f" (median input norm ‖x‖₂ = {_fmt(norm)})" if norm else ""
        out.append(f"- **Smallest flipping perturbations** (median applied L2, lowest first): "
                   f"{best}{rel}.")
        rg = next((m for m, n in rows if n == "fim-rg-singles"), None)
        if rg is not None:
            rank = [n for _, n in rows].index("fim-rg-singles") + 1
            out.append(f"- **RG-FIM direction:** rank {rank} of {len(rows)} methods that flipped "
                       "at least half of the inputs; see the tables for quartiles.")
    out.append("")
    return out


def verdict(result: AuditResult) -> str | None:
    """The plain-words verdict: the smallest median applied flipping L2 perturbation over the
    non-random methods, absolute and relative to the median input norm."""
    rows = _applied_l2_medians(result, skip=("random",))
    if not rows:
        return None
    med, name = min(rows, key=lambda t: t[0])   # the first of equal medians
    s = result.attacks["l2"][name].min_eps_summary
    norm = _median_input_norm(result)
    rel = (f" ({100 * med / norm:.2g} % of the median input norm ‖x‖₂ = {_fmt(norm, 2)})"
           if norm else "")
    return (f"**Verdict: half of the audited inputs change class under an L2 perturbation of at "
            f"most {_fmt(med, 2)}{rel}, found by {name}; {s.n_flipped}/{s.n} inputs "
            "flipped within the largest budget (judged on the stochastic network).** "
            "Relevant directions, in the RG sense, are input directions whose Fisher information "
            "survives every layer (Fisher-normalised singular value s ≈ 1, below); the FIM "
            "attacks step along the top eigenvector of the input Fisher information.")


def _diagnosis_table(result: AuditResult) -> list[str]:
    lines = ["## Diagnosis: Fisher-normalised stability spectra (singles basis)", "",
             "| pair | ops (prev, next) | top s (input 1) | # s≈1 per input | regularised |",
             "|---|---|---|---|---|"]
    for p in result.diagnosis.pairs:
        top = ", ".join(_fmt(v) for v in (p.fisher_sv[0][:4] if p.fisher_sv else []))
        lines.append(f"| {p.pair} | {p.n_ops} | {top} | {p.n_kept_fisher_1} | "
                     f"{p.regularised} |")
    return lines


def _fim_table(result: AuditResult) -> list[str]:
    lines = ["", "## Input FIM", "",
             "Top eigenvalue: median over inputs, ± median jackknife error. Spectra count only "
             "eigenvalues significantly above the noise floor |λ_min| (the direct FIM is an "
             "unbiased U-statistic and can be indefinite).", "",
             "| estimator | median top eigenvalue | median \\|cos\\| top eigvec vs direct | "
             "noise floor / λ_max | # significant | # stiff (2 decades) | decades | "
             "eff. rank | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for name, info in result.fim.items():
        sp = info.spectrum
        te = sorted(sp.top_eig)
        err = sp.top_eig_err
        pm = f" ± {_fmt(sorted(err)[len(err) // 2], 2)}" if err else " (exact)"
        lines.append(f"| {name} | {_fmt(te[len(te) // 2])}{pm} | "
                     f"{_fmt(info.median_cos_top_vs_direct)} | "
                     f"{_fmt(sp.noise_floor_rel_median, 2)} | "
                     f"{_fmt(sp.n_significant_median)} | {_fmt(sp.n_stiff_median)}"
                     f" | {_fmt(sp.decades_median, 2)} | "
                     f"{_fmt(sp.effective_rank_median, 2)} | {_fmt(info.details['seconds'])} |")
    return lines


def _attack_tables(result: AuditResult) -> list[str]:
    lines: list[str] = []
    for norm, per in result.attacks.items():
        lines += ["", f"## Minimal flipping ε ({norm})", "",
                  "Nominal: the budget ε of the bisection; applied: the norm of the perturbation "
                  "after clipping to [0, 1] (compare methods on this). PGD and APGD are re-run "
                  "at every ε of the bisection; DDN/FAB are bisected along their own "
                  "perturbation; FIM eigenvectors along both signs (the judge's preferred one). "
                  "Resolution of the bisection: ε_max/2^steps.", "",
                  "| method | nominal median | q1 | q3 | applied median | q1 | q3 | flipped / n |",
                  "|---|---|---|---|---|---|---|---|"]
        # "> ε_max": more than a quarter (q3), half (median)… of the inputs did not flip
        for name, r in per.items():
            top = f"> {r.epsilons[-1]:g}"
            row = [_fmt(q) if math.isfinite(q) else top
                   for s in (r.min_eps_summary, r.min_eps_actual_summary)
                   for q in (s.median, s.q1, s.q3)]
            s = r.min_eps_summary
            label = _label(name, r, " (along ε_max direction)")
            lines.append(f"| {label} | " + " | ".join(row) + f" | {s.n_flipped} / {s.n} |")
    return lines


def render_markdown(result: AuditResult, images: list[str] | None = None, *,
                    attack_study: AttackStudyResult | None = None) -> str:
    """The audit as Markdown (tables of FIM agreement and minimal ε), with the attack study's
    tables when one was run."""
    lines = ["# rgaudit audit", ""]
    v = verdict(result)
    if v:
        lines += [v, ""]
    labels = result.inputs.labels or []
    lines += [f"Model widths: {result.model.get('widths')}  ",
              f"Inputs attacked: {len(labels)} (correctly classified by the "
              f"stochastic network; pool accuracy {_fmt(result.inputs.pool_accuracy)})",
              ""]
    lines += _summary(result)
    lines += _diagnosis_table(result)
    lines += _fim_table(result)
    lines += _attack_tables(result)
    if attack_study is not None:
        from rgaudit.report.attack_report import render_fraction, render_tables

        lines += ["", "## Attack study: strongest baselines vs the Fisher/RG attacks", "",
                  render_tables(attack_study), render_fraction(attack_study)]
    timings = result.timings or {}
    lines += ["", "Timings: " + ", ".join(f"{k} {float(v):.1f} s" for k, v in timings.items()),
              ""]
    for img in images or []:
        lines.append(f"![{img}]({img})")
    return "\n".join(lines) + "\n"


class AuditReportPaths(TypedDict):
    """Where :func:`write_audit_report` wrote each part."""

    json: Path
    markdown: Path
    html: Path
    plots: list[Path]


def audit_document(result: AuditResult, *, plan: AuditPlan | None = None,
                   depth: DepthResult | None = None,
                   attack_study: AttackStudyResult | None = None) -> dict[str, Any]:
    """The JSON of an audit run: ``result.to_dict()``, then ``attack_study``, ``plan`` and
    ``depth`` where given (the layout ``audit.json`` has always had)."""
    doc = result.to_dict()
    for key, part in (("attack_study", attack_study), ("plan", plan), ("depth", depth)):
        if part is not None:
            doc[key] = part.to_dict()
    return doc


def write_audit_report(result: AuditResult, run_dir: str | Path, *,
                       plan: AuditPlan | None = None, depth: DepthResult | None = None,
                       attack_study: AttackStudyResult | None = None) -> AuditReportPaths:
    """Write ``audit.json``, ``report.md``, ``report.html`` and PNGs into ``run_dir``.

    Parameters
    ----------
    result : AuditResult
        The audit (``rgaudit.experiments.audit.run_audit``).
    run_dir : path-like
        An existing run folder (``rgaudit.report.io.new_run_dir``).
    plan : AuditPlan, optional
        The sizes the audit ran with (recorded in the JSON).
    depth : DepthResult, optional
        The depth study (plotted, recorded in the JSON).
    attack_study : AttackStudyResult, optional
        The attack study (its tables and plot join the report; recorded in the JSON).

    Returns
    -------
    dict
        Paths by role: ``json``, ``markdown``, ``html``, ``plots`` (list).
    """
    run_dir = Path(run_dir)
    plots = write_plots(result, run_dir, depth=depth, attack_study=attack_study)
    md = render_markdown(result, [p.name for p in plots], attack_study=attack_study)
    md_path = atomic_write_text(run_dir / "report.md", md)
    html_path = atomic_write_text(run_dir / "report.html", render_html(md, plots))
    doc = to_plain(audit_document(result, plan=plan, depth=depth, attack_study=attack_study))
    json_path = write_result(run_dir / "audit.json", "audit", doc)
    return {"json": json_path, "markdown": md_path, "html": html_path, "plots": plots}
