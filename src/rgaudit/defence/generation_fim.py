"""Fisher information of the generation network with respect to the output ``y`` (cloning
eq. 20–23).

**Which distribution.** Following cloning eq. 20, the FIM is that of ``q̃_0(x | y)``: the
distribution over *binary* inputs ``x ∈ {0,1}^{n_0}`` produced by running the DeepRBM's own RBMs
downwards from the real-valued output vector ``y`` (cloning eq. 9; *not* the data distribution
p(x|y), and not a distribution over y)::

    F̃_ij(y) = ∂²/∂y'_i∂y'_j KL(q̃_0(·|y) ‖ q̃_0(·|y')) |_{y'=y}
            = Cov_{q̃_0(·|y)}(∂_i log q̃_0(x|y), ∂_j log q̃_0(x|y))
            = Σ_{αα'} ∂_i g̃^(0)_α ∂_j g̃^(0)_α' Cov_{q̃_0}(O_α, O_α')            (eq. 20)

with ``∂g̃^(0)/∂y = T̃^(1) ⋯ T̃^(N-1) ∂g̃^(N-1)/∂y`` (eq. 22) and ``∂g̃^(N-1)/∂y = −W_Nᵀ`` on
singles (eq. 23). It is an ``n_N × n_N`` matrix per output.

Three estimators:

- ``exact``: enumerate ``q̃_0(x|y)`` (layers 0..N−1 of at most 14 units) and differentiate
  ``log q̃_0`` by forward-mode autograd — the reference.
- ``chain``: the chain rule above, ``F = Jᵀ C_0 J`` via :func:`rgaudit.fisher.chain.chain_fim`,
  with ``T̃`` and ``C_0`` either exact (complete basis, :func:`exact_chain_generation_fim`) or
  from the MCRG engine on a chosen basis (:func:`mcrg_generation_fim`; truncated bases are an
  approximation, DESIGN.md fact 2).
- ``mean-field``: the Jacobian of the deterministic downward surrogate
  ``p_0(y) = DeepRBM.mean_field_down(y)``, i.e. the FIM of the product-Bernoulli distribution
  ``Π_i Bern(x_i; p_0,i(y))``: ``F = Jᵀ diag(1 / (p_0 (1 − p_0))) J`` with ``J = ∂p_0/∂y``
  (by the chain rule in closed form, batched; equal to autograd, see the tests).
  Cheap and deterministic; it ignores the correlations the sampled chain carries, so it is an
  approximation of eq. 20, used by default for wide networks.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from rgaudit.defence.generation import (
    _as_outputs,
    exact_generation_stability,
    exact_log_q_down,
    generation_mcrg,
)
from rgaudit.fisher.chain import ChainFIM, chain_fim, chain_fim_jackknife, chain_quality
from rgaudit.fisher.exact import fim_from_log_probs
from rgaudit.nets.deep_rbm import DeepRBM

Tensor = torch.Tensor
Estimator = Literal["exact", "exact-chain", "chain", "mean-field"]
ESTIMATORS: tuple[str, ...] = ("exact", "exact-chain", "chain", "mean-field")


def exact_generation_fim(net: DeepRBM, y: Tensor) -> Tensor:
    """Exact FIM of ``q̃_0(x|y)`` with respect to ``y`` by enumeration.

    Parameters
    ----------
    net : DeepRBM
        Layers 0..N−1 of at most 14 units.
    y : Tensor of shape (n, n_N) or (n_N,)

    Returns
    -------
    Tensor of shape (n, n_N, n_N) (or (n_N, n_N)), float64
    """
    yb, single = _as_outputs(net, y)
    def log_q(v: Tensor) -> Tensor:
        return exact_log_q_down(net, v.unsqueeze(0))[-1][0]   # (2^{n_0},)

    F = torch.stack([fim_from_log_probs(log_q, yi) for yi in yb]).detach()
    return F[0] if single else F


def exact_chain_generation_fim(net: DeepRBM, y: Tensor) -> Tensor:
    """Chain-rule generation FIM with exact ``T̃`` and ``C_0`` in the complete basis.

    Returns
    -------
    Tensor of shape (n, n_N, n_N), float64
    """
    ch = exact_generation_stability(net, y)
    return chain_fim(ch.dg_dy, ch.Ts, ch.C0).detach()


def mcrg_generation_fim(
    net: DeepRBM, y: Tensor, bases: Any, n_samples: int,
    generator: torch.Generator | None = None, **kwargs: Any,
) -> ChainFIM:
    """Chain-rule generation FIM from MCRG estimates of ``T̃`` (direction ``"down"``).

    Parameters
    ----------
    bases : basis spec(s) for layers N−1, …, 0 as accepted by the RG engine
    n_samples : int
        Downward chains per output.
    **kwargs
        Passed to :func:`rgaudit.defence.generation.generation_mcrg`.

    Returns
    -------
    ChainFIM
        ``fim`` of shape (n, n_N, n_N) with its jackknife ``stderr`` when the engine gives
        replicates.
    """
    res = generation_mcrg(net, y, bases, n_samples, generator, **kwargs)
    pairs = res.computed()                                  # layers N-1 → N-2, …, 1 → 0
    names = pairs[0].names_prev                             # operators of layer N-1
    W = net.layer(net.depth).W.detach().to(torch.float64).cpu()
    dg = torch.zeros(len(names), W.shape[0], dtype=torch.float64)
    for row, name in enumerate(names):
        if "*" not in name:                                 # single operator "h<i>"
            dg[row] = -W[:, int(name.lstrip("h"))]
    out = chain_fim_jackknife(
        dg, [p.T for p in pairs], pairs[-1].C_next,
        Ts_reps=[list(p.T_replicates) for p in pairs],
        c_out_reps=list(pairs[-1].C_next_replicates))
    meta = {"estimator": "chain", "n_samples": int(n_samples),
            "any_regularised": any(p.any_regularised for p in pairs),
            "max_cond": max(p.max_cond for p in pairs), **chain_quality(pairs)}
    return ChainFIM(out.fim, out.stderr, out.replicates, meta)


def meanfield_generation_fim(net: DeepRBM, y: Tensor) -> Tensor:
    """FIM of the mean-field surrogate ``Π_i Bern(x_i; p_0,i(y))`` with respect to ``y``.

    Returns
    -------
    Tensor of shape (n, n_N, n_N) (or (n_N, n_N)), float64
    """
    yb, single = _as_outputs(net, y)
    with torch.no_grad():
        p = yb
        J = None                                           # ∂p/∂y, (n, n_k, n_N)
        for k in range(net.depth, 0, -1):
            lay = net.layer(k)
            W = lay.W.detach().to(torch.float64)           # (n_k, n_{k-1})
            p = torch.sigmoid(p @ W + lay.b.detach().to(torch.float64))
            dp = (p * (1.0 - p)).unsqueeze(-1)             # σ' of the new layer
            J = dp * (W.T.expand(len(p), -1, -1) if J is None else W.T @ J)
        w = 1.0 / (p * (1.0 - p)).clamp_min(1e-12)        # (n, n_0)
        F = J.transpose(-1, -2) @ (w.unsqueeze(-1) * J)
        F = 0.5 * (F + F.transpose(-1, -2))
    return F[0] if single else F


def generation_fim(net: DeepRBM, y: Tensor, estimator: Estimator = "mean-field",
                   **kwargs: Any) -> Tensor:
    """Generation FIM of outputs ``y`` (n, n_N) with the named estimator; (n, n_N, n_N)."""
    if estimator == "exact":
        return exact_generation_fim(net, y)
    if estimator == "exact-chain":
        return exact_chain_generation_fim(net, y)
    if estimator == "mean-field":
        return meanfield_generation_fim(net, y)
    if estimator == "chain":
        return mcrg_generation_fim(net, y, **kwargs).fim
    raise ValueError(f"unknown generation-FIM estimator {estimator!r}; use one of {ESTIMATORS}")


def tangent_projector(m: int, kind: str, *, dtype: torch.dtype = torch.float64,
                      device: torch.device | str = "cpu") -> Tensor:
    """Projector onto the directions an output may move in: all of R^m (``"unit"``) or the
    sum-zero plane (``"simplex"``); shape (m, m)."""
    eye = torch.eye(m, dtype=dtype, device=device)
    if kind == "simplex":
        return eye - torch.full((m, m), 1.0 / m, dtype=dtype, device=device)
    if kind == "unit":
        return eye
    raise ValueError(f"output kind must be 'unit' or 'simplex', got {kind!r}")


def top_directions(F: Tensor, kind: str = "unit", k: int = 1) -> tuple[Tensor, Tensor]:
    """Top eigenpairs of ``P F P`` (``P`` the tangent projector of the output domain).

    Parameters
    ----------
    F : Tensor of shape (n, m, m)
    kind : {"unit", "simplex"}
    k : int

    Returns
    -------
    values : Tensor of shape (n, k), descending
    vectors : Tensor of shape (n, m, k), unit columns (sign: largest entry positive)
    """
    from rgaudit.fisher.eig import top_eigenpairs

    P = tangent_projector(F.shape[-1], kind, device=F.device)
    ep = top_eigenpairs(P @ F.to(torch.float64) @ P, k)
    return ep.values, ep.vectors
