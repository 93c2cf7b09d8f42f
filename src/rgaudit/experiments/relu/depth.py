"""Depth: the hidden-angle recursion and the collapse of deep random ReLU networks.

Angles between the hidden representations of two inputs, layer by layer, against the arc-cosine
recursion ``cos θ' = (sin θ + (π − θ) cos θ)/π`` (full networks and an exact O(m) two-input
sampler); then the one-step attack on networks of growing depth, whose outputs tend to a constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rgaudit.attacks.one_step import one_step_attack
from rgaudit.experiments.relu.config import ReluStudyConfig, make_generator
from rgaudit.nets.relu import ReLUNetBatch, sample_relu_nets, sphere_inputs, width_profile
from rgaudit.random import child_seed

Tensor = torch.Tensor
Progress = Callable[[str], None]


def arccos_recursion(theta0: float, depth: int) -> list[float]:
    """Angles ``θ_0, θ_1, …, θ_depth`` of ``cos θ' = (sin θ + (π − θ) cos θ)/π``."""
    out = [float(theta0)]
    for _ in range(depth):
        t = out[-1]
        c = (math.sin(t) + (math.pi - t) * math.cos(t)) / math.pi
        out.append(math.acos(min(1.0, max(-1.0, c))))
    return out


def hidden_angles(nets: ReLUNetBatch, x: Tensor, y: Tensor) -> Tensor:
    """Angles between the hidden representations of ``x`` and ``y`` at every layer.

    Parameters
    ----------
    nets : ReLUNetBatch
    x, y : Tensor of shape (n_nets, batch, d) or (batch, d)

    Returns
    -------
    Tensor of shape (n_nets, batch, L + 1)
        Entry ``[..., 0]`` is the input angle.
    """
    x, y = nets._batch(x), nets._batch(y)
    hx, hy = [x, *nets.hidden(x)], [y, *nets.hidden(y)]
    cos = []
    for a, b in zip(hx, hy, strict=True):  # float64 and scale-free: deep layers are ~2^{-L/2}
        a, b = a.double(), b.double()
        a = a / a.norm(dim=-1, keepdim=True)
        b = b / b.norm(dim=-1, keepdim=True)
        cos.append((a * b).sum(-1))
    return torch.arccos(torch.stack(cos, dim=-1).clamp(-1.0, 1.0))


def pairs_at_angle(
    n_nets: int, d: int, theta0: float, *, generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Random pairs ``(x, y)`` of norm ``√d`` at angle ``theta0``, each (n_nets, 1, d)."""
    a = torch.randn(n_nets, 2, d, generator=generator, device=generator.device, dtype=torch.float64)
    e1 = a[:, 0] / a[:, 0].norm(dim=-1, keepdim=True)
    e2 = a[:, 1] - (a[:, 1] * e1).sum(-1, keepdim=True) * e1
    e2 = e2 / e2.norm(dim=-1, keepdim=True)
    x = math.sqrt(d) * e1
    y = math.sqrt(d) * (math.cos(theta0) * e1 + math.sin(theta0) * e2)
    return x.unsqueeze(1).to(dtype), y.unsqueeze(1).to(dtype)


def pair_gram_chain(
    width: int, depth: int, theta0: float, n_rep: int, *, generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Hidden angles of two inputs in width-``width`` random ReLU networks, sampled exactly in O(m).

    For one input pair only the 2×2 Gram matrix ``G = [h_x, h_y]ᵀ[h_x, h_y] / m`` matters: given
    layer ``k``, the pre-activation pairs ``(W h_x, W h_y)_i`` are independent ``N(0, G)`` over the
    ``m`` units. Sampling them directly is exactly equivalent in law to drawing the full
    ``m × m`` weight matrices, at O(m) instead of O(m²) per layer, so many replicates are cheap.

    Returns
    -------
    Tensor of shape (n_rep, depth + 1)
        Angles at layers ``0 … depth`` (layer 0: the input angle ``theta0``).
    """
    dev = generator.device
    c0 = math.cos(theta0)
    gram = torch.tensor([[1.0, c0], [c0, 1.0]], dtype=dtype, device=dev).expand(n_rep, 2, 2)
    out = [torch.full((n_rep,), float(theta0), dtype=dtype, device=dev)]
    for _ in range(depth):
        chol = torch.linalg.cholesky(gram + 1e-12 * torch.eye(2, dtype=dtype, device=dev))
        z = torch.randn(n_rep, width, 2, generator=generator, device=dev, dtype=dtype)
        h = torch.relu(z @ chol.transpose(1, 2))
        gram = h.transpose(1, 2) @ h / width
        cos = gram[:, 0, 1] / (gram[:, 0, 0] * gram[:, 1, 1]).sqrt()
        out.append(torch.arccos(cos.clamp(-1.0, 1.0)))
    return torch.stack(out, dim=1)


@dataclass(frozen=True)
class AngleCurve:
    """Mean hidden angle per layer for one input angle: full networks, theory, pair sampler.

    ``simulated_sem``/``pair_sampler_sem`` are standard errors over networks/replicates.
    """

    theta0: float
    layers: list[int]
    simulated_mean: list[float]
    simulated_sem: list[float]
    theory: list[float]
    pair_sampler_mean: list[float]
    pair_sampler_sem: list[float]
    pair_sampler_n: int


@dataclass(frozen=True)
class ReluDepthResult:
    """Angle recursion (width ``width``) and collapse of the one-step attack with depth.

    ``collapse_success`` is indexed ``[depth][multiplier]``; ``collapse_output_angle`` is the
    mean angle at layer L between two random inputs.
    """

    width: int
    angle_n_nets: int
    angle_seed: int
    angles: list[AngleCurve]
    collapse_d: int
    collapse_width: int
    collapse_n_nets: int
    collapse_batch: int
    collapse_seed: int
    collapse_depths: list[int]
    collapse_median_ratio: list[float]
    collapse_success: list[list[float]]
    collapse_output_angle: list[float]
    multipliers: list[float]


def _angle_curves(cfg: ReluStudyConfig, seed: int) -> list[AngleCurve]:
    gen = make_generator(seed, cfg.device)
    n, width, depth = cfg.angle_n_nets, cfg.angle_width, cfg.angle_max_depth
    nets = sample_relu_nets(n, [width] * (depth + 1), generator=gen, dtype=cfg.torch_dtype)
    curves = []
    for t0 in cfg.angle_thetas0:
        x, y = pairs_at_angle(n, width, t0, generator=gen, dtype=cfg.torch_dtype)
        ang = hidden_angles(nets, x, y)[:, 0].double().cpu().numpy()  # (n, L+1)
        sem = ang.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full(ang.shape[1], np.nan)
        reps = cfg.angle_pair_reps
        exact = pair_gram_chain(width, depth, t0, reps, generator=gen).cpu().numpy()
        curves.append(AngleCurve(
            theta0=float(t0), layers=list(range(depth + 1)),
            simulated_mean=[float(v) for v in ang.mean(axis=0)],
            simulated_sem=[float(v) for v in sem], theory=arccos_recursion(t0, depth),
            pair_sampler_mean=[float(v) for v in exact.mean(axis=0)],
            pair_sampler_sem=[float(v) for v in exact.std(axis=0, ddof=1) / math.sqrt(reps)],
            pair_sampler_n=reps,
        ))
    return curves


def depth_study(cfg: ReluStudyConfig, progress: Progress | None = None) -> ReluDepthResult:
    """Hidden-angle recursion and the collapse of deep random ReLU networks.

    Reads ``cfg.angle_*`` (angles: stream ``relu.angles``), ``cfg.collapse_*`` (collapse:
    stream ``relu.collapse``), ``multipliers``, ``device``, ``dtype``.

    Parameters
    ----------
    cfg : ReluStudyConfig
    progress : callable, optional
        Called after the angle study and after the collapse study.

    Returns
    -------
    ReluDepthResult
    """
    s_ang = child_seed(cfg.seed, "relu.angles")
    curves = _angle_curves(cfg, s_ang)
    if progress:
        progress("depth: angle recursion")
    s_col = child_seed(cfg.seed, "relu.collapse")
    gen = make_generator(s_col, cfg.device)
    depths = sorted({int(k) for k in cfg.collapse_depths})
    widths = width_profile(cfg.collapse_d, max(depths), "fixed", width=cfg.collapse_width)
    nets = sample_relu_nets(cfg.collapse_n_nets, widths, generator=gen, dtype=cfg.torch_dtype)
    x = sphere_inputs(cfg.collapse_n_nets, cfg.collapse_batch, cfg.collapse_d, generator=gen,
                      dtype=cfg.torch_dtype)
    out = one_step_attack(nets, x, cfg.multipliers, depths)
    ratio = out.ratio.double().cpu().numpy()
    succ = out.success.double().cpu().numpy()
    ang = hidden_angles(nets, x[:, :1], x[:, 1:2])[:, 0].double().cpu().numpy()
    if progress:
        progress("depth: collapse")
    return ReluDepthResult(
        width=cfg.angle_width, angle_n_nets=cfg.angle_n_nets, angle_seed=s_ang, angles=curves,
        collapse_d=cfg.collapse_d, collapse_width=cfg.collapse_width,
        collapse_n_nets=cfg.collapse_n_nets, collapse_batch=cfg.collapse_batch,
        collapse_seed=s_col, collapse_depths=depths,
        collapse_median_ratio=[float(v) for v in np.median(ratio, axis=(0, 1))],
        collapse_success=[[float(v) for v in succ[:, :, k].mean(axis=(0, 1))]
                          for k in range(len(depths))],
        collapse_output_angle=[float(ang[:, k].mean()) for k in depths],
        multipliers=[float(c) for c in cfg.multipliers],
    )
