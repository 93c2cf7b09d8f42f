"""Output poisoning: return ``y + δy`` instead of the honest output ``y`` (cloning section IV).

:class:`Poisoner` owns the invariants every defence must keep — budget, valid outputs, argmax
preserved on every query (see :mod:`rgaudit.defence.budget`) — and a subclass only proposes a
direction per query (:meth:`Poisoner.directions`). :class:`RGPoisoner` is the paper's defence:
it aims to maximise the Fisher "damage" ``δyᵀ F̃(y) δy`` — ``F̃`` the generation FIM of cloning
eq. 20 at the very output being returned — i.e. to move the generation network's ``q̃_0(x|y)``
(and hence the targets of the layerwise training of cloning eq. 14 a clone would use) as much as
the budget allows. The top eigenvector of ``P F̃ P`` (``P`` the sum-zero projector on the simplex)
is the optimum only per unit of **L2** and only to second order, before the simplex and argmax
constraints bend or stop the step; under an L1 or KL budget, or near a simplex corner, other
directions do more damage. So the RG poison evaluates, per query, a set of candidate directions
(± the top few eigenvectors of ``P F̃ P``, every ``e_i − e_j``, every vertex direction
``e_k − y``, and for a KL budget ± the top generalised eigenvectors of ``F̃ v = λ diag(1/y) v``
on the sum-zero plane), takes the *realised* step of each through the shared
:func:`~rgaudit.defence.budget.poison_step`, and returns the one with the largest realised
``δyᵀ F̃ δy``. It is a best-of-candidates heuristic, not a proven global maximiser.
The baselines live in :mod:`rgaudit.defence.baselines`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rgaudit.defence.budget import KINDS, NORMS, deviation, poison_step, project_direction
from rgaudit.defence.generation_fim import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    generation_fim,
    top_directions,
)
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
        y = self._check(y)
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

    def _check(self, y: Tensor) -> Tensor:
        y = torch.as_tensor(y).to(torch.float64)
        if y.dim() != 2:
            raise ValueError(f"y must have shape (n, m), got {tuple(y.shape)}")
        if self.kind == "simplex" and not torch.allclose(y.sum(-1), torch.ones(len(y),
                                                                              dtype=y.dtype),
                                                         atol=1e-6):
            raise ValueError("kind='simplex' needs rows of y that sum to 1")
        return y

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


def fisher_damage(y: np.ndarray, z: np.ndarray, F: np.ndarray) -> float:
    """``δyᵀ F δy`` with ``δy = z − y``; shapes (m,), (m,), (m, m)."""
    d = np.asarray(z, np.float64) - np.asarray(y, np.float64)
    return float(d @ F @ d)


def candidate_directions(F: np.ndarray, y: np.ndarray, norm: str, kind: str,
                         k_eig: int = 3, n_pairs: int | None = 12,
                         eps: float = 1.0) -> np.ndarray:
    """Candidate directions of the RG poison for one output; shape (c, m), signed.

    ± the top ``k_eig`` eigenvectors of ``P F P`` (L2-optimal), every ``e_i − e_j`` (the vertices
    of the L1 ball on the sum-zero plane), every ``e_k − y`` (vertex directions, the kind MAD
    uses), ``±e_i`` on the box (``kind="unit"``), and for ``norm="kl"`` ± the top ``k_eig``
    generalised eigenvectors of ``F v = λ G v`` with ``G`` the KL metric at ``y``
    (``diag(1/y)`` on the sum-zero plane; ``diag(1/(y(1−y)))`` for unit outputs).
    ``n_pairs`` keeps only that many ``e_i − e_j`` pairs, ranked by the damage of the step
    ``t (e_i − e_j)`` with ``t = min(eps/2, y_j)`` (the room to lower ``y_j``) — a cheap
    pre-filter, since every candidate costs a full :func:`poison_step`; ``None`` keeps all.
    """
    m = y.size
    F = 0.5 * (F + F.T)
    P = np.eye(m) - (np.full((m, m), 1.0 / m) if kind == "simplex" else 0.0)
    k = min(k_eig, m - 1 if kind == "simplex" else m)
    _, U = np.linalg.eigh(P @ F @ P)
    eig = U[:, ::-1][:, :k].T
    cands = [eig, -eig]
    eye = np.eye(m)
    ii, jj = np.nonzero(~np.eye(m, dtype=bool))
    if n_pairs is not None and len(ii) > n_pairs:
        t = np.minimum(0.5 * eps, y[jj])
        score = (np.diag(F)[ii] + np.diag(F)[jj] - 2 * F[ii, jj]) * t * t
        keep = np.argsort(-score, kind="stable")[:n_pairs]
        ii, jj = ii[keep], jj[keep]
    cands.append(eye[ii] - eye[jj])
    cands.append(eye - y[None, :])
    if kind == "unit":
        cands += [eye, -eye]
    if norm == "kl":
        yc = np.clip(y, 1e-12, 1.0)
        g = 1.0 / yc if kind == "simplex" else 1.0 / (yc * np.clip(1.0 - y, 1e-12, 1.0))
        if kind == "simplex":                          # orthonormal basis of the sum-zero plane
            B = np.linalg.svd(P)[0][:, :m - 1]
        else:
            B = eye
        A = B.T @ F @ B
        Gs = B.T @ (g[:, None] * B)
        Lc = np.linalg.cholesky(Gs + 1e-300 * np.eye(len(Gs)))
        Li = np.linalg.inv(Lc)
        _, W = np.linalg.eigh(Li @ A @ Li.T)
        gen = (B @ (Li.T @ W[:, ::-1][:, :k])).T
        cands += [gen, -gen]
    C = np.concatenate(cands)
    C = C[np.all(np.isfinite(C), axis=1) & (np.abs(C).max(axis=1) > 0)]
    return C


class RGPoisoner(Poisoner):
    """The RG poison: per query, the candidate step with the largest realised Fisher damage
    ``δyᵀ F̃(y) δy`` (see the module docstring and :func:`candidate_directions`).

    Parameters
    ----------
    net : DeepRBM
        The defended network (its RBMs define the generation network).
    estimator : {"auto", "mean-field", "exact", "exact-chain", "chain"}, default "auto"
        Generation-FIM estimator (see :mod:`rgaudit.defence.generation_fim`).
    fim_kwargs : dict, optional
        Extra arguments for the estimator (``bases``, ``n_samples``, … for ``chain``).
    eps, norm, kind, keep_margin
        See :class:`Poisoner`.
    batch : int, default 256
        Outputs whose FIMs are computed at once.
    k_eig : int, default 3
        Eigenvectors (and, for KL, generalised eigenvectors) among the candidates.
    n_pairs : int or None, default 12
        ``e_i − e_j`` candidates kept after the cheap pre-filter (``None``: all).
    """

    name = "rg"
    sign_free = False

    def __init__(self, net: DeepRBM, *, eps: float, norm: str = "l1", kind: str = "simplex",
                 estimator: str = DEFAULT_ESTIMATOR, fim_kwargs: dict[str, Any] | None = None,
                 keep_margin: float = 0.1, batch: int = 256, k_eig: int = 3,
                 n_pairs: int | None = 12) -> None:
        super().__init__(eps=eps, norm=norm, kind=kind, keep_margin=keep_margin)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if net.widths[-1] < 2:
            raise ValueError("poisoning needs at least two outputs")
        self.net, self.estimator = net, estimator
        self.fim_kwargs = dict(fim_kwargs or {})
        self.batch = int(batch)
        self.k_eig = int(k_eig)
        self.n_pairs = n_pairs

    def fims(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Generation FIMs ``F̃(y)`` of outputs ``y`` (n, m); shape (n, m, m), float64, CPU."""
        out = []
        kw = dict(self.fim_kwargs)
        if self.estimator == "chain":
            kw.setdefault("generator", generator)
        for start in range(0, len(y), self.batch):
            F = generation_fim(self.net, y[start:start + self.batch].to(self.net.device),
                               self.estimator, **kw)
            out.append(F.detach().to("cpu", torch.float64))
        return torch.cat(out)

    def directions(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Tensor:
        """Top eigenvector of ``P F̃ P`` per output (the L2-optimal direction); (n, m)."""
        _, vecs = top_directions(self.fims(y, generator), self.kind, 1)
        return vecs[..., 0]

    def __call__(self, y: Tensor, x: Tensor | None = None,
                 generator: torch.Generator | None = None) -> PoisonedOutputs:
        y = self._check(y)
        if self.eps == 0:
            return PoisonedOutputs(y, y.clone(), np.zeros(len(y)), ["budget"] * len(y))
        F = self.fims(y, generator).numpy()
        Y = y.detach().cpu().numpy()
        out, scales, limits = Y.copy(), np.zeros(len(Y)), []
        for i in range(len(Y)):
            best, best_info = -1.0, None
            for v in candidate_directions(F[i], Y[i], self.norm, self.kind, self.k_eig,
                                          self.n_pairs, self.eps):
                if not np.any(project_direction(Y[i], v, self.kind)):
                    continue
                z, info = poison_step(Y[i], v, self.eps, self.norm, self.kind,
                                      keep_margin=self.keep_margin, flip=False)
                dmg = fisher_damage(Y[i], z, F[i])
                if dmg > best:
                    best, best_info, out[i] = dmg, info, z
            if best_info is None:
                limits.append("zero-direction")
            else:
                scales[i] = best_info.scale
                limits.append(best_info.limit)
        return PoisonedOutputs(y, torch.from_numpy(out).to(y.device), scales, limits)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "estimator": self.estimator, "k_eig": self.k_eig,
                "n_pairs": self.n_pairs,
                "direction": "best realised δyᵀF̃δy over candidate directions",
                "fim_kwargs": {k: v for k, v in self.fim_kwargs.items() if k != "generator"}}
