"""``rgaudit attack``: one attack method on a model folder, per-input minimal flipping ε judged
on the stochastic network, written with the adversarial inputs to a new run folder.

The options map onto :class:`rgaudit.experiments.attack_one.AttackConfig` (which validates and
names the option); :func:`rgaudit.experiments.attack_one.run_attack` does the work."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from rgaudit.choices import ATTACK_METHODS, FIM_ESTIMATORS, AttackMethod, AttackNorm, FimEstimator
from rgaudit.commands._model_data import load_model_and_data
from rgaudit.commands._options import check_device, check_seed


def register(app: typer.Typer) -> None:
    """Add ``attack`` to ``app``."""

    @app.command("attack")
    def attack(
        model: Path = typer.Argument(..., help="Model folder."),
        method: AttackMethod = typer.Option("fim", "--method", help="|".join(ATTACK_METHODS)),
        eps: float = typer.Option(None, "--eps", help="Budget of the reported flip rate "
                                  "(optional; the minimal ε per input is always searched)."),
        norm: AttackNorm = typer.Option("l2", "--norm", help="l2 or linf."),
        fim: FimEstimator = typer.Option("direct", "--fim", help="FIM estimator for --method fim: "
                                + "|".join(FIM_ESTIMATORS) + " (--method walk: rg-singles "
                                "re-estimates the RG-chain FIM per step, else mean-field)."),
        data: str = typer.Option(None, "--data", help="Data set spec; must match the model's."),
        inputs: int = typer.Option(20, "--inputs", help="Inputs to attack (correctly "
                                   "classified test inputs, spread over classes)."),
        samples: int = typer.Option(4000, "--samples", help="Chains per input for FIMs (≥ 32: "
                                    "MCRG needs 16 jackknife blocks of ≥ 2)."),
        judge_samples: int = typer.Option(1000, "--judge-samples",
                                          help="Chains per stochastic judgement (flip test)."),
        eps_max: float = typer.Option(None, "--eps-max", help="Top of the minimal-ε search "
                                      "(default 4 for l2, 0.5 for linf)."),
        bisect_steps: int = typer.Option(10, "--bisect-steps",
                                         help="Bisection steps (resolution eps-max/2^steps)."),
        seed: int = typer.Option(0, "--seed", callback=check_seed, help="Seed of the attack's "
                                 "random numbers (not the data split: that is the model's)."),
        out: Path = typer.Option(Path("runs"), "--out", help="Parent of the new run folder."),
        device: str = typer.Option("cpu", "--device", callback=check_device,
                                   help="cpu, cuda, cuda:N or auto."),
    ) -> None:
        """Attack MODEL with one method: per-input minimal flipping ε (judged on the stochastic
        network), the flip rate at --eps, written with the adversarial inputs to a run folder."""
        from rgaudit.experiments.attack_one import AttackConfig, run_attack
        from rgaudit.report.io import new_run_dir

        try:  # the config validates (before any loading); its messages name the options
            cfg = AttackConfig(method=method, norm=norm, fim=fim, eps=eps, n_inputs=inputs,
                               samples=samples, judge_samples=judge_samples, eps_max=eps_max,
                               bisect_steps=bisect_steps, seed=seed)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        console = Console()
        net, minfo, ds = load_model_and_data(model, data, device, console)
        try:
            cfg.check_eps(int(net.widths[0]))
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        run_dir = new_run_dir(out, "attack")  # a fresh, marked folder, made before the work
        with console.status(f"{method} ({norm}): minimal ε search"):
            result = run_attack(net, ds.X_test, ds.y_test, cfg, model_info=minfo)
        _write(result, run_dir)
        _print(result, console)
        typer.echo(str(run_dir))


def _write(result: Any, run_dir: Path) -> None:
    """``attack.json`` and ``adversarial.npz`` (clean and adversarial inputs, labels, test-set
    indices, nominal minimal ε)."""
    import numpy as np

    from rgaudit.report.io import write_result

    write_result(run_dir / "attack.json", "attack", result.to_dict())
    np.savez_compressed(run_dir / "adversarial.npz", clean=result.clean.numpy(),
                        adversarial=result.adversarial.numpy(),
                        labels=np.asarray(result.labels), indices=np.asarray(result.inputs.indices),
                        min_eps=np.asarray(result.min_eps))


def _print(result: Any, console: Console) -> None:
    """The per-input table, the quartiles of the applied norm and the flip rate at ``eps``."""
    cfg = result.config
    method, norm, emax = cfg.method, cfg.norm, cfg.search_max
    table = Table(title=f"{method} ({norm}): minimal flipping ε per input "
                  f"(bisection resolution {result.resolution:.2g})")
    for col in ("test index", "label", "nominal ε", f"applied {norm}"):
        table.add_column(col)
    for idx, label, e, a in zip(result.inputs.indices, result.labels, result.min_eps,
                                result.applied_in_norm(), strict=True):
        table.add_row(str(idx), str(label), f"{e:.3g}" if math.isfinite(e) else f"> {emax:g}",
                      f"{a:.3g}" if math.isfinite(a) else "—")
    console.print(table)
    q = result.applied
    console.print(f"median applied {norm} {q.median:.3g} [{q.q1:.3g}, {q.q3:.3g}]"
                  f", flipped {q.n_flipped}/{q.n} within ε_max = {emax:g}")
    if result.flip_rate is not None:
        fr = result.flip_rate
        console.print(f"{method} ({norm}, ε = {fr.eps:g}): flipped {fr.flipped}"
                      f"/{len(result.labels)} inputs, flip rate {fr.rate:.3f}")
