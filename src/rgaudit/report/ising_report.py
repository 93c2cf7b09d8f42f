"""Rendering of the Ising MCRG study: Swendsen-form tables (Markdown) and an exponent plot.

Input is the plain dictionary of :meth:`rgaudit.experiments.ising.IsingMCRGResult.to_dict`
(or its ``rbm`` companion); nothing here computes physics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SECTORS = {"even": ("λ_t", "y_t", 1.0), "odd": ("λ_h", "y_h", 15.0 / 8.0)}


def _cell(v: float | None, e: float | None, digits: int) -> str:
    if v is None or e is None:
        return "—"
    return f"{v:.{digits}f} ± {e:.{digits}f}"


def swendsen_table(result: dict[str, Any], sector: str, quantity: str = "lam") -> str:
    """Markdown table: rows = blocking level, columns = number of couplings ``N_c``.

    Parameters
    ----------
    result : dict
        ``IsingMCRGResult.to_dict()``.
    sector : {"even", "odd"}
    quantity : {"lam", "y"}
        Leading eigenvalue or exponent ``ln λ / ln 2``.
    """
    eig = [e for e in result["eigen"] if e["sector"] == sector]
    if not eig:
        raise ValueError(f"no {sector} entries in the result")
    levels = sorted({e["level"] for e in eig})
    n_ops = sorted({e["n_ops"] for e in eig})
    names = result["operators"][sector]
    label = SECTORS[sector][0] if quantity == "lam" else SECTORS[sector][1]
    head = (
        f"| level \\ N_c ({label}) | " + " | ".join(f"{n} (+{names[n - 1]})" for n in n_ops) + " |"
    )
    lines = [head, "|---" * (len(n_ops) + 1) + "|"]
    by = {(e["level"], e["n_ops"]): e for e in eig}
    for lev in levels:
        cells = []
        for n in n_ops:
            e = by[(lev, n)]
            if quantity == "lam":
                cells.append(_cell(e["lam"], e["lam_err"], 4))
            else:
                cells.append(_cell(e["y"], e["y_err"], 4))
        lines.append(f"| {lev} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(result: dict[str, Any], title: str = "Ising MCRG") -> str:
    """The four Swendsen-form tables (λ and y, even and odd) and the run settings."""
    cfg = result["config"]
    t = result["targets"]
    parts = [
        f"## {title} — kernel `{result['kernel']}`, L = {cfg['size']}",
        "",
        f"K = {cfg['coupling']:.6f}, {cfg['n_chains']} chains × {cfg['n_sweeps']} measurements "
        f"(every {cfg['sweeps_between']} SW update), {result['n_samples']} configurations, "
        f"{cfg['n_blocks']} jackknife blocks, seed {cfg['seed']}, {result['seconds']:.0f} s.",
        f"Exact: λ_t = {t['lambda_t']:.4f} (y_t = {t['y_t']}), λ_h = {t['lambda_h']:.4f} "
        f"(y_h = {t['y_h']}). Level n = stability matrix of lattice L/2^(n−1) → L/2^n.",
        "",
    ]
    chain = result.get("chain", {})
    if "energy" in chain:
        e, m = chain["energy"], chain.get("abs_mag", {})
        parts += [
            f"Original lattice: e = {e['mean']:.5f} ± {e['stderr']:.5f} (τ_int = "
            f"{e['tau_int']:.2f}), |m| = {m.get('mean', float('nan')):.4f} (τ_int = "
            f"{m.get('tau_int', float('nan')):.2f}); τ_int = 1 + 2Σρ(t) in SW updates.",
            "",
        ]
    for sector in ("even", "odd"):
        for q in ("lam", "y"):
            parts += [swendsen_table(result, sector, q), ""]
    return "\n".join(parts)


def plot_exponents(results: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """y_t and y_h against level, one line per ``N_c``, for one or more results.

    Parameters
    ----------
    results : dict of str to dict
        Label → ``IsingMCRGResult.to_dict()``; each gets its own column of panels.
    path : str or Path
        PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rgaudit.report.figures import save_figure

    path = Path(path)
    fig, axes = plt.subplots(2, len(results), figsize=(4.5 * len(results), 7), squeeze=False)
    for col, (label, res) in enumerate(results.items()):
        for row, sector in enumerate(("even", "odd")):
            ax = axes[row][col]
            eig = [e for e in res["eigen"] if e["sector"] == sector]
            for n in sorted({e["n_ops"] for e in eig}):
                pts = sorted((e["level"], e["y"], e["y_err"]) for e in eig if e["n_ops"] == n)
                ax.errorbar(
                    [p[0] + 0.03 * n for p in pts],
                    [p[1] for p in pts],
                    yerr=[p[2] for p in pts],
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=f"N_c={n}",
                )
            exact = SECTORS[sector][2]
            ax.axhline(exact, color="k", lw=0.8, ls="--")
            ax.set_xlabel("blocking level")
            ax.set_ylabel(SECTORS[sector][1])
            ax.set_title(f"{label}: {sector}")
            lo, hi = (0.85, 1.1) if sector == "even" else (1.86, 1.89)
            ax.set_ylim(lo, hi)
            ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)
