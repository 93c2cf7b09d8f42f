"""CLI plumbing shared by the commands that take an rgaudit model folder (``audit``,
``attack``, ``diagnose``, ``protect``/``clone-attack``): load the model (or the default one) and
the data set it was trained on, with its own train/test split. Heavy imports inside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from rgaudit.errors import RGAuditError


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


def load_model_and_data(model: Path | None, data: str | None, device: str, console: Console
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
