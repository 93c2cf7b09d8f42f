"""``rgaudit relu-scaling``: the random-ReLU one-step adversarial study (``docs/relu.md``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from rgaudit.commands._options import (
    MAX_N_NETS,
    check_device,
    check_seed,
    force_option,
    max_memory_option,
)

if TYPE_CHECKING:
    from rgaudit.experiments.relu.config import ReluStudyConfig


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    """Parse ``"64,256,1024"`` or ``"1-8"`` (inclusive range) into a tuple of ints.

    Ranges are bounded before they are expanded (``--dims 2-300000000`` is refused, not built).
    """
    from rgaudit.errors import UsageError
    from rgaudit.guards import expand_int_list

    if text is None:
        return None
    try:
        return expand_int_list(text, what)
    except UsageError as err:
        raise typer.BadParameter(str(err), param_hint=what) from err


def _cell_weight_bytes(config: ReluStudyConfig) -> list[int]:
    """Weight bytes of every (profile, d) network at the deepest depth; cells whose
    dims/depths are invalid are left out (the study itself reports them)."""
    from rgaudit.experiments.relu.scaling import profile_widths
    from rgaudit.nets.relu import weight_bytes

    depth = max([0, *config.depths])
    sizes = []
    for profile in config.profiles:
        for d in config.dims:
            try:
                sizes.append(weight_bytes(profile_widths(d, depth, profile, config.width)))
            except (ValueError, OverflowError):
                continue
    return sizes


def _check_some_cell_fits(config: ReluStudyConfig) -> None:
    """Fail up front when ``--max-weight-mib`` would skip every (profile, d) cell."""
    sizes = _cell_weight_bytes(config)
    if sizes and min(sizes) > config.max_weight_bytes:
        raise typer.BadParameter(
            f"{config.max_weight_bytes / 2**20:.0f} MiB skips every cell: the smallest network "
            f"needs {min(sizes) / 2**20:.1f} MiB of weights; pass at least "
            f"{-(-min(sizes) // 2**20)}", param_hint="--max-weight-mib")


def _largest_cell_bytes(config: ReluStudyConfig) -> int:
    """Weight bytes of the largest network the study runs (cells over ``max_weight_bytes``
    are skipped by the study)."""
    return max([0, *(wb for wb in _cell_weight_bytes(config) if wb <= config.max_weight_bytes)])


def write_outputs(result: dict, out: Path) -> list[Path]:
    """Write ``result.json``, ``report.md`` and the PNGs into ``out``, each via temp-and-rename."""
    from rgaudit.report.io import SCHEMA_VERSION, atomic_write_text, write_result
    from rgaudit.report.relu_plots import render_markdown, write_plots

    out.mkdir(parents=True, exist_ok=True)
    payload = {"schema_version": SCHEMA_VERSION, "kind": "relu-scaling", **result}
    md = render_markdown(payload)
    with tempfile.TemporaryDirectory(dir=out, prefix=".plots-") as tmp:
        pngs = write_plots(payload, Path(tmp))
        written = []
        for p in pngs:
            os.replace(p, out / p.name)
            written.append(out / p.name)
    atomic_write_text(out / "report.md", md)
    # last: its presence means the run completed
    write_result(out / "result.json", "relu-scaling", result)
    return [out / "result.json", out / "report.md", *written]


def register(app: typer.Typer) -> None:
    """Add the ``relu-scaling`` command to ``app``."""

    @app.command("relu-scaling")
    def relu_scaling(
        out: Path = typer.Option(Path("runs/relu-scaling"), "--out", help="Output folder (new, "
                                 "empty, or one rgaudit wrote)."),
        seed: int = typer.Option(0, callback=check_seed,
                                 help="Base seed; every sub-study's seed is recorded."),
        device: str = typer.Option("cpu", callback=check_device,
                                   help="cpu, cuda or cuda:N (same code path)."),
        dims: str = typer.Option(None, help="Input dims, e.g. '64,256,1024' "
                                 "(default: 64,256,1024,4096,16384)."),
        depths: str = typer.Option(None, help="Depths L, e.g. '1-4' (0, linear, always "
                                   "added) (default: 1-8)."),
        width: int = typer.Option(None, min=1, help="Hidden width of the fixed-width profile "
                                  "(default: 256)."),
        n_nets: int = typer.Option(None, "--n-nets", min=1, max=MAX_N_NETS,
                                   help="Networks per (profile, d) cell (default: 24)."),
        max_weight_mib: int = typer.Option(
            None, "--max-weight-mib", min=1, help="Skip cells whose one network needs more "
            "weight memory, in MiB (default: 600)."),
        quick: bool = typer.Option(False, "--quick", help="Seconds-long smoke run."),
        force: bool = force_option(),
        max_memory: str = max_memory_option(),
    ) -> None:
        """Random ReLU networks: one-step attack size vs d, near-linearity, depth, trained MLP."""
        from rich.markup import escape

        from rgaudit.experiments.relu.config import ReluStudyConfig
        from rgaudit.experiments.relu.run import run_relu_study
        from rgaudit.guards import check_memory
        from rgaudit.outputs import prepare_out
        from rgaudit.report.io import to_plain

        over: dict = {"seed": seed, "device": device}
        for key, val in (("dims", _ints(dims, "--dims")), ("depths", _ints(depths, "--depths")),
                         ("width", width), ("n_nets", n_nets)):
            if val is not None:
                over[key] = val
        if max_weight_mib is not None:
            over["max_weight_bytes"] = max_weight_mib * 2**20
        try:
            config = ReluStudyConfig.quick(**over) if quick else ReluStudyConfig(**over)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        if max_weight_mib is not None:
            _check_some_cell_fits(config)
        # cells over --max-weight-mib are skipped; the rest must fit the memory budget
        # (weights, one gradient/FIM work copy and activations: ~4× the weights)
        biggest = _largest_cell_bytes(config)
        check_memory(4 * biggest, what=f"the largest network that --dims/--depths/--width "
                     f"give under --max-weight-mib ({biggest / 2**20:.1f} MiB of weights, "
                     "with its work copies)")
        out = prepare_out(out, kind="relu-scaling", force=force)  # before the work
        console = Console()
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                          console=console, transient=True) as bar:
                task = bar.add_task("relu-scaling", total=config.n_steps())

                def step(msg: str) -> None:
                    bar.update(task, advance=1, description=msg)

                result = run_relu_study(config, progress=step)
        except ValueError as err:
            console.print(f"[red]error:[/red] {escape(str(err))}")
            raise typer.Exit(code=2) from err
        files = write_outputs(to_plain(result.to_dict()), out)
        console.print(f"relu-scaling: wrote {len(files)} files to {out}/ "
                      f"(result.json, report.md, {len(files) - 2} plots)")
