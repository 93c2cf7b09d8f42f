"""``rgaudit audit`` (the full audit into a new run folder) and ``rgaudit attack`` (one method)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rgaudit.choices import (
    ATTACK_METHODS,
    FIM_ESTIMATORS,
    AttackMethod,
    AttackNorm,
    ExecutorName,
    FimEstimator,
)
from rgaudit.commands._options import check_device, check_seed, max_memory_option
from rgaudit.errors import RGAuditError

DEFAULT_INPUTS = 20  # = experiments.audit.AuditConfig().n_inputs (not imported: fast --help)


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
    from rgaudit.errors import ResourceError

    try:
        ds = load_dataset(spec, seed=split_seed)
    except ResourceError:
        raise  # a data set recorded in the model that would not fit: exit status 3
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
        from rgaudit.experiments.train_default import ensure_default_model

        if data is not None and data.strip() != "digits":
            raise typer.BadParameter(f"--data {data!r} without --model: the default model is "
                                     "trained on 'digits'; pass --model for other data")
        console.print("no --model: using the default digits model (trained if absent)")
        net, cfg = ensure_default_model()
        net = net.to(dev)
        path = "models/default"
    else:
        from rgaudit.errors import ResourceError

        try:
            net, cfg = load_model(model, device=dev)
        except ResourceError:
            raise  # exit status 3
        except RGAuditError as err:
            raise typer.BadParameter(str(err), param_hint="--model") from err
        path = str(model)
    ds, spec, split_seed, source = dataset_for_model(net, cfg, data)
    info = {"path": path, "dataset": spec, "split_seed": split_seed,
            "split_seed_source": source, "accuracy": cfg.get("accuracy")}
    return net, info, ds


def check_eps(eps: float, norm: str, n_features: int) -> float:
    """Refuse an attack budget beyond the diameter of the input box ``[0, 1]^d``.

    A larger budget is the same attack (every input is clipped to the box) and, in float32,
    an ε near 1e308 overflows to inf and NaN inside the attack.
    """
    diameter = 1.0 if norm == "linf" else math.sqrt(n_features)
    if eps > diameter:
        raise typer.BadParameter(
            f"{eps:g} exceeds the diameter of the input box [0, 1]^{n_features} in {norm} "
            f"({diameter:.4g}); any larger budget reaches every input, so pass at most "
            f"{diameter:.4g}", param_hint="--eps")
    return eps


def register(app: typer.Typer) -> None:
    """Add ``audit`` and ``attack`` to ``app``."""

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

        given = [n for n, v in (("mcrg_samples", mcrg_samples), ("direct_samples",
                 direct_samples), ("judge_samples", judge_samples), ("large_basis",
                 large_basis), ("n_inputs", inputs)) if v is not None]
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
            payload = result.to_dict()
            if attack_study:
                from rgaudit.experiments.attack_study import AttackStudyConfig, run_attack_study

                payload["attack_study"] = run_attack_study(
                    net, ds.X_test, ds.y_test,
                    AttackStudyConfig(n_inputs=max(2, n_inputs), judge_samples=cfg.judge_samples,
                                      judge_seeds=(seed,), seed=seed),
                    model_info=info,
                    progress=lambda s: prog.update(task, description=s)).to_dict()
                started[0] += 1
                prog.update(task, completed=started[0])
            payload["plan"] = plan.to_dict()
            if depth_cfg is not None:
                from rgaudit.experiments.depth import run_depth_study

                payload["depth"] = run_depth_study(ds, depth_cfg, progress=stage).to_dict()
        paths = write_audit_report(payload, run_dir)
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
        console.print(table)
        console.print(f"report: {paths['html']}")
        typer.echo(str(run_dir))

    @app.command("attack")
    def attack(
        model: Path = typer.Argument(..., help="Model folder."),
        method: AttackMethod = typer.Option("fim", "--method", help="|".join(ATTACK_METHODS)),
        eps: float = typer.Option(None, "--eps", min=0.0, help="Budget of the reported flip "
                                  "rate (optional; the minimal ε per input is always searched)."),
        norm: AttackNorm = typer.Option("l2", "--norm", help="l2 or linf."),
        fim: FimEstimator = typer.Option("direct", "--fim", help="FIM estimator for --method fim: "
                                + "|".join(FIM_ESTIMATORS) + " (--method walk: rg-singles "
                                "re-estimates the RG-chain FIM per step, else mean-field)."),
        data: str = typer.Option(None, "--data", help="Data set spec; must match the model's."),
        inputs: int = typer.Option(20, "--inputs", min=1, help="Inputs to attack (correctly "
                                   "classified test inputs, spread over classes)."),
        samples: int = typer.Option(4000, "--samples", min=32, max=100_000_000,
                                    help="Chains per input for FIMs (≥ 32: MCRG needs 16 "
                                    "jackknife blocks of ≥ 2)."),
        judge_samples: int = typer.Option(1000, "--judge-samples", min=1, max=1_000_000,
                                          help="Chains per stochastic judgement (flip test)."),
        eps_max: float = typer.Option(None, "--eps-max", min=0.0, help="Top of the minimal-ε "
                                      "search (default 4 for l2, 0.5 for linf)."),
        bisect_steps: int = typer.Option(10, "--bisect-steps", min=1, max=30,
                                         help="Bisection steps (resolution eps-max/2^steps)."),
        seed: int = typer.Option(0, "--seed", callback=check_seed, help="Seed of the attack's "
                                 "random numbers (not the data split: that is the model's)."),
        out: Path = typer.Option(Path("runs"), "--out", help="Parent of the new run folder."),
        device: str = typer.Option("cpu", "--device", callback=check_device,
                                   help="cpu, cuda, cuda:N or auto."),
    ) -> None:
        """Attack MODEL with one method: per-input minimal flipping ε (judged on the stochastic
        network), the flip rate at --eps, written with the adversarial inputs to a run folder."""
        import numpy as np

        from rgaudit.attacks.base import clip_box, project
        from rgaudit.attacks.evaluate import StochasticJudge
        from rgaudit.experiments.attack_study import _rg_fim, quartiles, search_one
        from rgaudit.experiments.audit import AuditConfig, compute_fims, select_inputs
        from rgaudit.fisher.autograd import mean_field_fim
        from rgaudit.random import torch_generator
        from rgaudit.report.io import new_run_dir, write_result

        if eps is not None and not (math.isfinite(eps) and eps > 0):
            raise typer.BadParameter(f"must be a finite number > 0, got {eps!r} (a budget of 0 "
                                     "cannot flip anything)", param_hint="--eps")
        if eps_max is not None and not (math.isfinite(eps_max) and eps_max > 0):
            raise typer.BadParameter(f"must be a positive finite number, got {eps_max!r}",
                                     param_hint="--eps-max")
        if method in ("ddn", "cw-l2") and norm != "l2":
            raise typer.BadParameter(f"--method {method} is an L2 attack: use --norm l2")
        emax = float(eps_max if eps_max is not None else (4.0 if norm == "l2" else 0.5))
        console = Console()
        net, minfo, ds = _load(model, data, device, console)
        if eps is not None:
            check_eps(eps, norm, net.widths[0])
        run_dir = new_run_dir(out, "attack")  # a fresh, marked folder, made before the work
        judge = StochasticJudge(net, n_samples=judge_samples, seed=seed)
        X = ds.X_test.to(device=net.device, dtype=net.dtype)
        x, y, sel = select_inputs(net, X, ds.y_test.to(net.device), inputs, judge)
        judge = judge.for_inputs(sel.indices)
        F = None
        if method == "fim":
            # only the requested estimator (the direct run also gives ∇P(true|x))
            cfg = AuditConfig(mcrg_samples=samples, direct_samples=samples, seed=seed)
            gen = torch_generator(seed, "fim", device=net.device)
            fims, _, _, _ = compute_fims(net, x, cfg, gen, lambda s: None, only=(fim,))
            F = fims[fim]
        fim_fn = None
        if method == "walk":
            fim_fn = (_rg_fim(net, samples, torch_generator(seed, "walk"))
                      if fim == "rg-singles" else (lambda z: mean_field_fim(net, z)))
        with console.status(f"{method} ({norm}): minimal ε search"):
            s, how = search_one(net, x, y, judge, method, norm, eps_max=emax,
                                steps=bisect_steps, seed=seed, fim=F, fim_fn=fim_fn)
        result: dict[str, Any] = {
            "model": minfo, "method": method, "norm": norm, "fim": fim if method in (
                "fim", "walk") else None, "eps_max": emax, "resolution": s.resolution,
            "judge": {"samples": judge_samples, "seed": seed}, "inputs": sel.to_dict(),
            "labels": y.tolist(),
            "per_input": {"min_eps": s.eps.tolist(), "applied_l2": s.applied_l2.tolist(),
                          "applied_linf": s.applied_linf.tolist(),
                          "clean_correct": s.clean_correct.tolist()},
            "summary": {"nominal": quartiles(s.eps), "applied": quartiles(s.applied(norm))},
            "seconds_per_input": how["seconds"] / x.shape[0], "info": how,
        }
        if eps is not None:
            # flip rate at --eps: the minimal-ε adversarial projected onto the ε-ball
            adv = clip_box(x + project(s.adversarial - x, float(eps), norm))
            flipped = (judge(adv).cpu() != y.cpu())
            result["flip_rate"] = {"eps": eps, "flipped": int(flipped.sum()),
                                   "rate": float(flipped.double().mean())}
        write_result(run_dir / "attack.json", "attack", result)
        np.savez_compressed(run_dir / "adversarial.npz",
                            clean=x.detach().cpu().numpy(), adversarial=s.adversarial.cpu().numpy(),
                            labels=y.cpu().numpy(), indices=np.asarray(sel.indices),
                            min_eps=s.eps.numpy())
        table = Table(title=f"{method} ({norm}): minimal flipping ε per input "
                      f"(bisection resolution {s.resolution:.2g})")
        for col in ("test index", "label", "nominal ε", f"applied {norm}"):
            table.add_column(col)
        for i, idx in enumerate(sel.indices):
            e, a = float(s.eps[i]), float(s.applied(norm)[i])
            table.add_row(str(idx), str(int(y[i])), f"{e:.3g}" if math.isfinite(e) else
                          f"> {emax:g}", f"{a:.3g}" if math.isfinite(a) else "—")
        console.print(table)
        q = result["summary"]["applied"]
        console.print(f"median applied {norm} {q['median']:.3g} [{q['q1']:.3g}, {q['q3']:.3g}]"
                      f", flipped {q['n_flipped']}/{q['n']} within ε_max = {emax:g}")
        if eps is not None:
            fr = result["flip_rate"]
            console.print(f"{method} ({norm}, ε = {eps:g}): flipped {fr['flipped']}"
                          f"/{x.shape[0]} inputs, flip rate {fr['rate']:.3f}")
        typer.echo(str(run_dir))
