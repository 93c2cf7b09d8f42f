"""Output poisoning: return ``y + δy`` instead of the honest output ``y`` (cloning section IV).

:class:`Poisoner` owns the invariants every defence must keep — budget, valid outputs, argmax
preserved on every query (see :mod:`rgaudit.defence.budget`) — and a subclass only proposes a
direction per query (:meth:`Poisoner.directions`). :class:`RGPoisoner` is the paper's defence:
``δy`` along the top eigenvector of the generation FIM ``F̃(y)`` of cloning eq. 20 at the very
output being returned (restricted to the sum-zero plane when outputs are probability vectors),
the perturbation of ``y`` that moves the generation network's ``q̃_0(x|y)`` the most per unit of
budget — and hence the targets of the layerwise training of cloning eq. 14 a clone would use.
The baselines live in :mod:`rgaudit.defence.baselines`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rgaudit.defence.budget import KINDS, NORMS, deviation, poison_step
from rgaudit.defence.generation_fim import ESTIMATORS, generation_fim, top_directions
from rgaudit.nets.deep_rbm import DeepRBM

Tensor = torch.Tensor


@dataclass(frozen=True)
class PoisonedOutputs:
    """The answers returned under a defence.

    Attributes
    ----------
    y : Tensor of shape (n, m)
        Honest outputs.
    y_poisoned : Tensor of shape (n, m)
        Returned outputs ``y + δy``.
    scales : ndarray of shape (n,)
        Step length per query (0 where nothing could be moved).
    limits : list of str
        What limited each step (``budget``, ``domain``, ``argmax``, ``tie``, ``zero-direction``).
    """

    y: Tensor
    y_poisoned: Tensor
    scales: np.ndarray
    limits: list[str]

    def deviations(self, norm: str, kind: str) -> np.ndarray:
        """Per-query size of ``δy`` in ``norm``; shape (n,)."""
        y = self.y.detach().cpu().double().numpy()
        z = self.y_poisoned.detach().cpu().double().numpy()
        return np.array([deviation(a, b, norm, kind) for a, b in zip(y, z, strict=True)])


class Poisoner(ABC):
    """Base class of output-poisoning defences.

    Parameters
    ----------
    eps : float
        Budget per query, in ``norm``.
    norm : {"l1", "l2", "kl"}
    kind : {"unit", "simplex"}
        Output domain: independent probabilities in [0, 1] or a probability vector.
    keep_margin : float, default 0.1
        Fraction of every top-vs-other gap kept (argmax safety).
    """

    name: str = "poisoner"
    #: Whether the sign of a proposed direction is arbitrary (eigenvectors, random noise).
    sign_free: bool = True

    def __init__(self, *, eps: float, norm: str = "l1", kind: str = "simplex",
                 keep_margin: float = 0.1) -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not (eps >= 0 and np.isfinite(eps)):
            raise ValueError(f"eps must be finite and non-negative, got {eps}")
        self.eps, self.norm, self.kind, self.keep_margin = float(eps), norm, kind, keep_margin

    @abstractmethod
    def directions(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Tensor:
        """Proposed directions, shape (n, m), for outputs ``y`` (n, m) of inputs ``x``."""

    def __call__(self, y: Tensor, x: Tensor | None = None,
                 generator: torch.Generator | None = None) -> PoisonedOutputs:
        """Poison a batch of outputs.

        Parameters
        ----------
        y : Tensor of shape (n, m)
            Honest outputs (in [0, 1]; rows summing to 1 when ``kind="simplex"``).
        x : Tensor of shape (n, n_0), optional
            The queries (needed by input-dependent defences such as MAD).
        generator : torch.Generator, optional
            Randomness of randomised defences.

        Returns
        -------
        PoisonedOutputs
        """
        y = torch.as_tensor(y).to(torch.float64)
        if y.dim() != 2:
            raise ValueError(f"y must have shape (n, m), got {tuple(y.shape)}")
        if self.kind == "simplex" and not torch.allclose(y.sum(-1), torch.ones(len(y),
                                                                              dtype=y.dtype),
                                                         atol=1e-6):
            raise ValueError("kind='simplex' needs rows of y that sum to 1")
        if self.eps == 0:
            return PoisonedOutputs(y, y.clone(), np.zeros(len(y)), ["budget"] * len(y))
        V = self.directions(y, x, generator).detach().to("cpu", torch.float64).numpy()
        Y = y.detach().cpu().numpy()
        out, scales, limits = np.empty_like(Y), np.zeros(len(Y)), []
        for i in range(len(Y)):
            out[i], info = poison_step(Y[i], V[i], self.eps, self.norm, self.kind,
                                       keep_margin=self.keep_margin, flip=self.sign_free)
            scales[i] = info.scale
            limits.append(info.limit)
        return PoisonedOutputs(y, torch.from_numpy(out).to(y.device), scales, limits)

    def config(self) -> dict[str, Any]:
        """Plain-data description (for the poisoning config JSON)."""
        return {"defence": self.name, "eps": self.eps, "norm": self.norm,
                "output_domain": self.kind, "keep_margin": self.keep_margin}


class NoDefence(Poisoner):
    """Return the honest outputs (``eps`` is ignored)."""

    name = "none"

    def __init__(self, *, kind: str = "simplex", norm: str = "l1", eps: float = 0.0,
                 keep_margin: float = 0.1) -> None:
        super().__init__(eps=0.0, norm=norm, kind=kind, keep_margin=keep_margin)

    def directions(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Tensor:
        return torch.zeros_like(y)


class RGPoisoner(Poisoner):
    """The RG poison: ``δy`` along the top eigenvector of the generation FIM at ``y``.

    Parameters
    ----------
    net : DeepRBM
        The defended network (its RBMs define the generation network).
    estimator : {"mean-field", "exact", "exact-chain", "chain"}, default "mean-field"
        Generation-FIM estimator (see :mod:`rgaudit.defence.generation_fim`).
    fim_kwargs : dict, optional
        Extra arguments for the estimator (``bases``, ``n_samples``, … for ``chain``).
    eps, norm, kind, keep_margin
        See :class:`Poisoner`.
    batch : int, default 256
        Outputs whose FIMs are computed at once.
    """

    name = "rg"

    def __init__(self, net: DeepRBM, *, eps: float, norm: str = "l1", kind: str = "simplex",
                 estimator: str = "mean-field", fim_kwargs: dict[str, Any] | None = None,
                 keep_margin: float = 0.1, batch: int = 256) -> None:
        super().__init__(eps=eps, norm=norm, kind=kind, keep_margin=keep_margin)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if net.widths[-1] < 2:
            raise ValueError("poisoning needs at least two outputs")
        self.net, self.estimator = net, estimator
        self.fim_kwargs = dict(fim_kwargs or {})
        self.batch = int(batch)

    def directions(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Tensor:
        out = []
        kw = dict(self.fim_kwargs)
        if self.estimator == "chain":
            kw.setdefault("generator", generator)
        for start in range(0, len(y), self.batch):
            F = generation_fim(self.net, y[start:start + self.batch].to(self.net.device),
                               self.estimator, **kw)
            _, vecs = top_directions(F, self.kind, 1)
            out.append(vecs[..., 0].cpu())
        return torch.cat(out)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "estimator": self.estimator,
                "fim_kwargs": {k: v for k, v in self.fim_kwargs.items() if k != "generator"}}
