"""Load any supported model file or folder as a :class:`~rgaudit.models.base.Classifier`.

Formats (chosen by what ``path`` is; none executes code from the file):

============================  ===============  ==============================================
path                          adapter kind     notes
============================  ===============  ==============================================
folder with ``config.json``   ``deep-rbm``     rgaudit model folder; full MCRG diagnosis
``*.pt2``                     ``torch-export`` ``torch.export`` program, archive checked first
                                               (:mod:`rgaudit.models.pt2`)
``*.safetensors``             ``torch``        state dict + ``factory="package.module:fn"``,
                                               the user's own code (:mod:`.torch_models`)
``*.skops``                   ``sklearn-rbm``  BernoulliRBM stack + LogisticRegression,
                                               converted exactly to a DeepRBM
``*.onnx``                    refused          no gradient-capable ONNX runtime is installed
                                               (see docs/any-model.md)
============================  ===============  ==============================================

Every command that takes a model calls only :func:`load_classifier`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rgaudit.errors import ModelFileError
from rgaudit.models.base import Classifier, RBMClassifier, TorchClassifier

SUPPORTED = ("an rgaudit model folder (config.json + weights.safetensors), a torch.export "
             "program (.pt2), a safetensors state dict (.safetensors) with factory="
             "'package.module:function', or a skops scikit-learn RBM pipeline (.skops)")

ONNX_REFUSAL = (
    "ONNX models are not supported: rgaudit needs the input gradient of the model's output "
    "distribution, and no ONNX runtime with gradients is installed (onnxruntime is absent; "
    "onnx2torch needs torchvision). Export the model from its framework with torch.export "
    "(.pt2) instead. The file was not parsed.")


def _input_shape(cfg: dict[str, Any], n_features: int) -> tuple[int, ...]:
    """The image shape a model config records, else a square if ``n_features`` is one."""
    shape = (cfg.get("dataset") or {}).get("shape")
    if isinstance(shape, list) and shape and math.prod(int(s) for s in shape) == n_features:
        return tuple(int(s) for s in shape)
    side = math.isqrt(n_features)
    return (side, side) if side * side == n_features else (n_features,)


def load_classifier(path: str | os.PathLike, *, device: str = "cpu", factory: str | None = None,
                    input_shape: tuple[int, ...] | None = None) -> tuple[Classifier, dict]:
    """Load the model at ``path`` through the adapter its format needs.

    Parameters
    ----------
    path : str or path-like
        An rgaudit model folder, a ``.pt2``, ``.safetensors`` or ``.skops`` file.
    device : str
        Torch device for the model's parameters.
    factory : str, optional
        ``package.module:function`` building the module of a ``.safetensors`` state dict
        (required for that format, refused for the others).
    input_shape : tuple of int, optional
        Shape of one input; required for ``.safetensors`` (the CLI takes it from the data set),
        checked against a ``.pt2`` program's own.

    Returns
    -------
    classifier : Classifier
    config : dict
        What the adapter knows of the model (for an rgaudit folder, its ``config.json``); always
        has ``"format"``.

    Raises
    ------
    ModelFileError
        ``path`` is not a model any adapter can load, or was refused as unsafe; the message
        says why and lists the supported formats.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if factory is not None and suffix != ".safetensors":
        raise ModelFileError(f"factory={factory!r} applies only to .safetensors state dicts, "
                             f"not to {p}")
    if p.is_dir():
        from rgaudit.nets.io import CONFIG, load_model

        if (p / CONFIG).is_file():
            net, cfg = load_model(p, device=device)
            cfg = {"format": "rgaudit-deeprbm", **cfg}
            return RBMClassifier(net, _input_shape(cfg, int(net.widths[0])), meta=cfg), cfg
    elif suffix == ".onnx":
        raise ModelFileError(f"{p}: {ONNX_REFUSAL}")
    elif not p.exists():
        raise ModelFileError(f"{p} does not exist; supported: {SUPPORTED}")
    elif suffix == ".pt2":
        from rgaudit.models.torch_models import load_pt2_classifier

        clf = load_pt2_classifier(str(p), input_shape=input_shape)
        clf.module.to(device)
        return clf, dict(clf.meta)
    elif suffix == ".safetensors":
        clf = _load_state_dict(p, factory, input_shape)
        clf.module.to(device)
        return clf, dict(clf.meta)
    elif suffix == ".skops":
        from rgaudit.models.sklearn_rbm import load_sklearn_classifier

        sk, cfg = load_sklearn_classifier(str(p), input_shape=input_shape)
        sk.net.to(device)
        return sk, cfg
    raise ModelFileError(f"{p} is not a model rgaudit can load; supported: {SUPPORTED}")


def _load_state_dict(p: Path, factory: str | None, input_shape: tuple[int, ...] | None
                     ) -> TorchClassifier:
    """A ``.safetensors`` state dict into the module the user's ``factory`` builds; both the
    factory and the input shape are required."""
    from rgaudit.models.torch_models import load_safetensors_classifier

    if factory is None:
        raise ModelFileError(f"{p} is a bare state dict: name the code that builds its "
                             "module with --factory package.module:function")
    if input_shape is None:
        raise ModelFileError(f"{p}: the input shape of a state dict is unknown; pass it "
                             "(e.g. --input-shape 1,8,8) or a data set")
    return load_safetensors_classifier(str(p), factory, input_shape=input_shape)
