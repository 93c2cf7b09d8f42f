"""Baseline output-poisoning defences, each scaled to the same budget as the RG poison.

All of them only propose a direction; :class:`~rgaudit.defence.poison.Poisoner` applies the
budget, keeps outputs valid and the argmax unchanged, so every defence spends the same ``ε``.

- :class:`RandomPoisoner` — isotropic Gaussian direction (in the sum-zero plane on the simplex).
- :class:`ReverseSigmoidPoisoner` — the perturbation of the adversarial-robustness-toolbox's
  ``art.defences.postprocessor.ReverseSigmoid`` (Lee et al. 2019), ``δ = RS_{β,γ}(y) − y``, used
  as a direction and rescaled to the budget. (ART's own output has no budget and may flip the
  argmax; here only its direction is kept.) For ``kind="unit"`` each output unit is treated as
  its own binary prediction, as ART does for one-column outputs.
- :class:`MADPoisoner` — "Maximizing Angular Deviation" of Orekondy, Schiele & Fritz,
  *Prediction Poisoning: Towards Defenses Against DNN Model Stealing Attacks*, ICLR 2020.
  Simplifications (stated): (1) the attacker's surrogate is a randomly initialised one-hidden-
  layer MLP with a softmax head, and only the **last layer's** gradient is used. For the
  cross-entropy loss that gradient is ``−(ỹ − p) ⊗ [h; 1]`` (``p`` the surrogate's softmax,
  ``h`` its features), so the angle between the gradients of ``ỹ`` and ``y`` is the angle between
  ``ỹ − p`` and ``y − p`` and the features cancel; (2) the paper's heuristic solver is kept — the
  target ``ỹ*`` is the simplex vertex ``e_k`` with the largest angular deviation — and the
  returned output is ``y + s (e_k − y)`` with ``s`` set by the shared budget/argmax projector
  (our stand-in for MAD-argmax's constraint and line search).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rgaudit.choices import DEFENCES as DEFENCES
from rgaudit.defence.generation_fim import tangent_projector
from rgaudit.defence.poison import Poisoner
from rgaudit.random import torch_generator

Tensor = torch.Tensor


class RandomPoisoner(Poisoner):
    """Random-direction noise at the same budget (fresh direction per query)."""

    name = "random"

    def directions(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Tensor:
        v = torch.randn(y.shape, generator=generator, dtype=torch.float64)
        return v @ tangent_projector(y.shape[-1], self.kind)


class ReverseSigmoidPoisoner(Poisoner):
    """Direction of ART's reverse-sigmoid perturbation, rescaled to the budget.

    Parameters
    ----------
    beta, gamma : float
        ART's ``ReverseSigmoid`` magnitude and convergence parameters.
    """

    name = "reverse-sigmoid"
    sign_free = False

    def __init__(self, *, eps: float, norm: str = "l1", kind: str = "simplex",
                 beta: float = 1.0, gamma: float = 0.1, keep_margin: float = 0.1) -> None:
        super().__init__(eps=eps, norm=norm, kind=kind, keep_margin=keep_margin)
        from art.defences.postprocessor import ReverseSigmoid

        self.beta, self.gamma = float(beta), float(gamma)
        self._rs = ReverseSigmoid(beta=beta, gamma=gamma)

    def directions(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Tensor:
        Y = y.detach().cpu().double().numpy()
        if self.kind == "simplex":
            Z = self._rs(Y)
        else:
            Z = np.concatenate([self._rs(Y[:, j:j + 1]) for j in range(Y.shape[1])], axis=1)
        return torch.from_numpy(np.asarray(Z, dtype=np.float64) - Y)

    def config(self) -> dict:
        return {**super().config(), "beta": self.beta, "gamma": self.gamma}


class MADPoisoner(Poisoner):
    """MAD-style argmax-preserving poison (simplified, see the module docstring).

    Parameters
    ----------
    n_inputs : int
        Input width of the queries.
    hidden : int, default 64
        Width of the random surrogate.
    seed : int, default 0
        Seed of the surrogate's random initialisation.
    """

    name = "mad"
    sign_free = False

    def __init__(self, *, n_inputs: int, eps: float, norm: str = "l1", kind: str = "simplex",
                 hidden: int = 64, seed: int = 0, keep_margin: float = 0.1) -> None:
        super().__init__(eps=eps, norm=norm, kind=kind, keep_margin=keep_margin)
        self.hidden, self.seed, self.n_inputs = int(hidden), int(seed), int(n_inputs)
        self._gen = torch_generator(self.seed, "mad.surrogate")
        self._W1 = torch.randn(hidden, n_inputs, generator=self._gen, dtype=torch.float64)
        self._W1 /= n_inputs**0.5
        self._b1 = torch.zeros(hidden, dtype=torch.float64)
        self._W2: Tensor | None = None

    def _surrogate_proba(self, x: Tensor, m: int) -> Tensor:
        if self._W2 is None or self._W2.shape[0] != m:
            self._W2 = torch.randn(m, self.hidden, generator=self._gen,
                                   dtype=torch.float64) / self.hidden**0.5
        h = torch.tanh(x.to(torch.float64) @ self._W1.T + self._b1)
        return torch.softmax(h @ self._W2.T, dim=-1)

    def directions(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Tensor:
        if x is None:
            raise ValueError("MAD needs the queries x to evaluate its surrogate's gradient")
        y = y.to(torch.float64).cpu()
        p = self._surrogate_proba(torch.as_tensor(x).cpu(), y.shape[-1])     # (n, m)
        u = nn.functional.normalize(y - p, dim=-1)                           # (n, m)
        eye = torch.eye(y.shape[-1], dtype=torch.float64)
        cand = nn.functional.normalize(eye.unsqueeze(0) - p.unsqueeze(1), dim=-1)  # (n, K, m)
        dev = ((cand - u.unsqueeze(1)) ** 2).sum(-1)                         # (n, K)
        k = dev.argmax(-1)
        return eye[k] - y

    def config(self) -> dict:
        return {**super().config(), "surrogate_hidden": self.hidden, "surrogate_seed": self.seed}


def make_poisoner(name: str, *, eps: float, norm: str, kind: str, net: object = None,
                  n_inputs: int | None = None, **kwargs: object) -> Poisoner:
    """Build a defence by name: ``none``, ``rg``, ``random``, ``reverse-sigmoid`` or ``mad``."""
    from rgaudit.defence.poison import NoDefence, RGPoisoner

    if name == "none":
        return NoDefence(kind=kind, norm=norm)
    if name == "rg":
        if net is None:
            raise ValueError("the rg defence needs the network")
        return RGPoisoner(net, eps=eps, norm=norm, kind=kind, **kwargs)  # type: ignore[arg-type]
    if name == "random":
        return RandomPoisoner(eps=eps, norm=norm, kind=kind)
    if name == "reverse-sigmoid":
        return ReverseSigmoidPoisoner(eps=eps, norm=norm, kind=kind)
    if name == "mad":
        if n_inputs is None:
            raise ValueError("the mad defence needs n_inputs")
        return MADPoisoner(n_inputs=n_inputs, eps=eps, norm=norm, kind=kind)
    raise ValueError(f"unknown defence {name!r}; use none, rg, random, reverse-sigmoid or mad")


