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
  Cheap and deterministic, a documented FAST OPTION only: it ignores the correlations the
  sampled chain carries. Its top direction is right (|cos| ≥ 0.99 against exact on small nets)
  but its magnitude is not: the top eigenvalue is off by a factor 1.1–3 on the small nets of
  ``tests/test_defence_generation_fim.py`` (up to ~10 reported in issue 14) and is 6× the
  singles-chain value on the 64-100-100-10 digits network (docs/cloning.md).
- ``auto`` (:data:`DEFAULT_ESTIMATOR`, the default everywhere): ``exact-chain`` when layers
  0..N−1 are small enough to enumerate (:func:`enumerable`), else ``chain`` with
  :data:`DEFAULT_CHAIN_BASIS` and :data:`DEFAULT_CHAIN_SAMPLES` (:func:`resolve_estimator`).
"""

from __future__ import annotations

from typing import Any

import torch

from rgaudit.choices import GENERATION_ESTIMATORS as ESTIMATORS
from rgaudit.choices import GenerationEstimator as Estimator
from rgaudit.defence.generation import (
    _as_outputs,
    exact_generation_stability,
    exact_log_q_down,
    generation_mcrg,
)
from rgaudit.fisher.chain import ChainFIM, chain_fim, chain_fim_jackknife, chain_quality
from rgaudit.fisher.exact import fim_from_log_probs
from rgaudit.fisher.first_layer import dg1_dx_analytic, operator_subsets
from rgaudit.nets.deep_rbm import DeepRBM

Tensor = torch.Tensor

#: THE default generation-FIM estimator of the library, the poisoner, the cloning study and the
#: CLI (issue 14 item 2): exact where the layers can be enumerated, MCRG chain otherwise.
DEFAULT_ESTIMATOR: Estimator = "auto"
#: Largest transition table ``Σ_k 2^{n_k} 2^{n_{k-1}}`` (layers 0..N−1) that ``auto`` enumerates.
EXACT_MAX_TABLE = 2**17
#: Operator basis and chains per output of the ``chain`` estimator when none are given. On the
#: 64-100-100-10 digits network 4000 chains give a top eigenvalue with ~4% jackknife error.
DEFAULT_CHAIN_BASIS = "singles"
DEFAULT_CHAIN_SAMPLES = 4000
#: Seed of the ``chain`` estimator when no generator is given: the documented default of library
#: calls made without one (answers stay reproducible). Not a stream of a run: the poisoner keys
#: each answer's chains by the deployment's seed (role ``"poison.answer"``, docs/design.md).
DEFAULT_CHAIN_SEED = 0
#: Memory budget of one MCRG batch of outputs (jackknife-blocked moment sums, float64).
CHAIN_BATCH_BYTES = 256 * 2**20


def enumerable(net: DeepRBM) -> bool:
    """Whether layers 0..N−1 are small enough for the exact estimators (see EXACT_MAX_TABLE)."""
    w = list(net.widths[:-1])
    if max(w) > 14:
        return False
    table = sum(2 ** (a + b) for a, b in zip(w[:-1], w[1:], strict=True)) + 2 ** (2 * w[0])
    return table <= EXACT_MAX_TABLE


def resolve_estimator(net: DeepRBM, estimator: str = DEFAULT_ESTIMATOR) -> str:
    """The estimator ``auto`` stands for on ``net`` (other names are returned unchanged)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown generation-FIM estimator {estimator!r}; use one of "
                         f"{ESTIMATORS}")
    if estimator != "auto":
        return estimator
    return "exact-chain" if enumerable(net) else "chain"


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
    return exact_chain_generation_fim_meta(net, y).fim


def exact_chain_generation_fim_meta(net: DeepRBM, y: Tensor) -> ChainFIM:
    """:func:`exact_chain_generation_fim` with ``meta``: the estimator, dropped constant
    operators and regularised solves per layer and output, the condition-number threshold."""
    ch = exact_generation_stability(net, y)
    F = chain_fim(ch.dg_dy, ch.Ts, ch.C0).detach()
    return ChainFIM(F, meta={"estimator": "exact-chain", **ch.quality()})


def mcrg_generation_fim(
    net: DeepRBM, y: Tensor, bases: Any = DEFAULT_CHAIN_BASIS,
    n_samples: int = DEFAULT_CHAIN_SAMPLES,
    generator: torch.Generator | None = None, **kwargs: Any,
) -> ChainFIM:
    """Chain-rule generation FIM from MCRG estimates of ``T̃`` (direction ``"down"``).

    Parameters
    ----------
    net : DeepRBM
    y : Tensor of shape (n, n_N)
    bases : basis spec(s) for layers N−1, …, 0 as accepted by the RG engine
        Default :data:`DEFAULT_CHAIN_BASIS`.
    n_samples : int
        Downward chains per output (default :data:`DEFAULT_CHAIN_SAMPLES`).
    generator : torch.Generator, optional
        Default: a CPU generator seeded with :data:`DEFAULT_CHAIN_SEED`.
    **kwargs
        Passed to :func:`rgaudit.defence.generation.generation_mcrg`.

    Returns
    -------
    ChainFIM
        ``fim`` of shape (n, n_N, n_N) with its jackknife ``stderr`` and ``replicates``;
        ``meta`` records the basis, samples and :func:`rgaudit.fisher.chain.chain_quality`
        (dropped operators, regularised solves and replicates, unestimated entries). Outputs
        are processed in batches whose moment sums fit :data:`CHAIN_BATCH_BYTES`.
    """
    if generator is None:
        generator = torch.Generator(device=net.device).manual_seed(DEFAULT_CHAIN_SEED)
    yb, single = _as_outputs(net, y)
    n_blocks = int(kwargs.get("n_blocks", 16))
    per_output = 8 * n_blocks * 3 * max(net.widths) ** 2 * max(1, net.depth - 1)
    step = max(1, CHAIN_BATCH_BYTES // per_output) if isinstance(bases, str) and \
        bases == "singles" else len(yb)
    parts = [_mcrg_generation_fim(net, yb[i:i + step], bases, n_samples, generator, **kwargs)
             for i in range(0, len(yb), step)]
    errs, reps, metas = [], [], []
    for p in parts:                                # the chain always has replicates and meta
        assert p.stderr is not None and p.replicates is not None and p.meta is not None
        errs.append(p.stderr)
        reps.append(p.replicates)
        metas.append(p.meta)
    meta = dict(metas[0])
    for key in ("dropped_next", "dropped_prev", "regularised", "replicates_regularised",
                "unestimated"):                    # per pair: concatenate the outputs
        meta[key] = [sum((m[key][j] for m in metas), []) for j in range(len(meta[key]))]
    meta["n_unestimated"] = sum(m["n_unestimated"] for m in metas)
    meta["rests_on_unestimated"] = bool(meta["n_unestimated"])
    meta["any_regularised"] = any(m["any_regularised"] for m in metas)
    meta["max_cond"] = max(m["max_cond"] for m in metas)
    fim, err, rep = (torch.cat([p.fim for p in parts]), torch.cat(errs),
                     torch.cat(reps, dim=1))
    if single:
        return ChainFIM(fim[0], err[0], rep[:, 0], meta)
    return ChainFIM(fim, err, rep, meta)


def _mcrg_generation_fim(net: DeepRBM, y: Tensor, bases: Any, n_samples: int,
                         generator: torch.Generator, **kwargs: Any) -> ChainFIM:
    res = generation_mcrg(net, y, bases, n_samples, generator, **kwargs)
    pairs = res.computed()                                  # layers N-1 → N-2, …, 1 → 0
    top = pairs[0]                                          # operators of layer N-1
    dg = dg1_dx_analytic(net.layer(net.depth).W.T,
                         operator_subsets(top.ops_prev, top.names_prev)).cpu()
    out = chain_fim_jackknife(
        dg, [p.T for p in pairs], pairs[-1].C_next,
        Ts_reps=[list(p.T_replicates) for p in pairs],
        c_out_reps=list(pairs[-1].C_next_replicates))
    meta = {"estimator": "chain", "n_samples": int(n_samples),
            "bases": bases if isinstance(bases, str) else "custom",
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
    F = meanfield_fim_from_weights(meanfield_weights(net), yb)
    return F[0] if single else F


def meanfield_weights(net: DeepRBM) -> list[tuple[Tensor, Tensor]]:
    """The detached float64 ``(W_k, b_k)``, ``k = N, …, 1``, that the mean-field FIM reads
    (views of a float64 network's parameters, copies otherwise)."""
    return [(net.layer(k).W.detach().to(torch.float64), net.layer(k).b.detach().to(torch.float64))
            for k in range(net.depth, 0, -1)]


def meanfield_fim_from_weights(weights: list[tuple[Tensor, Tensor]], y: Tensor) -> Tensor:
    """:func:`meanfield_generation_fim` on :func:`meanfield_weights` converted once, for a
    caller that answers many small batches (the same operations, so the same numbers).

    Parameters
    ----------
    weights : list of (Tensor, Tensor)
        :func:`meanfield_weights` of the network.
    y : Tensor of shape (n, n_N), float64, on the weights' device
        Not checked (see :func:`meanfield_generation_fim`).

    Returns
    -------
    Tensor of shape (n, n_N, n_N), float64
    """
    with torch.no_grad():
        p = y
        J = None                                           # ∂p/∂y, (n, n_k, n_N)
        for W, b in weights:                               # W (n_k, n_{k-1})
            p = torch.sigmoid(p @ W + b)
            dp = (p * (1.0 - p)).unsqueeze(-1)             # σ' of the new layer
            J = dp * (W.T.expand(len(p), -1, -1) if J is None else W.T @ J)
        if J is None:
            raise ValueError("the mean-field FIM needs at least one layer of weights")
        w = 1.0 / (p * (1.0 - p)).clamp_min(1e-12)        # (n, n_0)
        F = J.transpose(-1, -2) @ (w.unsqueeze(-1) * J)
        return 0.5 * (F + F.transpose(-1, -2))


def generation_fim(net: DeepRBM, y: Tensor, estimator: str = DEFAULT_ESTIMATOR,
                   **kwargs: Any) -> Tensor:
    """Generation FIM of outputs ``y`` (n, n_N) with the named estimator; (n, n_N, n_N).

    ``estimator`` defaults to :data:`DEFAULT_ESTIMATOR` (``auto``, :func:`resolve_estimator`);
    ``kwargs`` go to the ``chain`` estimator (:func:`mcrg_generation_fim`) and are ignored by
    the deterministic ones.
    """
    estimator = resolve_estimator(net, estimator)
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
