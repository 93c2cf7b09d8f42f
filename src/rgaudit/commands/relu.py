"""``rgaudit relu-scaling``: the random-ReLU one-step adversarial study (``docs/relu.md``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from rgaudit.experiments.relu_scaling import ReluStudyConfig


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    """Parse ``"64,256,1024"`` or ``"1-8"`` (inclusive range) into a tuple of ints."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                out += list(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
    except ValueError as err:
        msg = f"{what} must look like '64,256,1024' or '1-8', got {text!r}"
        raise typer.BadParameter(msg) from err
    if not out:
        raise typer.BadParameter(f"{what} is empty")
    return tuple(out)


def _check_some_cell_fits(config: ReluStudyConfig) -> None:
    """Fail up front when ``--max-weight-mib`` would skip every (profile, d) cell."""
    from rgaudit.experiments.relu_scaling import _profile_widths
    from rgaudit.nets.relu import weight_bytes

    depth = max([0, *config.depths])
    sizes = []
    for profile in config.profiles:
        for d in config.dims:
            try:
                sizes.append(weight_bytes(_profile_widths(d, depth, profile, config.width)))
            except ValueError:
                return  # the study itself reports bad dims/depths
    if sizes and min(sizes) > config.max_weight_bytes:
        raise typer.BadParameter(
            f"{config.max_weight_bytes / 2**20:.0f} MiB skips every cell: the smallest network "
            f"needs {min(sizes) / 2**20:.1f} MiB of weights; pass at least "
            f"{-(-min(sizes) // 2**20)}", param_hint="--max-weight-mib")


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
        out: Path = typer.Option(Path("runs/relu-scaling"), "--out", help="Output folder."),
        seed: int = typer.Option(0, help="Base seed; every sub-study's seed is recorded."),
        device: str = typer.Option("cpu", help="cpu, cuda or cuda:N (same code path)."),
        dims: str = typer.Option(None, help="Input dims, e.g. '64,256,1024' "
                                 "(default: 64,256,1024,4096,16384)."),
        depths: str = typer.Option(None, help="Depths L, e.g. '1-4' (0, linear, always "
                                   "added) (default: 1-8)."),
        width: int = typer.Option(None, min=1, help="Hidden width of the fixed-width profile "
                                  "(default: 256)."),
        n_nets: int = typer.Option(None, "--n-nets", min=1,
                                   help="Networks per (profile, d) cell (default: 24)."),
        max_weight_mib: int = typer.Option(
            None, "--max-weight-mib", min=1, help="Skip cells whose one network needs more "
            "weight memory, in MiB (default: 600)."),
        quick: bool = typer.Option(False, "--quick", help="Seconds-long smoke run."),
    ) -> None:
        """Random ReLU networks: one-step attack size vs d, near-linearity, depth, trained MLP."""
        from rgaudit.experiments.relu_scaling import ReluStudyConfig, run_relu_study

        over: dict = {"seed": seed, "device": device}
        for key, val in (("dims", _ints(dims, "--dims")), ("depths", _ints(depths, "--depths")),
                         ("width", width), ("n_nets", n_nets)):
            if val is not None:
                over[key] = val
        if max_weight_mib is not None:
            over["max_weight_bytes"] = max_weight_mib * 2**20
        config = ReluStudyConfig.quick(**over) if quick else ReluStudyConfig(**over)
        if max_weight_mib is not None:
            _check_some_cell_fits(config)
        console = Console()
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                          console=console, transient=True) as bar:
                task = bar.add_task("relu-scaling", total=config.n_steps())

                def step(msg: str) -> None:
                    bar.update(task, advance=1, description=msg)

                result = run_relu_study(config, progress=step)
        except ValueError as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(code=2) from err
        files = write_outputs(result.to_dict(), out)
        console.print(f"relu-scaling: wrote {len(files)} files to {out}/ "
                      f"(result.json, report.md, {len(files) - 2} plots)")
