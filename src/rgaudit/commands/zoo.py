"""``rgaudit zoo``: does the RG/Fisher diagnosis predict robustness across many networks?"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from rgaudit.choices import ExecutorName


def register(app: typer.Typer) -> None:
    """Add the ``zoo`` command to ``app``."""

    @app.command("zoo")
    def zoo(
        out: Path = typer.Option(Path("runs/zoo"), "--out",
                                 help="Run folder; an interrupted run resumes from it."),
        executor: ExecutorName = typer.Option(
            "local", "--executor", help="local: units one after another here; ray: Ray tasks."),
        address: str = typer.Option(None, "--address",
                                    help="Ray cluster address (default: start Ray locally)."),
        workers: int = typer.Option(None, "--workers", min=1,
                                    help="CPUs of a locally started Ray instance."),
        retries: int = typer.Option(2, "--retries", min=0, help="Retries of a failing unit."),
        n_rbm: int = typer.Option(24, "--n-rbm", min=0, help="Deep RBMs in the zoo."),
        n_torch: int = typer.Option(8, "--n-torch", min=0, help="PyTorch MLPs/CNNs."),
        n_inputs: int = typer.Option(50, "--n-inputs", min=2, help="Test inputs attacked."),
        judge_samples: int = typer.Option(400, "--judge-samples", min=10,
                                          help="Chains per stochastic RBM judgement."),
        ddn_steps: int = typer.Option(100, "--ddn-steps", min=1, help="DDN iterations."),
        eps_max: float = typer.Option(6.0, "--eps-max", help="Largest L2 budget searched."),
        epochs_scale: float = typer.Option(1.0, "--epochs-scale",
                                           help="Multiplies every training length."),
        min_accuracy: float = typer.Option(0.5, "--min-accuracy",
                                           help="Networks below it are left out of the "
                                           "correlations."),
        seed: int = typer.Option(0, "--seed", min=0),
    ) -> None:
        """Train a zoo of deep RBMs and MLPs/CNNs on digits, measure robustness (DDN) and
        RG/Fisher and reference predictors, and report their Spearman correlations."""
        import time

        from rgaudit.executors import UnitStore, make_executor
        from rgaudit.experiments.zoo import ZooConfig, run_zoo
        from rgaudit.report.io import to_plain, write_result
        from rgaudit.report.zoo_report import write_report

        if workers is not None and executor != "ray":
            raise typer.BadParameter("--workers only applies to --executor ray",
                                     param_hint="--workers")
        try:
            cfg = ZooConfig(n_rbm=n_rbm, n_torch=n_torch, n_inputs=n_inputs,
                            judge_samples=judge_samples, ddn_steps=ddn_steps, eps_max=eps_max,
                            epochs_scale=epochs_scale, min_accuracy=min_accuracy, seed=seed)
            ex = make_executor(executor, address=address, num_cpus=workers,
                               max_retries=retries)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        from rgaudit.outputs import prepare_out

        out = prepare_out(out, kind="zoo")  # before the work; a zoo folder is resumed
        store = UnitStore(out, {"study": "zoo", **cfg.to_dict()})
        t0 = time.perf_counter()
        try:
            result = run_zoo(cfg, ex, store=store, progress=True)
        finally:
            ex.close()
        wall = time.perf_counter() - t0
        typer.echo(result.execution.summary_text)
        doc = to_plain(result.to_dict())
        command = "rgaudit " + " ".join(sys.argv[1:])
        write_result(out / "result.json", "zoo", {**doc, "command": command,
                                                  "wall_seconds": wall})
        paths = write_report(result, out, command, wall)
        typer.echo(f"wrote {out / 'result.json'}, " + ", ".join(p.name for p in paths))
        if result.failures:
            typer.echo(f"{len(result.failures)} networks failed after retries: "
                       f"{', '.join(result.failures)}; rerun the same command to retry them",
                       err=True)
            raise typer.Exit(1)
