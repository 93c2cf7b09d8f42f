"""The default model every study starts from: load it if present and valid, else train it."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from rgaudit.data import load_dataset
from rgaudit.errors import ModelFileError
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import load_model, read_config, save_model
from rgaudit.train.pipeline import TrainConfig, train_default
from rgaudit.train.progress import Progress, no_progress

log = logging.getLogger(__name__)

DEFAULT_PATH = "models/default"
DEFAULT_DATA = "digits"
#: Marker in config.json of a model that :func:`ensure_default_model` trained (and may replace).
MADE_BY = "ensure_default_model"


def train_and_save(path: str | os.PathLike, *, data: str = DEFAULT_DATA,
                   config: TrainConfig | None = None,
                   progress: Progress | None = None,
                   made_by: str | None = None) -> tuple[DeepRBM, dict[str, Any]]:
    """Train on ``data`` with ``config`` and save to ``path``.

    ``made_by`` is recorded in the config (``ensure_default_model`` marks its own models so it
    never replaces anything else).

    Returns
    -------
    net : DeepRBM
    config : dict
        The saved ``config.json`` as :func:`~rgaudit.nets.io.load_model` returns it.
    """
    config = config or TrainConfig()
    dataset = load_dataset(data)
    net, report = train_default(dataset, config, progress=progress or no_progress)
    extra = {"made_by": made_by} if made_by else {}
    save_model(net, path, metadata={**report, "dataset_spec": data, **extra})
    return load_model(path, device=net.device)


def _mismatch(cfg: dict[str, Any], data: str, config: TrainConfig) -> str | None:
    """Why a saved model is not the one requested (None if it is)."""
    if cfg.get("dataset_spec") != data:
        return f"dataset {cfg.get('dataset_spec')!r} instead of {data!r}"
    if cfg.get("seed") != config.seed:
        return f"seed {cfg.get('seed')!r} instead of {config.seed}"
    if cfg.get("training") != json.loads(json.dumps(config.to_dict())):
        return "other training settings"
    if "accuracy" not in cfg:
        return "no recorded accuracy"
    return None


def ensure_default_model(path: str | os.PathLike = DEFAULT_PATH, seed: int = 0,
                         progress: Progress | None = None, *, data: str = DEFAULT_DATA,
                         config: TrainConfig | None = None) -> tuple[DeepRBM, dict[str, Any]]:
    """Return the default trained network, training and saving it when needed.

    The folder at ``path`` is a cache: if it holds a valid model (hash, tensors and shapes
    check out) trained on ``data`` with exactly the requested settings (``config`` or the
    :class:`TrainConfig` defaults, with ``seed``), it is loaded; otherwise (missing, corrupted,
    other data, seed or settings) the model is trained and saved there. It replaces only a model
    it wrote itself (marked ``made_by`` in its config): any other folder or model at ``path``
    raises :class:`~rgaudit.errors.ModelFileError` instead of being overwritten. So
    ``ensure_default_model(seed=0)`` always yields the same network and never destroys user data.

    Parameters
    ----------
    path : path-like, default "models/default"
    seed : int, default 0
    progress : callable, optional
        ``progress(stage, done, total, **info)`` while training.
    data : str, default "digits"
        Data set spec (see :func:`rgaudit.data.load_dataset`).
    config : TrainConfig, optional
        Training settings when a model must be trained (its ``seed`` is replaced by ``seed``).

    Returns
    -------
    net : DeepRBM
    config : dict
        The model's ``config.json`` (widths, dataset, seed, accuracies, training settings).
    """
    path = Path(path)
    config = replace(config or TrainConfig(), seed=int(seed))
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        try:
            saved = read_config(path)
        except ModelFileError as err:
            raise ModelFileError(
                f"{path} exists but is not a model the default trainer wrote ({err}); "
                "rgaudit does not overwrite it: move it away, or audit a model with --model"
            ) from err
        why: str | None
        try:
            net, cfg = load_model(path)
            why = _mismatch(cfg, data, config)
        except ModelFileError as err:
            why = str(err)
        if why is None:
            return net, cfg
        if saved.get("made_by") != MADE_BY:
            raise ModelFileError(
                f"{path} holds a model that the default trainer did not write ({why}); "
                f"rgaudit does not overwrite it: audit it with --model {path}, or move it away "
                "to get the default model")
        log.warning("retraining the default model: %s: %s", path, why)
    return train_and_save(path, data=data, config=config, progress=progress, made_by=MADE_BY)
