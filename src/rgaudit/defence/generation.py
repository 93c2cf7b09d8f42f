"""The data-generation network of a DeepRBM (cloning eq. 9–13).

The same RBMs run downwards from a real-valued output ``y`` (an answer of the classifier):

    q̃_N(h_N | y)       = δ(h_N, y)
    q̃_{k-1}(h | y)     = Σ_{h'} t_k(h | h') q̃_k(h' | y)                   (eq. 9)
    q̃_k(h | y)         = exp(−H̃_y^(k)(h)) / Z̃,   H̃^(k) = Σ_α g̃^(k)_α O_α(h)   (eq. 11–12)
    T̃^(k)_αβ           = ∂g̃^(k-1)_α / ∂g̃^(k)_β,   k = N−1, …, 1               (eq. 13)

The first step is explicit (eq. 23): ``q̃_{N-1}(h|y) = t_N(h|y) = Π_i σ(z_i)^{h_i} σ(−z_i)^{1−h_i}``
with ``z = W_Nᵀ y + b_N``, so in the sign convention ``H = +Σ g O`` the couplings of the single
operators are ``g̃^(N-1)_i = −z_i`` and ``∂g̃^(N-1)/∂y = −W_Nᵀ`` on singles, 0 on higher products —
the upward first-layer formula of DESIGN.md with the roles of the layers swapped.

Every further step is an ordinary MCRG step on a chain of kernels, so the stability matrices
``T̃ = C⁻¹ D`` (``C`` the operator covariance of the lower layer, ``D`` its covariance with the
upper layer's operators on the joint ``t_k(h_{k-1}|h_k) q̃_k(h_k|y)``) come from the RG engine with
``direction="down"`` (:func:`generation_mcrg`). For tiny networks this module also enumerates the
generation chain exactly (:func:`exact_log_q_down`, :func:`exact_generation_stability`), which is
the reference the tests compare against.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from rgaudit.fisher.first_layer import dg1_dx_analytic
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.exact import MAX_EXACT_UNITS as MAX_UNITS
from rgaudit.rg.exact import (
    all_states,
    exact_chain,
    exact_network_pairs,
    log_first,
    log_kernel,
    propagate,
)
from rgaudit.rg.operators import Operators, complete_products, complete_subsets
from rgaudit.rg.solve import MAX_COND

if TYPE_CHECKING:
    from rgaudit.rg.mcrg import MCRGResult

Tensor = torch.Tensor


def _as_outputs(net: DeepRBM, y: Tensor) -> tuple[Tensor, bool]:
    y = torch.as_tensor(y)
    single = y.dim() == 1
    yb = y.unsqueeze(0) if single else y
    if yb.dim() != 2 or yb.shape[-1] != net.widths[-1]:
        raise ValueError(f"outputs y must have shape (n, {net.widths[-1]}), got {tuple(y.shape)}")
    if not torch.isfinite(yb).all():
        raise ValueError("outputs y contain NaN or inf")
    return yb.to(device=net.device, dtype=torch.float64), single


def top_couplings(net: DeepRBM, y: Tensor) -> Tensor:
    """Single-operator couplings of ``H̃^(N-1)``: ``g̃_i = −(W_Nᵀ y + b_N)_i`` (eq. 23).

    Parameters
    ----------
    y : Tensor of shape (n, n_N)

    Returns
    -------
    Tensor of shape (n, n_{N-1}), float64
    """
    yb, _ = _as_outputs(net, y)
    lay = net.layer(net.depth)
    return -(yb @ lay.W.to(torch.float64) + lay.b.to(torch.float64))


def dg_top_dy(net: DeepRBM, basis: Any = None) -> Tensor:
    """``∂g̃^(N-1)/∂y = −W_Nᵀ`` on the single operators of layer N−1, 0 on higher products.

    Parameters
    ----------
    net : DeepRBM
    basis : ProductBasis, optional
        Operator basis of layer N−1 (anything with ``subsets``); default: the singles in unit
        order.

    Returns
    -------
    Tensor of shape (n_ops, n_N), float64
    """
    W = net.layer(net.depth).W                             # (n_N, n_{N-1})
    return dg1_dx_analytic(W.T, None if basis is None else list(basis.subsets))


def dg_top_dy_complete(net: DeepRBM) -> Tensor:
    """``∂g̃^(N-1)/∂y`` in the complete basis of layer N−1 (mask order); (2^n − 1, n_N)."""
    W = net.layer(net.depth).W
    return dg1_dx_analytic(W.T, complete_subsets(W.shape[1]))


# -- exact enumeration ------------------------------------------------------------------------
def _check_tiny(net: DeepRBM, include_input: bool) -> None:
    widths = net.widths[:-1] if include_input else net.widths[1:-1]
    if any(w > MAX_UNITS for w in widths):
        raise ValueError(f"exact generation needs layers 0..N-1 of at most {MAX_UNITS} units; "
                         f"widths are {net.widths}")


def log_transition_down(net: DeepRBM, k: int) -> Tensor:
    """``log t_k(h_{k-1} | h_k)`` for all states, shape (2^{n_{k-1}}, 2^{n_k}), float64."""
    return log_kernel(net.layer(k), "down")


def exact_log_q_down(net: DeepRBM, y: Tensor, *, downto: int = 0) -> list[Tensor]:
    """``[log q̃_{N-1}, …, log q̃_downto]`` for all states; differentiable in ``y``.

    Uses the RG engine's enumeration (:func:`rgaudit.rg.exact.exact_chain`, direction "down").

    Parameters
    ----------
    net : DeepRBM
        Layers ``downto … N−1`` of at most ``MAX_UNITS`` units.
    y : Tensor of shape (n, n_N)
        Real outputs.

    Returns
    -------
    list of Tensor, entry for layer k of shape (n, 2^{n_k}), float64
    """
    _check_tiny(net, include_input=downto == 0)
    if downto == 0:
        return [t for t in exact_chain(net, y, "down")[1:] if t is not None]
    lay = net.layer(net.depth)
    out = [log_first(lay, y, "down")]
    for k in range(net.depth - 1, downto, -1):
        out.append(propagate(out[-1], log_transition_down(net, k)))
    return out


def exact_log_q_up(net: DeepRBM, x: Tensor, *, upto: int) -> list[Tensor]:
    """``[log q_1, …, log q_upto]`` of the classification chain for real inputs ``x`` (n, n_0).

    Only layers 1..upto need to be tiny.
    """
    if any(w > MAX_UNITS for w in net.widths[1:upto + 1]):
        raise ValueError(f"exact upward chain needs layers 1..{upto} of at most {MAX_UNITS} "
                         f"units; widths are {net.widths}")
    out = [log_first(net.layer(1), x, "up")]
    for k in range(2, upto + 1):
        out.append(propagate(out[-1], log_kernel(net.layer(k), "up")))
    return out


@dataclass(frozen=True)
class ExactGenerationChain:
    """Exact stability matrices of the generation chain in the complete basis.

    Attributes
    ----------
    Ts : list of Tensor
        ``[T̃^(N-1), …, T̃^(1)]`` in the order they are applied; ``T̃^(k)`` has shape
        (n, 2^{n_{k-1}} − 1, 2^{n_k} − 1).
    C0 : Tensor of shape (n, 2^{n_0} − 1, 2^{n_0} − 1)
        Operator covariance of ``q̃_0(·|y)``.
    dg_dy : Tensor of shape (2^{n_{N-1}} − 1, n_N)
        ``∂g̃^(N-1)/∂y`` (complete basis).
    n_regularised : int
        Solves ``C T̃ = D`` (one per output and layer) that needed Tikhonov regularisation.
    n_dropped : int
        Constant operators dropped over all solves (their rows of ``T̃`` are set to 0).
    max_cond : float
        Largest condition number of a solved covariance block.
    dropped : list of list of list of int
        ``dropped[i][j]``: operators dropped as constant in solve ``i`` (order of ``Ts``) for
        output ``j``.
    regularised : list of list of bool
        ``regularised[i][j]``: whether that solve was regularised (threshold
        :data:`rgaudit.rg.solve.MAX_COND`).
    """

    Ts: list[Tensor]
    C0: Tensor
    dg_dy: Tensor
    n_regularised: int = 0
    n_dropped: int = 0
    max_cond: float = 0.0
    dropped: list[list[list[int]]] = field(default_factory=list)
    regularised: list[list[bool]] = field(default_factory=list)

    def quality(self) -> dict[str, Any]:
        """Plain-data metadata of the solves (for every FIM built from this chain)."""
        return {"max_cond_threshold": MAX_COND, "dropped": self.dropped,
                "regularised": self.regularised, "n_regularised": self.n_regularised,
                "n_dropped": self.n_dropped, "max_cond": self.max_cond,
                "replicates_regularised": None, "n_unestimated": 0,
                "rests_on_unestimated": False}


def _cov_from_weights(q: Tensor, A: Tensor) -> Tensor:
    """``Cov(A, A)`` under state weights ``q`` (n, S); A (S, m)."""
    ea = q @ A
    return A.T @ (q.unsqueeze(-1) * A) - ea.unsqueeze(-1) * ea.unsqueeze(-2)


def exact_generation_stability(net: DeepRBM, y: Tensor) -> ExactGenerationChain:
    """``T̃^(k) = C⁻¹ D`` with exact expectations in the complete basis (tiny networks).

    Parameters
    ----------
    y : Tensor of shape (n, n_N)

    Returns
    -------
    ExactGenerationChain
    """
    yb, _ = _as_outputs(net, y)
    with torch.no_grad():
        return _exact_generation_stability(net, yb)


def _exact_generation_stability(net: DeepRBM, yb: Tensor) -> ExactGenerationChain:
    # the RG engine's exact pairs along the downward chain: pair i is layer N-i → N-i-1, so
    # pairs 1..N-1 are T̃^(N-1), …, T̃^(1) (complete bases, the one solve policy)
    pairs = [p for p in exact_network_pairs(net, yb, "down", max_units=MAX_UNITS)[1:]
             if p is not None]
    Ts = [p.T for p in pairs]
    dropped = [[[int(d) for d in i.dropped.tolist()] for i in p.solve_info] for p in pairs]
    regularised = [[bool(i.regularised) for i in p.solve_info] for p in pairs]
    n_reg = sum(sum(r) for r in regularised)
    n_drop = sum(len(d) for ds in dropped for d in ds)
    max_cond = max([0.0, *(float(i.cond) for p in pairs for i in p.solve_info)])
    if n_reg or n_drop:
        warnings.warn(f"exact generation chain: {n_reg} solve(s) regularised, {n_drop} "
                      f"constant operator(s) dropped (max cond {max_cond:.3g}); the chain FIM "
                      "may differ from the exact one", RuntimeWarning, stacklevel=3)
    if pairs:
        C0 = pairs[-1].C_next                               # Cov of layer 0's operators
    else:                                                   # one layer: q̃_0 directly
        q0 = exact_log_q_down(net, yb)[-1].exp()
        C0 = _cov_from_weights(q0, complete_products(all_states(net.widths[0],
                                                                device=q0.device)))
    return ExactGenerationChain(Ts, C0, dg_top_dy_complete(net), n_reg, n_drop, max_cond,
                                dropped, regularised)


# -- Monte Carlo (the RG engine, direction="down") --------------------------------------------
def generation_mcrg(
    net: DeepRBM,
    y: Tensor,
    bases: str | Operators | Sequence[str | Operators | None],
    n_samples: int,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> MCRGResult:
    """MCRG estimate of the generation chain's ``T̃`` and covariances from real outputs ``y``.

    Thin wrapper over :func:`rgaudit.rg.mcrg.mcrg_network` with ``direction="down"``; the
    result's ``layers`` are ordered as the chain runs (N−1 → N−2, …, 1 → 0), so
    :func:`rgaudit.fisher.chain.fim_from_mcrg` with ``dg1_dx = dg_top_dy(...)`` gives the
    generation FIM.

    Parameters
    ----------
    net : DeepRBM
    y : Tensor of shape (n, n_N)
    bases : str or sequence
        Operator basis spec(s), as accepted by the RG engine.
    n_samples : int
        Chains per output.
    generator : torch.Generator, optional
    **kwargs
        Passed to ``mcrg_network`` (chunk size, jackknife blocks, solve tolerances).

    Returns
    -------
    rgaudit.rg.mcrg.MCRGResult
    """
    from rgaudit.rg.mcrg import mcrg_network

    yb, _ = _as_outputs(net, y)
    return mcrg_network(net, yb, bases, n_samples, generator=generator, direction="down",
                        **kwargs)
