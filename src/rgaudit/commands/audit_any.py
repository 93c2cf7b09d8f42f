"""The CLI side of ``rgaudit audit --model PATH`` for models that are not rgaudit folders
(``.pt2``, ``.safetensors`` + ``--factory``, ``.skops``): load, check against the data, run
:func:`rgaudit.experiments.audit_any.run_any_audit`, write the report. Heavy imports inside."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from rgaudit.errors import RGAuditError


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,8,8"`` → ``(1, 8, 8)``; a clear error naming ``--input-shape`` otherwise."""
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise typer.BadParameter(f"expected positive sizes like 1,8,8, got {text!r}",
                                 param_hint="--input-shape")
    return shape


def is_rgaudit_folder(model: Path | None) -> bool:
    return model is None or (model.is_dir() and (model / "config.json").is_file())


def audit_any_model(*, model: Path, data: str | None, factory: str | None,
                    input_shape: str | None, inputs: int, seed: int, device: str, out: Path,
                    console: Any) -> Path:
    """Run the audit of a non-rgaudit model and write its report; returns the run folder."""
    import math

    from rgaudit import __version__
    from rgaudit.data import load_dataset
    from rgaudit.device import resolve_device
    from rgaudit.experiments.audit_any import AnyAuditConfig, run_any_audit
    from rgaudit.models import load_classifier
    from rgaudit.report.any_audit_report import write_any_audit_report
    from rgaudit.report.io import new_run_dir
    from rgaudit.report.progress import rich_progress

    try:
        dev = str(resolve_device(device))
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--device") from err
    spec = (data or "digits").strip()
    if data is None:
        console.print("no --data: auditing on the 'digits' test split (pass --data for yours)")
    try:
        ds = load_dataset(spec, seed=0)
    except RGAuditError as err:
        raise typer.BadParameter(f"cannot load data set {spec!r}: {err}",
                                 param_hint="--data") from err
    shape = parse_shape(input_shape)
    if shape is None and model.suffix.lower() == ".safetensors":
        shape = tuple(ds.shape)
    try:
        clf, cfg = load_classifier(model, device=dev, factory=factory, input_shape=shape)
    except RGAuditError as err:
        raise typer.BadParameter(str(err), param_hint="--model") from err
    if ds.n_features != clf.n_features:
        raise typer.BadParameter(
            f"data {spec!r} has {ds.n_features} features per input (shape {tuple(ds.shape)}) "
            f"but the model takes {clf.n_features} (shape {clf.input_shape})",
            param_hint="--data")
    if ds.n_classes > clf.n_classes:
        raise typer.BadParameter(f"data {spec!r} has {ds.n_classes} classes but the model "
                                 f"outputs {clf.n_classes}", param_hint="--data")
    if tuple(ds.shape) != tuple(clf.input_shape) and math.prod(ds.shape) == clf.n_features:
        console.print(f"note: data images are {tuple(ds.shape)}, the model's inputs "
                      f"{clf.input_shape}; rows are reshaped to the model's shape")
    conf = AnyAuditConfig(n_inputs=inputs, seed=seed)
    with rich_progress(console) as progress:
        result = run_any_audit(clf, ds.X_test, ds.y_test, conf,
                               model_info={"path": str(model), "format": cfg.get("format"),
                                           "image_shape": list(ds.shape)},
                               progress=progress)
    run_dir = new_run_dir(out, "audit")
    header = {"command": " ".join(["rgaudit", *map(shlex.quote, sys.argv[1:])]),
              "model_path": str(model), "format": cfg.get("format"), "dataset": spec,
              "rgaudit_version": __version__, "seed": seed}
    paths = write_any_audit_report(result, run_dir, header)
    console.print(result.verdict.text)
    if not result.diagnosis.available:
        console.print(result.diagnosis.note)
    console.print(f"report: {paths['html']}")
    return run_dir
