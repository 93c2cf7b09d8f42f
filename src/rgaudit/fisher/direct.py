"""Direct Monte Carlo input FIM of a DeepRBM with a small output layer (≤ 16 units).

For every output state ``y`` (all ``2^{n_N}`` enumerated),

    q_N(y|x)   = E[t_N(y | h_{N-1})],
    ∇_x q_N(y|x) = E[(t_N(y | h_{N-1}) − b_y) ∇_x log t_1(h_1|x)],

over chains ``h_1 ~ t_1(·|x), …, h_{N-1} ~ t_{N-1}(·|h_{N-2})``; only ``t_1`` depends on ``x``, so
the score ``∇_x log t_1(h_1|x) = W_1ᵀ(h_1 − σ(W_1x + a_1))`` (zero mean) gives the gradient. The
baseline ``b_y`` (a control variate) comes from an independent pilot run, so it adds no bias; a
state the pilot does not resolve (mean below 3 standard errors) gets ``b_y = 0``
(:func:`resolved_baseline`).

The samples are split into ``B`` equal blocks with means ``q_b``, ``g_b``. The outer product
``∇q ∇qᵀ`` is estimated without bias by the U-statistic over distinct blocks,
``(B² ḡ ḡᵀ − Σ_b g_b g_bᵀ) / (B(B−1))``, so that gradient noise does not inflate ``F``;

    F = Σ_y U_y / q̂_y

then carries only the ``O(1/S)`` ratio bias of ``1/q̂`` (small: ``q`` is estimated much more
precisely than its gradient). Error bars: leave-one-block-out jackknife; each replicate is the
same estimator computed from the other blocks alone (:func:`_fims_from_blocks`). Moments in
float64. The top eigenvalue's jackknife error is calibrated against exact FIMs and against the
run-to-run spread of 200 seeds (docs/fisher.md, "Calibration of the direct-FIM error bars").

A depth-1 network has the closed form ``W_1ᵀ diag(p(1−p)) W_1``: nothing is sampled, the
standard error is zero and there are no replicates (``replicates`` is ``None``, which
:func:`rgaudit.fisher.eig.top_eigenpairs` turns into ``stderr=None``, "exact").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rgaudit.fisher.first_layer import first_layer_score
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.exact import all_states, log_first
from rgaudit.rg.moments import jackknife_stderr

Tensor = torch.Tensor

MAX_OUTPUT_UNITS = 16
#: Memory bound in bytes of the per-state outer-product sums of :func:`_self_terms`.
SELF_TERM_BYTES = 64 * 2**20
#: The control variate uses a state's pilot baseline only above this many pilot standard errors.
RESOLVED_SIGMA = 3.0


@dataclass(frozen=True)
class DirectFIM:
    """Direct Monte Carlo FIM.

    Attributes
    ----------
    fim : Tensor of shape (n, d, d)
    stderr : Tensor of shape (n, d, d)
        Entrywise jackknife standard error (zero for the exact depth-1 closed form).
    replicates : Tensor of shape (n_blocks, n, d, d) or None
        Leave-one-block-out estimates (feed to :func:`rgaudit.fisher.eig.top_eigenpairs`);
        ``None`` when nothing was sampled (depth 1: the FIM is exact).
    q : Tensor of shape (n, 2^{n_N})
        ``q_N(y|x)`` for every output state (state ``s`` has unit ``j`` = bit ``j`` of ``s``).
    grad_q : Tensor of shape (n, 2^{n_N}, d)
        ``∇_x q_N(y|x)``.
    n_samples : int
    """

    fim: Tensor
    stderr: Tensor
    replicates: Tensor | None
    q: Tensor
    grad_q: Tensor
    n_samples: int

    def unit_prob_grad(self, j: int | Tensor) -> Tensor:
        """``∇_x P(y_j = 1 | x)`` for output unit ``j`` (per input if a tensor), shape (n, d)."""
        n_out = int(round(torch.log2(torch.tensor(float(self.q.shape[-1]))).item()))
        states = all_states(n_out, device=self.q.device)          # (Y, n_out)
        j = torch.as_tensor(j, device=self.q.device).expand(self.q.shape[0])
        mask = states[:, j].T                                      # (n, Y)
        return (mask.unsqueeze(-1) * self.grad_q).sum(1)


def _output_probs(net: DeepRBM, h_prev: Tensor) -> Tensor:
    """``t_N(y | h_{N-1})`` for all states: h_prev (n, S, n_{N-1}) → (n, S, Y), float64.

    The formula is :func:`rgaudit.rg.exact.log_first` (shared with the exact enumeration).
    """
    return log_first(net.layer(net.depth), h_prev, max_units=MAX_OUTPUT_UNITS).exp()


def _weighted_outer(g: Tensor, q: Tensor) -> Tensor:
    """``Σ_y g_y g_yᵀ / q_y`` for g (..., n, Y, d), q (n, Y); returns (..., n, d, d)."""
    gw = g * q.clamp_min(1e-300).rsqrt().unsqueeze(-1)
    return gw.transpose(-1, -2) @ gw


def _self_terms(gb: Tensor, w: Tensor) -> Tensor:
    """``Σ_b Σ_y w_ry g_by g_byᵀ`` for every weight row ``r``, summed over all blocks ``b``.

    Parameters
    ----------
    gb : Tensor of shape (B, n, Y, d)
    w : Tensor of shape (R, n, Y)
        Weights (``1/q``) of each replicate.

    Returns
    -------
    Tensor of shape (R, n, d, d)
        (A strided view of an ``(n, R, d, d)`` array.)

    Notes
    -----
    Through the per-state sums ``S_y = Σ_b g_by g_byᵀ``: two passes of ``B·Y·d²`` per input
    instead of one weighted Gram per (replicate, block) pair (``B²·Y·d²``). Per input, the
    states are taken in chunks so that ``S`` stays below :data:`SELF_TERM_BYTES`, and each
    chunk is written into one reused buffer and added into the result in place (``addmm_``),
    with no ``(R, n, d, d)`` temporary per chunk. An earlier version allocated one per chunk of
    two states: at d = 784 (3 inputs, 4000 chains) that took 139 s, 92 s of it system time (the
    kernel zeroing fresh pages); this one 16 s.
    """
    B, n, Y, d = gb.shape
    R = w.shape[0]
    out = torch.zeros(n, R, d * d, dtype=gb.dtype, device=gb.device)
    step = min(Y, max(1, SELF_TERM_BYTES // (8 * d * d)))
    buf = torch.empty(step, d, d, dtype=gb.dtype, device=gb.device)    # S, reused
    for i in range(n):
        for y0 in range(0, Y, step):
            gy = gb[:, i, y0:y0 + step].transpose(0, 1)                 # (Yc, B, d)
            S = buf[: gy.shape[0]]
            torch.bmm(gy.transpose(1, 2), gy, out=S)                    # (Yc, d, d)
            out[i].addmm_(w[:, i, y0:y0 + step], S.reshape(-1, d * d))
    return out.reshape(n, R, d, d).transpose(0, 1)


def _fims_from_blocks(qb: Tensor, gb: Tensor) -> tuple[Tensor, Tensor]:
    """F and its leave-one-block-out replicates from block means.

    Parameters
    ----------
    qb : Tensor of shape (B, n, Y)
    gb : Tensor of shape (B, n, Y, d)

    Returns
    -------
    fim : Tensor of shape (n, d, d)
    reps : Tensor of shape (B, n, d, d)

    Notes
    -----
    ``F = Σ_y (G_y G_yᵀ − Σ_b g_by g_byᵀ) / (B(B−1) q_y)`` with ``G = Σ_b g_b``. Replicate ``r``
    is the same U-statistic over the other ``B − 1`` blocks alone, with their own
    ``q_r = (B q − q_b=r) / (B − 1)`` in both terms: a genuine leave-one-block-out estimate
    that uses nothing of block ``r``.
    """
    B = qb.shape[0]
    q = qb.mean(0)
    G = gb.sum(0)
    q_r = (q * B - qb) / (B - 1)                                        # (B, n, Y)
    w = torch.cat([q_r, q.unsqueeze(0)]).clamp_min(1e-300).reciprocal()  # (B + 1, n, Y)
    self_w = _self_terms(gb, w)                   # Σ over all blocks, weights of each replicate
    fim = (_weighted_outer(G, q) - self_w[B]) / (B * (B - 1))
    reps = []
    for r in range(B):
        self_r = self_w[r] - _weighted_outer(gb[r], q_r[r])             # blocks b ≠ r only
        reps.append((_weighted_outer(G - gb[r], q_r[r]) - self_r) / ((B - 1) * (B - 2)))
    sym = lambda F: 0.5 * (F + F.transpose(-1, -2))  # noqa: E731
    return sym(fim), sym(torch.stack(reps))


@torch.no_grad()
def direct_fim(
    net: DeepRBM,
    x: Tensor,
    n_samples: int = 20_000,
    generator: torch.Generator | None = None,
    *,
    n_blocks: int = 16,
    chunk: int = 1000,
    pilot: int | None = None,
    input_batch: int = 8,
) -> DirectFIM:
    """Direct Monte Carlo input FIM of ``q_N(y|x)`` with jackknife error bars.

    Parameters
    ----------
    net : DeepRBM
        Output layer of at most 16 units; depth ≥ 2 (depth 1 has the closed form
        ``W_1ᵀ diag(p(1−p)) W_1``, returned without error bars).
    x : Tensor of shape (n, d) or (d,)
    n_samples : int
        Chains per input (rounded up to a multiple of ``n_blocks``).
    generator : torch.Generator, optional
    n_blocks : int
        Jackknife blocks (≥ 3: the U-statistic needs two blocks per replicate).
    chunk : int
        Chains sampled at once (memory ``chunk × 2^{n_N}`` per input).
    pilot : int, optional
        Chains of the independent pilot run for the baselines ``b_y`` (default
        ``max(n_samples // 16, 100)``; 0 disables the control variate).
    input_batch : int
        Inputs processed together.

    Returns
    -------
    DirectFIM
    """
    n_out = net.widths[-1]
    if n_out > MAX_OUTPUT_UNITS:
        raise ValueError(f"direct FIM enumerates 2^{n_out} output states; the limit is "
                         f"{MAX_OUTPUT_UNITS} units — use the chain or mean-field FIM")
    if n_blocks < 3:
        raise ValueError(f"n_blocks must be at least 3, got {n_blocks}")
    if int(n_samples) < n_blocks:
        raise ValueError(f"n_samples={n_samples} is too small: pass n_samples >= n_blocks "
                         f"(= {n_blocks}), at least one chain per jackknife block")
    single = x.dim() == 1
    xb = (x.unsqueeze(0) if single else x).to(device=net.device, dtype=net.dtype)
    states = all_states(n_out, device=net.device)
    if net.depth == 1:
        return _depth_one(net, xb, states, single)
    per_block = -(-int(n_samples) // n_blocks)
    pilot = max(int(n_samples) // 16, 100) if pilot is None else int(pilot)
    chunk = max(1, min(int(chunk), per_block, (1 << 22) // (states.shape[0] * input_batch) or 1))
    outs = []
    for i0 in range(0, xb.shape[0], input_batch):
        outs.append(_direct_batch(net, xb[i0:i0 + input_batch], states, per_block, n_blocks,
                                  pilot, chunk, generator))
    fim, reps, q, g = (torch.cat([o[i] for o in outs], dim=1 if i == 1 else 0)
                       for i in range(4))
    res = DirectFIM(fim, jackknife_stderr(reps), reps, q, g, per_block * n_blocks)
    if single:
        res = DirectFIM(fim[0], res.stderr[0], reps[:, 0], q[0], g[0], res.n_samples)
    return res


def _direct_batch(net: DeepRBM, x: Tensor, states: Tensor, per_block: int, n_blocks: int,
                  pilot: int, chunk: int, generator: torch.Generator | None
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    n, d, Y = x.shape[0], x.shape[1], states.shape[0]
    N = net.depth
    base = _pilot_baseline(net, x, Y, pilot, chunk, generator)
    qb = torch.zeros(n_blocks, n, Y, dtype=torch.float64, device=x.device)
    gb = torch.zeros(n_blocks, n, Y, d, dtype=torch.float64, device=x.device)
    for b in range(n_blocks):
        done = 0
        while done < per_block:
            m = min(chunk, per_block - done)
            hs = net.sample_up(x, m, generator, upto=N - 1)
            t = _output_probs(net, hs[-1])                 # (n, m, Y)
            s = first_layer_score(net, x, hs[1])                   # (n, m, d)
            qb[b] += t.sum(1)
            gb[b] += (t - base.unsqueeze(1)).transpose(-1, -2) @ s
            done += m
    qb /= per_block
    gb /= per_block
    fim, reps = _fims_from_blocks(qb, gb)
    return fim, reps, qb.mean(0), gb.mean(0)


def _pilot_baseline(net: DeepRBM, x: Tensor, n_states: int, pilot: int, chunk: int,
                    generator: torch.Generator | None) -> Tensor:
    """Baselines ``b_y`` of the control variate from ``pilot`` independent chains, (n, Y).

    Each is the pilot mean of ``t_N(y | h_{N-1})`` where the pilot resolves it, else 0
    (:func:`resolved_baseline`).
    """
    s1 = torch.zeros(x.shape[0], n_states, dtype=torch.float64, device=x.device)
    s2 = torch.zeros_like(s1)
    done = 0
    while done < pilot:
        m = min(chunk, pilot - done)
        t = _output_probs(net, net.sample_up(x, m, generator, upto=net.depth - 1)[-1])
        s1 += t.sum(1)
        s2 += (t * t).sum(1)
        done += m
    return resolved_baseline(s1, s2, pilot)


def resolved_baseline(s1: Tensor, s2: Tensor, count: int) -> Tensor:
    """Pilot means ``s1/count`` where they exceed :data:`RESOLVED_SIGMA` standard errors, else 0.

    Parameters
    ----------
    s1, s2 : Tensor of shape (n, Y)
        Sums over the ``count`` pilot chains of ``t_N(y|h)`` and of its square.
    count : int
        Pilot chains (0: no control variate, all baselines 0).

    Returns
    -------
    Tensor of shape (n, Y)

    Notes
    -----
    A state that one pilot chain happened to visit gets a baseline far above its ``q_y``; then
    ``ĝ_y = mean((t_y − b_y) s) ≈ −b_y mean(s)`` is noise of size ``b_y |s| / √S`` and
    ``ĝ_y ĝ_yᵀ / q̂_y`` dominates ``F`` (measured: one state with ``b_y = 9·10⁻⁴`` and
    ``q̂_y = 3·10⁻⁹`` gave a top eigenvalue of 11.2 ± 18 instead of 4.9 ± 0.2; docs/fisher.md).
    Such states get no baseline. The rule reads only the pilot, which is independent of the
    main chains, so ``ĝ`` stays unbiased.
    """
    if count <= 0:
        return torch.zeros_like(s1)
    mean = s1 / count
    se = ((s2 / count - mean * mean).clamp_min(0) / max(count - 1, 1)).sqrt()
    return torch.where(mean > RESOLVED_SIGMA * se, mean, torch.zeros_like(mean))


def _depth_one(net: DeepRBM, x: Tensor, states: Tensor, single: bool) -> DirectFIM:
    lay = net.layer(1)
    W = lay.W.detach().to(torch.float64)
    p = lay.prob_up(x).to(torch.float64)
    fim = W.T @ ((p * (1 - p)).unsqueeze(-1) * W)
    q = log_first(lay, x, max_units=MAX_OUTPUT_UNITS).exp()
    g = q.unsqueeze(-1) * ((states.unsqueeze(0) - p.unsqueeze(1)) @ W)
    z = torch.zeros_like(fim)   # exact: no sampling error, and no blocks to leave out
    if single:
        return DirectFIM(fim[0], z[0], None, q[0], g[0], 0)
    return DirectFIM(fim, z, None, q, g, 0)
