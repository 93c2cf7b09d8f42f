"""Exact effective Hamiltonians and stability matrices for small layers, by enumeration.

For layers of at most ~12–14 units every distribution is a vector over the ``2^n`` binary states
(state ``s`` has unit ``i`` = bit ``i`` of ``s``; the same ordering as the complete basis of
:mod:`rgaudit.rg.operators`). Everything is float64 and in log space.

- ``q_k(h|x)`` along a :class:`~rgaudit.nets.deep_rbm.DeepRBM` (eq. 2), upwards from a real input
  ``x`` or downwards from a real output ``y``: the first kernel is applied analytically to the real
  vector, the next ones by ``log q_{k+1}(h) = logsumexp_{h'} [log t(h|h') + log q_k(h')]``.
- Couplings in the complete basis by the Möbius transform of ``−log q``:
  ``−log q(s) = log Z + Σ_{∅≠α⊆s} g_α``  ⇒  ``g_α = Σ_{β⊆α} (−1)^{|α|−|β|} (−log q(β))``.
- The coupling map ``g^(k) ↦ g^(k+1)`` of one kernel and its Jacobian (the exact stability
  matrix) by autograd in float64, or by central finite differences.
- Exact moments ``C_next``, ``D``, ``C_prev`` of a layer pair from the exact joint distribution
  ``t(h_next|h_prev) q(h_prev)``, so ``T = C⁻¹D`` can be formed with exact expectations; in the
  complete basis it equals the Jacobian (DESIGN.md fact 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from rgaudit.rg.network import LayerStack, StochasticLayer
from rgaudit.rg.operators import Operators, ProductBasis
from rgaudit.rg.pair_moments import PairMoments
from rgaudit.rg.solve import MAX_COND, SolveInfo, constant_operators, solve_batch

Tensor = torch.Tensor

#: Default largest layer enumerated exactly.
MAX_EXACT_UNITS = 14
_F64 = torch.float64


def all_states(n: int, *, device: torch.device | str | None = None) -> Tensor:
    """All binary states of ``n`` units; row ``s`` holds the bits of ``s``. Shape (2^n, n)."""
    s = torch.arange(2**n, device=device)
    return ((s.unsqueeze(-1) >> torch.arange(n, device=device)) & 1).to(_F64)


def _check_units(n: int, max_units: int) -> None:
    if n > max_units:
        raise ValueError(f"exact enumeration of a {n}-unit layer (2^{n} states) exceeds "
                         f"max_units={max_units}; use the MCRG estimator instead")


def _n_units(size: int) -> int:
    n = int(round(math.log2(size)))
    if 2**n != size:
        raise ValueError(f"last dimension {size} is not a power of two")
    return n


def mobius(f: Tensor) -> Tensor:
    """Möbius transform over subsets: ``c(α) = Σ_{β⊆α} (−1)^{|α|−|β|} f(β)``.

    Parameters
    ----------
    f : Tensor of shape (..., 2^n)
        A function of the subset mask.

    Returns
    -------
    Tensor of shape (..., 2^n); differentiable (no in-place operations).
    """
    n = _n_units(f.shape[-1])
    lead = f.shape[:-1]
    for i in range(n):
        v = f.reshape(*lead, 2 ** (n - 1 - i), 2, 2**i)
        f = torch.stack([v[..., 0, :], v[..., 1, :] - v[..., 0, :]], dim=-2).reshape(*lead, -1)
    return f


def zeta(c: Tensor) -> Tensor:
    """Inverse of :func:`mobius`: ``f(s) = Σ_{α⊆s} c(α)``; shape (..., 2^n)."""
    n = _n_units(c.shape[-1])
    lead = c.shape[:-1]
    for i in range(n):
        v = c.reshape(*lead, 2 ** (n - 1 - i), 2, 2**i)
        c = torch.stack([v[..., 0, :], v[..., 1, :] + v[..., 0, :]], dim=-2).reshape(*lead, -1)
    return c


def couplings_from_logq(logq: Tensor) -> Tensor:
    """Complete-basis couplings ``g`` of ``q = exp(−H)/Z``.

    Parameters
    ----------
    logq : Tensor of shape (..., 2^n)
        Log-probabilities of the states (need not be normalised: only ``log Z`` changes).

    Returns
    -------
    Tensor of shape (..., 2^n − 1)
        ``g_α`` at index ``mask(α) − 1``.
    """
    return mobius(-logq)[..., 1:]


def logq_from_couplings(g: Tensor) -> Tensor:
    """Normalised ``log q(s) = −H(s) − log Z`` for complete-basis couplings ``g`` (..., 2^n − 1)."""
    h = zeta(torch.cat([torch.zeros_like(g[..., :1]), g], dim=-1))
    return -h - torch.logsumexp(-h, dim=-1, keepdim=True)


# -- kernels and chains -----------------------------------------------------------------------
def _rbm64(rbm: StochasticLayer) -> tuple[Tensor, Tensor, Tensor]:
    return (rbm.W.detach().to(_F64), rbm.a.detach().to(_F64), rbm.b.detach().to(_F64))


def log_kernel(rbm: StochasticLayer, direction: str = "up", *,
               max_units: int = MAX_EXACT_UNITS) -> Tensor:
    """``log t(h_next | h_prev)`` for all binary states.

    Parameters
    ----------
    rbm : StochasticLayer
    direction : {"up", "down"}
        Up: ``h_prev`` = lower units (n_in), ``h_next`` = upper units (n_out). Down: reversed.

    Returns
    -------
    Tensor of shape (2^{n_next}, 2^{n_prev}), float64.
    """
    w, a, b = _rbm64(rbm)
    if direction == "up":
        n_prev, n_next, wt, bias = rbm.n_in, rbm.n_out, w, a
    elif direction == "down":
        n_prev, n_next, wt, bias = rbm.n_out, rbm.n_in, w.T, b
    else:
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    _check_units(max(n_prev, n_next), max_units)
    z = all_states(n_prev, device=w.device) @ wt.T + bias          # (S_prev, n_next)
    hn = all_states(n_next, device=w.device)                        # (S_next, n_next)
    return (hn @ z.T) - F.softplus(z).sum(-1)                       # (S_next, S_prev)


def log_first(rbm: StochasticLayer, v: Tensor, direction: str = "up", *,
              max_units: int = MAX_EXACT_UNITS) -> Tensor:
    """``log t(h | v)`` for a real vector ``v`` (..., n_prev) over all states; (..., 2^{n_next})."""
    w, a, b = _rbm64(rbm)
    wt, bias = (w, a) if direction == "up" else (w.T, b)
    _check_units(wt.shape[0], max_units)
    z = v.to(_F64) @ wt.T + bias                                    # (..., n_next)
    return z @ all_states(wt.shape[0], device=w.device).T - F.softplus(z).sum(-1, keepdim=True)


def propagate(logq_prev: Tensor, logk: Tensor) -> Tensor:
    """``log q_next = logsumexp_{h'} [log t(h|h') + log q_prev(h')]``.

    Parameters
    ----------
    logq_prev : Tensor of shape (..., S_prev)
    logk : Tensor of shape (S_next, S_prev)

    Returns
    -------
    Tensor of shape (..., S_next)
    """
    return torch.logsumexp(logk + logq_prev.unsqueeze(-2), dim=-1)


def network_kernels(net: LayerStack, direction: str = "up") -> list[StochasticLayer]:
    """The RBMs of a DeepRBM in chain order (``t_1..t_N`` up, ``t_N..t_1`` down)."""
    ks = range(1, net.depth + 1) if direction == "up" else range(net.depth, 0, -1)
    return [net.layer(k) for k in ks]


def exact_chain(net: LayerStack, v: Tensor, direction: str = "up", *,
                max_units: int = MAX_EXACT_UNITS) -> list[Tensor | None]:
    """Exact ``log q`` at every chain position for real input(s) ``v``.

    Parameters
    ----------
    net : DeepRBM
    v : Tensor of shape (..., n_0) (up) or (..., n_N) (down)
    direction : {"up", "down"}

    Returns
    -------
    list of Tensor
        Entry ``j`` is ``log q`` at chain position ``j``, shape (..., 2^{n_j}); entry 0 is
        ``None`` (the real input is not a distribution over binary states).
    """
    rbms = network_kernels(net, direction)
    logq = log_first(rbms[0], v, direction, max_units=max_units)
    out: list[Tensor | None] = [None, logq]
    for rbm in rbms[1:]:
        logq = propagate(logq, log_kernel(rbm, direction, max_units=max_units))
        out.append(logq)
    return out


# -- coupling map and its Jacobian ------------------------------------------------------------
def coupling_map(g_prev: Tensor, logk: Tensor) -> Tensor:
    """Couplings of the next layer given complete-basis couplings of the previous one.

    Parameters
    ----------
    g_prev : Tensor of shape (..., 2^{n_prev} − 1)
    logk : Tensor of shape (2^{n_next}, 2^{n_prev})

    Returns
    -------
    Tensor of shape (..., 2^{n_next} − 1)
    """
    return couplings_from_logq(propagate(logq_from_couplings(g_prev), logk))


def exact_stability(g_prev: Tensor, logk: Tensor, *, method: str = "autograd",
                    eps: float = 1e-5) -> Tensor:
    """Jacobian ``T = ∂g_next/∂g_prev`` of the exact coupling map (complete bases).

    Parameters
    ----------
    g_prev : Tensor of shape (2^{n_prev} − 1,)
    logk : Tensor of shape (2^{n_next}, 2^{n_prev})
    method : {"autograd", "fd"}
        Reverse-mode autograd in float64, or central finite differences with step ``eps``.

    Returns
    -------
    Tensor of shape (2^{n_next} − 1, 2^{n_prev} − 1)
    """
    g_prev = g_prev.detach().to(_F64)
    logk = logk.detach().to(_F64)
    if method == "autograd":
        return torch.autograd.functional.jacobian(lambda g: coupling_map(g, logk), g_prev,
                                                  vectorize=True)
    if method == "fd":
        m = g_prev.shape[-1]
        e = torch.eye(m, dtype=_F64, device=g_prev.device) * eps
        plus = coupling_map(g_prev + e, logk)
        minus = coupling_map(g_prev - e, logk)
        return ((plus - minus) / (2 * eps)).T
    raise ValueError(f"method must be 'autograd' or 'fd', got {method!r}")


# -- exact moments ---------------------------------------------------------------------------
@dataclass
class ExactPair(PairMoments):
    """Exact moments of a layer pair and ``T = C⁻¹D``.

    Attributes
    ----------
    T, C_next, C_prev, D, mean_next, mean_prev
        As in :class:`~rgaudit.rg.pair_moments.PairMoments`, exact.
    solve_info : list of SolveInfo (one per flattened batch element)
    """

    solve_info: list[SolveInfo]


def exact_moments(
    logq_prev: Tensor, logk: Tensor, ops_prev: Operators | None = None,
    ops_next: Operators | None = None, *, var_tol: float = 1e-12, max_cond: float = MAX_COND,
) -> ExactPair:
    """Exact ``C_next``, ``D``, ``C_prev`` and ``T = C_next⁻¹ D`` of one kernel.

    Parameters
    ----------
    logq_prev : Tensor of shape (*batch, 2^{n_prev})
        Exact ``log q`` of the previous layer.
    logk : Tensor of shape (2^{n_next}, 2^{n_prev})
        ``log t(h_next | h_prev)``.
    ops_prev, ops_next : Operators, optional
        Operator sets (default: complete bases).
    var_tol, max_cond : float
        Solve policy (exact moments tolerate a larger condition number).

    Returns
    -------
    ExactPair
    """
    n_prev, n_next = _n_units(logk.shape[1]), _n_units(logk.shape[0])
    ops_prev = ops_prev or ProductBasis.complete(n_prev)
    ops_next = ops_next or ProductBasis.complete(n_next)
    dev = logk.device
    o_p = ops_prev.evaluate(all_states(n_prev, device=dev)).to(_F64)      # (Sp, mp)
    o_n = ops_next.evaluate(all_states(n_next, device=dev)).to(_F64)      # (Sn, mn)
    q_prev = torch.softmax(logq_prev.to(_F64), dim=-1)                   # (*b, Sp)
    joint = torch.exp(logk + torch.log(q_prev).unsqueeze(-2))             # (*b, Sn, Sp)
    q_next = joint.sum(-1)
    mp = q_prev @ o_p
    mn = q_next @ o_n
    c_prev = o_p.T @ (q_prev.unsqueeze(-1) * o_p) - mp.unsqueeze(-1) * mp.unsqueeze(-2)
    c_next = o_n.T @ (q_next.unsqueeze(-1) * o_n) - mn.unsqueeze(-1) * mn.unsqueeze(-2)
    d = o_n.T @ joint @ o_p - mn.unsqueeze(-1) * mp.unsqueeze(-2)
    batch = c_next.shape[:-2]
    nb = math.prod(batch)
    cn_f = c_next.reshape(nb, *c_next.shape[-2:])
    cp_f = c_prev.reshape(nb, *c_prev.shape[-2:])
    d_f = d.reshape(nb, *d.shape[-2:])
    colmask = torch.stack([~constant_operators(cp_f[b], var_tol) for b in range(nb)])
    t, _, infos = solve_batch(cn_f, d_f * colmask.to(_F64).unsqueeze(-2), var_tol=var_tol,
                              max_cond=max_cond)
    return ExactPair(t.reshape(d.shape), c_next, c_prev, d, mn, mp, infos)


def exact_network_pairs(
    net: LayerStack, v: Tensor, direction: str = "up", *,
    ops: list[Operators | None] | None = None, max_units: int = MAX_EXACT_UNITS,
) -> list[ExactPair | None]:
    """Exact moments and ``T`` for every chain pair ``i → i+1`` with ``i ≥ 1``.

    Parameters
    ----------
    net : DeepRBM
    v : Tensor of shape (*batch, n_0) (up) or (*batch, n_N) (down)
    direction : {"up", "down"}
    ops : list of Operators or None, optional
        One per chain position (default complete bases).

    Returns
    -------
    list
        Entry ``i`` for pair ``i → i+1``; entry 0 is ``None``. Indices match
        :class:`~rgaudit.rg.mcrg.MCRGResult.layers`.
    """
    logqs = exact_chain(net, v, direction, max_units=max_units)
    rbms = network_kernels(net, direction)
    out: list[ExactPair | None] = [None]
    for i in range(1, len(rbms)):
        op_p = None if ops is None else ops[i]
        op_n = None if ops is None else ops[i + 1]
        logq = logqs[i]
        assert logq is not None  # only entry 0 (the real input) is None
        out.append(exact_moments(logq, log_kernel(rbms[i], direction, max_units=max_units),
                                 op_p, op_n))
    return out


def exact_network_jacobians(net: LayerStack, v: Tensor, direction: str = "up", *,
                            method: str = "autograd",
                            max_units: int = MAX_EXACT_UNITS) -> list[Tensor | None]:
    """Exact stability matrices ``∂g^(i+1)/∂g^(i)`` (complete bases) for one real input.

    Parameters
    ----------
    v : Tensor of shape (n_0,) (up) or (n_N,) (down)

    Returns
    -------
    list
        Entry ``i`` (``i ≥ 1``) of shape (2^{n_{i+1}} − 1, 2^{n_i} − 1); entry 0 is ``None``.
    """
    if v.dim() != 1:
        raise ValueError(f"expected one input vector, got shape {tuple(v.shape)}")
    logqs = exact_chain(net, v, direction, max_units=max_units)
    rbms = network_kernels(net, direction)
    out: list[Tensor | None] = [None]
    for i in range(1, len(rbms)):
        logq = logqs[i]
        assert logq is not None  # only entry 0 (the real input) is None
        g = couplings_from_logq(logq)
        out.append(exact_stability(g, log_kernel(rbms[i], direction, max_units=max_units),
                                   method=method))
    return out


# -- output layer from samples ----------------------------------------------------------------
@torch.no_grad()
def output_logq_mc(net: LayerStack, x: Tensor, n_samples: int,
                   generator: torch.Generator | None = None, *, chunk: int = 1000,
                   max_units: int = 12) -> Tensor:
    """``log q_N(y|x)`` over all output states, averaging ``t_N(y|h_{N-1})`` over chains.

    ``q_N(y|x) = E_{h_{N-1} ~ q_{N-1}(·|x)} t_N(y|h_{N-1})`` is estimated by the sample mean in log
    space (never zero), which is exact in the limit of many chains.

    Parameters
    ----------
    net : DeepRBM
    x : Tensor of shape (n_inputs, n_0)
    n_samples : int
        Chains per input.
    generator : torch.Generator, optional
    chunk : int
        Chains per step (memory ``chunk · 2^{n_N}`` per input).

    Returns
    -------
    Tensor of shape (n_inputs, 2^{n_N}), float64, normalised.
    """
    n_out = net.widths[-1]
    _check_units(n_out, max_units)
    top = net.layer(net.depth)
    ys = all_states(n_out, device=net.device)
    x = torch.as_tensor(x).to(device=net.device, dtype=net.dtype)
    parts = []
    done = 0
    while done < n_samples:
        s = min(chunk, n_samples - done)
        h = (x.unsqueeze(1).expand(x.shape[0], s, x.shape[1]) if net.depth == 1
             else net.sample_up(x, s, generator, upto=net.depth - 1)[-1])
        z = top.logits_up(h).to(_F64)                                  # (n, s, n_out)
        lt = z @ ys.T - F.softplus(z).sum(-1, keepdim=True)             # (n, s, 2^n_out)
        parts.append(torch.logsumexp(lt, dim=1))
        done += s
    lq = torch.logsumexp(torch.stack(parts), dim=0) - math.log(n_samples)
    return lq - torch.logsumexp(lq, dim=-1, keepdim=True)
