"""The one interface every audited or served model implements.

A :class:`Classifier` is "a classifier whose output distribution and its input gradient we can
compute": ``log_proba`` is differentiable in ``x`` (attacks, input Fisher information),
``answer`` is what a deployed API returns (deterministic), and ``rbm`` gives the RBM-family
network behind it when there is one (the layerwise MCRG diagnosis and the RG poison need it).

Inputs are always flat: ``x`` has shape ``(n, n_features)`` with values in ``bounds``;
``input_shape`` says how a flat row is viewed as an image (e.g. ``(8, 8)`` or ``(1, 28, 28)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from rgaudit.nets.deep_rbm import DeepRBM


@runtime_checkable
class Classifier(Protocol):
    """What rgaudit needs of a model.

    Attributes
    ----------
    kind : str
        Adapter name (``"deep-rbm"``, ``"torch"``, ``"sklearn-rbm"``, ...).
    input_shape : tuple of int
        Shape of one input as an image; ``prod(input_shape) == n_features``.
    n_classes : int
    bounds : tuple of float
        Valid input range ``(lo, hi)``.

    Every attribute is read-only here: a plain attribute or a property satisfies the protocol.
    """

    @property
    def kind(self) -> str: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def n_classes(self) -> int: ...

    @property
    def bounds(self) -> tuple[float, float]: ...

    @property
    def n_features(self) -> int: ...

    @property
    def rbm(self) -> DeepRBM | None: ...

    def log_proba(self, x: Tensor) -> Tensor:
        """Differentiable log class probabilities; ``x`` (n, n_features) -> (n, n_classes)."""
        ...

    def answer(self, x: Tensor) -> Tensor:
        """The deterministic answer a deployed API returns; (n, n_features) -> (n, n_classes),
        float64 rows on the probability simplex."""
        ...


@dataclass
class TorchClassifier:
    """Any ``nn.Module`` mapping flat inputs (n, n_features) to logits (n, n_classes).

    A module that expects image-shaped inputs is wrapped by the adapter that loads it so that
    ``module`` here always takes flat rows.
    """

    module: nn.Module
    input_shape: tuple[int, ...]
    n_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)
    kind: str = "torch"
    meta: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def rbm(self) -> DeepRBM | None:
        return None

    def log_proba(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self.module(x), dim=-1)

    @torch.no_grad()
    def answer(self, x: Tensor) -> Tensor:
        return torch.softmax(self.module(x).to(torch.float64), dim=-1)


@dataclass
class RBMClassifier:
    """A :class:`~rgaudit.nets.deep_rbm.DeepRBM` seen through the :class:`Classifier` interface.

    ``log_proba`` is the mean-field surrogate (the differentiable network attacks use);
    ``answer`` is the API's answer of the cloning study: normalised sigmoids of the mean-field
    top logits (``experiments.cloning.victim_answers``).
    """

    net: DeepRBM
    input_shape: tuple[int, ...]
    kind: str = "deep-rbm"
    bounds: tuple[float, float] = (0.0, 1.0)
    meta: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return int(self.net.widths[-1])

    @property
    def n_features(self) -> int:
        return int(self.net.widths[0])

    @property
    def rbm(self) -> DeepRBM | None:
        return self.net

    def log_proba(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self.net.mean_field_logits(x), dim=-1)

    @torch.no_grad()
    def answer(self, x: Tensor) -> Tensor:
        p = torch.sigmoid(self.net.mean_field_logits(x.to(self.net.device)).to(torch.float64))
        return (p / p.sum(-1, keepdim=True)).cpu()
