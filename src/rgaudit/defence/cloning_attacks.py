"""Cloning attacks on a victim's (possibly poisoned) answers to queries from a held-out pool.

Every attacker receives the queries ``x`` (n, d) and the answers ``y`` (n, K) the victim's API
returned, and produces a :class:`Clone`: a logits model ``x ↦ z`` (a ``torch.nn.Module``) so
that transfer attacks can be crafted on it.

- ``rbm-eq14``: a DeepRBM of the victim's architecture trained by the layerwise joint training of
  cloning eq. 14 (:mod:`rgaudit.defence.layerwise`) — the attack the RG poison is designed
  against; predictions by its mean-field surrogate. Eq. 14 needs a starting point whose chains
  carry signal (from small random weights the upward chain of ``x`` and the downward chain of
  ``y`` are noise, the layerwise pairs are independent and the clone stays at chance), so by
  default (``rbm_init="cd"``) the attacker, who holds only the queries and the answers, first
  pretrains layers ``1 … N-1`` greedily by CD on the queries (:func:`rgaudit.train.cd.
  greedy_pretrain`) and fits the output layer by logistic regression to the argmax of the
  answers (:func:`rgaudit.train.supervised.fit_output_layer`); eq. 14 sweeps on the
  (query, answer) pairs follow. ``rbm_init="random"`` is the old small-random start.
- ``distill-mlp``: soft-label distillation of a one-hidden-layer MLP (cross-entropy to ``y``).
- ``label-only``: the same MLP trained on ``argmax y`` only.
- ``knockoff-prob`` / ``knockoff-label``: ART's ``KnockoffNets`` (random sampling) with the
  probability vectors or with labels only.
- ``copycat-prob`` / ``copycat-label``: ART's ``CopycatCNN`` likewise (our thief is an MLP; the
  method does not depend on the architecture).

The ART attackers query a ``BlackBoxClassifier`` that returns the precomputed (poisoned) answers
of exactly these queries, so all attackers see the same answers — or, when a ``victim`` callable
is given (e.g. :meth:`rgaudit.serve.client.PredictionClient.predict`, an HTTP API), whatever that
victim answers at the time the attack queries it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rgaudit.choices import ATTACKERS as ATTACKERS
from rgaudit.defence.layerwise import LayerwiseConfig, train_layerwise
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.train.cd import CDConfig, greedy_pretrain
from rgaudit.train.supervised import fit_output_layer

Tensor = torch.Tensor
RBM_INITS: tuple[str, ...] = ("cd", "random")
#: CD pretraining of the eq. 14 clone's lower layers on the queries (a few hundred inputs need
#: more epochs than the 10 of :class:`CDConfig`'s default: 50 give ~0.93 on digits, 20 ~0.78)
CLONE_CD = CDConfig(epochs=50)
#: eq. 14 settings of the clone: small steps and Rao-Blackwellised pairs (10 chains per point)
CLONE_LAYERWISE = LayerwiseConfig(max_sweeps=5, epochs=3, lr=0.01, pair_samples=10, tol=1e-2)


@dataclass
class Clone:
    """A cloned classifier.

    Attributes
    ----------
    name : str
    model : torch.nn.Module
        Maps inputs (n, d) to logits (n, K) (float64 parameters or float32).
    info : dict
        Training diagnostics (plain data).
    """

    name: str
    model: nn.Module
    info: dict

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Predicted classes, shape (n,)."""
        p = next(self.model.parameters())
        return self.model(x.to(p.dtype)).argmax(-1).cpu()


class SoftCrossEntropy(nn.Module):
    """``−Σ_k t_k log softmax(z)_k`` averaged over the batch (soft or one-hot targets)."""

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        return -(t * torch.log_softmax(z, -1)).sum(-1).mean()


def make_mlp(d: int, k: int, hidden: int, generator: torch.Generator) -> nn.Module:
    """A ``d → hidden (ReLU) → k`` MLP initialised from ``generator`` only (float32).

    The layers are built with ``skip_init``: ``nn.Linear``'s own initialisation would draw from
    torch's global generator, changing the caller's random stream.
    """
    first = nn.utils.skip_init(nn.Linear, d, hidden)
    last = nn.utils.skip_init(nn.Linear, hidden, k)
    net = nn.Sequential(first, nn.ReLU(), last)
    with torch.no_grad():
        for lay in (first, last):
            bound = lay.in_features ** -0.5
            lay.weight.copy_((torch.rand(lay.weight.shape, generator=generator) * 2 - 1) * bound)
            lay.bias.zero_()
    return net


def fit_mlp(x: Tensor, t: Tensor, *, hidden: int = 128, epochs: int = 150, lr: float = 3e-3,
            batch_size: int = 64, generator: torch.Generator) -> nn.Module:
    """Train an MLP on targets ``t`` (n, K) (probabilities or one-hot) with Adam."""
    x, t = x.float(), t.float()
    model = make_mlp(x.shape[1], t.shape[1], hidden, generator)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = SoftCrossEntropy()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=generator)
        for s in range(0, len(x), batch_size):
            idx = perm[s:s + batch_size]
            opt.zero_grad()
            loss_fn(model(x[idx]), t[idx]).backward()
            opt.step()
    return model.eval()


def _art_clone(kind: str, use_prob: bool, x: Tensor, y: Tensor, *, hidden: int, epochs: int,
               generator: torch.Generator,
               victim: Callable[[np.ndarray], np.ndarray] | None = None) -> nn.Module:
    from art.attacks.extraction import CopycatCNN, KnockoffNets
    from art.estimators.classification import BlackBoxClassifier, PyTorchClassifier

    X = x.detach().cpu().float().numpy()
    Y = y.detach().cpu().double().numpy()
    lookup = {X[i].tobytes(): Y[i] for i in range(len(X))}

    def answer(q: np.ndarray) -> np.ndarray:
        try:
            return np.stack([lookup[np.asarray(r, np.float32).tobytes()] for r in q])
        except KeyError as err:
            raise RuntimeError("the attack queried an input outside the query pool") from err

    def ask(q: np.ndarray) -> np.ndarray:
        return np.asarray(victim(np.asarray(q, np.float64)), np.float64)   # type: ignore[misc]

    black_box = BlackBoxClassifier(answer if victim is None else ask, (X.shape[1],), Y.shape[1],
                                   clip_values=(0.0, 1.0))
    model = make_mlp(X.shape[1], Y.shape[1], hidden, generator)
    thief = PyTorchClassifier(model=model, loss=SoftCrossEntropy(),
                              optimizer=torch.optim.Adam(model.parameters(), lr=3e-3,
                                                         weight_decay=1e-4),
                              input_shape=(X.shape[1],), nb_classes=Y.shape[1],
                              clip_values=(0.0, 1.0))
    common = {"batch_size_fit": 64, "batch_size_query": len(X), "nb_epochs": epochs,
              "nb_stolen": len(X), "use_probability": use_prob}
    if kind == "knockoff":
        att = KnockoffNets(black_box, sampling_strategy="random", verbose=False, **common)
    else:
        att = CopycatCNN(black_box, **common)
    # ART draws from numpy's and torch's global generators: seed them from ours for
    # reproducibility, inside a scope that restores the caller's global state afterwards.
    seeds = torch.randint(0, 2**31 - 1, (2,), generator=generator).tolist()
    with scoped_global_rng(int(seeds[0]), int(seeds[1])):
        att.extract(X, thieved_classifier=thief)
    return model.eval()


@contextmanager
def scoped_global_rng(np_seed: int, torch_seed: int) -> Iterator[None]:
    """Seed numpy's and torch's global generators for a block, then restore their states.

    For third-party code (ART) that only reads the global generators; rgaudit's own code always
    takes an explicit generator.
    """
    np_state = np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=[]):
        np.random.seed(np_seed)  # noqa: NPY002
        torch.manual_seed(torch_seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)  # noqa: NPY002


@torch.no_grad()
def _top_inputs(net: DeepRBM, x: Tensor) -> Tensor:
    h = x.to(net.dtype)
    for k in range(1, net.depth):
        h = net.layer(k).prob_up(h)
    return h


def init_rbm_clone(widths: list[int], x: Tensor, y: Tensor, generator: torch.Generator, *,
                   cd: CDConfig | None = None) -> tuple[DeepRBM, dict]:
    """Starting point of the eq. 14 clone from the attacker's data only.

    Layers ``1 … N-1``: greedy CD pretraining on the queries ``x``; output layer: visible biases
    ``logit(mean activation)`` and logistic regression of the mean-field penultimate activations
    on ``argmax y``. Returns the network (float64) and the fit diagnostics.
    """
    net = DeepRBM.random(widths, generator=generator, scale=0.1, bias_scale=0.0)
    hist = greedy_pretrain(net, x, cd or CLONE_CD, generator)
    H = _top_inputs(net, x)
    top = net.layer(net.depth)
    with torch.no_grad():
        top.b.copy_(torch.logit(H.mean(0).clamp(0.01, 0.99)))
    fit = fit_output_layer(top, H, y.argmax(-1))
    return net, {"cd_recon_error": [h["recon_error"][-1] for h in hist], "output_fit": fit}


def clone_attack(
    name: str,
    x: Tensor,
    y: Tensor,
    *,
    victim_widths: list[int] | None = None,
    generator: torch.Generator,
    hidden: int = 128,
    epochs: int = 150,
    layerwise: LayerwiseConfig | None = None,
    rbm_init: str = "cd",
    victim: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Clone:
    """Train a clone from queries and answers.

    Parameters
    ----------
    name : str
        One of :data:`ATTACKERS`.
    x : Tensor of shape (n, d)
        Queries in [0, 1].
    y : Tensor of shape (n, K)
        The answers returned (rows in [0, 1]).
    victim_widths : list of int, optional
        Architecture of the victim (needed by ``rbm-eq14``; the attacker is assumed to know it).
    generator : torch.Generator
        All randomness (initialisation, minibatches, chains). ART's samplers draw from NumPy's
        global generator, which is seeded from it.
    hidden, epochs : int
        MLP width and epochs of the MLP/ART attackers.
    layerwise : LayerwiseConfig, optional
        Settings of the eq. 14 clone (default :data:`CLONE_LAYERWISE`).
    rbm_init : {"cd", "random"}
        Starting point of the eq. 14 clone (see the module docstring).
    victim : callable, optional
        ``x (n, d) ndarray -> answers (n, K)``: what the ART attackers' black box queries
        (default: the precomputed answers ``y`` of exactly the queries ``x``).

    Returns
    -------
    Clone
    """
    if name not in ATTACKERS:
        raise ValueError(f"unknown attacker {name!r}; use one of {ATTACKERS}")
    x = torch.as_tensor(x).to(torch.float64).cpu()
    y = torch.as_tensor(y).to(torch.float64).cpu()
    if name == "rbm-eq14":
        if victim_widths is None:
            raise ValueError("the eq. 14 clone needs the victim's widths")
        if rbm_init not in RBM_INITS:
            raise ValueError(f"rbm_init must be one of {RBM_INITS}, got {rbm_init!r}")
        if rbm_init == "cd":
            clone, init_info = init_rbm_clone(list(victim_widths), x, y, generator)
        else:
            clone = DeepRBM.random(victim_widths, generator=generator, scale=0.1,
                                   bias_scale=0.0)
            init_info = {}
        cfg = layerwise or CLONE_LAYERWISE
        res = train_layerwise(clone, x, y, cfg, generator)
        return Clone(name, clone.mean_field(), {"init": rbm_init, **init_info,
                                                "layerwise": res.to_dict()})
    if name == "distill-mlp":
        return Clone(name, fit_mlp(x, y, hidden=hidden, epochs=epochs, generator=generator), {})
    if name == "label-only":
        onehot = torch.nn.functional.one_hot(y.argmax(-1), y.shape[1]).double()
        return Clone(name, fit_mlp(x, onehot, hidden=hidden, epochs=epochs,
                                   generator=generator), {})
    kind, _, mode = name.partition("-")
    model = _art_clone(kind, mode == "prob", x, y, hidden=hidden, epochs=epochs,
                       generator=generator, victim=victim)
    return Clone(name, model, {"art": kind, "use_probability": mode == "prob"})
