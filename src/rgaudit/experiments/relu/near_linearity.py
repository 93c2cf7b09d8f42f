"""Near-linearity: how far a random ReLU network stays affine around an input.

For ``y = x + r u`` (``u`` a random unit vector or the descent gradient direction) the median over
networks × inputs of ``‖∇f(y) − ∇f(x)‖/‖∇f(x)‖`` and of the affine error
``|f(y) − f(x) − ∇f(x)·(y − x)| / (‖∇f(x)‖ r)``, with ``r/‖x‖`` scanned from far below the attack
step to ``2‖x‖`` (``‖x‖ = √d``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rgaudit.experiments.relu.config import ReluStudyConfig, make_generator
from rgaudit.experiments.relu.scaling import profile_widths
from rgaudit.nets.relu import ReLUNetBatch, sample_relu_nets, sphere_inputs
from rgaudit.random import child_seed

Tensor = torch.Tensor
Progress = Callable[[str], None]


@dataclass(frozen=True)
class NearLinearityCurve:
    """Relative gradient change and affine error against the distance ``r`` from ``x``.

    ``step_rel`` is the median one-step size ``‖δ‖/‖x‖`` at ``c = 1`` for these networks;
    ``breakdown_r_rel`` the first ``r/‖x‖`` where the median gradient change reaches
    ``threshold`` (log-interpolated; ``None`` if never).
    """

    profile: str
    d: int
    depth: int
    direction: str  # "random" or "gradient"
    r_rel: list[float]
    grad_change_median: list[float]
    grad_change_q90: list[float]
    affine_err_median: list[float]
    step_rel: float
    breakdown_r_rel: float | None
    threshold: float
    seed: int


@dataclass(frozen=True)
class NearLinearityResult:
    """One curve per (d, depth, direction)."""

    curves: list[NearLinearityCurve]


def breakdown_radius(r_rel: np.ndarray, y: np.ndarray, threshold: float) -> float | None:
    """First ``r_rel`` where ``y`` reaches ``threshold``, interpolated linearly in ``log r``."""
    above = np.nonzero(y >= threshold)[0]
    if len(above) == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(r_rel[0])
    lr = np.log(r_rel[i - 1 : i + 1])
    t = (threshold - y[i - 1]) / (y[i] - y[i - 1])
    return float(np.exp(lr[0] + t * (lr[1] - lr[0])))


def _curve(net: ReLUNetBatch, x: Tensor, u: Tensor, radii: Tensor,
           f0: Tensor, g0: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-radius gradient change (n·b, R) and median affine error (R,) along ``u`` (n, b, d)."""
    n, b, d = x.shape
    g0n = g0.norm(dim=-1)
    y = x.unsqueeze(2) + radii.view(1, 1, -1, 1) * u.unsqueeze(2)  # (n,b,R,d)
    fy, gy = net.grad(y.reshape(n, -1, d))
    fy, gy = fy.view(n, b, -1), gy.view(n, b, -1, d)
    dg = (gy - g0.unsqueeze(2)).norm(dim=-1) / g0n.unsqueeze(-1)
    lin = f0.unsqueeze(-1) + radii.view(1, 1, -1) * (g0 * u).sum(-1, keepdim=True)
    aff = (fy - lin).abs() / (radii.view(1, 1, -1) * g0n.unsqueeze(-1))
    R = radii.numel()
    dgm = dg.reshape(-1, R).double().cpu().numpy()
    return dgm, np.median(dgm, axis=0), np.median(aff.reshape(-1, R).double().cpu().numpy(),
                                                  axis=0)


def near_linearity_study(cfg: ReluStudyConfig,
                         progress: Progress | None = None) -> NearLinearityResult:
    """Scan ``y = x + r u`` and measure how far the network stays affine.

    Reads ``cfg.nl_dims``, ``nl_depths``, ``nl_profile``, ``nl_width``, ``nl_r_rel`` (radii
    relative to ``‖x‖ = √d``: the attack step is ``~1/√d`` in these units and the theorem's
    near-linear ball ``√d_min`` is ``√(d_min/d)``), ``nl_n_nets``, ``nl_batch``,
    ``nl_threshold``, ``seed`` (dimension ``i`` uses stream ``relu.near-linearity`` [i]),
    ``device``, ``dtype``.

    Parameters
    ----------
    cfg : ReluStudyConfig
    progress : callable, optional
        Called after each input dimension.

    Returns
    -------
    NearLinearityResult
    """
    rr = np.asarray(cfg.nl_r_rel, dtype=float)
    dtype, n_nets = cfg.torch_dtype, cfg.nl_n_nets
    curves = []
    for i, d in enumerate(cfg.nl_dims):
        s = child_seed(cfg.seed, "relu.near-linearity", i)
        gen = make_generator(s, cfg.device)
        widths = profile_widths(d, max(cfg.nl_depths), cfg.nl_profile, cfg.nl_width)
        nets = sample_relu_nets(n_nets, widths, generator=gen, dtype=dtype)
        x = sphere_inputs(n_nets, cfg.nl_batch, d, generator=gen, dtype=dtype)
        u_rand = torch.randn(x.shape, generator=gen, device=gen.device, dtype=dtype)
        u_rand = u_rand / u_rand.norm(dim=-1, keepdim=True)
        radii = torch.as_tensor(rr * math.sqrt(d), dtype=dtype, device=x.device)
        for depth in cfg.nl_depths:
            net = nets.truncate(depth)
            f0, g0 = net.grad(x)  # (n,b), (n,b,d)
            g0n = g0.norm(dim=-1)
            step = float(torch.median(f0.abs() / g0n / math.sqrt(d)))
            for direction in ("random", "gradient"):
                u = u_rand if direction == "random" else -torch.sign(f0).unsqueeze(-1) * g0 / (
                    g0n.unsqueeze(-1))
                dgm, med, aff = _curve(net, x, u, radii, f0, g0)
                curves.append(NearLinearityCurve(
                    profile=cfg.nl_profile, d=int(d), depth=int(depth), direction=direction,
                    r_rel=[float(v) for v in rr], grad_change_median=[float(v) for v in med],
                    grad_change_q90=[float(v) for v in np.quantile(dgm, 0.9, axis=0)],
                    affine_err_median=[float(v) for v in aff], step_rel=step,
                    breakdown_r_rel=breakdown_radius(rr, med, cfg.nl_threshold),
                    threshold=cfg.nl_threshold, seed=s,
                ))
        if progress:
            progress(f"near-linearity d={d}")
    return NearLinearityResult(curves=curves)
