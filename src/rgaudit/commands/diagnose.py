"""``rgaudit diagnose``: MCRG spectra of a trained network and their convergence."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rgaudit.choices import ExecutorName
from rgaudit.commands._options import (
    check_device,
    check_seed,
    force_option,
    max_memory_option,
)
from rgaudit.commands.audit import dataset_for_model
from rgaudit.errors import RGAuditError

if TYPE_CHECKING:
    import torch

    from rgaudit.nets.deep_rbm import DeepRBM


def _pick(x: torch.Tensor, y: torch.Tensor, n: int, gen: torch.Generator) -> tuple[Any, Any]:
    """``n`` inputs spread over classes (round-robin over a seeded permutation)."""
    import torch

    perm = torch.randperm(len(y), generator=gen)
    classes = torch.unique(y)
    per = [perm[y[perm] == c] for c in classes]
    idx = [int(p[i]) for i in range(max(len(p) for p in per)) for p in per if i < len(p)][:n]
    idx_t = torch.tensor(idx)
    return x[idx_t], y[idx_t]


def register(app: typer.Typer) -> None:
    """Add the ``diagnose`` command to ``app``."""

    @app.command("diagnose")
    def diagnose(
        model: Path = typer.Argument(..., help="Model folder (rgaudit.nets.io format)."),
        data: str = typer.Option(None, "--data", help="Data set spec; default and required "
                                 "match: the model's own (its split seed too)."),
        inputs: int = typer.Option(4, "--inputs", min=1, help="Test inputs analysed."),
        ops: str = typer.Option("pairs:256", "--ops",
                                help="Operator basis: singles, pairs, pairs:K, order:M, full."),
        samples: int = typer.Option(100_000, "--samples", min=64, max=100_000_000,
                                    help="Chains per input."),
        bases: str = typer.Option("singles,pairs:64", "--bases",
                                  help="Extra bases of the basis study (comma-separated)."),
        per_class: int = typer.Option(10, "--per-class", min=0,
                                      help="Inputs per class of the fixed-point study (0: off)."),
        fp_samples: int = typer.Option(2000, "--fp-samples", min=16, max=100_000_000,
                                       help="Chains per input of the fixed-point study."),
        seed: int = typer.Option(0, "--seed", callback=check_seed),
        device: str = typer.Option("cpu", "--device", callback=check_device,
                                   help="cpu, cuda, cuda:N or auto."),
        out: Path = typer.Option(Path("runs/diagnose"), "--out", help="Output folder (new, "
                                 "empty, or one rgaudit wrote)."),
        force: bool = force_option(),
        max_memory: str = max_memory_option(),
        executor: ExecutorName | None = typer.Option(
            None, "--executor", help="local or ray: one unit per input with its own generator "
            "(default: one batched run)."),
        address: str = typer.Option(None, "--address", help="Ray cluster address."),
    ) -> None:
        """Estimate per-layer stability matrices by MCRG and study their convergence."""
        import torch
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from rgaudit.device import resolve_device
        from rgaudit.experiments.diagnose import DiagnoseConfig, DiagnoseSource, run_diagnose
        from rgaudit.guards import check_mcrg_memory
        from rgaudit.outputs import prepare_out
        from rgaudit.random import torch_generator
        from rgaudit.report.diagnose_report import write_report
        from rgaudit.report.io import write_result

        try:
            dev = resolve_device(device)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        specs = [s.strip() for s in bases.split(",") if s.strip()] + [ops]
        try:  # the config validates (bases included); its messages name the options
            cfg = DiagnoseConfig(ops=ops, n_samples=samples, basis_specs=tuple(specs),
                                 fixed_point_samples=fp_samples, seed=seed, device=str(dev))
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        net, config = _load_model(model, dev)
        for spec_ in specs:
            check_mcrg_memory(spec_, net.widths, max(samples, fp_samples),
                              what=f"--ops/--bases {spec_}")
        out = prepare_out(out, kind="diagnose", force=force)  # before the work
        ds, spec, split_seed, _ = dataset_for_model(net, config, data)
        x_test = torch.as_tensor(ds.X_test, dtype=torch.float32)
        y_test = torch.as_tensor(ds.y_test).long()
        gen = torch_generator(seed, "diagnose.inputs")
        x, y = _pick(x_test, y_test, inputs, gen)
        fp_x = fp_y = None
        if per_class > 0:
            fp_x, fp_y = _pick(x_test, y_test, per_class * len(torch.unique(y_test)), gen)
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn()) as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            if executor is None:
                result = run_diagnose(net, x, y, config=cfg, fixed_point_inputs=fp_x,
                                      fixed_point_labels=fp_y, progress=progress)
            else:
                from contextlib import closing

                from rgaudit.executors import make_executor
                from rgaudit.executors.diagnose_units import diagnose_with_executor

                stage = f"inputs on the {executor} executor"
                progress(stage, 0, inputs)
                with closing(make_executor(executor, address=address)) as ex:
                    result = diagnose_with_executor(net, x, y, ex, cfg, fixed_point_inputs=fp_x,
                                                    fixed_point_labels=fp_y)
                progress(stage, inputs, inputs)
        result.source = DiagnoseSource(str(model), spec, split_seed, config.get("dataset"))
        paths = write_report(result, out)
        write_result(out / "result.json", "diagnose", result.to_dict())
        typer.echo(f"wrote {out / 'result.json'}, " + ", ".join(p.name for p in paths))


def _load_model(model: Path, dev: Any) -> tuple[DeepRBM, dict[str, Any]]:
    """The MODEL folder on device ``dev``; an unusable one is a usage error (exit 2)."""
    from rgaudit.errors import ResourceError
    from rgaudit.nets.io import load_model

    try:
        return load_model(model, device=dev)
    except ResourceError:
        raise
    except RGAuditError as err:
        raise typer.BadParameter(str(err), param_hint="MODEL") from err
