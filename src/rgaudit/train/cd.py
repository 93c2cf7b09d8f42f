"""Greedy layerwise contrastive-divergence pretraining (CD-k and persistent CD).

Each RBM ``t_k`` is trained as a generative model of the layer below's activations, following
Hinton's practical guide (UTML TR 2010-003): small Gaussian initial weights, visible biases at
``logit(mean activation)``, momentum raised after a few epochs, L2 weight decay, mean-field
(probability) statistics for the hidden units in the gradient and sampled hidden units to drive
the Gibbs chain. Layer ``k`` then sees the layer ``k-1`` activations either as mean-field
probabilities or as binary samples (``sampled_input``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.rbm import RBM, bernoulli
from rgaudit.train.progress import Progress, no_progress

Tensor = torch.Tensor


@dataclass(frozen=True)
class CDConfig:
    """Settings of CD/PCD pretraining.

    Attributes
    ----------
    epochs : int
        Passes over the data per layer.
    lr : float
        SGD learning rate.
    k : int
        Gibbs steps per update (CD-k / PCD-k).
    persistent : bool
        Persistent CD: the negative chain continues from the previous update's fantasy
        particles (one per row of the batch) instead of restarting at the data.
    batch_size : int
    momentum, final_momentum : float
        Momentum for the first ``momentum_epochs`` epochs and afterwards.
    momentum_epochs : int
    weight_decay : float
        L2 penalty on ``W``.
    init_scale : float
        Standard deviation of the initial weights.
    sampled_input : bool
        Feed the next layer binary samples instead of mean-field probabilities.
    """

    epochs: int = 10
    lr: float = 0.05
    k: int = 1
    persistent: bool = False
    batch_size: int = 32
    momentum: float = 0.5
    final_momentum: float = 0.9
    momentum_epochs: int = 3
    weight_decay: float = 1e-4
    init_scale: float = 0.01
    sampled_input: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def init_rbm(rbm: RBM, data: Tensor, scale: float, generator: torch.Generator) -> None:
    """Initialise ``W ~ N(0, scale²)``, ``a = 0``, ``b = logit(mean(data))`` (clipped).

    Parameters
    ----------
    rbm : RBM
    data : Tensor of shape (n_samples, n_in)
    """
    with torch.no_grad():
        rbm.W.copy_(torch.randn(rbm.W.shape, generator=generator, device=rbm.W.device,
                                dtype=rbm.W.dtype) * scale)
        rbm.a.zero_()
        rbm.b.copy_(torch.logit(data.mean(0).clamp(0.01, 0.99)).to(rbm.b.dtype))


@torch.no_grad()
def cd_gradients(rbm: RBM, v0: Tensor, k: int, generator: torch.Generator,
                 chain: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor, float]:
    """Negative CD-k (or PCD-k) log-likelihood gradients for one mini-batch.

    Parameters
    ----------
    rbm : RBM
    v0 : Tensor of shape (batch, n_in)
        Data (real values in [0, 1] allowed).
    k : int
        Gibbs steps.
    generator : torch.Generator
    chain : Tensor of shape (batch, n_in), optional
        Persistent fantasy particles; None restarts the chain at the data (plain CD).

    Returns
    -------
    grads : dict with "W" (n_out, n_in), "a" (n_out,), "b" (n_in,)
        Gradients of the *negative* log-likelihood, ready for a torch optimiser.
    chain : Tensor of shape (batch, n_in)
        The final negative-phase visible sample (next persistent state).
    recon_error : float
        Mean squared one-step reconstruction error of ``v0`` (a monitor, not the objective).
    """
    ph0 = rbm.prob_up(v0)
    recon = rbm.prob_down(bernoulli(ph0, generator))
    recon_error = float(((recon - v0) ** 2).mean())
    vk = v0 if chain is None else chain
    for step in range(k):
        h = bernoulli(rbm.prob_up(vk), generator)
        pv = rbm.prob_down(h)
        vk = pv if step == k - 1 else bernoulli(pv, generator)
    phk = rbm.prob_up(vk)
    n = v0.shape[0]
    grads = {"W": -(ph0.T @ v0 - phk.T @ vk) / n, "a": -(ph0 - phk).mean(0),
             "b": -(v0 - vk).mean(0)}
    next_chain = bernoulli(vk, generator) if chain is not None else vk
    return grads, next_chain, recon_error


def train_rbm(rbm: RBM, data: Tensor, config: CDConfig, generator: torch.Generator, *,
              stage: str = "pretrain", progress: Progress = no_progress) -> dict[str, Any]:
    """Train one RBM on ``data`` with CD-k or PCD-k (initialising it first).

    Parameters
    ----------
    rbm : RBM
    data : Tensor of shape (n_samples, n_in), values in [0, 1]
    config : CDConfig
    generator : torch.Generator
        Drives the initial weights, the batch order and every Gibbs sample.

    Returns
    -------
    dict
        ``{"recon_error": [per-epoch mean]}``.
    """
    init_rbm(rbm, data, config.init_scale, generator)
    opt = torch.optim.SGD(rbm.parameters(), lr=config.lr, momentum=config.momentum)
    n = data.shape[0]
    bs = min(config.batch_size, n)
    chain = None
    if config.persistent:
        start = torch.randint(0, n, (bs,), generator=generator, device=data.device)
        chain = bernoulli(data[start], generator)
    history: list[float] = []
    for epoch in range(config.epochs):
        if epoch == config.momentum_epochs:
            for group in opt.param_groups:
                group["momentum"] = config.final_momentum
        perm = torch.randperm(n, generator=generator, device=data.device)
        errs = []
        for i in range(0, n - bs + 1, bs):
            v0 = data[perm[i:i + bs]]
            grads, new_chain, err = cd_gradients(rbm, v0, config.k, generator, chain)
            if chain is not None:
                chain = new_chain
            rbm.W.grad = grads["W"] + config.weight_decay * rbm.W.detach()
            rbm.a.grad = grads["a"]
            rbm.b.grad = grads["b"]
            opt.step()
            errs.append(err)
        history.append(sum(errs) / max(len(errs), 1))
        progress(stage, epoch + 1, config.epochs, recon_error=history[-1])
    return {"recon_error": history}


@torch.no_grad()
def propagate(rbm: RBM, data: Tensor, sampled: bool, generator: torch.Generator) -> Tensor:
    """Activations of the layer above: ``σ(W v + a)`` or a binary sample of it.

    Returns
    -------
    Tensor of shape (n_samples, n_out)
    """
    p = rbm.prob_up(data)
    return bernoulli(p, generator) if sampled else p


def greedy_pretrain(net: DeepRBM, X: Tensor, config: CDConfig, generator: torch.Generator, *,
                    n_layers: int | None = None,
                    progress: Progress = no_progress) -> list[dict[str, Any]]:
    """Pretrain layers ``1 … n_layers`` greedily, each on the activations of the one below.

    Parameters
    ----------
    net : DeepRBM
        Untied (a tied network's single RBM is trained once, on ``X``).
    X : Tensor of shape (n_samples, n_0)
    config : CDConfig
    generator : torch.Generator
    n_layers : int, optional
        Default ``N - 1``: every layer except the supervised output layer.

    Returns
    -------
    list of dict
        One history per trained layer.
    """
    n_layers = net.depth - 1 if n_layers is None else int(n_layers)
    data = X.to(device=net.device, dtype=net.dtype)
    histories = []
    for k in range(1, n_layers + 1):
        rbm = net.layer(k)
        histories.append(train_rbm(rbm, data, config, generator, stage=f"pretrain layer {k}",
                                   progress=progress))
        if net.tied:
            break
        data = propagate(rbm, data, config.sampled_input, generator)
    return histories
