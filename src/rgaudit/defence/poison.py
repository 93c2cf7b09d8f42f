"""Output poisoning: return ``y + δy`` instead of the honest output ``y`` (cloning section IV).

:class:`Poisoner` owns the invariants every defence must keep — budget, valid outputs, argmax
preserved on every query (see :mod:`rgaudit.defence.budget`) — in one final ``__call__``; a subclass
only proposes directions (:meth:`Poisoner.directions`, or several candidates per query through the
:meth:`Poisoner.candidates` / :meth:`Poisoner.score` hooks). :class:`RGPoisoner` is the paper's
defence: it aims to maximise the Fisher "damage" ``δyᵀ F̃(y) δy`` — ``F̃`` the generation FIM of
cloning eq. 20 at the very output being returned — i.e. to move the generation network's
``q̃_0(x|y)`` (and hence the targets of the layerwise training of cloning eq. 14 a clone would use)
as much as the budget allows. The top eigenvector of ``P F̃ P`` (``P`` the sum-zero projector on the
simplex) is the optimum only per unit of **L2** and only to second order, before the simplex and
argmax constraints bend or stop the step; under an L1 or KL budget, or near a simplex corner, other
directions do more damage. So the RG poison evaluates, per query, a set of candidate directions (±
the top few eigenvectors of ``P F̃ P``, every ``e_i − e_j``, every vertex direction ``e_k − y``, and
for a KL budget ± the top generalised eigenvectors of ``F̃ v = λ diag(1/y) v`` on the sum-zero
plane), takes the *realised* step of each through the shared
:func:`~rgaudit.defence.budget.poison_steps` (all candidates of a whole batch at once), and returns
the one with the largest realised ``δyᵀ F̃ δy``. It is a best-of-candidates heuristic, not a proven
global maximiser.
The baselines live in :mod:`rgaudit.defence.baselines`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, final

import numpy as np
import torch

from rgaudit.defence.budget import (
    KINDS,
    LIMITS,
    NORMS,
    Norm,
    OutputKind,
    deviation,
    deviations,
    poison_steps,
)
from rgaudit.defence.generation_fim import (
    DEFAULT_CHAIN_SEED,
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    generation_fim,
    meanfield_fim_from_weights,
    meanfield_weights,
    resolve_estimator,
    top_directions,
)
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.random import child_seed

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

    def deviations(self, norm: Norm, kind: OutputKind) -> np.ndarray:
        """Per-query size of ``δy`` in ``norm``; shape (n,)."""
        y = self.y.detach().cpu().double().numpy()
        z = self.y_poisoned.detach().cpu().double().numpy()
        return np.array([deviation(a, b, norm, kind) for a, b in zip(y, z, strict=True)])


@dataclass(frozen=True)
class Candidates:
    """Candidate directions a defence proposes for a batch of outputs.

    Attributes
    ----------
    V : ndarray of shape (n, c, m)
        Directions (any finite scale; rows where ``valid`` is False are ignored).
    valid : ndarray of bool of shape (n, c)
    context : object
        Whatever :meth:`Poisoner.score` needs (the RG poison: the FIMs).
    """

    V: np.ndarray
    valid: np.ndarray
    context: Any = None


class Poisoner(ABC):
    """Base class of output-poisoning defences.

    ``__call__`` is final (a subclass that overrides it is rejected at class creation): every
    defence goes through the one shared loop — :meth:`candidates` proposes ``c`` directions per
    output, :func:`~rgaudit.defence.budget.poison_steps` steps along all of them at once under
    the budget/validity/argmax rules, :meth:`score` rates the realised steps, and the best usable
    candidate per output is returned. A single-direction defence only implements
    :meth:`directions`.

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
    #: Step search of :func:`~rgaudit.defence.budget.poison_steps`: ``"compiled"`` (numba, the
    #: default) or ``"numpy"`` (the batched NumPy search; same answers, for tests).
    engine: str = "compiled"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Poisoner.__call__, which is final: "
                            "implement directions() or candidates()/score() instead")

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

    def candidates(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Candidates:
        """Hook: candidate directions per output; default one, :meth:`directions`."""
        V = self.directions(y, x, generator).detach().to("cpu", torch.float64).numpy()
        return Candidates(V[:, None, :], np.ones((len(V), 1), dtype=bool))

    def score(self, Y: np.ndarray, Z: np.ndarray, context: Any) -> np.ndarray:
        """Hook: how good each realised step is, shape (n, c), for outputs ``Y`` (n, m) and
        steps ``Z`` (n, c, m); the largest wins (first on ties). Default: the realised
        deviation in the budget's norm."""
        return deviations(Y[:, None, :], Z, self.norm, self.kind)

    @final
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
        n = len(y)
        if self.eps == 0 or n == 0:
            return PoisonedOutputs(y, y.clone(), np.zeros(n), ["budget"] * n)
        cand = self.candidates(y, x, generator)
        Y = y.detach().cpu().numpy()
        V = np.where(cand.valid[..., None], cand.V, 0.0)
        st = poison_steps(Y, V, self.eps, self.norm, self.kind, keep_margin=self.keep_margin,
                          flip=self.sign_free, engine=self.engine)
        usable = cand.valid & st.movable
        if V.shape[1] == 1:
            pick = np.zeros(n, dtype=np.int64)
        else:
            s = np.where(usable, self.score(Y, st.z, cand.context), -np.inf)
            pick = np.argmax(s, axis=1)
        r = np.arange(n)
        got = usable[r, pick]
        out = np.where(got[:, None], st.z[r, pick], Y)
        scales = np.where(got, st.scale[r, pick], 0.0)
        codes = np.where(got, st.limit[r, pick],
                         np.where(st.tie, LIMITS.index("tie"), LIMITS.index("zero-direction")))
        return PoisonedOutputs(y, torch.from_numpy(out).to(y.device), scales,
                               [LIMITS[int(c)] for c in codes])

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


def fisher_damages(Y: np.ndarray, Z: np.ndarray, F: np.ndarray) -> np.ndarray:
    """``δyᵀ F δy`` per candidate, ``δy = Z − Y``; shapes (n, m), (n, c, m), (n, m, m) -> (n, c)."""
    D = Z - Y[:, None, :]
    return ((D @ F) * D).sum(-1)


@lru_cache(maxsize=32)
def _candidate_constants(m: int, kind: str) -> tuple[np.ndarray, ...]:
    """Per output size: the tangent projector ``P``, the identity, the ordered pairs
    ``(i, j), i ≠ j``, their directions ``e_i − e_j`` and an orthonormal basis ``B`` of the
    tangent plane (read-only; built once)."""
    P = np.eye(m) - (np.full((m, m), 1.0 / m) if kind == "simplex" else 0.0)
    eye = np.eye(m)
    ii, jj = np.nonzero(~np.eye(m, dtype=bool))
    B = np.linalg.svd(P)[0][:, :m - 1] if kind == "simplex" else eye
    out = (P, eye, ii, jj, eye[ii] - eye[jj], B)
    for a in out:
        a.setflags(write=False)
    return out


def candidate_directions_batch(F: np.ndarray, Y: np.ndarray, norm: str, kind: str,
                               k_eig: int = 3, n_pairs: int | None = 12,
                               eps: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Candidate directions of the RG poison for a batch of outputs (see
    :func:`candidate_directions`), computed with batched linear algebra.

    Parameters
    ----------
    F : ndarray of shape (n, m, m)
        Generation FIMs at the outputs.
    Y : ndarray of shape (n, m)
        Outputs.

    Returns
    -------
    C : ndarray of shape (n, c, m)
        Signed candidate directions, in the order of :func:`candidate_directions`.
    valid : ndarray of bool of shape (n, c)
        False for candidates with non-finite or all-zero entries (dropped by the one-output
        version).
    """
    n, m = Y.shape
    F = 0.5 * (F + np.swapaxes(F, -1, -2))
    P, eye, ii, jj, pairs, B = _candidate_constants(m, kind)
    k = min(k_eig, m - 1 if kind == "simplex" else m)
    _, U = np.linalg.eigh(P @ F @ P)
    eig = np.swapaxes(U[:, :, ::-1][:, :, :k], -1, -2)          # (n, k, m)
    cands = [eig, -eig]
    if n_pairs is not None and len(ii) > n_pairs:
        t = np.minimum(0.5 * eps, Y[:, jj])
        diag = np.diagonal(F, axis1=-2, axis2=-1)
        score = (diag[:, ii] + diag[:, jj] - 2 * F[:, ii, jj]) * t * t
        keep = np.argsort(-score, axis=-1, kind="stable")[:, :n_pairs]
        cands.append(pairs[keep])
    else:
        cands.append(np.broadcast_to(pairs, (n, len(ii), m)))
    cands.append(eye[None] - Y[:, None, :])
    if kind == "unit":
        cands += [np.broadcast_to(eye, (n, m, m)), np.broadcast_to(-eye, (n, m, m))]
    if norm == "kl":
        yc = np.clip(Y, 1e-12, 1.0)
        g = 1.0 / yc if kind == "simplex" else 1.0 / (yc * np.clip(1.0 - Y, 1e-12, 1.0))
        A = B.T @ F @ B
        Gs = B.T @ (g[:, :, None] * B)
        with np.errstate(all="ignore"):
            Lc = np.linalg.cholesky(Gs)   # Gs ≥ I (g = 1/y ≥ 1): positive definite
            Li = np.linalg.inv(Lc)
            _, W = np.linalg.eigh(Li @ A @ np.swapaxes(Li, -1, -2))
        gen = np.swapaxes(B @ (np.swapaxes(Li, -1, -2) @ W[:, :, ::-1][:, :, :k]), -1, -2)
        cands += [gen, -gen]
    C = np.concatenate(cands, axis=1)
    valid = np.all(np.isfinite(C), axis=-1) & (np.abs(C).max(axis=-1) > 0)
    return C, valid


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
    pre-filter; ``None`` keeps all. Candidates with non-finite or all-zero entries are dropped.
    """
    C, valid = candidate_directions_batch(np.asarray(F, np.float64)[None],
                                          np.asarray(y, np.float64)[None], norm, kind,
                                          k_eig, n_pairs, eps)
    return C[0][valid[0]]


def _answer_seed(y: Tensor, base: int = DEFAULT_CHAIN_SEED) -> int:
    """Seed of the Monte Carlo generation FIM for one answer ``y`` (m,).

    Stream ``"poison.answer"`` of ``base`` (the initial seed of the deployment's ``"poison"``
    generator, see :meth:`RGPoisoner.fims`), refined by the SHA-256 of the answer's float64
    bytes: a pure function of (seed, answer), never of the batch the answer came in.
    """
    key = np.ascontiguousarray(y.detach().cpu().to(torch.float64).numpy()).tobytes()
    return child_seed(base, "poison.answer", hashlib.sha256(key).hexdigest())


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
        self._mf_cache: tuple[tuple[Any, ...], list[tuple[Tensor, Tensor]]] | None = None
        self._params = list(net.parameters())        # in-place updates and .to() change the key

    def _meanfield_weights(self) -> list[tuple[Tensor, Tensor]]:
        """:func:`meanfield_weights` of the network, converted once and reused while no
        parameter is replaced or modified in place (a per-model constant of serving)."""
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in self._params)
        if self._mf_cache is None or self._mf_cache[0] != key:
            self._mf_cache = (key, meanfield_weights(self.net))
        return self._mf_cache[1]

    def fims(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Generation FIMs ``F̃(y)`` of outputs ``y`` (n, m); shape (n, m, m), float64, CPU.

        With the Monte Carlo ``chain`` estimator (and no ``generator`` in ``fim_kwargs``) every
        answer draws its own stream, ``"poison.answer"`` of ``generator.initial_seed()`` keyed
        by the answer (:func:`_answer_seed`): the deployment's seed (``torch_generator(seed,
        "poison")`` in the served model, ``ProtectedClassifier`` and the cloning study) moves
        the poison, while the generator's *state* (how many batches it has served) does not.
        Without a generator the base is :data:`~rgaudit.defence.generation_fim.DEFAULT_CHAIN_SEED`
        (library calls stay reproducible).
        """
        out = []
        kw = dict(self.fim_kwargs)
        resolved = resolve_estimator(self.net, self.estimator)
        if resolved == "mean-field":                  # the same numbers, weights converted once
            yb = torch.as_tensor(y).to(device=self.net.device, dtype=torch.float64)
            if yb.dim() != 2 or yb.shape[-1] != self.net.widths[-1]:
                raise ValueError(f"outputs y must have shape (n, {self.net.widths[-1]}), got "
                                 f"{tuple(yb.shape)}")
            weights = self._meanfield_weights()
            for start in range(0, len(yb), self.batch):
                F = meanfield_fim_from_weights(weights, yb[start:start + self.batch])
                out.append(F.detach().to("cpu", torch.float64))
            return torch.cat(out) if len(out) != 1 else out[0]
        if resolved == "chain" and "generator" not in kw:
            # Monte Carlo FIM: every answer gets its own stream keyed by the answer itself, so
            # a served answer never depends on the batch it came in (a thief could otherwise
            # average the poison away over re-queries in different batches).
            base = DEFAULT_CHAIN_SEED if generator is None else int(generator.initial_seed())
            for row in y:
                g = torch.Generator(device=self.net.device).manual_seed(_answer_seed(row, base))
                F = generation_fim(self.net, row[None].to(self.net.device), "chain",
                                   generator=g, **kw)
                out.append(F.detach().to("cpu", torch.float64))
            return torch.cat(out) if out else torch.zeros(0, y.shape[-1], y.shape[-1],
                                                           dtype=torch.float64)
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

    def candidates(self, y: Tensor, x: Tensor | None,
                   generator: torch.Generator | None) -> Candidates:
        """Hook: the candidate directions of :func:`candidate_directions_batch`, with the FIMs
        as the scoring context."""
        F = self.fims(y, generator).numpy()
        C, valid = candidate_directions_batch(F, y.detach().cpu().numpy(), self.norm,
                                              self.kind, self.k_eig, self.n_pairs, self.eps)
        return Candidates(C, valid, F)

    def score(self, Y: np.ndarray, Z: np.ndarray, context: Any) -> np.ndarray:
        """Hook: the realised Fisher damage ``δyᵀ F̃ δy`` of each candidate step; (n, c).

        Candidates whose damage ties the row's best to 1e-9 (e.g. ``e_i − e_j`` and
        ``e_j − e_i`` both stopped by the budget: equal damage in exact arithmetic) are
        re-scored with the one-output expression ``d @ F @ d``, so that ties are broken by the
        same rounding as the per-answer search this replaced and the answers stay identical
        to it.
        """
        S = fisher_damages(Y, Z, context)
        best = S.max(axis=1, keepdims=True)
        near = S >= best - 1e-9 * np.abs(best)
        for i in np.nonzero(near.sum(axis=1) > 1)[0]:
            for c in np.nonzero(near[i])[0]:
                S[i, c] = fisher_damage(Y[i], Z[i, c], context[i])
        return S

    def config(self) -> dict[str, Any]:
        return {**super().config(), "estimator": self.estimator, "k_eig": self.k_eig,
                "n_pairs": self.n_pairs,
                "direction": "best realised δyᵀF̃δy over candidate directions",
                "fim_kwargs": {k: v for k, v in self.fim_kwargs.items() if k != "generator"}}
