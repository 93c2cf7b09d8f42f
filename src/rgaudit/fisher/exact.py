"""Exact input FIM of a tiny DeepRBM by enumerating every hidden and output state.

``q_1(h|x) = t_1(h|x)``, ``q_k = Σ_{h'} t_k(h|h') q_{k-1}(h'|x)`` (eq. 2) is computed as a chain of
``2^{n_k} × 2^{n_{k-1}}`` transition matrices in log space (float64), and the FIM

    F(x) = Σ_y q_N(y|x) ∇_x log q_N(y|x) ∇_x log q_N(y|x)ᵀ

comes from forward-mode autograd of ``log q_N``. Practical for all hidden and output layers up
to about 12 units (``2^12 × 2^12`` transition matrices).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F_

from rgaudit.nets.deep_rbm import DeepRBM

Tensor = torch.Tensor

MAX_UNITS = 14


def all_states(n: int, *, dtype: torch.dtype = torch.float64,
               device: torch.device | str = "cpu") -> Tensor:
    """Every {0,1} vector of length ``n``; row ``s`` holds the bits of ``s`` (unit 0 = LSB).

    Returns
    -------
    Tensor of shape (2^n, n)
    """
    if n > MAX_UNITS:
        raise ValueError(f"refusing to enumerate 2^{n} states (limit 2^{MAX_UNITS}); use the "
                         "Monte Carlo estimators for wide layers")
    s = torch.arange(2**n, device=device)
    return ((s.unsqueeze(-1) >> torch.arange(n, device=device)) & 1).to(dtype)


def _check_tiny(net: DeepRBM) -> None:
    wide = [w for w in net.widths[1:] if w > MAX_UNITS]
    if wide:
        raise ValueError(f"exact enumeration needs every hidden/output layer ≤ {MAX_UNITS} units; "
                         f"widths are {net.widths}")


def log_transition(net: DeepRBM, k: int) -> Tensor:
    """``log t_k(h_k | h_{k-1})`` for all states, shape (2^{n_k}, 2^{n_{k-1}}), float64 (k ≥ 2)."""
    lay = net.layer(k)
    W, a = lay.W.to(torch.float64), lay.a.to(torch.float64)
    lo = all_states(lay.n_in, device=W.device)
    hi = all_states(lay.n_out, device=W.device)
    z = lo @ W.T + a                                     # (S_lo, n_out)
    return hi @ z.T - F_.softplus(z).sum(-1)             # (S_hi, S_lo)


def log_q_first(net: DeepRBM, x: Tensor) -> Tensor:
    """``log q_1(h|x) = log t_1(h|x)`` for all states; x (n, d) → (n, 2^{n_1})."""
    lay = net.layer(1)
    W, a = lay.W.to(torch.float64), lay.a.to(torch.float64)
    z = x.to(torch.float64) @ W.T + a                    # (n, n_1)
    hs = all_states(lay.n_out, device=W.device)
    return z @ hs.T - F_.softplus(z).sum(-1, keepdim=True)


def exact_log_q(net: DeepRBM, x: Tensor) -> list[Tensor]:
    """``[log q_1, …, log q_N]``, each of shape (n, 2^{n_k}); differentiable in ``x``.

    Parameters
    ----------
    net : DeepRBM
        Every hidden and output layer must have at most ``MAX_UNITS`` units.
    x : Tensor of shape (n, d)
    """
    _check_tiny(net)
    lq = log_q_first(net, x)
    out = [lq]
    for k in range(2, net.depth + 1):
        lt = log_transition(net, k)                      # (S_k, S_{k-1})
        lq = torch.logsumexp(lt.unsqueeze(0) + lq.unsqueeze(1), dim=-1)
        out.append(lq)
    return out


def exact_output_log_q(net: DeepRBM, x: Tensor) -> Tensor:
    """``log q_N(y|x)`` for every output state; x (n, d) → (n, 2^{n_N})."""
    return exact_log_q(net, x)[-1]


def exact_fim(net: DeepRBM, x: Tensor) -> Tensor:
    """Exact input FIM of ``q_N(y|x)`` by enumeration and forward-mode autograd.

    Parameters
    ----------
    net : DeepRBM
        Tiny network (hidden and output layers ≤ ``MAX_UNITS`` units).
    x : Tensor of shape (n, d) or (d,)

    Returns
    -------
    Tensor of shape (n, d, d) (or (d, d) for a 1-D input), float64
    """
    single = x.dim() == 1
    xb = (x.unsqueeze(0) if single else x).to(device=net.device, dtype=torch.float64)
    out = []
    for xi in xb:
        def f(v: Tensor) -> Tensor:
            return exact_output_log_q(net, v.unsqueeze(0))[0]
        J = torch.func.jacfwd(f)(xi)                     # (2^{n_N}, d)
        q = f(xi).exp()
        Fi = J.T @ (q.unsqueeze(-1) * J)
        out.append(0.5 * (Fi + Fi.T))
    Fx = torch.stack(out).detach()
    return Fx[0] if single else Fx


def exact_pair_distribution(net: DeepRBM, x: Tensor, k: int) -> Tensor:
    """Joint ``P(h_{k+1}, h_k | x) = t_{k+1}(h_{k+1}|h_k) q_k(h_k|x)``, 1 ≤ k < N.

    Returns
    -------
    Tensor of shape (n, 2^{n_{k+1}}, 2^{n_k})
    """
    if not 1 <= k < net.depth:
        raise ValueError(f"pair index k must be in 1..{net.depth - 1}, got {k}")
    lq = exact_log_q(net, x)[k - 1]
    return (log_transition(net, k + 1).unsqueeze(0) + lq.unsqueeze(1)).exp()
