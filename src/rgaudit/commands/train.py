"""``rgaudit train`` and ``rgaudit info``: train a DeepRBM classifier, show a saved one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rgaudit.commands._options import (
    MAX_EPOCHS,
    MAX_GIBBS_K,
    check_device,
    check_seed,
    check_threads,
    max_memory_option,
)
from rgaudit.errors import ResourceError, RGAuditError, UsageError

if TYPE_CHECKING:  # heavy (torch, sklearn): not at the import of a command module
    from rgaudit.data.dataset import Dataset
    from rgaudit.train.pipeline import TrainConfig

#: From this input width on (28×28 images) the default hidden layers have MNIST_HIDDEN units
#: (784-500-500-10, the scale of Hinton's DBN); below it 100 (64-100-100-10 on digits).
MNIST_FEATURES = 784
MNIST_HIDDEN = 500

console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}")  # a path may hold "[/x]"
    return typer.Exit(code=1)


#: Bytes per parameter while training: weights, gradients, two Adam moments, CD statistics and
#: the fine-tuning copy, in float32.
TRAIN_BYTES_PER_PARAMETER = 32


def check_training_memory(widths: tuple[int, ...], batch: int = 256) -> None:
    """Refuse, before any data are loaded, a network whose training would not fit in memory."""
    from rgaudit.guards import check_memory, network_parameters

    n = network_parameters(widths)
    check_memory(TRAIN_BYTES_PER_PARAMETER * n + 4 * 8 * batch * sum(widths),
                 what=f"training --widths {','.join(map(str, widths))} ({n:,} parameters)")


def parse_widths(text: str) -> tuple[int, ...]:
    """``"64,100,100,10"`` → ``(64, 100, 100, 10)``; raises ValueError with a hint."""
    parts = text.replace(" ", "").split(",")
    if any(not p for p in parts):
        raise ValueError(f"--widths {text!r}: empty entry; give comma-separated integers, "
                         "e.g. 64,100,100,10")
    try:
        widths = tuple(int(w) for w in parts)
    except ValueError as err:
        raise ValueError(f"--widths {text!r}: give comma-separated integers, e.g. "
                         "64,100,100,10") from err
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"--widths {text!r}: need at least two positive widths")
    return widths


class RichProgress:
    """Render ``progress(stage, done, total, **info)`` callbacks as rich progress bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int, **info: Any) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        extra = "  ".join(f"{k}={v:.4g}" for k, v in info.items() if isinstance(v, float))
        self.progress.update(self.tasks[stage], completed=done, total=total,
                             description=f"{stage} {extra}".strip())


def _pct(d: Any, key: str) -> str:
    """``d[key]`` as a percentage, or ``"?"`` when missing or not a number."""
    v = d.get(key) if isinstance(d, dict) else None
    return f"{v:.2%}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"


def _accuracy_line(acc: Any) -> str:
    """One line of accuracies; ``"?"`` for every missing or mis-typed entry."""
    acc = acc if isinstance(acc, dict) else {}
    mf, st = acc.get("mean_field"), acc.get("stochastic")
    n = st.get("n_samples", "?") if isinstance(st, dict) else "?"
    return (f"mean-field {_pct(mf, 'accuracy')} ± {_pct(mf, 'stderr')}   stochastic "
            f"({n} chains) {_pct(st, 'accuracy')} ± {_pct(st, 'stderr')}")


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``info`` commands to ``app``."""

    @app.command("train")
    def train(
        data: str = typer.Option("digits", help="digits, digits28, bars[:N[:SAMPLES]], "
                                 "idx:FOLDER or npz:FILE"),
        widths: str = typer.Option(None, help="Layer widths n_0,…,n_N; default "
                                   "n_features,100,100,n_classes (64,100,100,10 on digits); "
                                   "500-unit hidden layers from 784 inputs up (784,500,500,10 "
                                   "on digits28 and MNIST)"),
        epochs: int = typer.Option(None, min=0, max=MAX_EPOCHS, help="Fine-tuning epochs "
                                   "(default 40; 0 skips fine-tuning)"),
        pretrain_epochs: int = typer.Option(None, min=0, max=MAX_EPOCHS, help="CD epochs per "
                                            "layer (default 10; 0 skips pretraining: random "
                                            "initial weights)"),
        pcd: bool = typer.Option(False, help="Persistent CD instead of CD-k"),
        k: int = typer.Option(1, min=1, max=MAX_GIBBS_K, help="Gibbs steps per CD update"),
        objective: str = typer.Option("mean_field", help="Fine-tuning objective: mean_field "
                                      "or sampled (straight-through binary chains)"),
        eval_samples: int = typer.Option(1000, min=1, max=1_000_000, help="Chains per test "
                                         "input for the stochastic accuracy"),
        seed: int = typer.Option(0, callback=check_seed,
                                 help="Seed of every random choice in training"),
        device: str = typer.Option("cpu", callback=check_device, help="cpu, cuda or auto"),
        threads: int = typer.Option(1, min=1, callback=check_threads,
                                    help="CPU threads for torch while training"),
        out: Path = typer.Option(Path("models/default"), help="Model folder to write (an "
                                 "existing rgaudit model there is replaced; nothing else is)"),
        max_memory: str = max_memory_option(),
    ) -> None:
        """Train a stacked-RBM classifier and save it (safetensors + config.json)."""
        _check_before_loading(objective, widths, out)
        dataset = _load_training_data(data)
        try:
            config = replace(_recipe(epochs=epochs, pretrain_epochs=pretrain_epochs, pcd=pcd,
                                     k=k, objective=objective),
                             widths=_network_widths(dataset, widths), seed=seed, device=device,
                             threads=threads, eval_samples=eval_samples)
            path, report = _train_and_save(dataset, config, out, data)
        except (ResourceError, UsageError):
            raise  # exit statuses 3 and 2 (cli.main)
        except (RGAuditError, ValueError) as err:
            raise _fail(str(err)) from err
        console.print(f"test accuracy: {_accuracy_line(report['accuracy'])}")
        console.print(f"trained in {report['train_seconds']:.1f} s; saved to {path}")

    @app.command("info")
    def info(model: Path = typer.Argument(..., help="Model folder written by rgaudit train")
             ) -> None:
        """Print a saved model's configuration: widths, data set, accuracies, seed, version."""
        from rgaudit.nets.io import inspect_model

        try:
            cfg = inspect_model(model)
        except ResourceError:
            raise
        except RGAuditError as err:  # the MODEL named on the command line is unusable
            raise typer.BadParameter(str(err), param_hint="MODEL") from err
        console.print(_info_table(model, cfg))


def _check_before_loading(objective: str, widths: str | None, out: Path) -> None:
    """``train``'s checks made before the data are loaded and anything is trained."""
    from rgaudit.nets.io import check_model_out
    from rgaudit.outputs import lock_path
    from rgaudit.train.finetune import OBJECTIVES

    if objective not in OBJECTIVES:
        raise typer.BadParameter(f"must be one of {', '.join(OBJECTIVES)}, got "
                                 f"{objective!r}", param_hint="--objective")
    if widths:
        try:
            check_training_memory(parse_widths(widths))
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--widths") from err
    try:
        check_model_out(out)  # --out: only an rgaudit model may be replaced
        lock_path(out, f"the model --out {out}")  # a second `train` into it is refused
    except RGAuditError:
        raise  # refused --out (exit 2) or locked by another run (exit 3)
    except OSError as err:
        raise typer.BadParameter(f"cannot save the model to --out {str(out)!r}: {err}",
                                 param_hint="--out") from err


def _load_training_data(data: str) -> Dataset:
    """The ``--data`` set; an unusable one is a usage error (exit 2)."""
    from rgaudit.data import load_dataset

    try:
        return load_dataset(data)
    except ResourceError:
        raise
    except RGAuditError as err:  # the --data named on the command line is unusable
        raise typer.BadParameter(str(err), param_hint="--data") from err


def _recipe(*, epochs: int | None, pretrain_epochs: int | None, pcd: bool, k: int,
            objective: str) -> TrainConfig:
    """The default training recipe with ``train``'s CD and fine-tuning options."""
    from rgaudit.train.pipeline import TrainConfig

    base = TrainConfig()
    pre = replace(base.pretrain, k=k, persistent=pcd,
                  epochs=base.pretrain.epochs if pretrain_epochs is None else pretrain_epochs)
    ft = replace(base.finetune, objective=objective,
                 epochs=base.finetune.epochs if epochs is None else epochs)
    return replace(base, pretrain=pre, finetune=ft)


def _network_widths(dataset: Dataset, widths: str | None) -> tuple[int, ...]:
    """``--widths``, or the default for the data set's size (its memory checked here; given
    widths were checked before the data were loaded)."""
    if widths:
        return parse_widths(widths)
    hidden = MNIST_HIDDEN if dataset.n_features >= MNIST_FEATURES else 100
    shape = (dataset.n_features, hidden, hidden, dataset.n_classes)
    check_training_memory(shape)
    return shape


def _train_and_save(dataset: Dataset, config: TrainConfig, out: Path, data: str
                    ) -> tuple[Path, dict[str, Any]]:
    """Train with progress bars and save the model to ``out``: (its path, the report)."""
    from rgaudit.nets.io import save_model
    from rgaudit.report.progress import progress_columns
    from rgaudit.train.pipeline import train_default

    console.print(f"training {list(config.widths)} on {dataset.name} "
                  f"({dataset.X_train.shape[0]} train / {dataset.X_test.shape[0]} test), "
                  f"seed {config.seed}, device {config.device}")
    with Progress(*progress_columns(), console=console, transient=False) as bar:
        net, report = train_default(dataset, config, progress=RichProgress(bar))
    try:
        path = save_model(net, out, metadata={**report, "dataset_spec": data})
    except OSError as err:
        raise _fail(f"cannot save the model to --out {str(out)!r}: {err}") from err
    return path, report


def _recipe_line(training: Any) -> str:
    """The training recipe of a saved config; "?" for what is missing or mis-typed."""
    if not isinstance(training, dict):
        return "?"
    ft = training.get("finetune")
    pre = training.get("pretrain")
    ft = ft if isinstance(ft, dict) else {}
    pre = pre if isinstance(pre, dict) else {}
    cd = "?" if "persistent" not in pre else ("PCD" if pre["persistent"] else "CD")
    return (f"{cd}-{pre.get('k', '?')} × {pre.get('epochs', '?')} "
            f"epochs, fine-tune {ft.get('objective', '?')} {ft.get('loss', '?')}"
            f" × {ft.get('epochs', '?')} epochs")


def _info_table(model: Path, cfg: dict[str, Any]) -> Table:
    """``info``'s table of a saved model's config (``rgaudit.nets.io.inspect_model``)."""
    table = Table(title=str(model), show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("widths", ",".join(str(w) for w in cfg.get("widths", ["?"])))
    table.add_row("tied", str(cfg.get("tied", "?")))
    ds = cfg.get("dataset")
    table.add_row("dataset", f"{ds.get('name')} ({ds.get('n_train')} train / "
                  f"{ds.get('n_test')} test)" if isinstance(ds, dict) else str(ds))
    table.add_row("seed", str(cfg.get("seed", "?")))
    table.add_row("accuracy", _accuracy_line(cfg.get("accuracy")))
    table.add_row("training time", f"{cfg['train_seconds']} s" if isinstance(
        cfg.get("train_seconds"), (int, float)) else "?")
    table.add_row("recipe", _recipe_line(cfg.get("training")))
    table.add_row("rgaudit version", str(cfg.get("rgaudit_version", "?")))
    table.add_row("weights sha256", str(cfg.get("weights_sha256", "?"))[:16] + "…")
    return table
