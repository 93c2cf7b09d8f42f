"""``rgaudit audit`` (the full audit into a new run folder) and ``rgaudit attack`` (one method)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rgaudit.errors import RGAuditError

METHODS = ("fim", "fgm", "pgd", "deepfool", "random")
FIM_ESTIMATORS = ("direct", "rg-singles", "rg-large", "mean-field")  # = experiments.audit


def data_for_model(cfg: dict[str, Any], data: str | None) -> tuple[str, int, str]:
    """The data spec and train/test split seed the model was trained on.

    The split seed is taken from the model's ``config.json`` (``dataset.split_seed``), never
    from the audit's ``--seed``: another split would put the model's training images among the
    "test" inputs. ``data`` (the user's ``--data``, or None) must agree with the recorded spec.

    Returns
    -------
    spec : str
    split_seed : int
    source : str
        Where the split seed came from (``"model config"`` or ``"default 0 (model records
        none)"``).

    Raises
    ------
    typer.BadParameter
        ``data`` disagrees with the data set the model records.
    """
    recorded = cfg.get("dataset_spec")
    ds_info = cfg.get("dataset") or {}
    if recorded is None and ds_info.get("name") is not None:
        recorded = ds_info.get("name")
    if data is not None and recorded is not None and str(data).strip() != str(recorded):
        raise typer.BadParameter(
            f"--data {data!r} disagrees with the model, which was trained on {recorded!r}; "
            "pass the model's data set (or leave --data out)")
    spec = str(data if data is not None else (recorded or "digits")).strip()
    if "split_seed" in ds_info:
        return spec, int(ds_info["split_seed"]), "model config"
    return spec, 0, "default 0 (model records none)"



def dataset_for_model(net: Any, cfg: dict[str, Any], data: str | None) -> tuple[Any, str, int, str]:
    """Load the data set the model was trained on (see :func:`data_for_model`) and check it fits.

    Returns
    -------
    dataset : rgaudit.data.Dataset
    spec, split_seed, source
        As :func:`data_for_model`.

    Raises
    ------
    typer.BadParameter
        The data set disagrees with the model, cannot be loaded, or has the wrong width.
    """
    from rgaudit.data import load_dataset

    spec, split_seed, source = data_for_model(cfg, data)
    try:
        ds = load_dataset(spec, seed=split_seed)
    except RGAuditError as err:
        raise typer.BadParameter(f"cannot load data set {spec!r}: {err}",
                                 param_hint="--data") from err
    if ds.X_test.shape[1] != net.widths[0]:
        raise typer.BadParameter(f"data {spec!r} has {ds.X_test.shape[1]} features but the "
                                 f"model expects {net.widths[0]}", param_hint="--data")
    return ds, spec, split_seed, source


def _load(model: Path | None, data: str | None, device: str, console: Console
          ) -> tuple[Any, dict[str, Any], Any]:
    """Load (or, with no --model, train the default) network and its test data.

    The data set and its train/test split come from the model's config (see
    :func:`data_for_model`); the audit's ``--seed`` does not touch the split.
    """
    from rgaudit.device import resolve_device
    from rgaudit.nets.io import load_model

    try:
        dev = resolve_device(device)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--device") from err
    if model is None:
        try:
            from rgaudit.experiments.train_default import ensure_default_model
        except ImportError as err:
            raise typer.BadParameter("no --model given and the default-model trainer is not "
                                     "available in this install") from err
        if data is not None and data.strip() != "digits":
            raise typer.BadParameter(f"--data {data!r} without --model: the default model is "
                                     "trained on 'digits'; pass --model for other data")
        console.print("no --model: using the default digits model (trained if absent)")
        net, cfg = ensure_default_model()
        net = net.to(dev)
        path = "models/default"
    else:
        try:
            net, cfg = load_model(model, device=dev)
        except RGAuditError as err:
            raise typer.BadParameter(str(err), param_hint="--model") from err
        path = str(model)
    ds, spec, split_seed, source = dataset_for_model(net, cfg, data)
    info = {"path": path, "dataset": spec, "split_seed": split_seed,
            "split_seed_source": source, "accuracy": cfg.get("accuracy")}
    return net, info, ds


def check_basis(spec: str) -> str:
    """Syntax-check an operator basis spec (``singles``, ``pairs:K``, ``order:M``…) up front."""
    import torch

    from rgaudit.rg.operators import parse_basis

    pilot = (torch.rand(8, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    try:
        # a toy layer of 4 units: the spec's syntax and numbers, not its size, are checked
        parse_basis(spec, 4, pilot=pilot)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--large-basis") from err
    return spec.strip()


def register(app: typer.Typer) -> None:
    """Add ``audit`` and ``attack`` to ``app``."""

    @app.command("audit")
    def audit(
        model: Path = typer.Option(None, "--model", help="Model folder (default: train/load "
                                   "models/default)."),
        data: str = typer.Option(None, "--data", help="Data set spec (rgaudit.data); default "
                                 "and required match: the model's own (its split seed too)."),
        inputs: int = typer.Option(20, "--inputs", min=1, help="Inputs to attack."),
        seed: int = typer.Option(0, "--seed", help="Seed of the audit's random numbers (not "
                                 "the data split: that is the model's)."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
        out: Path = typer.Option(Path("runs"), "--out", help="Parent of the new run folder."),
        mcrg_samples: int = typer.Option(None, "--mcrg-samples", min=32,
                                         help="MCRG chains per input (≥ 32: 16 jackknife "
                                         "blocks of ≥ 2)."),
        direct_samples: int = typer.Option(None, "--direct-samples", min=16,
                                           help="Direct-FIM chains per input (≥ 16, one per "
                                           "jackknife block)."),
        judge_samples: int = typer.Option(None, "--judge-samples", min=1,
                                          help="Chains per stochastic judgement."),
        large_basis: str = typer.Option(None, "--large-basis", help="e.g. pairs:64, order:2."),
        depth: bool = typer.Option(True, "--depth/--no-depth",
                                   help="Also run the depth study (depth 2–6, fast training)."),
        max_memory: float = typer.Option(None, "--max-memory", min=0.1, help="Memory budget "
                                         "in GiB (default 80% of the memory available now)."),
    ) -> None:
        """Audit a DeepRBM: MCRG diagnosis, input FIMs, FIM attacks vs standard attacks."""
        from rgaudit.experiments.audit import AuditConfig, run_audit
        from rgaudit.report.audit_report import write_audit_report
        from rgaudit.report.io import new_run_dir

        if large_basis is not None:
            large_basis = check_basis(large_basis)
        console = Console()
        net, info, ds = _load(model, data, device, console)
        cfg = AuditConfig(n_inputs=inputs, seed=seed)
        for name, val in (("mcrg_samples", mcrg_samples), ("direct_samples", direct_samples),
                          ("judge_samples", judge_samples), ("large_basis", large_basis)):
            if val is not None:
                setattr(cfg, name, val)
        from rgaudit.experiments.audit_plan import plan_audit  # sizes that fit, or refuse

        given = [n for n, v in (("mcrg_samples", mcrg_samples), ("direct_samples",
                 direct_samples), ("judge_samples", judge_samples), ("large_basis",
                 large_basis), ("n_inputs", None if inputs == 20 else inputs)) if v is not None]
        plan = plan_audit(net.widths, cfg, fixed=given, depth_study=depth, memory_limit=None
                          if max_memory is None else int(max_memory * 2**30))
        console.print(plan.summary())
        cfg = plan.config
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as prog:
            task = prog.add_task("audit", total=None)
            result = run_audit(net, ds.X_test, ds.y_test, cfg, model_info=info,
                               progress=lambda s: prog.update(task, description=s))
            payload = result.to_dict()
            payload["plan"] = plan.to_dict()
            if depth:
                from rgaudit.experiments.depth import DepthConfig, run_depth_study

                payload["depth"] = run_depth_study(
                    ds, DepthConfig(seed=seed, n_inputs=plan.depth_inputs),
                    progress=lambda s: prog.update(task, description=s)).to_dict()
        run_dir = new_run_dir(out, "audit")
        paths = write_audit_report(payload, run_dir)
        table = Table(title="minimal flipping ε (L2): nominal and applied (after clipping) "
                      "median [q1, q3]")
        for col in ("method", "nominal", "applied", "flipped"):
            table.add_column(col)
        for name, r in result.attacks["l2"].items():
            s, a = r["min_eps_summary"], r["min_eps_actual_summary"]
            table.add_row(name + (" (along ε_max dir.)" if name == "pgd" else ""),
                          f"{s['median']:.3g} [{s['q1']:.3g}, {s['q3']:.3g}]",
                          f"{a['median']:.3g} [{a['q1']:.3g}, {a['q3']:.3g}]",
                          f"{s['n_flipped']}/{s['n']}")
        console.print(table)
        console.print(f"report: {paths['html']}")
        typer.echo(str(run_dir))

    @app.command("attack")
    def attack(
        model: Path = typer.Argument(..., help="Model folder."),
        method: str = typer.Option("fim", "--method", help="|".join(METHODS)),
        eps: float = typer.Option(..., "--eps", min=0.0, help="Budget."),
        norm: str = typer.Option("l2", "--norm", help="l2 or linf."),
        fim: str = typer.Option("direct", "--fim", help="FIM estimator for --method fim: "
                                + "|".join(FIM_ESTIMATORS)),
        data: str = typer.Option(None, "--data", help="Data set spec; must match the model's."),
        inputs: int = typer.Option(20, "--inputs", min=1, help="Inputs to attack (correctly "
                                   "classified test inputs, spread over classes)."),
        samples: int = typer.Option(4000, "--samples", min=32, help="Chains per input for "
                                    "FIMs (≥ 32: MCRG needs 16 jackknife blocks of ≥ 2)."),
        judge_samples: int = typer.Option(1000, "--judge-samples", min=1,
                                          help="Chains per stochastic judgement (flip test)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the attack's random numbers (not "
                                 "the data split: that is the model's)."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    ) -> None:
        """Attack MODEL with one method at budget --eps; print the flip rate (stochastic net)."""
        import torch

        from rgaudit.attacks.evaluate import StochasticJudge
        from rgaudit.experiments.audit import AuditConfig, compute_fims, make_attacks, select_inputs

        if not math.isfinite(eps):
            raise typer.BadParameter(f"--eps must be a finite number, got {eps!r}")
        if method not in METHODS:
            raise typer.BadParameter(f"--method must be one of {METHODS}, got {method!r}")
        if norm not in ("l2", "linf"):
            raise typer.BadParameter(f"--norm must be l2 or linf, got {norm!r}")
        if fim not in FIM_ESTIMATORS:
            raise typer.BadParameter(f"--fim must be one of {FIM_ESTIMATORS}, got {fim!r}")
        console = Console()
        net, _, ds = _load(model, data, device, console)
        judge = StochasticJudge(net, n_samples=judge_samples, seed=seed + 1)
        X = ds.X_test.to(device=net.device, dtype=net.dtype)
        x, y, sel = select_inputs(net, X, ds.y_test.to(net.device), inputs, judge)
        judge = judge.for_inputs(sel["indices"])
        fims: dict[str, Any] = {}
        grad = torch.zeros_like(x)
        if method == "fim":
            # only the requested estimator (the direct run also gives ∇P(true|x) for the sign)
            cfg = AuditConfig(mcrg_samples=samples, direct_samples=samples, seed=seed)
            gen = torch.Generator(device=net.device).manual_seed(seed)
            fims, _, dfim, _ = compute_fims(net, x, cfg, gen, lambda s: None, only=(fim,))
            grad = dfim.unit_prob_grad(y)
        (atk,) = make_attacks(net, x, norm, fims=fims, grad_true=grad, seed=seed,
                              pgd_iter=AuditConfig().pgd_iter, methods=(method,))
        res = atk(x, y, epsilons=[eps], judge=judge)
        rate = float(res.flip_rate[0])
        console.print(f"{atk.name} ({norm}, ε = {eps:g}): flipped {int(res.success.sum())}"
                      f"/{x.shape[0]} inputs, flip rate {rate:.3f}")
