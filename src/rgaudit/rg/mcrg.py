"""Monte Carlo RG: stability matrices ``T = C⁻¹D`` of a chain of stochastic kernels (eq. 21–24).

The engine is generic over a *chain*: a source of configurations ``h_0`` and kernels
``h_{j+1} ~ kernel_j(· | h_j)``. A kernel is any callable::

    kernel(prev: Tensor (..., n_j), generator) -> Tensor (..., n_{j+1})

e.g. ``DeepRBM.layer(k).sample_up``, ``.sample_down`` or a lattice blocking kernel. For every
adjacent pair of chain positions ``i → i+1`` that is asked for, the engine streams chunks of
samples, evaluates the operator sets of both positions and accumulates in float64
(:class:`~rgaudit.rg.moments.CovarianceAccumulator`, memory flat in the number of samples)::

    C_next = Cov(O(h_{i+1}), O(h_{i+1}))     C_prev = Cov(O(h_i), O(h_i))
    D      = Cov(O(h_{i+1}), O(h_i))         T      = C_next⁻¹ D

then solves with the policy of :func:`~rgaudit.rg.solve.solve_cov` and attaches blocked
jackknife replicates.

Interface (stable; the FIM and cloning code depend on it)
---------------------------------------------------------
``MCRGResult.layers[i]`` is the :class:`LayerPair` for chain positions ``i → i+1``, i.e.
``T^(i+1)`` in the paper's notation when the chain runs upwards through a network (position
``j`` = network layer ``j``). Entries not computed are ``None`` (by default
:func:`mcrg_network` skips pair 0, since ``h_0 = x`` is a fixed input and ``∂g^(1)/∂x`` is
analytic). For a downward (generation) chain, position ``j`` is network layer ``N − j``
(``MCRGResult.positions`` lists the network layer of every position).

Per pair (``*batch`` = leading dimensions of the inputs, e.g. ``(n_inputs,)``; ``m_i`` = number of
operators of position ``i``; ``n_rep`` = number of non-empty jackknife blocks):

=======================  =======================================  ==============================
field                    shape                                    meaning
=======================  =======================================  ==============================
``T``                    (*batch, m_{i+1}, m_i)                   ``∂g^(i+1)/∂g^(i)``, FULL size
``T_stderr``             (*batch, m_{i+1}, m_i)                   jackknife standard error;
                                                                  NaN where not estimated
``T_unestimated``        (*batch, m_{i+1}, m_i) bool              collapsed entries (see below)
``T_replicates``         (n_rep, *batch, m_{i+1}, m_i)            leave-one-block-out ``T``
                                                                  (lazy, see below)
``C_next``               (*batch, m_{i+1}, m_{i+1})               ``Cov(O(h_{i+1}))``
``C_prev``               (*batch, m_i, m_i)                       ``Cov(O(h_i))``
``D``                    (*batch, m_{i+1}, m_i)                   ``Cov(O(h_{i+1}), O(h_i))``
``C_next_replicates``    (n_rep, *batch, m_{i+1}, m_{i+1})
``C_prev_replicates``    (n_rep, *batch, m_i, m_i)
``D_replicates``         (n_rep, *batch, m_{i+1}, m_i)
``mean_next/mean_prev``  (*batch, m)                              operator means
``kept_next``            list (one per flattened batch element)   indices of kept next operators
``kept_mask_next``       (*batch, m_{i+1}) bool                   same as a mask
``kept_prev`` / mask     likewise for position ``i``              non-constant prev operators
``solve_info``           list of SolveInfo per batch element      kept/dropped, cond, λ, flags
``ops_next/ops_prev``    Operators                                the operator sets themselves
=======================  =======================================  ==============================

Dropped (constant) operators: ``T`` is always full size. Rows of next operators that are constant
on the samples are exactly zero (their coupling is not identifiable and they carry no Fisher
information: their rows/columns of ``C_next`` are zero); columns of constant prev operators are
zero too (``D`` vanishes there). So the chain ``J = T^(N) ⋯ T^(2) ∂g^(1)/∂x`` and
``F = Jᵀ C^(N) J`` can be formed with plain matrix products, batch-wise
(``torch.matmul`` broadcasts over ``*batch``), without index bookkeeping. All result tensors are
float64 on the CPU.

Unestimated entries: when an operator value never occurs together with some states of the other
layer, entries of ``T`` come out identical in every jackknife replicate (usually exactly 0) while
their true value is not (:func:`rgaudit.rg.solve.unestimated_entries`). They are flagged in
``T_unestimated`` (counted by :attr:`LayerPair.n_unestimated`), their ``T_stderr`` is NaN, and
everything computed from the pair (chain FIM, spectra) reports that it rests on them. Rows and
columns of dropped (constant) operators are not estimated either: their ``T_stderr`` is NaN too
and they are listed in ``solve_info[b].dropped``.

Lazy replicates (issue 16): above ``EXACT_COND_MAX`` kept operators the replicate solves are
kept as Cholesky factors (:class:`~rgaudit.rg.replicate_solve.FactoredReplicates`, memory as
``T_replicates``); ``T_replicates``, ``T_stderr`` and ``T_unestimated`` are properties that solve
them on first access (then cached: the same values as an eager solve), and
:meth:`LayerPair.apply_replicates` gives ``T_r @ x`` without forming ``T_r``.

Solve policy: see :mod:`rgaudit.rg.solve`. Every solve reports its condition number; when it
exceeds ``max_cond`` a Tikhonov regulariser is applied and ``solve_info[b].regularised`` is set;
:attr:`LayerPair.any_regularised` summarises. No NaN is ever returned silently: non-finite operator
values raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rgaudit.rg.moments import BlockReplicates, CovarianceAccumulator, jackknife_stderr
from rgaudit.rg.network import LayerStack
from rgaudit.rg.operators import Operators, basis_needs_pilot, parse_basis
from rgaudit.rg.pair_moments import PairMoments
from rgaudit.rg.replicate_solve import FactoredReplicates, factor_replicate_stream
from rgaudit.rg.solve import (
    MAX_COND,
    SolveInfo,
    constant_operators,
    solve_batch,
    unestimated_entries,
)

Tensor = torch.Tensor
Kernel = Callable[[Tensor, "torch.Generator | None"], Tensor]
Source = Callable[[int, "torch.Generator | None"], Tensor]

#: Target size in bytes of one chunk of float64 operator values (sets the default chunk).
CHUNK_BYTES = 64 * 2**20

#: How replicate solves are kept (:func:`rgaudit.rg.solve.solve_batch`): ``"factored"``
#: (Cholesky factors, solved on first access; issue 16) or ``"dense"`` (the reference path).
REPLICATE_SOLVES = "factored"


@dataclass
class LayerPair(PairMoments):
    """MCRG estimate for one pair of chain positions ``i → i+1`` (see the module docstring).

    ``T``, ``C_next``, ``C_prev``, ``D``, ``mean_next``, ``mean_prev``: as in
    :class:`~rgaudit.rg.pair_moments.PairMoments`, from the samples.
    """

    index: int
    kept_next: list[Tensor]
    kept_prev: list[Tensor]
    kept_mask_next: Tensor
    kept_mask_prev: Tensor
    solve_info: list[SolveInfo]
    names_next: list[str]
    names_prev: list[str]
    n_samples: int
    batch_shape: tuple[int, ...] = ()
    ops_next: Operators | None = None
    ops_prev: Operators | None = None
    #: Replicate solutions: a tensor (n_rep, *batch, m_next, m_prev), or Cholesky factors solved
    #: on first access of ``T_replicates``, ``T_stderr`` or ``T_unestimated`` (issue 16)
    replicate_solutions: Tensor | FactoredReplicates | None = field(default=None, repr=False)
    #: Leave-one-block-out moments (formed on first access of the ``*_replicates`` properties)
    replicate_moments: BlockReplicates | None = field(default=None, repr=False)
    _errors: tuple[Tensor, Tensor] | None = field(default=None, repr=False)
    _moment_cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def _replicate_moment(self, name: str) -> Tensor:
        if name not in self._moment_cache:
            if self.replicate_moments is None:
                raise ValueError("this pair carries no jackknife replicates")
            x = self.replicate_moments.stack(name)
            self._moment_cache[name] = x.reshape(x.shape[0], *self.batch_shape,
                                                 *x.shape[-2:]).to("cpu")
        return self._moment_cache[name]

    @property
    def C_next_replicates(self) -> Tensor:
        """``Cov(O(h_{i+1}))`` per replicate, (n_rep, *batch, m_next, m_next)."""
        return self._replicate_moment("c_aa")

    @property
    def C_prev_replicates(self) -> Tensor:
        """``Cov(O(h_i))`` per replicate, (n_rep, *batch, m_prev, m_prev)."""
        return self._replicate_moment("c_bb")

    @property
    def D_replicates(self) -> Tensor:
        """``Cov(O(h_{i+1}), O(h_i))`` per replicate, (n_rep, *batch, m_next, m_prev)."""
        return self._replicate_moment("c_ab")

    @property
    def T_replicates(self) -> Tensor:
        """Leave-one-block-out ``T`` (n_rep, *batch, m_next, m_prev), solved on first access."""
        reps = self.replicate_solutions
        if reps is None:
            raise ValueError("this pair carries no jackknife replicates")
        if not isinstance(reps, Tensor):
            flat = reps.dense()
            reps = flat.reshape(flat.shape[0], *self.batch_shape, *flat.shape[2:]).to("cpu")
            self.replicate_solutions = reps
        return reps

    def _error_bars(self) -> tuple[Tensor, Tensor]:
        if self._errors is None:
            mask_n, mask_p = self.kept_mask_next, self.kept_mask_prev
            err = jackknife_stderr(self.T_replicates)
            unest = unestimated_entries(err, mask_n, mask_p)
            estimated = mask_n.unsqueeze(-1) & mask_p.unsqueeze(-2) & ~unest
            err = torch.where(estimated, err, torch.full_like(err, float("nan")))
            self._errors = (err, unest)
        return self._errors

    @property
    def T_stderr(self) -> Tensor:
        """Jackknife standard error of ``T``; NaN where not estimated (solves the replicates)."""
        return self._error_bars()[0]

    @property
    def T_unestimated(self) -> Tensor:
        """Collapsed entries of ``T`` (*batch, m_next, m_prev) bool (solves the replicates)."""
        return self._error_bars()[1]

    def apply_replicates(self, x: Tensor) -> Tensor:
        """``T_r @ x`` for every replicate ``r``, without forming ``T_r`` when it is factored.

        ``O(n_rep · m² q)`` for ``q`` columns instead of the ``O(n_rep · m³)`` of
        ``T_replicates`` (what the chain FIM's replicates ``J_r = T_r J_r'`` need).

        Parameters
        ----------
        x : Tensor of shape (*batch, m_prev, q) or (n_rep, *batch, m_prev, q)
            (``*batch`` may be left out: broadcast over the batch elements).

        Returns
        -------
        Tensor of shape (n_rep, *batch, m_next, q), float64 on the CPU
        """
        return self._apply(x, left=False)

    def apply_replicates_left(self, y: Tensor) -> Tensor:
        """``y @ T_r`` for every replicate ``r``: ``(C_r⁻¹ yᵀ)ᵀ D_r`` from the factors, for ``y``
        of shape ([n_rep,] *batch, q, m_next); returns (n_rep, *batch, q, m_prev).

        ``O(n_rep · (m_next² + m_next m_prev) q)`` for ``q`` rows: what the chain's replicates
        need when it is associated from the output layer, whose operators are few. Broadcasting
        as in :meth:`apply_replicates`.
        """
        return self._apply(y, left=True)

    def _apply(self, x: Tensor, *, left: bool) -> Tensor:
        """``x @ T_r`` (``left``) or ``T_r @ x`` for every replicate; see the two callers."""
        reps = self.replicate_solutions
        if reps is None:
            raise ValueError("this pair carries no jackknife replicates")
        if isinstance(reps, Tensor):
            x = x.to(dtype=reps.dtype, device=reps.device)
            return x @ reps if left else reps @ x
        nb = math.prod(self.batch_shape)
        rows, cols = x.shape[-2], x.shape[-1]
        per_rep = x.dim() - 2 == len(self.batch_shape) + 1
        if not per_rep:   # broadcast a matrix shared by the batch elements
            x = x.expand(*self.batch_shape, rows, cols)
        xf = x.reshape(reps.n_rep, nb, rows, cols) if per_rep else x.reshape(nb, rows, cols)
        out = reps.apply_left(xf) if left else reps.apply(xf)
        return out.reshape(reps.n_rep, *self.batch_shape, *out.shape[-2:]).to("cpu")

    @property
    def replicates_formed(self) -> bool:
        """Whether every ``T_r`` exists already (or costs no solve to assemble), so that
        ``T_replicates``, ``T_stderr`` and ``T_unestimated`` are cheap."""
        reps = self.replicate_solutions
        return reps is None or isinstance(reps, Tensor) or not reps.has_factors

    @property
    def n_replicates(self) -> int:
        reps = self.replicate_solutions
        if reps is None:
            return 0
        return int(reps.shape[0]) if isinstance(reps, Tensor) else reps.n_rep

    @property
    def n_unestimated(self) -> int:
        """Number of unestimated (collapsed) entries of ``T`` over all batch elements."""
        return int(self.T_unestimated.sum())

    def unestimated_counts(self) -> list[int]:
        """Unestimated entries per flattened batch element."""
        nb = math.prod(self.batch_shape)
        return [int(c) for c in self.T_unestimated.reshape(nb, -1).sum(-1)]

    def dropped(self) -> dict[str, list[list[int]]]:
        """Operators dropped as constant, per flattened batch element (next and prev)."""
        def gone(masks: Tensor, width: int) -> list[list[int]]:
            return [torch.nonzero(~m).flatten().tolist() for m in masks.reshape(-1, width)]

        return {"next": gone(self.kept_mask_next, len(self.names_next)),
                "prev": gone(self.kept_mask_prev, len(self.names_prev))}

    def quality(self) -> dict[str, Any]:
        """What every quantity computed from this pair rests on (plain data, per batch element).

        ``dropped_next``/``dropped_prev``: operator indices dropped as constant;
        ``regularised``: full-sample solves regularised; ``replicates_regularised``: jackknife
        replicates regularised on their own; ``unestimated``: collapsed entries of ``T``.
        """
        d = self.dropped()
        return {"dropped_next": d["next"], "dropped_prev": d["prev"],
                "regularised": [bool(i.regularised) for i in self.solve_info],
                "replicates_regularised": [int(i.n_replicates_regularised)
                                           for i in self.solve_info],
                "unestimated": self.unestimated_counts()}

    @property
    def any_regularised(self) -> bool:
        """Whether any solve of this pair (any batch element) was regularised."""
        return any(i.regularised or i.n_replicates_regularised for i in self.solve_info)

    @property
    def max_cond(self) -> float:
        """Largest condition number over batch elements (frozen elements, cond nan, skipped).

        Above ``EXACT_COND_MAX`` kept operators (factored path) an element's ``cond`` is a
        certified upper bound (``solve_info[b].cond_bound``), not the exact ratio.
        """
        vals = [i.cond for i in self.solve_info if not math.isnan(i.cond)]
        return max(vals) if vals else float("nan")

    @property
    def frozen(self) -> list[int]:
        """Flattened batch elements whose layer was frozen (no operator fluctuated): ``T = 0``."""
        return [b for b, i in enumerate(self.solve_info) if i.kept.numel() == 0]

    def to_dict(self, matrices: bool = False) -> dict[str, Any]:
        """Plain data; ``matrices=True`` also includes ``T``, ``T_stderr`` and ``C_next``."""
        out: dict[str, Any] = {
            "index": self.index,
            "shape": [*self.batch_shape, len(self.names_next), len(self.names_prev)],
            "n_samples": self.n_samples,
            "n_replicates": self.n_replicates,
            "names_next": self.names_next,
            "names_prev": self.names_prev,
            "any_regularised": self.any_regularised,
            "n_unestimated": self.n_unestimated,
            "quality": self.quality(),
            "solve_info": [i.to_dict() for i in self.solve_info],
        }
        if matrices:
            out.update(T=self.T, T_stderr=self.T_stderr, C_next=self.C_next,
                       T_unestimated=self.T_unestimated)
        return out


@dataclass
class MCRGResult:
    """Stability matrices of every computed pair of a chain.

    Attributes
    ----------
    layers : list of LayerPair or None
        ``layers[i]`` relates positions ``i → i+1``; length = number of kernels.
    positions : list of int
        Network layer index of each chain position (``[0..N]`` up, ``[N..0]`` down).
    batch_shape : tuple of int
    n_samples : int
    n_blocks : int
    settings : dict
        Chunk size, solve tolerances, direction, seed when known.
    """

    layers: list[LayerPair | None]
    positions: list[int]
    batch_shape: tuple[int, ...]
    n_samples: int
    n_blocks: int
    settings: dict[str, Any] = field(default_factory=dict)

    def computed(self) -> list[LayerPair]:
        """The computed pairs, in chain order."""
        return [p for p in self.layers if p is not None]

    def to_dict(self, matrices: bool = False) -> dict[str, Any]:
        return {
            "positions": self.positions,
            "batch_shape": list(self.batch_shape),
            "n_samples": self.n_samples,
            "n_blocks": self.n_blocks,
            "settings": self.settings,
            "layers": [None if p is None else p.to_dict(matrices) for p in self.layers],
        }


# -- accumulation ---------------------------------------------------------------------------
class PairAccumulator:
    """Streaming moments of one pair of operator sets (next = rows, prev = columns).

    Parameters
    ----------
    ops_prev, ops_next : Operators
    n_blocks : int
    batch_shape : tuple of int
    device : torch.device
    """

    def __init__(self, ops_prev: Operators, ops_next: Operators, *, n_blocks: int,
                 batch_shape: tuple[int, ...], device: torch.device) -> None:
        self.ops_prev, self.ops_next = ops_prev, ops_next
        self.acc = CovarianceAccumulator(ops_next.size, ops_prev.size, n_blocks=n_blocks,
                                         batch_shape=batch_shape, device=device)

    def update_values(self, o_prev: Tensor, o_next: Tensor, block: int | None = None) -> None:
        """Add operator values (*batch, s, m_prev) and (*batch, s, m_next)."""
        self.acc.update(o_next, o_prev, block)

    def update(self, h_prev: Tensor, h_next: Tensor, block: int | None = None) -> None:
        """Add configurations (*batch, s, n_prev) and (*batch, s, n_next)."""
        self.acc.update(self.ops_next.evaluate(h_next), self.ops_prev.evaluate(h_prev), block)

    def finalise(self, index: int, *, var_tol: float = 1e-12,
                 max_cond: float = MAX_COND) -> LayerPair:
        """Solve ``C T = D`` for the full sample and every jackknife replicate."""
        return _finalise(self.acc, index, self.ops_prev, self.ops_next, var_tol, max_cond)


def _finalise(acc: CovarianceAccumulator, index: int, ops_prev: Operators, ops_next: Operators,
              var_tol: float, max_cond: float) -> LayerPair:
    mom = acc.moments()
    # leave-one-block-out moments, formed on request from the block sums (no stacked copies
    # unless someone asks for them: the factored path forms one replicate's C_r at a time)
    rep = acc.block_replicates()
    n_reps = rep.n_rep
    batch = acc.batch_shape
    mn, mp = ops_next.size, ops_prev.size
    nb = math.prod(batch)
    cn = mom.c_aa.reshape(nb, mn, mn)
    cp = mom.c_bb.reshape(nb, mp, mp)
    d = mom.c_ab.reshape(nb, mn, mp)
    dev = cn.device
    mask_p = ~torch.stack([constant_operators(cp[b], var_tol) for b in range(nb)])
    method = REPLICATE_SOLVES
    if method not in ("dense", "factored"):
        raise ValueError(f"REPLICATE_SOLVES must be 'dense' or 'factored', got {method!r}")
    colmask = None if bool(mask_p.all()) else mask_p.to(torch.float64).unsqueeze(-2)
    d_in = d if colmask is None else d * colmask   # (nb, 1, mp): no copy without constants
    t_r: Tensor | FactoredReplicates | None
    # frozen_ok: a frozen layer (every operator constant on all S samples, e.g. the saturated
    # output of a confident 784-input network) gives T = 0 with no kept operator, reported in
    # SolveInfo (cond nan), instead of stopping the run
    if method == "dense":      # the reference path: every replicate formed and solved now
        cn_r = rep.stack("c_aa").reshape(n_reps, nb, mn, mn)
        d_r = rep.stack("c_ab").reshape(n_reps, nb, mn, mp)
        rep.stack("c_bb")
        d_r_in = d_r if colmask is None else d_r * colmask
        t, t_r, infos = solve_batch(cn, d_in, c_reps=cn_r, d_reps=d_r_in, var_tol=var_tol,
                                    max_cond=max_cond, frozen_ok=True)
        del d_r_in, cn_r, d_r
    else:
        # the full sample of a large pair: Cholesky + certified condition bound (reported as
        # such, SolveInfo.cond_bound) instead of an eigenvalue problem and an LU solve
        t, _, infos = solve_batch(cn, d_in, var_tol=var_tol, max_cond=max_cond, frozen_ok=True,
                                  certify=True)
        t_r, infos = factor_replicate_stream(
            cn, d_in, infos, n_reps, lambda r: rep.c_aa(r).reshape(nb, mn, mn),
            lambda r: rep.c_ab(r).reshape(nb, mn, mp), var_tol=var_tol, max_cond=max_cond,
            col_mask=None if colmask is None else mask_p)
    del d_in
    assert t_r is not None
    mask_n = torch.zeros(nb, mn, dtype=torch.bool, device=dev)
    for b, info in enumerate(infos):
        mask_n[b, info.kept.to(dev)] = True
    cpu = torch.device("cpu")

    def shaped(x: Tensor, lead: tuple[int, ...] = ()) -> Tensor:
        return x.reshape(*lead, *batch, *x.shape[len(lead) + 1:]).to(cpu)

    return LayerPair(
        index=index,
        T=shaped(t), replicate_solutions=t_r if isinstance(t_r, FactoredReplicates)
        else shaped(t_r, (n_reps,)),
        C_next=shaped(cn), C_prev=shaped(cp), D=shaped(d), replicate_moments=rep,
        mean_next=mom.mean_a.to(cpu), mean_prev=mom.mean_b.to(cpu),
        kept_next=[torch.nonzero(m).flatten().to(cpu) for m in mask_n],
        kept_prev=[torch.nonzero(m).flatten().to(cpu) for m in mask_p],
        kept_mask_next=shaped(mask_n), kept_mask_prev=shaped(mask_p),
        solve_info=infos, names_next=list(ops_next.names), names_prev=list(ops_prev.names),
        n_samples=acc.n_samples, batch_shape=tuple(batch), ops_next=ops_next, ops_prev=ops_prev,
    )


def chunk_plan(n_samples: int, chunk: int, n_blocks: int) -> list[int]:
    """Chunk sizes summing to ``n_samples``: a multiple of ``n_blocks`` chunks of near-equal size.

    Raises
    ------
    ValueError
        If there are fewer samples than jackknife blocks.
    """
    if n_samples < 2 * n_blocks:
        raise ValueError(f"n_samples={n_samples} is too small for {n_blocks} jackknife blocks "
                         f"(need at least {2 * n_blocks})")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    n_chunks = n_blocks * math.ceil(math.ceil(n_samples / chunk) / n_blocks)
    base, extra = divmod(n_samples, n_chunks)
    return [base + (1 if i < extra else 0) for i in range(n_chunks)]


def default_chunk(batch_size: int, max_ops: int) -> int:
    """Chunk length keeping one chunk of float64 operator values near :data:`CHUNK_BYTES`."""
    return int(min(65536, max(256, CHUNK_BYTES // (8 * max(batch_size, 1) * max(max_ops, 1)))))


# -- chains ---------------------------------------------------------------------------------
def _chain_pairs(n_k: int, bases: Sequence[Operators | None],
                 pair_layers: Iterable[int] | None) -> list[int]:
    """The pairs ``i → i+1`` of :func:`mcrg_chain` to compute, checked against the bases."""
    if len(bases) != n_k + 1:
        raise ValueError(f"need one basis per chain position: {n_k + 1}, got {len(bases)}")
    if pair_layers is None:
        pairs = [i for i in range(n_k) if bases[i] is not None and bases[i + 1] is not None]
    else:
        pairs = sorted({int(i) for i in pair_layers})
    if not pairs:
        raise ValueError("no pair of chain positions to compute (check bases / pair_layers)")
    for i in pairs:
        if not 0 <= i < n_k:
            raise ValueError(f"pair {i} outside 0..{n_k - 1}")
        if bases[i] is None or bases[i + 1] is None:
            raise ValueError(f"pair {i} needs operator bases at positions {i} and {i + 1}")
    return pairs


def _chain_source(h0: Tensor | Source, device: torch.device | str | None
                  ) -> tuple[Source, torch.device, tuple[int, ...] | None]:
    """``(source, device, batch_shape)`` of :func:`mcrg_chain`'s starting configurations
    (``batch_shape`` None for a callable source: read from its first chunk)."""
    if callable(h0):
        return h0, torch.device(device) if device is not None else torch.device("cpu"), None
    if not torch.is_tensor(h0) or h0.dim() < 1:
        raise ValueError("h0 must be a tensor (*batch, n_0) or a callable source")
    dev = torch.device(device) if device is not None else h0.device
    fixed = h0.to(dev)

    def source(s: int, gen: torch.Generator | None) -> Tensor:
        return fixed.unsqueeze(-2).expand(*fixed.shape[:-1], s, fixed.shape[-1])

    return source, dev, tuple(fixed.shape[:-1])


def _chain_values(h: Tensor, kernels: Sequence[Kernel], bases: Sequence[Operators | None],
                  needed: list[int], generator: torch.Generator | None) -> dict[int, Tensor]:
    """Run one chunk up the chain to the last needed position; operator values per position."""
    values: dict[int, Tensor] = {}
    for j in range(needed[-1] + 1):
        if j > 0:
            h = kernels[j - 1](h, generator)
        if j in needed:
            values[j] = bases[j].evaluate(h)  # type: ignore[union-attr]
    return values


def mcrg_chain(
    h0: Tensor | Source,
    kernels: Sequence[Kernel],
    bases: Sequence[Operators | None],
    n_samples: int,
    *,
    chunk: int | None = None,
    n_blocks: int = 16,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    pair_layers: Iterable[int] | None = None,
    var_tol: float = 1e-12,
    max_cond: float = MAX_COND,
    progress: Callable[[int, int], None] | None = None,
    positions: list[int] | None = None,
    contiguous_blocks: bool = False,
) -> MCRGResult:
    """Stability matrices along a chain of stochastic kernels.

    Parameters
    ----------
    h0 : Tensor of shape (*batch, n_0), or callable
        Fixed starting configuration(s), broadcast over samples; or a source
        ``h0(s, generator) -> Tensor (*batch, s, n_0)`` drawing ``s`` starting configurations
        (e.g. an Ising Monte Carlo sampler; make its chunks longer than its autocorrelation time).
    kernels : sequence of callable
        ``kernels[j](h_j, generator) -> h_{j+1}``, shapes (..., n_j) → (..., n_{j+1}).
    bases : sequence of Operators or None
        One operator set per chain position (length ``len(kernels) + 1``); ``None`` where no
        pair needs it.
    n_samples : int
        Samples ``S`` per batch element.
    chunk : int, optional
        Samples per chunk (default from :func:`default_chunk`).
    n_blocks : int, default 16
        Jackknife blocks.
    generator : torch.Generator, optional
        Drives all kernels and the source (must live on ``device``).
    device : torch.device or str, optional
        Where sampling and accumulation run (default: the device of ``h0`` or CPU).
    pair_layers : iterable of int, optional
        Pairs ``i`` (positions ``i → i+1``) to compute; default every pair whose two bases are
        given.
    var_tol, max_cond : float
        Solve policy (:func:`rgaudit.rg.solve.solve_cov`).
    progress : callable, optional
        Called as ``progress(done, total)`` after each chunk.
    positions : list of int, optional
        Labels of the chain positions stored in the result (default ``0..N``).
    contiguous_blocks : bool, default False
        Put consecutive chunks into the same jackknife block (contiguous runs of the sample
        stream) instead of round-robin; use it when ``h0`` is a Markov-chain source.

    Returns
    -------
    MCRGResult
    """
    n_k = len(kernels)
    pairs = _chain_pairs(n_k, bases, pair_layers)
    source, dev, batch_shape = _chain_source(h0, device)
    needed = sorted({j for i in pairs for j in (i, i + 1)})
    max_ops = max(bases[j].size for j in needed)  # type: ignore[union-attr]
    if chunk is None:
        chunk = default_chunk(math.prod(batch_shape) if batch_shape else 1, max_ops)
    plan = chunk_plan(int(n_samples), int(chunk), n_blocks)
    accs: dict[int, PairAccumulator] = {}
    done = 0
    for c, s in enumerate(plan):
        block = min(c * n_blocks // len(plan), n_blocks - 1) if contiguous_blocks else None
        h = source(s, generator)
        if batch_shape is None:
            batch_shape = tuple(h.shape[:-2])
        values = _chain_values(h, kernels, bases, needed, generator)
        for i in pairs:
            if i not in accs:
                accs[i] = PairAccumulator(bases[i], bases[i + 1], n_blocks=n_blocks,  # type: ignore[arg-type]
                                          batch_shape=batch_shape, device=dev)
            accs[i].update_values(values[i], values[i + 1], block)
        done += s
        if progress is not None:
            progress(done, int(n_samples))
    layers: list[LayerPair | None] = [None] * n_k
    for i in pairs:
        # free each pair's block sums once its result exists (peak: one pair's sums + results)
        layers[i] = accs.pop(i).finalise(i, var_tol=var_tol, max_cond=max_cond)
    return MCRGResult(
        layers=layers,
        positions=list(range(n_k + 1)) if positions is None else list(positions),
        batch_shape=tuple(batch_shape or ()),
        n_samples=int(n_samples), n_blocks=n_blocks,
        settings={"chunk": int(chunk), "n_chunks": len(plan), "var_tol": var_tol,
                  "max_cond": max_cond, "device": str(dev)},
    )


def mcrg_pairs(
    chunks: Iterable[tuple[Tensor, Tensor]],
    ops_prev: Operators,
    ops_next: Operators,
    *,
    n_blocks: int = 16,
    device: torch.device | str | None = None,
    contiguous_blocks: int | None = None,
    var_tol: float = 1e-12,
    max_cond: float = MAX_COND,
    index: int = 0,
) -> LayerPair:
    """Stability matrix from a stream of ``(h_prev, h_next)`` chunks produced elsewhere.

    Parameters
    ----------
    chunks : iterable of (Tensor, Tensor)
        ``h_prev`` of shape (*batch, s, n_prev) and ``h_next`` (*batch, s, n_next), e.g. Ising
        configurations and their blocked images.
    ops_prev, ops_next : Operators
    n_blocks : int, default 16
    device : torch.device or str, optional
        Accumulation device (default: that of the first chunk).
    contiguous_blocks : int, optional
        Total number of chunks, when known: chunks are then assigned to jackknife blocks in
        contiguous runs (best for Markov-chain samples). Default round-robin.
    var_tol, max_cond : float
        Solve policy.
    index : int
        Label stored in the result.

    Returns
    -------
    LayerPair
    """
    acc: PairAccumulator | None = None
    for c, (hp, hn) in enumerate(chunks):
        if acc is None:
            dev = torch.device(device) if device is not None else hp.device
            acc = PairAccumulator(ops_prev, ops_next, n_blocks=n_blocks,
                                  batch_shape=tuple(hp.shape[:-2]), device=dev)
        block = None
        if contiguous_blocks is not None:
            block = min(c * n_blocks // max(contiguous_blocks, 1), n_blocks - 1)
        acc.update(hp.to(acc.acc.device), hn.to(acc.acc.device), block)
    if acc is None:
        raise ValueError("no chunks were given")
    return acc.finalise(index, var_tol=var_tol, max_cond=max_cond)


# -- networks ---------------------------------------------------------------------------------


def mcrg_network(
    net: LayerStack,
    x: Tensor,
    bases: str | Operators | Sequence[str | Operators | None],
    n_samples: int,
    *,
    direction: str = "up",
    chunk: int | None = None,
    n_blocks: int = 16,
    generator: torch.Generator | int | None = None,
    device: torch.device | str | None = None,
    pair_layers: Iterable[int] | None = None,
    pilot_samples: int = 2000,
    var_tol: float = 1e-12,
    max_cond: float = MAX_COND,
    progress: Callable[[int, int], None] | None = None,
) -> MCRGResult:
    """MCRG along a :class:`~rgaudit.nets.deep_rbm.DeepRBM`, upwards or downwards.

    Parameters
    ----------
    net : DeepRBM
    x : Tensor of shape (n_inputs, n_0) (up) or (n_inputs, n_N) (down), or 1-D
        Inputs ``x`` (classification chain) or outputs ``y`` (generation chain); real values
        allowed. A 1-D input gives results without a batch dimension.
    bases : spec string, Operators, or one per chain position
        E.g. ``"pairs:256"``; a single value applies to every position. Specs needing a pilot
        (``pairs:K``) get one from ``pilot_samples`` chains pooled over the inputs (drawn with
        ``generator`` before the main run).
    n_samples : int
        Chains per input.
    direction : {"up", "down"}
        Chain position ``j`` is network layer ``j`` (up) or ``N − j`` (down).
    chunk, n_blocks, pair_layers, var_tol, max_cond, progress
        As in :func:`mcrg_chain`. ``pair_layers`` defaults to ``1..N-1``: pair 0 starts from the
        fixed input and has no fluctuating operators.
    generator : torch.Generator or int, optional
        Generator on ``device`` or a seed.
    device : torch.device or str, optional
        Default: the network's device. On another device the chains run on a copy of the
        network there; the caller's ``net`` is never moved or changed.

    Returns
    -------
    MCRGResult
    """
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    dev = torch.device(device) if device is not None else net.device
    if net.device != dev:   # a copy on dev: the caller's network stays where it is
        import copy

        net = copy.deepcopy(net).to(dev)
    if isinstance(generator, int):
        generator = torch.Generator(device=dev).manual_seed(generator)
    n_layers = net.depth
    kernels: list[Kernel]
    if direction == "up":
        widths = list(net.widths)
        kernels = [net.layer(k).sample_up for k in range(1, n_layers + 1)]
        positions = list(range(n_layers + 1))
    else:
        widths = list(reversed(net.widths))
        kernels = [net.layer(k).sample_down for k in range(n_layers, 0, -1)]
        positions = list(range(n_layers, -1, -1))
    x = torch.as_tensor(x).to(device=dev, dtype=net.dtype)
    if x.shape[-1] != widths[0]:
        raise ValueError(f"inputs have {x.shape[-1]} features, the chain starts with "
                         f"{widths[0]} units")
    if not torch.isfinite(x).all():
        raise ValueError("inputs contain NaN or inf")
    pairs = list(range(1, n_layers)) if pair_layers is None else sorted(set(pair_layers))
    if not pairs:
        raise ValueError("the network has a single layer: no hidden-layer pair to analyse; use a "
                         "network with ≥ 2 layers (from Python, pair_layers=[0] analyses the "
                         "input → layer 1 kernel, whose input does not fluctuate)")
    needed = sorted({j for i in pairs for j in (i, i + 1)})
    if isinstance(bases, (str, Operators)) or bases is None:
        spec_list: list[Any] = [bases] * (n_layers + 1)
    else:
        spec_list = list(bases)
        if len(spec_list) != n_layers + 1:
            raise ValueError(f"need one basis per chain position ({n_layers + 1}), "
                             f"got {len(spec_list)}")
    pilot: list[Tensor] | None = None
    if any(isinstance(spec_list[j], str) and basis_needs_pilot(spec_list[j], widths[j])
           for j in needed):
        pilot = _run_chain(x, kernels, int(pilot_samples), generator)
    ops: list[Operators | None] = [None] * (n_layers + 1)
    for j in needed:
        spec = spec_list[j]
        if spec is None:
            raise ValueError(f"chain position {j} needs an operator basis")
        if isinstance(spec, str):
            ops[j] = parse_basis(spec, widths[j], None if pilot is None else pilot[j])
        else:
            ops[j] = spec
    res = mcrg_chain(x, kernels, ops, n_samples, chunk=chunk, n_blocks=n_blocks,
                     generator=generator, device=dev, pair_layers=pairs, var_tol=var_tol,
                     max_cond=max_cond, progress=progress, positions=positions)
    res.settings.update(direction=direction,
                        bases=[s if isinstance(s, str) or s is None else type(s).__name__
                               for s in spec_list])
    return res


def _run_chain(x: Tensor, kernels: Sequence[Kernel], s: int,
               generator: torch.Generator | None) -> list[Tensor]:
    h = x.unsqueeze(-2).expand(*x.shape[:-1], s, x.shape[-1])
    out = [h]
    for k in kernels:
        h = k(h, generator)
        out.append(h)
    return out
