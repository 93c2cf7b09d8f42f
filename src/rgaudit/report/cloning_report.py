"""Markdown report and curves of a cloning study (:mod:`rgaudit.experiments.cloning`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    from rgaudit.experiments.cloning import CloningResult


def _f(v: Any, fmt: str = ".3f") -> str:
    """Format a number, or an em dash for a missing (None/NaN) value."""
    return "—" if v is None or v != v else format(v, fmt)


def typed(result: CloningResult | dict[str, Any]) -> CloningResult:
    """The typed result; a JSON document (``result.json``) is read back with
    :meth:`CloningResult.from_dict`."""
    if isinstance(result, dict):
        from rgaudit.experiments.cloning import CloningResult

        return CloningResult.from_dict(result)
    return result


def markdown(result: CloningResult | dict[str, Any], command: str | None = None) -> str:
    """A Markdown table: one line per (defence, ε, queries, attacker)."""
    res = typed(result)
    s, v = res.config, res.victim
    lines = ["# Cloning study", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Victim widths {v.widths}, evaluation accuracy {v.eval_accuracy:.3f} "
              f"({v.n_eval} held-out inputs); query pool {v.n_pool}; budget norm "
              f"{s.norm}; transfer at L2 ε_adv = {s.eps_adv}; seed {s.seed}; "
              f"{res.seconds:.0f} s.", "",
              "| defence | ε | queries | attacker | clone acc | fidelity | transfer FIM | "
              "transfer FGM | top-1 kept | mean L1 | mean KL | med δyᵀF̃δy | med abs cos |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res.rows:
        t, u, p = r.transfer.rates, r.utility, r.poison
        lines.append(
            f"| {r.defence} | {r.eps:g} | {r.n_queries} | {r.attacker} | "
            f"{_f(r.accuracy)} | {_f(r.fidelity)} | {_f(t.get('fim'))} | "
            f"{_f(t.get('fgm'))} | {_f(u.top1_preserved)} | "
            f"{_f(u.mean_l1, '.4f')} | {_f(u.mean_kl, '.4f')} | "
            f"{_f(p.median_fisher_damage, '.3f')} | "
            f"{_f(p.median_abs_cos_top, '.2f')} |")
    lines += ["", "med δyᵀF̃δy: median over the queries of the Fisher damage of the returned "
              f"answer under the generation FIM F̃ (cloning eq. 20; estimator "
              f"{v.fim_estimator}) at the honest "
              "answer — what the RG poison maximises; med abs cos: median |cos(δy, v_top)|, "
              "v_top the top eigenvector of P F̃ P."]
    return "\n".join(lines) + "\n"


def plot_curves(result: CloningResult | dict[str, Any], out_dir: str | Path,
                prefix: str = "cloning") -> list[Path]:
    """Clone fidelity versus ε (per attacker) and versus the number of queries.

    Returns
    -------
    list of Path
        The PNG files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = typed(result)
    rows = res.rows
    written: list[Path] = []
    attackers = sorted({r.attacker for r in rows})
    defences = [d for d in res.config.defences if d != "none"]
    n_max = max(r.n_queries for r in rows)
    base = {r.attacker: r.fidelity for r in rows
            if r.defence == "none" and r.n_queries == n_max}
    fig = Figure(figsize=(3.2 * len(attackers), 3.0))
    axes = fig.subplots(1, len(attackers), squeeze=False, sharey=True)
    for ax, att in zip(axes[0], attackers, strict=True):
        for d in defences:
            pts = sorted((r.eps, r.fidelity) for r in rows
                         if r.defence == d and r.attacker == att and r.n_queries == n_max)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=d)
        if att in base:
            ax.axhline(base[att], color="k", ls=":", label="none")
        ax.set_title(att, fontsize=9)
        ax.set_xlabel(f"ε ({res.config.norm})")
    axes[0][0].set_ylabel("fidelity")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    p = out_dir / f"{prefix}_fidelity_vs_eps.png"
    _save(fig, p)
    written.append(p)
    ns = sorted({r.n_queries for r in rows})
    if len(ns) > 1:
        eps_max = max(r.eps for r in rows)
        fig = Figure(figsize=(3.2 * len(attackers), 3.0))
        axes = fig.subplots(1, len(attackers), squeeze=False, sharey=True)
        for ax, att in zip(axes[0], attackers, strict=True):
            for d in res.config.defences:
                e = 0.0 if d == "none" else eps_max
                pts = sorted((r.n_queries, r.accuracy) for r in rows
                             if r.defence == d and r.attacker == att and r.eps == e)
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=d)
            ax.set_title(att, fontsize=9)
            ax.set_xlabel("queries")
        axes[0][0].set_ylabel(f"clone accuracy (ε = {eps_max:g})")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        p = out_dir / f"{prefix}_accuracy_vs_queries.png"
        _save(fig, p)
        written.append(p)
    return written


def _save(fig: Figure, path: Path) -> None:
    """Write ``fig`` through the one atomic writer (a reader never sees half a PNG)."""
    from rgaudit.report.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
