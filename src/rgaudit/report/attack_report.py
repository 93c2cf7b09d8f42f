"""Tables, plot and files of the attack study (:mod:`rgaudit.experiments.attack_study`).

- :func:`fmt_err`: a value printed to the precision its error allows (one significant digit of
  the error, two when it starts with 1);
- :func:`render_markdown`: the minimal-ε table (median [q1, q3], flipped, judge-seed spread,
  resolution, seconds per input), the paired-comparison table against the best baseline and
  the eigenspace-fraction table;
- :func:`plot_fraction`: eigenspace fraction of DDN's/FAB's perturbation against k, with its
  random baseline (quartiles as error bars);
- :func:`write_attack_report`: ``attack_study.json``, ``adversarial.npz``, ``attack_study.md``
  and the plot into a run folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rgaudit.report.io import atomic_write_text, write_result

if TYPE_CHECKING:
    from rgaudit.experiments.attack_study import AttackStudyResult, MethodSummary

KIND = "attack-study"


def typed(result: AttackStudyResult | dict[str, Any]) -> AttackStudyResult:
    """The typed result; a JSON document (``attack_study.json``, or the ``attack_study``
    object of an audit's JSON) is read back with :meth:`AttackStudyResult.from_dict`."""
    if isinstance(result, dict):
        from rgaudit.experiments.attack_study import AttackStudyResult

        return AttackStudyResult.from_dict(result)
    return result


def _f(v: Any) -> float:
    if isinstance(v, str):
        return float(v)
    return float(v) if v is not None else float("inf")     # JSON null: not flipped


def decimals_for(err: float) -> int:
    """Decimals that show an error ``err`` to one significant digit (two if it starts with 1)."""
    if not math.isfinite(err) or err <= 0:
        return 3
    e = math.floor(math.log10(err))
    lead = err / 10 ** e
    return max(0, -e + (1 if lead < 2 else 0))


def fmt_err(value: Any, err: float) -> str:
    """``value`` rounded to the precision of ``err`` (``> x`` for censored, ``—`` for NaN)."""
    v = _f(value)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞"
    return f"{v:.{decimals_for(err)}f}"


def _err(s: MethodSummary) -> float:
    """Error of a quoted median: the larger of the judge-seed spread and the resolution."""
    return s.error


def _p(p: float) -> str:
    return f"{p:.1g}" if p < 0.01 else f"{p:.2f}"


def render_tables(result: AttackStudyResult | dict[str, Any], *, title: str = "") -> str:
    """The minimal-ε and paired-comparison tables for every norm (markdown)."""
    res = typed(result)
    lines: list[str] = []
    if title:
        lines += [f"### {title}", ""]
    m = res.model
    widths = m.widths if m.widths is not None else ""
    lines.append(f"Model: {m.kind} {widths}; judge: {m.judge}; "
                 f"{len(res.inputs.indices)} correctly classified test inputs; "
                 f"surrogate attacked: {m.surrogate}.")
    lines.append("")
    for norm, per in res.summary.items():
        unit = "L2" if norm == "l2" else "L∞"
        lines += [f"Minimal applied {unit} perturbation that flips the judge "
                  f"(bisection bracket {res.config.eps_max(norm):g}/2^steps; "
                  "± = larger of the judge-seed s.d. of the median and the resolution):", "",
                  f"| method | family | median {unit} | [q1, q3] | flipped | ± | "
                  "medians by judge seed | s / input | search |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, s in sorted(per.items(), key=lambda kv: (kv[1].applied.median,
                                                           kv[1].applied.q3)):
            e, a = _err(s), s.applied
            seeds = ", ".join(fmt_err(v, e) for v in s.median_by_seed)
            lines.append(
                f"| {name} | {s.family} | {fmt_err(a.median, e)} | "
                f"[{fmt_err(a.q1, e)}, {fmt_err(a.q3, e)}] | "
                f"{a.n_flipped}/{a.n} | {e:.1g} | {seeds} | "
                f"{s.seconds_per_input:.2g} | {s.search} |")
        lines.append("")
        pp = res.paired.get(norm)
        best = pp.best_baseline if pp is not None else None
        if pp is not None and best:
            lines += [f"Paired per-input comparison against the best baseline, **{best}** "
                      f"({unit}; win = smaller applied norm; two-sided sign test and Wilcoxon "
                      "signed-rank; ratio = median over inputs of method/best):", "",
                      "| method | wins | losses | ties | sign-test p | Wilcoxon p | "
                      "median ratio |", "|---|---|---|---|---|---|---|"]
            for name, t in pp.vs.items():
                r = t.median_ratio
                lines.append(f"| {name} | {t.wins} | {t.losses} | {t.ties} | "
                             f"{_p(t.p_sign)} | {_p(t.p_wilcoxon)} | "
                             f"{'—' if math.isnan(r) else f'{r:.2f}'} |")
            lines.append("")
    return "\n".join(lines)


def render_fraction(result: AttackStudyResult | dict[str, Any]) -> str:
    """Eigenspace-fraction table (markdown)."""
    fr = typed(result).fraction
    if not fr:
        return ""
    lines = ["Fraction ‖U_kᵀδ‖²/‖δ‖² of the minimal perturbation δ in the top-k FIM eigenspace "
             "(median [q1, q3] over inputs; mean ± s.e.), against a random k-space "
             "(expected k/d):", "",
             "| perturbation | FIM | k | median [q1, q3] | mean ± s.e. | random k-space "
             "median | k/d |", "|---|---|---|---|---|---|---|"]
    for key, s in fr.items():
        att, src = key.split("|")
        if src == "random":
            continue
        rnd = fr.get(f"{att}|random")
        for j, k in enumerate(s.k):
            se = s.se[j]
            lines.append(
                f"| {att} | {src} | {k} | {s.median[j]:.2f} [{s.q1[j]:.2f}, "
                f"{s.q3[j]:.2f}] | {fmt_err(s.mean[j], se)} ± {se:.1g} | "
                f"{rnd.median[j]:.3f} | {s.random_expected[j]:.3f} |" if rnd else "")
    return "\n".join(lines) + "\n"


def plot_fraction(result: AttackStudyResult | dict[str, Any], path: Path) -> Path | None:
    """Eigenspace fraction against k (log-x), FIM eigenspaces vs random, quartile error bars."""
    res = typed(result)
    fr = res.fraction
    if not fr:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rgaudit.report.figures import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, s in fr.items():
        k = np.asarray(s.k, dtype=float)
        med = np.asarray(s.median, dtype=float)
        lo = med - np.asarray(s.q1, dtype=float)
        hi = np.asarray(s.q3, dtype=float) - med
        ls = "--" if key.endswith("|random") else "-"
        ax.errorbar(k, med, yerr=[lo, hi], fmt="o" + ls, capsize=3, label=key.replace("|", " in "))
    s0 = next(iter(fr.values()))
    ax.plot(s0.k, s0.random_expected, "k:", label="k/d (random expectation)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (dimension of the subspace)")
    ax.set_ylabel("fraction of ‖δ‖² in the subspace (dimensionless)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    n = len(res.inputs.indices)
    ax.set_title(f"Minimal perturbation in the top-k FIM eigenspace ({n} inputs)\n"
                 "markers: median; bars: quartiles", fontsize=9)
    return save_figure(fig, path)


def render_markdown(result: AttackStudyResult | dict[str, Any], *,
                    title: str = "Attack study") -> str:
    res = typed(result)
    t = res.timings
    head = [f"# {title}", "",
            f"Wall time {t.total_seconds:.0f} s; /proc/loadavg at start "
            f"`{t.loadavg_start}`, at end `{t.loadavg_end}` (timings measured "
            "under load on a shared machine).", ""]
    return "\n".join(head) + render_tables(res) + "\n" + render_fraction(res)


def write_attack_report(result: AttackStudyResult, run_dir: str | Path, *,
                        title: str = "Attack study") -> dict[str, Path]:
    """Write JSON, adversarial inputs, markdown and plot of a study into ``run_dir``.

    Parameters
    ----------
    result : AttackStudyResult
    run_dir : path
        A fresh folder (``rgaudit.report.io.new_run_dir``).
    """
    run_dir = Path(run_dir)
    payload = result.to_dict()
    paths: dict[str, Path] = {"json": write_result(run_dir / "attack_study.json", KIND, payload)}
    arrays: dict[str, Any] = {k.replace("/", "__"): v.numpy()
                              for k, v in result.adversarial.items()}
    arrays["clean_indices"] = np.asarray(result.inputs.indices, dtype=np.int64)
    np.savez_compressed(run_dir / "adversarial.npz", **arrays)
    paths["npz"] = run_dir / "adversarial.npz"
    p = plot_fraction(result, run_dir / "eigenspace_fraction.png")
    if p is not None:
        paths["plot"] = p
    paths["md"] = atomic_write_text(run_dir / "attack_study.md",
                                    render_markdown(result, title=title))
    return paths


COMPACT = ("fim-rg", "fim-autograd", "walk-rg", "walk-autograd", "subspace-fim-k4",
           "subspace-fim-k16", "subspace-random-k16")


def render_compact(payloads: list[tuple[str, AttackStudyResult | dict[str, Any]]],
                   norm: str = "l2") -> str:
    """One row per model: best baseline and the Fisher attacks against it (markdown).

    Each cell: median applied norm, then per-input wins/losses against the best baseline and
    the sign-test p-value; the last column is the median fraction of DDN's perturbation in the
    top-1 FIM eigenspace (RG chain where available, else autograd) against 1/d.
    """
    unit = "L2" if norm == "l2" else "L∞"
    results = [(title, typed(p)) for title, p in payloads]
    cols = [c for c in COMPACT if any(c in p.summary.get(norm, {}) for _, p in results)]
    lines = [f"| model | best baseline ({unit} median) | " + " | ".join(cols)
             + " | DDN δ in top-1 FIM space (median; 1/d) |",
             "|---" * (len(cols) + 3) + "|"]
    for title, p in results:
        per = p.summary.get(norm, {})
        pp = p.paired.get(norm)
        best = pp.best_baseline if pp is not None else None
        if pp is None or best is None:
            continue
        row = [title, f"{best} {fmt_err(per[best].applied.median, _err(per[best]))}"]
        for c in cols:
            if c not in per:
                row.append("—")
                continue
            t = pp.vs[c]
            row.append(f"{fmt_err(per[c].applied.median, _err(per[c]))} "
                       f"({t.wins}/{t.losses}, p {_p(t.p_sign)})")
        fr = p.fraction
        key = "ddn|rg" if "ddn|rg" in fr else "ddn|autograd"
        if key in fr:
            row.append(f"{fr[key].median[0]:.2f} ({fr[key].random_expected[0]:.3f})")
        else:
            row.append("—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
