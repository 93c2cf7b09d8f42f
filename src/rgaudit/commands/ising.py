"""``rgaudit ising``: MCRG exponents of the 2D Ising model under 2×2 blocking (docs/ising.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from rgaudit.choices import IsingKernel
from rgaudit.commands._options import (
    MAX_THERMAL,
    check_seed,
    check_threads,
    force_option,
    max_memory_option,
)

#: Peak bytes per lattice site and chain of the Swendsen–Wang sampler (see the estimate below).
ISING_BYTES_PER_SITE = 40


def register(app: typer.Typer) -> None:
    """Add the ``ising`` command to ``app``."""

    @app.command("ising")
    def ising(
        size: int = typer.Option(64, "--L", min=4,
                                 help="Linear lattice size (divisible by 2^levels)."),
        levels: int = typer.Option(4, min=1, max=30,
                                   help="Blocking levels (the last lattice must be ≥ 4×4)."),
        even: int = typer.Option(7, min=1, max=7, help="Largest even truncation N_c (1–7)."),
        odd: int = typer.Option(4, min=1, max=4, help="Largest odd truncation N_c (1–4)."),
        sweeps: int = typer.Option(2000, min=1, max=MAX_THERMAL,
                                   help="Measurements per chain."),
        chains: int = typer.Option(32, min=1, help="Independent Swendsen–Wang chains."),
        thermal: int = typer.Option(200, min=0, max=MAX_THERMAL,
                                    help="Discarded SW updates per chain."),
        sweeps_per_chunk: int = typer.Option(25, min=1,
                                             help="Measurements per chain in one chunk."),
        blocks: int = typer.Option(20, min=2, help="Jackknife blocks."),
        kernel: IsingKernel = typer.Option("majority", help="Blocking kernel: the majority "
                                           "rule, the trained RBM kernel, or both."),
        seed: int = typer.Option(0, callback=check_seed, help="Seed of every random stream."),
        threads: int = typer.Option(1, min=1, callback=check_threads,
                                    help="torch CPU threads."),
        plot: bool = typer.Option(True, help="Write ising_exponents.png."),
        out: Path = typer.Option(Path("runs/ising"), help="Output folder (new, empty, or one "
                                 "rgaudit wrote)."),
        force: bool = force_option(),
        max_memory: str = max_memory_option(),
    ) -> None:
        """Stability-matrix eigenvalues and exponents at every level and truncation."""
        from rgaudit.experiments.ising import (
            IsingMCRGConfig,
            run_ising_mcrg,
            run_rbm_kernel_study,
        )
        from rgaudit.guards import check_memory
        from rgaudit.outputs import prepare_out
        from rgaudit.report.io import atomic_write_text, write_result
        from rgaudit.report.ising_report import plot_exponents, render_markdown
        from rgaudit.threads import limit_threads

        try:  # the config validates; its messages name the options
            cfg = IsingMCRGConfig(
                size=size,
                levels=levels,
                n_even=even,
                n_odd=odd,
                n_chains=chains,
                n_sweeps=sweeps,
                n_thermal=thermal,
                sweeps_per_chunk=sweeps_per_chunk,
                n_blocks=blocks,
                seed=seed,
            )
            cfg.check_study()
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        # Swendsen–Wang per site and chain: int8 spins, two float32 bond uniforms, a float32
        # flip draw, int64 cluster parents and labels, and the blocked lattices: ~40 bytes
        check_memory(ISING_BYTES_PER_SITE * chains * size * size,
                     what=f"--L {size} with --chains {chains} ({chains * size * size:,} spins)")
        out = prepare_out(out, kind="ising", force=force)  # before the work
        console = Console(stderr=True)
        payload: dict = {}
        with limit_threads(threads), Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            if kernel in ("majority", "both"):
                task = bar.add_task("majority rule", total=chains * sweeps)
                res = run_ising_mcrg(cfg, progress=lambda d, t: bar.update(task, completed=d))
                payload["majority"] = res.to_dict()
            if kernel in ("rbm", "both"):
                task = bar.add_task("trained RBM kernel", total=chains * sweeps)
                study = run_rbm_kernel_study(
                    cfg, progress=lambda d, t: bar.update(task, completed=d)
                )
                payload["rbm"] = study.to_dict()
        write_result(out / "result.json", "ising", payload)
        md = []
        for name, res_d in payload.items():
            r = res_d["mcrg"] if name == "rbm" else res_d
            md.append(render_markdown(r, title=f"Ising MCRG ({name})"))
        atomic_write_text(out / "table.md", "\n".join(md))
        if plot:
            plot_exponents(
                {k: (v["mcrg"] if k == "rbm" else v) for k, v in payload.items()},
                out / "ising_exponents.png",
            )
        console.print(f"wrote {out / 'result.json'} and {out / 'table.md'}")
        typer.echo("\n".join(md))
