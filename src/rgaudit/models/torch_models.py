"""PyTorch classifiers: ``torch.export`` programs and safetensors state dicts + a named factory.

Trust model
-----------
- ``.pt2``: the file is data. :mod:`rgaudit.models.pt2` checks the archive so that loading and
  running it cannot execute anything but standard tensor operators.
- safetensors + ``--factory package.module:function``: the *architecture* is the user's own
  importable Python code, named explicitly (rgaudit imports that module and calls the factory
  with no arguments, exactly as the user's own script would); the *weights file* is a
  safetensors file, which holds only tensors and never executes. A state dict that does not
  match the factory's module (missing, unexpected or mis-shaped tensors) is refused.
"""

from __future__ import annotations

import importlib
import math
import re
from typing import Any

import torch
from torch import nn

from rgaudit.errors import ModelFileError
from rgaudit.models.base import TorchClassifier

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class FlatInput(nn.Module):
    """Adapts a module taking ``(n, *input_shape)`` to flat rows ``(n, prod(input_shape))``.

    Parameters
    ----------
    module : nn.Module or callable
    input_shape : tuple of int
    dtype : torch.dtype
        The module's input dtype (inputs are cast to it).
    batch : int or None
        A program exported with a fixed batch size runs in chunks of that size (the last chunk
        padded with zeros and the padding dropped); None when the batch dimension is dynamic.
    """

    def __init__(self, module: Any, input_shape: tuple[int, ...], dtype: torch.dtype,
                 batch: int | None = None) -> None:
        super().__init__()
        self.module = module
        self.input_shape = tuple(int(s) for s in input_shape)
        self.in_dtype = dtype
        self.batch = batch

    def train(self, mode: bool = True) -> FlatInput:
        """Set the mode; an exported program has no train mode (it stays as exported)."""
        self.training = mode
        try:
            self.module.train(mode)
        except NotImplementedError:
            pass
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.reshape(x.shape[0], *self.input_shape).to(self.in_dtype)
        if self.batch is None or z.shape[0] == self.batch:
            return self.module(z)
        outs = []
        for i in range(0, z.shape[0], self.batch):
            c = z[i:i + self.batch]
            m = c.shape[0]
            if m < self.batch:
                c = torch.cat([c, c.new_zeros(self.batch - m, *c.shape[1:])])
            outs.append(self.module(c)[:m])
        return torch.cat(outs)


def _n_classes(module: nn.Module, shape: tuple[int, ...], dtype: torch.dtype, what: str) -> int:
    with torch.no_grad():
        out = module(torch.zeros(1, math.prod(shape), dtype=dtype))
    if out.dim() != 2 or out.shape[1] < 2:
        raise ModelFileError(f"{what} returns shape {tuple(out.shape)} for one input; a "
                             "classifier must return logits of shape (n, n_classes ≥ 2)")
    return int(out.shape[1])


def load_pt2_classifier(path: str, *, input_shape: tuple[int, ...] | None = None,
                        bounds: tuple[float, float] = (0.0, 1.0)) -> TorchClassifier:
    """A ``.pt2`` program (one input tensor → logits) as a :class:`TorchClassifier`.

    ``input_shape`` (one input, no batch dimension) is read from the program; pass it only to
    check it.
    """
    from rgaudit.models.pt2 import load_pt2, user_input_shape

    ep = load_pt2(path)
    shape, dtype = user_input_shape(ep)
    if len(shape) < 2:
        raise ModelFileError(f"{path}: the program's input has shape {shape}; expected a batch "
                             "dimension followed by the input's shape")
    if any(s is None for s in shape[1:]):
        raise ModelFileError(f"{path}: only the batch dimension may be dynamic, got {shape}")
    one = tuple(int(s) for s in shape[1:] if s is not None)
    if input_shape is not None and math.prod(input_shape) != math.prod(one):
        raise ModelFileError(f"{path}: the program takes inputs of shape {one}, not "
                             f"{tuple(input_shape)}")
    batch = shape[0]
    module = FlatInput(ep.module(), one, dtype, batch=batch)
    k = _n_classes(module, one, dtype, f"{path}")
    meta = {"format": "torch.export", "path": str(path), "input_dtype": str(dtype),
            "batch": "dynamic" if batch is None else int(batch)}
    return TorchClassifier(module, one, k, bounds=bounds, kind="torch-export", meta=meta)


def import_factory(spec: str) -> Any:
    """Import the user's ``package.module:function`` (their own code, named explicitly)."""
    if not _FACTORY.match(spec or ""):
        raise ModelFileError(f"--factory must look like 'package.module:function', got {spec!r}")
    mod_name, fn_name = spec.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as err:
        raise ModelFileError(f"cannot import {mod_name!r} for --factory {spec!r}: {err}; make "
                             "sure the module is on PYTHONPATH") from err
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ModelFileError(f"--factory {spec!r}: {mod_name} has no function {fn_name!r}")
    return fn


def load_safetensors_classifier(path: str, factory: str, *, input_shape: tuple[int, ...],
                                bounds: tuple[float, float] = (0.0, 1.0)) -> TorchClassifier:
    """A safetensors state dict loaded strictly into ``factory()``'s module.

    Parameters
    ----------
    path : str
        ``.safetensors`` file.
    factory : str
        ``package.module:function`` returning an ``nn.Module`` (inputs ``(n, *input_shape)``,
        logits ``(n, n_classes)``); called with no arguments.
    input_shape : tuple of int
        Shape of one input (e.g. ``(1, 8, 8)``); from the data set when not given on the CLI.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"cannot read {path} as safetensors: {err}") from err
    module = import_factory(factory)()
    if not isinstance(module, nn.Module):
        raise ModelFileError(f"--factory {factory!r} returned {type(module).__name__}, "
                             "not a torch.nn.Module")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFileError(f"{path} does not match the module of --factory {factory!r}: "
                             f"{err}") from err
    module.eval()
    p = next(iter(module.parameters()), None)
    dtype = p.dtype if p is not None else torch.float32
    flat = FlatInput(module, tuple(input_shape), dtype)
    try:
        k = _n_classes(flat, tuple(input_shape), dtype, f"--factory {factory!r}")
    except RuntimeError as err:
        raise ModelFileError(f"the module of --factory {factory!r} does not accept inputs of "
                             f"shape {tuple(input_shape)}: {err}") from err
    meta = {"format": "safetensors+factory", "path": str(path), "factory": factory}
    return TorchClassifier(flat, tuple(input_shape), k, bounds=bounds, kind="torch", meta=meta)
