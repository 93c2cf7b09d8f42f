"""Derivative of the first layer's couplings with respect to the input, ``∂g^(1)/∂x``.

The first layer's effective Hamiltonian is ``H^(1)(h) = −(W_1 x + a_1)ᵀ h + const`` (eq. 6 with
the sign convention of eq. 7), so in any product basis

    ∂g^(1)_α/∂x = −W_1[j]   if O_α = h_j (a single),      0 for every higher product.

The same matrix solves the linear system of eq. 29,

    Σ_α ∂g_α/∂x_i [⟨O_γ⟩⟨O_α⟩ − ⟨O_γ O_α⟩] = Tr_h O_γ(h) ∂_{x_i} t_1(h|x),

i.e. ``−C X = Cov(O, s)`` with the score ``s = ∇_x log t_1(h|x) = W_1ᵀ(h − σ(W_1x + a_1))``.
:func:`dg1_dx_linear_system` solves it from moments (exact or sampled); the analytic form is what
the FIM chain uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.moments import CovarianceAccumulator
from rgaudit.rg.solve import SolveInfo, solve_cov

Tensor = torch.Tensor
OperatorFn = Callable[[Tensor], Tensor]


def subsets_from_names(names: Sequence[str]) -> list[tuple[int, ...]]:
    """Unit subsets from operator names such as ``"h3"`` or ``"h1*h5"`` (the one parser).

    Raises
    ------
    ValueError
        If a name is not a product of units ``h<i>``.
    """
    out = []
    for name in names:
        parts = name.split("*")
        if not all(re.fullmatch(r"h\d+", p) for p in parts):
            raise ValueError(f"operator name {name!r} is not a product of units 'h<i>'")
        out.append(tuple(int(p[1:]) for p in parts))
    return out


def operator_subsets(ops: Any, names: Sequence[str]) -> list[tuple[int, ...]]:
    """Unit subsets of an operator set: its ``subsets`` when it has them (a ``ProductBasis``),
    else parsed from its names (:func:`subsets_from_names`)."""
    subsets = getattr(ops, "subsets", None)
    if subsets is not None:
        return [tuple(int(i) for i in s) for s in subsets]
    return subsets_from_names(names)


def dg1_dx_analytic(W1: Tensor, subsets: Sequence[Sequence[int]] | None = None) -> Tensor:
    """Analytic ``∂g^(1)/∂x``: ``−W_1`` on single-unit operators, 0 on higher products.

    The one "``dg/d(input)``" of rgaudit: a layer whose units couple to a fixed real input
    through ``W`` (``g_j = −(W x)_j − a_j`` on singles). The generation chain uses it with
    ``W_Nᵀ`` (``∂g̃^(N-1)/∂y``, cloning eq. 23).

    Parameters
    ----------
    W1 : Tensor of shape (n_1, d)
        Weights from the input (``d`` features) to the layer (``n_1`` units).
    subsets : sequence of sequence of int, optional
        Operators of the basis as unit-index subsets; default: singles ``(0,), …, (n_1−1,)``.

    Returns
    -------
    Tensor of shape (m_1, d), float64
    """
    W1 = W1.detach().to(torch.float64)
    if subsets is None:
        return -W1.clone()
    out = torch.zeros(len(subsets), W1.shape[1], dtype=torch.float64, device=W1.device)
    for i, s in enumerate(subsets):
        if len(s) == 0:
            raise ValueError("the empty product (a constant) is not an operator of the basis")
        if len(s) == 1:
            out[i] = -W1[int(s[0])]
    return out


def dg1_dx_linear_system(c: Tensor, cov_o_score: Tensor, **solve_kw: Any
                         ) -> tuple[Tensor, SolveInfo]:
    """Solve eq. 29, ``−C X = Cov(O, s)``, for ``X = ∂g^(1)/∂x``.

    Parameters
    ----------
    c : Tensor of shape (m_1, m_1)
        Operator covariance at layer 1.
    cov_o_score : Tensor of shape (m_1, d)
        ``Tr_h O(h) ∂_x t_1(h|x) = Cov(O, s)`` with the score ``s``.
    **solve_kw
        Passed to :func:`rgaudit.rg.solve.solve_cov` (``var_tol``, ``max_cond``).

    Returns
    -------
    x : Tensor of shape (m_kept, d)
        Rows of the operators kept by the solve (constant operators dropped, see ``info``).
    info : SolveInfo
    """
    x, info = solve_cov(c.to(torch.float64), -cov_o_score.to(torch.float64), **solve_kw)
    return x, info


def first_layer_score(net: DeepRBM, x: Tensor, h1: Tensor) -> Tensor:
    """``∇_x log t_1(h_1|x) = W_1ᵀ(h_1 − σ(W_1 x + a_1))``.

    Parameters
    ----------
    x : Tensor of shape (n, d)
    h1 : Tensor of shape (n, S, n_1)

    Returns
    -------
    Tensor of shape (n, S, d), float64
    """
    lay = net.layer(1)
    p = lay.prob_up(x).to(torch.float64).unsqueeze(1)
    return (h1.to(torch.float64) - p) @ lay.W.detach().to(torch.float64)


def dg1_dx_sampled(
    net: DeepRBM,
    x: Tensor,
    ops: OperatorFn,
    n_samples: int,
    generator: torch.Generator | None = None,
    *,
    chunk: int = 1000,
    n_blocks: int = 16,
    **solve_kw: Any,
) -> tuple[Tensor, SolveInfo]:
    """Eq. 29 from sampled first-layer moments, for one input.

    Parameters
    ----------
    net : DeepRBM
    x : Tensor of shape (d,)
    ops : callable
        Operator values, (..., n_1) → (..., m_1).
    n_samples : int
    generator : torch.Generator, optional

    Returns
    -------
    x : Tensor of shape (m_kept, d)
    info : SolveInfo
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 for a covariance, got {n_samples}")
    xb = x.reshape(1, -1).to(device=net.device, dtype=net.dtype)
    acc: CovarianceAccumulator | None = None
    done = 0
    while done < n_samples:
        m = min(chunk, n_samples - done)
        h1 = net.layer(1).sample_up(xb.unsqueeze(1).expand(1, m, -1), generator)
        O = ops(h1).to(torch.float64)[0]
        s = first_layer_score(net, xb, h1)[0]
        if acc is None:
            acc = CovarianceAccumulator(O.shape[-1], s.shape[-1], n_blocks=n_blocks,
                                        device=O.device, with_bb=False)
        acc.update(O, s)
        done += m
    assert acc is not None  # n_samples ≥ 2: at least one chunk
    mom = acc.moments()
    return dg1_dx_linear_system(mom.c_aa, mom.c_ab, **solve_kw)
