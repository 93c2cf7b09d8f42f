"""Render the audit of any classifier (:class:`~rgaudit.experiments.audit_any.AnyAuditResult`):
``audit.json``, ``examples.npz``, ``report.md`` and a self-contained ``report.html``.

Everything shown is read from the typed result whose ``to_dict()`` is the JSON (and from the
arrays saved in ``examples.npz``), so the report's numbers are the JSON's. Figures use
matplotlib's object API (no global backend).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rgaudit.report.html import render_html
from rgaudit.report.io import atomic_write_text, to_plain, write_result

if TYPE_CHECKING:
    from rgaudit.experiments.audit_any import (
        AdversarialExamples,
        AnyAttackRow,
        AnyAttackTable,
        AnyAuditResult,
        AnyDiagnosis,
    )

KIND = "audit-any"


def _fmt(v: Any, nd: int = 3) -> str:
    """A number to ``nd`` significant digits; None or +inf (the JSON's null, the result's
    ``inf``) is "not flipped"."""
    if v is None or (isinstance(v, float) and v == math.inf):
        return "not flipped"
    if isinstance(v, float):
        return f"{v:.{nd}g}" if math.isfinite(v) else str(v)
    return str(v)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _image(x: np.ndarray, shape: list[int]) -> np.ndarray | None:
    """One flat input as a 2-D image, or None if it is not an image."""
    s = [d for d in shape if d != 1] if len(shape) > 2 else list(shape)
    if len(s) != 2:
        return None
    return x.reshape(s)


def fig_examples(ex: AdversarialExamples, shape: list[int], n_show: int = 3) -> bytes | None:
    """Original | perturbation (diverging map, colour bar) | adversarial, one row per input."""
    from matplotlib.figure import Figure

    x, xa = ex.x, ex.x_adv
    n = min(n_show, x.shape[0])
    if n == 0 or _image(x[0], shape) is None:
        return None
    fig = Figure(figsize=(7.5, 2.2 * n))
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        d = xa[i] - x[i]
        m = float(np.abs(d).max()) or 1.0
        a0, a1, a2 = axes[i]
        a0.imshow(_image(x[i], shape), cmap="gray", vmin=0, vmax=1)
        a0.set_title(f"original: class {ex.pred_clean[i]} (p={ex.proba_clean[i]:.2f})",
                     fontsize=8)
        im = a1.imshow(_image(d, shape), cmap="RdBu_r", vmin=-m, vmax=m)
        a1.set_title(f"perturbation ‖δ‖₂={_fmt(ex.eps_l2[i], 2)}", fontsize=8)
        cb = fig.colorbar(im, ax=a1, fraction=0.046, pad=0.04)
        cb.set_label("δ (input units)", fontsize=7)
        cb.ax.tick_params(labelsize=6)
        a2.imshow(_image(xa[i], shape), cmap="gray", vmin=0, vmax=1)
        flip = "" if ex.flipped[i] else " — NOT flipped"
        a2.set_title(f"adversarial: class {ex.pred_adv[i]} (p={ex.proba_adv[i]:.2f})"
                     f"{flip}", fontsize=8)
        for a in (a0, a1, a2):
            a.set_xticks([])
            a.set_yticks([])
    return _png(fig)


def fig_min_eps(l2: dict[str, AnyAttackRow]) -> bytes:
    """Median applied minimal flipping ‖δ‖₂ per method, error bars from q1 to q3."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    names = list(l2)
    sums = [l2[n].min_eps_actual_summary for n in names]
    tops = [next((v for v in (s.q3, s.median) if math.isfinite(v) and v), 0.0) for s in sums]
    pad = 0.04 * (max(tops) or 1.0)
    for i, s in enumerate(sums):
        if not math.isfinite(s.median):
            ax.text(i, pad, f"median not\nflipped\n({s.n_flipped}/{s.n})", ha="center",
                    va="bottom", fontsize=7)
            continue
        lo = s.median - s.q1     # q1 ≤ median: finite
        hi = (s.q3 - s.median) if math.isfinite(s.q3) else 0.0
        ax.bar(i, s.median, color="tab:blue", alpha=0.7)
        ax.errorbar(i, s.median, yerr=[[lo], [hi]], color="k", capsize=4)
        ax.text(i, s.median + hi + pad, f"{s.n_flipped}/{s.n}", ha="center",
                va="bottom", fontsize=7)
    ax.set_ylim(0, 1.25 * (max(tops) or 1.0))
    labels = [n + " (ε_max dir.)" if n == "pgd" else n for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("minimal flipping ‖δ‖₂ (input units)")
    ax.set_title("median over inputs, bars q1–q3; label: inputs flipped", fontsize=8)
    return _png(fig)


def fig_flip_rates(attacks: AnyAttackTable) -> bytes:
    """Flip rate versus budget per method, one panel per norm."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, len(attacks), squeeze=False)[0]
    for ax, (norm, per) in zip(axes, attacks.items(), strict=True):
        for name, r in per.items():
            ax.plot(r.epsilons, r.flip_rate, marker="o", ms=3, label=name)
        ax.set_xlabel(f"budget ε ({'L2' if norm == 'l2' else 'L∞'}, input units)")
        ax.set_ylabel("fraction of inputs flipped")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, loc="center right")
    return _png(fig)


def compare_with_reference(result: AnyAuditResult, header: dict[str, Any]) -> str | None:
    """One sentence comparing the verdict with the default digits model (digits only)."""
    from rgaudit.report.reference import DIGITS_REFERENCE as ref

    mine = result.verdict.median_l2
    if (header.get("dataset") != "digits" or mine is None
            or not math.isfinite(ref["median_l2"])):
        return None
    theirs = ref["median_l2"]
    word = ("less robust than" if mine < 0.8 * theirs else
            "more robust than" if mine > 1.25 * theirs else "about as robust as")
    return (f"Compared with rgaudit's default digits model (a stacked-RBM classifier, median "
            f"flipping ‖δ‖₂ {theirs:.2g} by {ref['best_method']}, measured with "
            f"`{ref['command']}`), this model is {word} it on this measure.")


def _pm(value: float | None, err: float | None) -> str:
    """``value ± err`` printed to the precision the error allows (two significant digits)."""
    if value is None:
        return "n/a"
    if err is None or not err > 0:
        return f"{value:.3g}"
    digits = min(6, max(0, 1 - math.floor(math.log10(err))))
    return f"{value:.{digits}f} ± {err:.{digits}f}"


def _diagnosis_table(diag: AnyDiagnosis) -> list[str]:
    if not diag.available or diag.spectra is None or not diag.spectra.pairs:
        return []
    out = ["| layer pair | operators | top Fisher-normalised singular values (input 1, ± "
           "jackknife) | directions kept (s ≈ 1), per input |", "|---|---|---|---|"]
    for p in diag.spectra.pairs:
        sv = ", ".join(_pm(s, e) for s, e in zip(p.fisher_sv[0][:4], p.fisher_sv_err[0][:4],
                                                 strict=True))
        kept = ", ".join(str(k) for k in p.n_kept_fisher_1)
        out.append(f"| {p.pair} | {p.n_ops[0]} → {p.n_ops[1]} | {sv} | {kept} |")
    return [*out, "", f"_Singles basis, {diag.samples} chains per input; layer 0 is the "
            "input; pairs start at the first hidden layer._", ""]


def render_markdown(result: AnyAuditResult, images: dict[str, str],
                    header: dict[str, Any] | None = None) -> str:
    """The report as Markdown; ``images`` maps a figure role to its file name, ``header``
    (command, model path, data set, version, seed) is shown at the top."""
    v, m, h = result.verdict, result.model.to_dict(), header or {}
    lines = ["# rgaudit audit", ""]
    for key in ("command", "model_path", "format", "dataset", "rgaudit_version", "seed"):
        if key in h or key in m:
            lines.append(f"- **{key.replace('_', ' ')}**: `{h.get(key, m.get(key))}`")
    lines += ["", "## Verdict", "", f"**{v.text}**", ""]
    comparison = compare_with_reference(result, h)
    if comparison:
        lines += [comparison, ""]
    if v.relevant_directions:
        lines += [v.relevant_directions, ""]
    lines += [f"_MCRG diagnosis:_ {result.diagnosis.note}", ""]
    lines += _diagnosis_table(result.diagnosis)
    if "examples" in images:
        lines += ["## Adversarial examples", "",
                  f"![adversarial examples]({images['examples']})", "",
                  f"_Figure 1. Best method ({v.best_method}) at each input's minimal "
                  "flipping budget: original, perturbation δ (diverging colour map, input "
                  "units), adversarial, with the model's predicted class and its probability. "
                  "At the minimal budget the adversarial input sits just across the decision "
                  "boundary, so its top probability is close to that of the runner-up. "
                  "Arrays in `examples.npz`._", ""]
    if "examples_fim" in images:
        lines += [f"![FIM direction examples]({images['examples_fim']})", "",
                  "_Figure 2. The same along the top FIM eigenvector._", ""]
    lines += ["## Minimal flipping perturbation (L2)", "",
              "| method | median ‖δ‖₂ | q1 | q3 | median ‖δ‖₂/‖x‖₂ | flipped |",
              "|---|---|---|---|---|---|"]
    l2 = result.attacks["l2"]
    for name, r in l2.items():
        # pgd: bisection along the direction PGD found at the largest budget
        s, f = r.min_eps_actual_summary, r.min_eps_fraction_of_norm_summary
        lines.append(f"| {name} | {_fmt(s.median)} | {_fmt(s.q1)} | {_fmt(s.q3)} | "
                     f"{_fmt(f.median)} | {s.n_flipped}/{s.n} |")
    bracket = next(iter(l2.values())).bracket
    lines += ["", f"Bisection bracket: {_fmt(bracket)} (L2)."
              "  \"not flipped\": the median input did not change class within the "
              "largest budget.", ""]
    if "min_eps" in images:
        lines += [f"![minimal epsilon]({images['min_eps']})", "",
                  "_Figure 3. Median minimal flipping ‖δ‖₂ per method with q1–q3 bars._", ""]
    if "flip_rates" in images:
        lines += [f"![flip rates]({images['flip_rates']})", "",
                  "_Figure 4. Fraction of audited inputs flipped at each budget._", ""]
    fi = result.fim
    lines += ["## Input Fisher information", "",
              f"Softmax-output FIM by {fi.method}, {fi.note}; median top eigenvalue "
              f"{_fmt(fi.top_eig_median)}.", "",
              "## Inputs", "",
              f"{len(result.inputs.indices)} correctly classified test inputs "
              f"(accuracy on the first {result.inputs.pool}: "
              f"{result.inputs.pool_accuracy:.3f}).", "",
              f"Time: {result.timings['total']:.1f} s.", ""]
    return "\n".join(lines)


def write_any_audit_report(result: AnyAuditResult, run_dir: str | Path,
                           header: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``audit.json``, ``examples.npz``, ``report.md``, ``report.html`` and the PNGs.

    Parameters
    ----------
    result : AnyAuditResult
    run_dir : path-like
        An existing (new) run folder.
    header : dict, optional
        Command, model path, data set, version, seed: shown at the top and stored in the JSON.
    """
    run_dir = Path(run_dir)
    data = to_plain(result.to_dict())
    data["header"] = to_plain(header or {})
    arrays: dict[str, np.ndarray] = {}
    for key, ex in result.examples.items():
        arrays[f"{key}_x"] = np.asarray(ex.x)
        arrays[f"{key}_x_adv"] = np.asarray(ex.x_adv)
    npz = run_dir / "examples.npz"
    with open(npz, "xb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    pngs: dict[str, bytes] = {}
    shape = result.model.extra.get("image_shape") or result.model.input_shape
    for key, role in (("best", "examples"), ("fim", "examples_fim")):
        if key in result.examples:
            png = fig_examples(result.examples[key], shape)
            if png is not None:
                pngs[role] = png
    pngs["min_eps"] = fig_min_eps(result.attacks["l2"])
    pngs["flip_rates"] = fig_flip_rates(result.attacks)
    names = {role: f"{role}.png" for role in pngs}
    for role, png in pngs.items():
        (run_dir / names[role]).write_bytes(png)
    md = render_markdown(result, names, header)
    md_path = atomic_write_text(run_dir / "report.md", md)
    html_path = atomic_write_text(
        run_dir / "report.html", render_html(md, {names[r]: p for r, p in pngs.items()}))
    json_path = write_result(run_dir / "audit.json", KIND, data)
    return {"json": json_path, "markdown": md_path, "html": html_path, "npz": npz,
            "plots": [run_dir / n for n in names.values()]}
