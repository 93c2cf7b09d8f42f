"""Layerwise joint training of a DeepRBM (cloning eq. 14–16).

For each layer ``k`` the RBM ``t_k`` is fitted, with all other layers held fixed, to the joint
distribution of pairs

    p_k(h_k, h_{k-1}) = E_{(x,y)} [ q̃_k(h_k | y) q_{k-1}(h_{k-1} | x) ]

where ``h_{k-1}`` comes from the *upward* (classification) chain of ``x`` through layers ``< k``
and ``h_k`` from the *downward* (generation) chain of ``y`` through layers ``> k`` (``h_0 = x``,
``h_N = y``, real values allowed at both ends). Minimising ``KL(p_k ‖ t_k)`` is maximising the
fully-observed log-likelihood

    L_k = E_{p_k}[ h_kᵀ W_k h_{k-1} + a_kᵀ h_k + b_kᵀ h_{k-1} ] − log z_k,

a bipartite Boltzmann machine with *both* layers observed. Its gradient is the positive phase
(statistics of the pairs) minus the negative phase (model statistics), here from persistent Gibbs
chains (PCD); for tiny layers the negative phase and ``L_k`` can be computed exactly
(``exact=True``). Real-valued ends enter the positive phase as they are: the statistics are linear
in each layer, so this equals sampling ``Bernoulli(x)``/``Bernoulli(y)``.

Layers are swept ``1..N`` repeatedly. **Convergence measure**: the largest relative parameter
change of any layer over one sweep, ``max_k ‖θ_k^new − θ_k^old‖ / ‖θ_k^old‖``; training stops when
it falls below ``tol`` (or after ``max_sweeps``). Coordinate ascent on the ``L_k`` is not ascent of
one global objective (each layer's target depends on the others), hence the parameter-change
criterion.

The same routine serves the defender (training on labelled data) and, as an attack, a cloner who
fits a fresh DeepRBM to (query, answer) pairs (:mod:`rgaudit.defence.cloning_attacks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch.nn import functional as F_

from rgaudit.defence.generation import exact_log_q_down, exact_log_q_up
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.rbm import RBM, bernoulli
from rgaudit.rg.exact import MAX_EXACT_UNITS as MAX_UNITS
from rgaudit.rg.exact import all_states

Tensor = torch.Tensor


@dataclass(frozen=True)
class LayerwiseConfig:
    """Settings of eq. 14 training.

    Attributes
    ----------
    max_sweeps : int
        Sweeps over layers ``1..N``.
    epochs : int
        Passes over the pairs per layer visit.
    lr : float
        Learning rate of plain gradient ascent.
    batch_size : int
    n_chains : int
        Persistent chains of the negative phase (per layer).
    gibbs_steps : int
        Gibbs steps per update.
    weight_decay : float
        L2 penalty on ``W``.
    tol : float
        Convergence threshold on the largest relative parameter change per sweep.
    exact : bool
        Exact positive and negative phases by enumeration (tiny networks).
    exact_small : bool
        Use the exact negative phase for any layer whose smaller side has at most
        ``MAX_UNITS`` units (enumerating that side; e.g. a 10-unit output layer), PCD otherwise.
    pair_samples : int
        Chains per data point for the positive phase (PCD mode). The last step of each chain
        enters as its conditional probabilities (Rao-Blackwellised), and the chains are
        averaged: an unbiased, lower-variance estimate of ``E[h_{k-1} | x]`` and
        ``E[h_k | y]``, which is all the (bilinear) positive phase needs.
    """

    max_sweeps: int = 10
    epochs: int = 2
    lr: float = 0.05
    batch_size: int = 64
    n_chains: int = 200
    gibbs_steps: int = 1
    weight_decay: float = 1e-4
    tol: float = 1e-2
    exact: bool = False
    pair_samples: int = 1
    exact_small: bool = True


@dataclass
class LayerwiseResult:
    """History of eq. 14 training.

    Attributes
    ----------
    rel_change : list of list of float
        Per sweep, the relative parameter change of each layer.
    objective : list of list of float
        Per sweep, the exact ``L_k`` of each layer after its update (``exact=True`` only).
    converged : bool
    sweeps : int
    config : dict
    """

    rel_change: list[list[float]] = field(default_factory=list)
    objective: list[list[float]] = field(default_factory=list)
    converged: bool = False
    sweeps: int = 0
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _params(rbm: RBM) -> Tensor:
    return torch.cat([rbm.W.detach().flatten(), rbm.a.detach(), rbm.b.detach()])


def _check(net: DeepRBM, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if net.tied:
        raise ValueError("eq. 14 training updates layers one at a time; a weight-tied network "
                         "has a single shared layer")
    x = torch.as_tensor(x).to(device=net.device, dtype=torch.float64)
    y = torch.as_tensor(y).to(device=net.device, dtype=torch.float64)
    if x.dim() != 2 or y.dim() != 2 or len(x) != len(y):
        raise ValueError(f"x and y must be paired 2-D arrays, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if x.shape[1] != net.widths[0] or y.shape[1] != net.widths[-1]:
        raise ValueError(f"x must have {net.widths[0]} and y {net.widths[-1]} columns")
    if x.min() < 0 or x.max() > 1 or y.min() < 0 or y.max() > 1:
        raise ValueError("x and y must lie in [0, 1]")
    return x, y


# -- pairs ------------------------------------------------------------------------------------
@torch.no_grad()
def sample_pairs(net: DeepRBM, k: int, x: Tensor, y: Tensor,
                 generator: torch.Generator | None,
                 n_samples: int = 1) -> tuple[Tensor, Tensor]:
    """Monte Carlo ``E[h_{k-1} | x]`` (upward chain) and ``E[h_k | y]`` (downward chain).

    ``n_samples`` chains per data point; units are sampled up to the layer below (above) the
    target, whose conditional probabilities are then averaged over the chains
    (Rao-Blackwellisation). Given ``(x, y)`` the two chains are independent and the positive
    phase is bilinear in ``(h_{k-1}, h_k)``, so these means give an unbiased positive phase.
    ``h_0 = x`` and ``h_N = y`` are returned as they are.

    Returns
    -------
    lower : Tensor of shape (n, n_{k-1})
    upper : Tensor of shape (n, n_k)
    """
    dt = net.dtype
    if k == 1:
        lower = x.to(dt)
    else:
        below = x.to(dt) if k == 2 else net.sample_up(x.to(dt), n_samples, generator,
                                                      upto=k - 2)[-1]
        lower = net.layer(k - 1).prob_up(below)
        lower = lower.mean(1) if lower.dim() == 3 else lower
    if k == net.depth:
        upper = y.to(dt)
    else:
        above = y.to(dt) if k == net.depth - 1 else net.sample_down(y.to(dt), n_samples,
                                                                    generator, downto=k + 1)[-1]
        upper = net.layer(k + 1).prob_down(above)
        upper = upper.mean(1) if upper.dim() == 3 else upper
    return lower.to(torch.float64), upper.to(torch.float64)


@torch.no_grad()
def exact_pair_means(net: DeepRBM, k: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Exact ``E[h_{k-1} | x]`` (upward chain) and ``E[h_k | y]`` (downward chain); tiny nets.

    Returns
    -------
    lower : Tensor of shape (n, n_{k-1})
    upper : Tensor of shape (n, n_k)
    """
    if k == 1:
        lower = x.to(torch.float64)
    else:
        lq = exact_log_q_up(net, x, upto=k - 1)[-1]
        lower = lq.exp() @ all_states(net.widths[k - 1], device=lq.device)
    if k == net.depth:
        upper = y.to(torch.float64)
    else:
        lq = exact_log_q_down(net, y, downto=k)[-1]
        upper = lq.exp() @ all_states(net.widths[k], device=lq.device)
    return lower, upper


# -- the fully-observed RBM -------------------------------------------------------------------
def _log_z(rbm: RBM) -> Tensor:
    W, a, b = (p.detach().to(torch.float64) for p in (rbm.W, rbm.a, rbm.b))
    if min(rbm.n_in, rbm.n_out) > MAX_UNITS:
        raise ValueError(f"exact log z needs a side of at most {MAX_UNITS} units")
    if rbm.n_in <= rbm.n_out:
        v = all_states(rbm.n_in, device=W.device)
        return torch.logsumexp(v @ b + F_.softplus(v @ W.T + a).sum(-1), 0)
    h = all_states(rbm.n_out, device=W.device)
    return torch.logsumexp(h @ a + F_.softplus(h @ W + b).sum(-1), 0)


def _model_stats_exact(rbm: RBM) -> tuple[Tensor, Tensor, Tensor]:
    """Exact ``E[h vᵀ]``, ``E[h]``, ``E[v]`` under ``t(h, v)``, enumerating the smaller side."""
    W, a, b = (p.detach().to(torch.float64) for p in (rbm.W, rbm.a, rbm.b))
    if rbm.n_in <= rbm.n_out:
        v = all_states(rbm.n_in, device=W.device)
        z = v @ W.T + a
        p = torch.softmax(v @ b + F_.softplus(z).sum(-1), 0)       # (S_v,)
        ph = torch.sigmoid(z)                                      # (S_v, n_out)
        return (p[:, None] * ph).T @ v, p @ ph, p @ v
    h = all_states(rbm.n_out, device=W.device)
    z = h @ W + b
    p = torch.softmax(h @ a + F_.softplus(z).sum(-1), 0)           # (S_h,)
    pv = torch.sigmoid(z)                                          # (S_h, n_in)
    return h.T @ (p[:, None] * pv), p @ h, p @ pv


def layer_objective(rbm: RBM, lower: Tensor, upper: Tensor) -> float:
    """Exact ``L = E_pairs[hᵀWv + aᵀh + bᵀv] − log z`` for paired (mean) states.

    Parameters
    ----------
    lower : Tensor of shape (n, n_in)
        ``h_{k-1}`` (or its exact conditional mean).
    upper : Tensor of shape (n, n_out)
        ``h_k`` (or its exact conditional mean; independent of ``lower`` given the pair).
    """
    W, a, b = (p.detach().to(torch.float64) for p in (rbm.W, rbm.a, rbm.b))
    e = ((upper @ W) * lower).sum(-1) + upper @ a + lower @ b
    return float(e.mean() - _log_z(rbm))


def exact_objectives(net: DeepRBM, x: Tensor, y: Tensor) -> list[float]:
    """Exact ``L_k`` of every layer for the pairs ``(x, y)`` (tiny networks)."""
    x, y = _check(net, x, y)
    return [layer_objective(net.layer(k), *exact_pair_means(net, k, x, y))
            for k in range(1, net.depth + 1)]


@torch.no_grad()
def _fit_layer(rbm: RBM, lower: Tensor, upper: Tensor, chains: Tensor, cfg: LayerwiseConfig,
               generator: torch.Generator | None) -> Tensor:
    """Gradient ascent of the fully-observed likelihood; returns the updated chains."""
    n = len(lower)
    dt = rbm.W.dtype
    exact_neg = cfg.exact or (cfg.exact_small and min(rbm.n_in, rbm.n_out) <= MAX_UNITS)
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=generator, device=lower.device)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            v, h = lower[idx], upper[idx]
            pos_hv, pos_h, pos_v = h.T @ v / len(idx), h.mean(0), v.mean(0)
            if exact_neg:
                neg_hv, neg_h, neg_v = _model_stats_exact(rbm)
            else:
                for _ in range(cfg.gibbs_steps):
                    hc = rbm.sample_up(chains.to(dt), generator)
                    chains = rbm.sample_down(hc, generator).to(torch.float64)
                ph = rbm.prob_up(chains.to(dt)).to(torch.float64)
                neg_hv, neg_h, neg_v = ph.T @ chains / len(chains), ph.mean(0), chains.mean(0)
            W64 = rbm.W.detach().to(torch.float64)
            rbm.W.add_((cfg.lr * (pos_hv - neg_hv - cfg.weight_decay * W64)).to(dt))
            rbm.a.add_((cfg.lr * (pos_h - neg_h)).to(dt))
            rbm.b.add_((cfg.lr * (pos_v - neg_v)).to(dt))
    return chains


def train_layerwise(
    net: DeepRBM,
    x: Tensor,
    y: Tensor,
    config: LayerwiseConfig | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> LayerwiseResult:
    """Train ``net`` in place by eq. 14, sweeping over layers until the parameters settle.

    Parameters
    ----------
    net : DeepRBM
        Not weight-tied; its current parameters are the starting point.
    x : Tensor of shape (n, n_0)
        Inputs in [0, 1].
    y : Tensor of shape (n, n_N)
        Paired outputs in [0, 1] (one-hot labels, or a victim's answers).
    config : LayerwiseConfig, optional
    generator : torch.Generator, optional
        Drives the pair sampling, minibatch order and persistent chains.
    progress : callable, optional
        Called as ``progress(sweep, max_rel_change)`` after each sweep.

    Returns
    -------
    LayerwiseResult
    """
    cfg = config or LayerwiseConfig()
    x, y = _check(net, x, y)
    res = LayerwiseResult(config=asdict(cfg))
    # persistent chains of layer k start (on its first visit) from Bernoulli samples of that
    # visit's lower pairs: starting them at Bernoulli(1/2) gives a far-from-equilibrium negative
    # phase that wrecks a non-random starting point in the first updates
    chains: list[Tensor | None] = [None] * net.depth
    for sweep in range(cfg.max_sweeps):
        changes, objs = [], []
        for k in range(1, net.depth + 1):
            rbm = net.layer(k)
            before = _params(rbm).to(torch.float64)
            if cfg.exact:
                lower, upper = exact_pair_means(net, k, x, y)
            else:
                lower, upper = sample_pairs(net, k, x, y, generator, cfg.pair_samples)
            chain = chains[k - 1]
            if chain is None:
                idx = torch.randint(0, len(lower), (cfg.n_chains,), generator=generator,
                                    device=lower.device)
                chain = bernoulli(lower[idx], generator)
            chains[k - 1] = _fit_layer(rbm, lower, upper, chain, cfg, generator)
            after = _params(rbm).to(torch.float64)
            changes.append(float((after - before).norm() / before.norm().clamp_min(1e-12)))
            if cfg.exact:
                objs.append(layer_objective(rbm, lower, upper))
        res.rel_change.append(changes)
        if objs:
            res.objective.append(objs)
        res.sweeps = sweep + 1
        if progress is not None:
            progress(sweep + 1, max(changes))
        if max(changes) < cfg.tol:
            res.converged = True
            break
    return res
