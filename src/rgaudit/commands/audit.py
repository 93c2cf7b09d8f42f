"""``rgaudit audit``: the full audit into a new run folder (``rgaudit attack``, one method, is
:mod:`rgaudit.commands.attack`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rgaudit.choices import ExecutorName
from rgaudit.commands._model_data import (  # noqa: F401  (dataset_for_model: older imports)
    data_for_model,
    dataset_for_model,
)
from rgaudit.commands._model_data import load_model_and_data as _load
from rgaudit.commands._options import check_device, check_seed, max_memory_option

if TYPE_CHECKING:  # torch: not at the import of a command module
    from rgaudit.experiments.audit import AuditResult

DEFAULT_INPUTS = 20  # = experiments.audit.AuditConfig().n_inputs (not imported: fast --help)


def register(app: typer.Typer) -> None:
    """Add ``audit`` to ``app``."""

    @app.command("audit")
    def audit(
        model: Path = typer.Option(None, "--model", help="An rgaudit model folder (default: "
                                   "train/load models/default), a torch.export .pt2 file, a "
                                   ".safetensors state dict (with --factory) or a skops "
                                   "sklearn RBM pipeline (.skops)."),
        factory: str = typer.Option(None, "--factory", help="package.module:function building "
                                    "the module of a .safetensors state dict (your own code)."),
        input_shape: str = typer.Option(None, "--input-shape", help="Shape of one input, e.g. "
                                        "1,8,8 (default: the model's, else the data set's)."),
        data: str = typer.Option(None, "--data", help="Data set spec (rgaudit.data); default "
                                 "and required match: the model's own (its split seed too)."),
        inputs: int = typer.Option(None, "--inputs", min=1, help="Inputs to attack (default "
                                   f"{DEFAULT_INPUTS}, fewer when the audit plan must fit the "
                                   "machine; a value given is kept, or refused up front with "
                                   "the estimate)."),
        seed: int = typer.Option(0, "--seed", callback=check_seed, help="Seed of the audit's "
                                 "random numbers (not the data split: that is the model's)."),
        device: str = typer.Option("cpu", "--device", callback=check_device,
                                   help="cpu, cuda, cuda:N or auto."),
        out: Path = typer.Option(Path("runs"), "--out", help="Parent of the new run folder."),
        mcrg_samples: int = typer.Option(None, "--mcrg-samples", min=32, max=100_000_000,
                                         help="MCRG chains per input (≥ 32: 16 jackknife "
                                         "blocks of ≥ 2)."),
        direct_samples: int = typer.Option(None, "--direct-samples", min=16, max=100_000_000,
                                           help="Direct-FIM chains per input (≥ 16, one per "
                                           "jackknife block)."),
        judge_samples: int = typer.Option(None, "--judge-samples", min=1, max=1_000_000,
                                          help="Chains per stochastic judgement."),
        large_basis: str = typer.Option(None, "--large-basis", help="e.g. pairs:64, order:2."),
        depth: bool = typer.Option(True, "--depth/--no-depth",
                                   help="Also run the depth study (depth 2–6, fast training)."),
        executor: ExecutorName | None = typer.Option(
            None, "--executor", help="local or ray: per-input work as units with their own "
            "generators, resumable (see docs/scaling.md); default: one batched run."),
        address: str = typer.Option(None, "--address", help="Ray cluster address."),
        attack_study: bool = typer.Option(False, "--attack-study/--no-attack-study",
                                          help="Also run the attack study (adv-lib baselines, "
                                          "Fisher walk, subspace attacks; minutes per input "
                                          "batch, see docs/attacks.md)."),
        max_memory: str = max_memory_option(),
    ) -> None:
        """Audit a model: input FIM, attacks, a report with a verdict (+ MCRG for RBM nets)."""
        from rgaudit.commands.audit_any import audit_any_model, is_rgaudit_folder

        # None: the user gave no --inputs, so the plan may lower the default; a value given is
        # kept (or the audit refused with the estimate), never changed silently
        n_inputs = DEFAULT_INPUTS if inputs is None else inputs
        if not is_rgaudit_folder(model):
            run_dir = audit_any_model(model=model, data=data, factory=factory,
                                      input_shape=input_shape, inputs=n_inputs, seed=seed,
                                      device=device, out=out, console=Console())
            typer.echo(str(run_dir))
            return
        if factory is not None:
            raise typer.BadParameter("--factory applies only to a .safetensors --model")
        from rgaudit.experiments.audit import AuditConfig, run_audit
        from rgaudit.report.audit_report import write_audit_report
        from rgaudit.report.io import new_run_dir

        given_values = {n: v for n, v in (("mcrg_samples", mcrg_samples),
                                          ("direct_samples", direct_samples),
                                          ("judge_samples", judge_samples),
                                          ("large_basis", large_basis)) if v is not None}
        try:  # the config validates (before any loading); its messages name the options
            cfg = AuditConfig(n_inputs=n_inputs, seed=seed, **given_values)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        console = Console()
        net, info, ds = _load(model, data, device, console)
        from rgaudit.experiments.audit_plan import plan_audit  # sizes that fit, or refuse

        given = [*given_values, *(["n_inputs"] if inputs is not None else [])]
        plan = plan_audit(net.widths, cfg, fixed=given, depth_study=depth)  # --max-memory
        console.print(plan.summary())
        cfg = plan.config
        # a fresh, marked folder, made before the work (after the checks: a refused audit
        # leaves nothing behind)
        run_dir = new_run_dir(out, "audit")
        from rgaudit.experiments.audit import audit_stage_count
        from rgaudit.experiments.depth import DepthConfig
        from rgaudit.report.progress import progress_columns

        # the bar counts stages: the audit's (selection, FIM estimators, attacks per norm),
        # the attack study as one, three per network of the depth study
        n_audit = audit_stage_count()
        depth_cfg = DepthConfig(seed=seed, n_inputs=plan.depth_inputs) if depth else None
        total = (n_audit + int(attack_study)
                 + (3 * len(depth_cfg.depths) if depth_cfg is not None else 0))
        with Progress(*progress_columns(), console=console, transient=True) as prog:
            task = prog.add_task("audit", total=total)
            started = [0]

            def stage(s: str) -> None:  # a new stage: the previous ones are done
                prog.update(task, description=s, completed=started[0])
                started[0] += 1

            if executor is None:
                result = run_audit(net, ds.X_test, ds.y_test, cfg, model_info=info,
                                   progress=stage)
            else:
                from rgaudit.executors.audit_units import audit_with_executor

                prog.update(task, description=f"audit inputs ({executor} executor)")
                result = audit_with_executor(net, ds, cfg, info, executor, address, out)
            started[0] = n_audit
            prog.update(task, completed=n_audit)
            study = None
            if attack_study:
                from rgaudit.experiments.attack_study import AttackStudyConfig, run_attack_study

                study = run_attack_study(
                    net, ds.X_test, ds.y_test,
                    AttackStudyConfig(n_inputs=max(2, n_inputs), judge_samples=cfg.judge_samples,
                                      judge_seeds=(seed,), seed=seed),
                    model_info=info,
                    progress=lambda s: prog.update(task, description=s))
                started[0] += 1
                prog.update(task, completed=started[0])
            depth_result = None
            if depth_cfg is not None:
                from rgaudit.experiments.depth import run_depth_study

                depth_result = run_depth_study(ds, depth_cfg, progress=stage)
        paths = write_audit_report(result, run_dir, plan=plan, depth=depth_result,
                                   attack_study=study)
        console.print(l2_table(result))
        console.print(f"report: {paths['html']}")
        typer.echo(str(run_dir))


def l2_table(result: AuditResult) -> Table:
    """The audit's minimal flipping ε (L2) per method: nominal and applied median [q1, q3]."""
    res_l2 = min(r.resolution for r in result.attacks["l2"].values())
    table = Table(title="minimal flipping ε (L2): nominal and applied (after clipping) "
                  f"median [q1, q3]; search resolution {res_l2:.2g}, so two decimals")
    for col in ("method", "nominal", "applied", "flipped"):
        table.add_column(col)
    for name, r in result.attacks["l2"].items():
        s, a = r.min_eps_summary, r.min_eps_actual_summary
        table.add_row(name,
                      f"{s.median:.2f} [{s.q1:.2f}, {s.q3:.2f}]",
                      f"{a.median:.2f} [{a.q1:.2f}, {a.q3:.2f}]",
                      f"{s.n_flipped}/{s.n}")
    return table
