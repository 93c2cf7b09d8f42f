"""Exact input FIM of a tiny DeepRBM by enumerating every hidden and output state.

``log q_k(h|x)`` for every layer comes from the RG engine's exact enumeration
(:func:`rgaudit.rg.exact.exact_chain`: float64, log space, differentiable in ``x``), and

    F(x) = Σ_y q_N(y|x) ∇_x log q_N(y|x) ∇_x log q_N(y|x)ᵀ

from forward-mode autograd of ``log q_N``. Practical for hidden and output layers up to about
12–14 units (``2^n × 2^n`` transition matrices).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.exact import MAX_EXACT_UNITS, all_states, exact_chain, log_kernel

Tensor = torch.Tensor

__all__ = ["all_states", "exact_fim", "exact_log_q", "exact_output_log_q",
           "exact_pair_distribution"]


def exact_log_q(net: DeepRBM, x: Tensor) -> list[Tensor]:
    """``[log q_1, …, log q_N]``, each of shape (n, 2^{n_k}); differentiable in ``x``.

    Parameters
    ----------
    net : DeepRBM
        Every hidden and output layer must have at most ``MAX_EXACT_UNITS`` units.
    x : Tensor of shape (n, d)
    """
    wide = [w for w in net.widths[1:] if w > MAX_EXACT_UNITS]
    if wide:
        raise ValueError(f"exact enumeration needs every hidden/output layer ≤ "
                         f"{MAX_EXACT_UNITS} units; widths are {net.widths}")
    return [lq for lq in exact_chain(net, x.to(torch.float64))[1:] if lq is not None]


def exact_output_log_q(net: DeepRBM, x: Tensor) -> Tensor:
    """``log q_N(y|x)`` for every output state; x (n, d) → (n, 2^{n_N})."""
    return exact_log_q(net, x)[-1]


def exact_fim(net: DeepRBM, x: Tensor) -> Tensor:
    """Exact input FIM of ``q_N(y|x)`` by enumeration and forward-mode autograd.

    Parameters
    ----------
    net : DeepRBM
        Tiny network (hidden and output layers ≤ ``MAX_EXACT_UNITS`` units).
    x : Tensor of shape (n, d) or (d,)

    Returns
    -------
    Tensor of shape (n, d, d) (or (d, d) for a 1-D input), float64
    """
    single = x.dim() == 1
    xb = (x.unsqueeze(0) if single else x).to(device=net.device, dtype=torch.float64)
    def log_q(v: Tensor) -> Tensor:
        return exact_output_log_q(net, v.unsqueeze(0))[0]

    Fx = torch.stack([fim_from_log_probs(log_q, xi) for xi in xb]).detach()
    return Fx[0] if single else Fx


def fim_from_log_probs(log_q: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """Fisher information ``Σ_s q_s ∇log q_s ∇log q_sᵀ`` of an enumerated distribution.

    Parameters
    ----------
    log_q : callable
        Maps parameters ``theta`` of shape (p,) to the log-probabilities of every state,
        shape (n_states,); differentiable (forward-mode autograd).
    theta : Tensor of shape (p,)

    Returns
    -------
    Tensor of shape (p, p), symmetrised.
    """
    J = torch.func.jacfwd(log_q)(theta)                 # (n_states, p)
    q = log_q(theta).exp()
    F = J.T @ (q.unsqueeze(-1) * J)
    return 0.5 * (F + F.T)


def exact_pair_distribution(net: DeepRBM, x: Tensor, k: int) -> Tensor:
    """Joint ``P(h_{k+1}, h_k | x) = t_{k+1}(h_{k+1}|h_k) q_k(h_k|x)``, 1 ≤ k < N.

    Returns
    -------
    Tensor of shape (n, 2^{n_{k+1}}, 2^{n_k})
    """
    if not 1 <= k < net.depth:
        raise ValueError(f"pair index k must be in 1..{net.depth - 1}, got {k}")
    lq = exact_log_q(net, x)[k - 1]
    return (log_kernel(net.layer(k + 1)).unsqueeze(0) + lq.unsqueeze(1)).exp()
