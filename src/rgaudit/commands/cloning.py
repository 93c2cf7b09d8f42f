"""``rgaudit protect`` (write a poisoning config) and ``rgaudit clone-attack`` (cloning study)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from rgaudit.choices import DEFENCES, BudgetNorm, ExecutorName, GenerationEstimator
from rgaudit.commands._options import MAX_EPOCHS, check_seed, force_option

if TYPE_CHECKING:  # torch: not at the import of a command module
    from rgaudit.defence.poison import RGPoisoner
    from rgaudit.nets.deep_rbm import DeepRBM


def _floats(text: str, what: str) -> tuple[float, ...]:
    """Parse comma-separated numbers (their values are checked by the config)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise typer.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from err


def _ints(text: str, what: str) -> tuple[int, ...]:
    """Parse comma-separated integers (their values are checked by the config)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise typer.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from err


def _load_model(model: str) -> tuple[Any, dict[str, Any]]:
    """A model folder, or ``default`` for the default digits model (trained if absent)."""
    from rgaudit.errors import ModelFileError
    from rgaudit.nets.io import load_model

    if model == "default":
        from rgaudit.experiments.train_default import ensure_default_model

        return ensure_default_model()
    try:
        return load_model(model)
    except ModelFileError as err:
        raise typer.BadParameter(str(err)) from err


def _served_victim(target: str, api_key: str | None, net: Any) -> Any:
    """The API at ``target`` as the study's served victim (checked against MODEL's shapes)."""
    import httpx

    from rgaudit.experiments.cloning import ServedAPI, ServedVictim
    from rgaudit.serve.client import APIError, PredictionClient

    try:
        client = PredictionClient(target, api_key=api_key)
    except (ValueError, APIError) as err:
        raise typer.BadParameter(str(err)) from err
    except (OSError, httpx.HTTPError) as err:
        raise typer.BadParameter(f"cannot reach --target {target}: {err}") from err
    if (client.n_features, client.n_classes) != (net.widths[0], net.widths[-1]):
        raise typer.BadParameter(
            f"--target serves a model with {client.n_features} inputs and {client.n_classes} "
            f"classes, MODEL has {net.widths[0]} and {net.widths[-1]}: serve MODEL there")
    d = client.info["defence"]
    return ServedVictim(client.predict, str(d.get("defence")), float(d.get("eps", 0.0)),
                        ServedAPI.from_info(client.url, client.info))


def register(app: typer.Typer) -> None:
    """Add ``protect`` and ``clone-attack`` to ``app``."""

    @app.command("protect")
    def protect(
        model: str = typer.Argument(..., help="Model folder, or 'default'."),
        eps: float = typer.Option(0.2, "--eps", min=0.0, help="Budget per answer."),
        norm: BudgetNorm = typer.Option("l1", "--norm", help="Budget norm."),
        estimator: GenerationEstimator | None = typer.Option(
            None, "--estimator",
            help="Generation-FIM estimator: auto (default: exact-chain when the layers can be "
                 "enumerated, else MCRG chain), exact, exact-chain, chain, or mean-field "
                 "(fast, magnitude off by up to ~10x; docs/cloning.md)."),
        out: Path = typer.Option(..., "--out", help="Poisoning config JSON to write (new, or "
                                 "one rgaudit wrote)."),
        force: bool = force_option(),
    ) -> None:
        """Write the RG output-poisoning config for MODEL (cloning section IV)."""
        from rgaudit.defence.generation_fim import DEFAULT_ESTIMATOR, resolve_estimator
        from rgaudit.outputs import prepare_out_file
        from rgaudit.report.io import write_result

        estimator = DEFAULT_ESTIMATOR if estimator is None else estimator
        out = prepare_out_file(out, kind="poisoning-config", force=force)  # before the work
        net, cfg = _load_model(model)
        poisoner = _checked_poisoner(net, eps, norm, estimator)
        path = write_result(out, "poisoning-config", {
            "model": model, "model_sha256": cfg.get("weights_sha256"),
            "answers": "normalised sigmoid of mean-field logits",
            "guarantees": ["argmax preserved on every answer (unchanged on exact top-2 ties)",
                           f"{norm} deviation <= eps", "answers stay on the simplex"],
            **poisoner.config(), "estimator_resolved": resolve_estimator(net, estimator)})
        Console().print(f"wrote {path}")

    @app.command("clone-attack")
    def clone_attack(
        model: str = typer.Argument(..., help="Model folder, or 'default'."),
        defence: list[str] = typer.Option(["none", "rg"], "--defence",
                                          help=", ".join(DEFENCES) + " (repeatable)."),
        eps: str = typer.Option("0.1,0.3", "--eps", help="Budgets, comma-separated."),
        norm: BudgetNorm = typer.Option("l1", "--norm", help="Budget norm."),
        queries: str = typer.Option("240", "--queries", help="Numbers of queries, "
                                    "comma-separated."),
        attacker: list[str] = typer.Option(None, "--attacker", help="Attackers (repeatable; "
                                           "default all)."),
        target: str = typer.Option(None, "--target", help="http://HOST:PORT of an 'rgaudit "
                                   "serve' API of MODEL: its answers are one more column "
                                   "(served:<defence>), the ART attackers query it live."),
        api_key: str = typer.Option(None, "--api-key", help="API key sent to --target."),
        data: str = typer.Option(None, "--data", help="Data set spec (default: the one the "
                                 "model records; must agree with it)."),
        eps_adv: float = typer.Option(1.0, "--eps-adv", help="L2 budget of transfer attacks "
                                      "(> 0)."),
        epochs: int = typer.Option(100, "--epochs", min=1, max=MAX_EPOCHS,
                                   help="Epochs of MLP/ART clones."),
        sweeps: int = typer.Option(5, "--sweeps", min=1,
                                   help="Max eq. 14 sweeps of the RBM clone (after its CD "
                                   "pretraining on the queries)."),
        seed: int = typer.Option(0, "--seed", callback=check_seed),
        out: Path = typer.Option(..., "--out", help="Output folder (new, empty, or one "
                                 "rgaudit wrote)."),
        force: bool = force_option(),
        executor: ExecutorName | None = typer.Option(
            None, "--executor", help="local or ray: one unit per (defence, budget) cell, kept "
            "in OUT/units for resuming (default: a plain loop)."),
        address: str = typer.Option(None, "--address", help="Ray cluster address."),
    ) -> None:
        """Clone MODEL from (poisoned) answers and measure clones, transfer and utility."""
        from dataclasses import asdict

        from rgaudit.commands.audit import dataset_for_model
        from rgaudit.defence.cloning_attacks import ATTACKERS
        from rgaudit.experiments.cloning import CloningConfig, run_cloning
        from rgaudit.report.cloning_report import markdown, plot_curves
        from rgaudit.report.io import atomic_write_text, write_result

        console = Console()
        eps_values, n_queries = _floats(eps, "--eps"), _ints(queries, "--queries")
        try:  # the config validates; its messages name the options
            settings = CloningConfig(
                defences=tuple(defence), eps=eps_values, norm=norm, n_queries=n_queries,
                attackers=tuple(attacker) if attacker else ATTACKERS, eps_adv=eps_adv,
                mlp_epochs=epochs, layerwise_sweeps=sweeps, seed=seed)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        from rgaudit.outputs import prepare_out

        out = prepare_out(out, kind="clone-attack", force=force)  # before the work
        net, cfg = _load_model(model)
        ds, spec, split_seed, seed_source = dataset_for_model(net, cfg, data)
        served = _served_victim(target, api_key, net) if target else None
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as prog:
            task = prog.add_task("cloning", total=None)
            ex, store = _executor_and_store(executor, address, out, {
                "study": "clone-attack", "model": model,
                "model_sha256": cfg.get("weights_sha256"), "data": spec,
                "settings": asdict(settings)})
            try:
                result = run_cloning(net, ds, settings,
                                     progress=lambda s: prog.update(task, description=s),
                                     executor=ex, store=store, served=served)
            except ValueError as err:
                raise typer.BadParameter(str(err)) from err
            finally:
                if ex is not None:
                    ex.close()
        path = write_result(out / "result.json", "cloning", {
            "model": model, "data": spec, "split_seed": split_seed,
            "split_seed_source": seed_source, **result.to_dict()})
        cmd = _command_line(model, out, {
            "defence": defence, "eps": eps, "norm": norm, "queries": queries,
            "attacker": attacker, "data": data, "epochs": epochs, "sweeps": sweeps,
            "eps_adv": eps_adv, "seed": seed, "target": target})
        atomic_write_text(out / "report.md", markdown(result, cmd))
        plots = plot_curves(result, out)
        console.print(f"wrote {path}, {out / 'report.md'} and {len(plots)} plot(s)")


def _checked_poisoner(net: DeepRBM, eps: float, norm: str, estimator: str) -> RGPoisoner:
    """``protect``'s RG poisoner, tried on one input so that an unusable estimator fails here
    rather than at serving time (a usage error naming ``--estimator mean-field``)."""
    import torch

    from rgaudit.defence.poison import RGPoisoner
    from rgaudit.experiments.cloning import victim_answers

    try:
        poisoner = RGPoisoner(net, eps=eps, norm=norm, kind="simplex", estimator=estimator)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    x0 = torch.full((1, net.widths[0]), 0.5, dtype=torch.float64)
    try:
        poisoner(victim_answers(net, x0), x0, torch.Generator().manual_seed(0))
    except Exception as err:  # noqa: BLE001 - any failure means the config is unusable
        raise typer.BadParameter(
            f"the {estimator!r} estimator cannot poison this model's answers "
            f"({type(err).__name__}: {err}); use --estimator mean-field") from err
    return poisoner


def _executor_and_store(executor: str | None, address: str | None, out: Path,
                        record: dict[str, Any]) -> tuple[Any, Any]:
    """``--executor``'s executor and the unit store in ``out`` (kept for resuming, marked
    with ``record``); ``(None, None)`` for the plain loop."""
    if executor is None:
        return None, None
    from rgaudit.executors import UnitStore, make_executor

    return make_executor(executor, address=address), UnitStore(out, record)


def _command_line(model: str, out: Path, o: dict[str, Any]) -> str:
    """The ``clone-attack`` command line of a run (in its report), from its options ``o``."""
    return (f"rgaudit clone-attack {model} " + " ".join(f"--defence {d}" for d in o["defence"])
            + f" --eps {o['eps']} --norm {o['norm']} --queries {o['queries']}"
            + "".join(f" --attacker {a}" for a in (o["attacker"] or []))
            + (f" --data {o['data']}" if o["data"] is not None else "")
            + f" --epochs {o['epochs']} --sweeps {o['sweeps']} --eps-adv {o['eps_adv']:g}"
            + f" --seed {o['seed']}"
            + f" --out {out}" + (f" --target {o['target']}" if o["target"] else ""))
