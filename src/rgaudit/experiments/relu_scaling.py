"""Study: one-step adversarial examples in random ReLU networks (Bartlett, Bubeck, Cherapanamjeri).

What is measured (see ``docs/relu.md``):

- **One-step attack** ``δ = −c f(x) ∇f(x) / ‖∇f(x)‖²``: sign-flip success per multiplier ``c`` and
  the relative size ``‖δ‖/‖x‖ = c |f(x)| / (‖∇f(x)‖ ‖x‖)`` (reported for ``c = 1``). Depth 0 is the
  random linear function, the talk's baseline.
- **Scaling**: median ``‖δ‖/‖x‖`` against the input dimension ``d`` for every depth and width
  profile, with the log–log slope and a 95 % bootstrap interval (networks resampled with
  replacement within each ``d``; the regression standard error is reported too).
- **Near-linearity**: ``‖∇f(y) − ∇f(x)‖/‖∇f(x)‖`` and the affine error
  ``|f(y) − f(x) − ∇f(x)·(y − x)| / (‖∇f(x)‖ r)`` for ``y = x + r u``, ``u`` a random or the
  gradient direction, ``r`` scanned from far below the attack step to ``2‖x‖``.
- **Depth**: angle between hidden representations of two inputs layer by layer against the
  arc-cosine recursion; collapse toward a constant function and its effect on the attack.
- **Trained networks**: the same measurements on any ``torch.nn.Module`` classifier through the
  logit margin (true class minus runner-up), with a small MLP trained on scikit-learn digits.
- **Fisher information** (DESIGN fact 6): the input FIM of a Bernoulli output ``σ(f(x))`` is
  ``p(1−p) ∇f ∇fᵀ``, rank one, so the FIM-direction step equals the gradient step.

Functions return plain dataclasses with ``to_dict()``; nothing here touches the file system.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from rgaudit.nets.relu import (
    ReLUNetBatch,
    sample_relu_nets,
    sphere_inputs,
    weight_bytes,
    width_profile,
)

Tensor = torch.Tensor
Progress = Callable[[str], None]

DEFAULT_MULTIPLIERS = (1.0, 1.5, 2.0, 4.0)


# ----------------------------------------------------------------------------- small statistics


def _seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys (recorded in the results)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> 1)


def _generator(seed: int, device: str | torch.device) -> torch.Generator:
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % for ``z = 1.96``)."""
    if trials == 0:
        return (float("nan"), float("nan"))
    p = successes / trials
    den = 1 + z**2 / trials
    mid = (p + z**2 / (2 * trials)) / den
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def loglog_fit(dims: Sequence[float], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of ``log values`` against ``log dims``.

    Parameters
    ----------
    dims : sequence of float, length n_d
    values : ndarray of shape (..., n_d)

    Returns
    -------
    slope, intercept : ndarray of shape (...)
    """
    lx = np.log(np.asarray(dims, dtype=float))
    ly = np.log(values)
    xc = lx - lx.mean()
    slope = (ly * xc).sum(-1) / (xc**2).sum()
    return slope, ly.mean(-1) - slope * lx.mean()


def _ols_se(dims: Sequence[float], values: np.ndarray) -> float:
    lx = np.log(np.asarray(dims, dtype=float))
    slope, icpt = loglog_fit(dims, values)
    resid = np.log(values) - (icpt + slope * lx)
    if len(lx) < 3:
        return float("nan")
    return float(np.sqrt((resid**2).sum() / (len(lx) - 2) / ((lx - lx.mean()) ** 2).sum()))


# ----------------------------------------------------------------------------- the attack


def one_step_attack(
    nets: ReLUNetBatch,
    x: Tensor,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    depths: Sequence[int] | None = None,
) -> dict[str, Tensor]:
    """One gradient step ``δ = −c f(x) ∇f(x)/‖∇f(x)‖²`` on random ReLU networks of several depths.

    Parameters
    ----------
    nets : ReLUNetBatch
        ``n_nets`` networks with readouts at every depth.
    x : Tensor of shape (n_nets, batch, d) or (batch, d)
    multipliers : sequence of float, length C
    depths : sequence of int, length D, optional
        Depths to attack (0 = linear baseline); default all ``0 … nets.depth``.

    Returns
    -------
    dict of Tensor
        ``f`` (n_nets, batch, D): clean outputs; ``ratio`` (n_nets, batch, D): ``‖δ‖/‖x‖`` at
        ``c = 1``; ``f_after`` (n_nets, batch, D, C); ``success`` (n_nets, batch, D, C), bool: the
        sign of ``f`` flipped (never counted when ``f(x) = 0`` or ``∇f(x) = 0``).
    """
    depths = list(range(nets.depth + 1)) if depths is None else [int(k) for k in depths]
    if not depths or min(depths) < 0 or max(depths) > nets.depth:
        raise ValueError(f"depths must lie in [0, {nets.depth}], got {depths}")
    cs = torch.as_tensor(list(multipliers), dtype=nets.dtype, device=nets.device)
    if cs.numel() == 0:
        raise ValueError("give at least one step multiplier")
    sub = nets.truncate(max(depths))
    x = sub._batch(x)
    n, b, d = x.shape
    f_all, g_all = sub.grad_all(x)
    idx = torch.as_tensor(depths, device=nets.device)
    f, g = f_all[..., idx], g_all[..., idx, :]  # (n,b,D), (n,b,D,d)
    gn2 = (g**2).sum(-1)
    valid = (gn2 > 0) & (f != 0)
    scale = torch.where(valid, f / gn2.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(f))
    tiny = torch.finfo(g.dtype).tiny
    ratio = f.abs() / (gn2.sqrt() * x.norm(dim=-1, keepdim=True)).clamp_min(tiny)
    ratio = torch.where(valid, ratio, torch.full_like(f, math.inf))
    delta = -cs.view(1, 1, 1, -1, 1) * (scale.unsqueeze(-1) * g).unsqueeze(3)  # (n,b,D,C,d)
    xp = x.view(n, b, 1, 1, d) + delta
    f_after = torch.stack([  # each depth through its own layers only
        sub.truncate(k).forward_all(xp[:, :, i].reshape(n, -1, d))[..., -1].view(n, b, len(cs))
        for i, k in enumerate(depths)], dim=2)
    success = valid.unsqueeze(-1) & (torch.sign(f_after) == -torch.sign(f).unsqueeze(-1))
    return {"f": f, "ratio": ratio, "f_after": f_after, "success": success}


# ----------------------------------------------------------------------------- scaling study


@dataclass
class ScalingCell:
    """One (width profile, d) cell: ``n_nets × batch`` attacks at every depth."""

    profile: str
    d: int
    widths: list[int]
    seed: int
    n_nets: int
    batch: int
    depths: list[int]
    median_ratio: list[float]  # per depth
    median_ratio_ci: list[list[float]]  # per depth, 95 % bootstrap over networks
    success: list[list[float]]  # [depth][multiplier]
    success_ci: list[list[list[float]]]  # [depth][multiplier] Wilson 95 %
    seconds: float


@dataclass
class ScalingFit:
    """Log–log fit of median ``‖δ‖/‖x‖`` against ``d`` at one depth and width profile."""

    profile: str
    depth: int
    dims: list[int]
    slope: float
    ci_low: float  # 95 % percentile bootstrap over networks
    ci_high: float
    boot_se: float
    ols_se: float  # regression standard error of the slope (ignores noise in the medians)
    intercept: float


@dataclass
class ScalingResult:
    multipliers: list[float]
    cells: list[ScalingCell]
    fits: list[ScalingFit]
    skipped: list[dict]
    n_boot: int
    boot_seed: int


def _profile_widths(d: int, depth: int, profile: str, width: int) -> list[int]:
    kind = "fixed" if profile.startswith("fixed") else profile
    return width_profile(d, depth, kind, width=width)


def scaling_study(
    *,
    dims: Sequence[int],
    depths: Sequence[int],
    profiles: Sequence[str] = ("constant", "fixed"),
    width: int = 256,
    n_nets: int = 24,
    batch: int = 4,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    seed: int = 0,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    max_weight_bytes: int = 600 * 2**20,
    max_chunk_bytes: int = 512 * 2**20,
    n_boot: int = 1000,
    progress: Progress | None = None,
) -> ScalingResult:
    """Median one-step size ``‖δ‖/‖x‖`` against ``d``, per depth and width profile.

    Parameters
    ----------
    dims : sequence of int
        Input dimensions ``d`` (use ≥ two decades for a slope).
    depths : sequence of int
        Depths ``L ≥ 1``; depth 0 (random linear function) is always added as the baseline.
    profiles : sequence of {"constant", "fixed"}
        ``"constant"``: hidden widths ``= d``; ``"fixed"``: hidden widths ``= width``.
    width : int
        Hidden width of the ``"fixed"`` profile.
    n_nets, batch : int
        Networks per cell and inputs per network (inputs uniform on the sphere of radius ``√d``).
    multipliers : sequence of float
    seed : int
        Cell ``(p, i)`` uses generator seed ``_seed(seed, 1, p, i)`` (recorded in the cell).
    device : str
    dtype : torch.dtype
    max_weight_bytes : int
        Cells whose single network needs more weight memory are skipped (and listed).
    max_chunk_bytes : int
        Networks are drawn and attacked in chunks of about this much weight memory.
    n_boot : int
        Bootstrap resamples (over networks) for the slope and median intervals.
    progress : callable, optional
        Called with a message after each cell.

    Returns
    -------
    ScalingResult
    """
    depths = sorted({0, *[int(k) for k in depths]})
    if min(depths) < 0 or len(dims) < 2 or min(dims) < 2:
        raise ValueError(f"need >= 2 dims >= 2 and depths >= 0; got dims={dims}, depths={depths}")
    cells, skipped = [], []
    raw: dict[tuple[str, int], np.ndarray] = {}  # (profile, d) -> ratios (n_nets, batch, D)
    for p, profile in enumerate(profiles):
        if profile not in ("constant", "fixed"):
            raise ValueError(f"unknown profile {profile!r}; use 'constant' or 'fixed'")
        for i, d in enumerate(dims):
            t0 = time.perf_counter()
            widths = _profile_widths(d, max(depths), profile, width)
            wb = weight_bytes(widths, dtype)
            if wb > max_weight_bytes:
                skipped.append({"profile": profile, "d": d, "weight_bytes": wb,
                                "reason": f"one network needs {wb / 2**20:.0f} MiB of weights "
                                          f"> max_weight_bytes {max_weight_bytes / 2**20:.0f} MiB"})
                if progress:
                    progress(f"scaling {profile} d={d} skipped (memory)")
                continue
            s = _seed(seed, 1, p, i)
            gen = _generator(s, device)
            chunk = max(1, min(n_nets, max_chunk_bytes // wb))
            ratios, succ = [], []
            for start in range(0, n_nets, chunk):
                m = min(chunk, n_nets - start)
                nets = sample_relu_nets(m, widths, generator=gen, dtype=dtype)
                x = sphere_inputs(m, batch, d, generator=gen, dtype=dtype)
                out = one_step_attack(nets, x, multipliers, depths)
                ratios.append(out["ratio"].double().cpu().numpy())
                succ.append(out["success"].cpu().numpy())
                del nets, x, out
            r = np.concatenate(ratios)
            sc = np.concatenate(succ)
            raw[(profile, d)] = r
            med_ci = []
            rng = np.random.default_rng(_seed(seed, 2, p, i))
            for k in range(len(depths)):
                bi = rng.integers(0, n_nets, size=(n_boot, n_nets))
                meds = np.median(r[bi, :, k].reshape(n_boot, -1), axis=1)
                med_ci.append([float(np.quantile(meds, 0.025)), float(np.quantile(meds, 0.975))])
            trials = sc.shape[0] * sc.shape[1]
            cells.append(ScalingCell(
                profile=profile, d=int(d), widths=widths, seed=s, n_nets=n_nets, batch=batch,
                depths=depths, median_ratio=[float(v) for v in np.median(r, axis=(0, 1))],
                median_ratio_ci=med_ci,
                success=[[float(v) for v in sc[:, :, k].mean(axis=(0, 1))]
                         for k in range(len(depths))],
                success_ci=[[list(wilson_interval(int(sc[:, :, k, j].sum()), trials))
                             for j in range(sc.shape[-1])] for k in range(len(depths))],
                seconds=time.perf_counter() - t0,
            ))
            if progress:
                progress(f"scaling {profile} d={d} ({cells[-1].seconds:.1f}s)")
    boot_seed = _seed(seed, 3)
    fits = _fit_slopes(raw, profiles, depths, n_boot, boot_seed)
    return ScalingResult(multipliers=[float(c) for c in multipliers], cells=cells, fits=fits,
                         skipped=skipped, n_boot=n_boot, boot_seed=boot_seed)


def _fit_slopes(
    raw: dict[tuple[str, int], np.ndarray], profiles: Sequence[str], depths: list[int],
    n_boot: int, boot_seed: int,
) -> list[ScalingFit]:
    """Slope of log median ratio vs log d; 95 % bootstrap interval resampling networks per d."""
    rng = np.random.default_rng(boot_seed)
    fits = []
    for profile in profiles:
        dims = sorted(d for (p, d) in raw if p == profile)
        if len(dims) < 2:
            continue
        # bootstrap medians: (n_boot, n_d, D)
        boot = np.empty((n_boot, len(dims), len(depths)))
        point = np.empty((len(dims), len(depths)))
        for j, d in enumerate(dims):
            r = raw[(profile, d)]
            n = r.shape[0]
            point[j] = np.median(r, axis=(0, 1))
            bi = rng.integers(0, n, size=(n_boot, n))
            boot[:, j] = np.median(r[bi].reshape(n_boot, -1, len(depths)), axis=1)
        for k, depth in enumerate(depths):
            slope, icpt = loglog_fit(dims, point[:, k])
            bs, _ = loglog_fit(dims, boot[:, :, k])
            fits.append(ScalingFit(
                profile=profile, depth=depth, dims=dims, slope=float(slope),
                ci_low=float(np.quantile(bs, 0.025)), ci_high=float(np.quantile(bs, 0.975)),
                boot_se=float(bs.std(ddof=1)), ols_se=_ols_se(dims, point[:, k]),
                intercept=float(icpt),
            ))
    return fits


# ----------------------------------------------------------------------------- near-linearity


@dataclass
class NearLinearityCurve:
    """Relative gradient change and affine error against the distance ``r`` from ``x``."""

    profile: str
    d: int
    depth: int
    direction: str  # "random" or "gradient"
    r_rel: list[float]  # r / ‖x‖
    grad_change_median: list[float]
    grad_change_q90: list[float]
    affine_err_median: list[float]
    step_rel: float  # median one-step size ‖δ‖/‖x‖ at c = 1 for these networks
    breakdown_r_rel: float | None  # first r/‖x‖ where the median gradient change reaches threshold
    threshold: float
    seed: int


@dataclass
class NearLinearityResult:
    curves: list[NearLinearityCurve]


def _breakdown(r_rel: np.ndarray, y: np.ndarray, threshold: float) -> float | None:
    above = np.nonzero(y >= threshold)[0]
    if len(above) == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(r_rel[0])
    lr = np.log(r_rel[i - 1 : i + 1])
    t = (threshold - y[i - 1]) / (y[i] - y[i - 1])
    return float(np.exp(lr[0] + t * (lr[1] - lr[0])))


def near_linearity_study(
    *,
    dims: Sequence[int],
    depths: Sequence[int],
    profile: str = "constant",
    width: int = 256,
    r_rel: Sequence[float] | None = None,
    n_nets: int = 4,
    batch: int = 2,
    threshold: float = 0.5,
    seed: int = 0,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
) -> NearLinearityResult:
    """Scan ``y = x + r u`` and measure how far the network stays affine.

    The radius is given relative to ``‖x‖ = √d``: ``r_rel = r/‖x‖`` from ``1e-3`` to 2 by
    default. The attack step is ``~1/√d`` in these units and the theorem's near-linear ball
    ``√d_min`` is ``√(d_min/d)``; the scan covers both and goes to the scale of the input itself.

    Parameters
    ----------
    dims, depths : sequences of int
    profile : {"constant", "fixed"}
    width : int
    r_rel : sequence of float, optional
    n_nets, batch : int
    threshold : float
        Breakdown = first radius where the median relative gradient change reaches this value.
    seed : int
    device : str
    dtype : torch.dtype
    progress : callable, optional

    Returns
    -------
    NearLinearityResult
    """
    rr = np.geomspace(1e-3, 2.0, 23) if r_rel is None else np.asarray(r_rel, dtype=float)
    curves = []
    for i, d in enumerate(dims):
        s = _seed(seed, 4, i)
        gen = _generator(s, device)
        nets = sample_relu_nets(n_nets, _profile_widths(d, max(depths), profile, width),
                                generator=gen, dtype=dtype)
        x = sphere_inputs(n_nets, batch, d, generator=gen, dtype=dtype)
        u_rand = torch.randn(x.shape, generator=gen, device=gen.device, dtype=dtype)
        u_rand = u_rand / u_rand.norm(dim=-1, keepdim=True)
        radii = torch.as_tensor(rr * math.sqrt(d), dtype=dtype, device=x.device)
        for depth in depths:
            net = nets.truncate(depth)
            f0, g0 = net.grad(x)  # (n,b), (n,b,d)
            g0n = g0.norm(dim=-1)
            step = float(torch.median(f0.abs() / g0n / math.sqrt(d)))
            for direction in ("random", "gradient"):
                u = u_rand if direction == "random" else -torch.sign(f0).unsqueeze(-1) * g0 / (
                    g0n.unsqueeze(-1))
                y = x.unsqueeze(2) + radii.view(1, 1, -1, 1) * u.unsqueeze(2)  # (n,b,R,d)
                fy, gy = net.grad(y.reshape(n_nets, -1, d))
                fy = fy.view(n_nets, batch, -1)
                gy = gy.view(n_nets, batch, -1, d)
                dg = (gy - g0.unsqueeze(2)).norm(dim=-1) / g0n.unsqueeze(-1)
                lin = f0.unsqueeze(-1) + radii.view(1, 1, -1) * (g0 * u).sum(-1, keepdim=True)
                aff = (fy - lin).abs() / (radii.view(1, 1, -1) * g0n.unsqueeze(-1))
                dgm = dg.reshape(-1, len(rr)).double().cpu().numpy()
                med = np.median(dgm, axis=0)
                curves.append(NearLinearityCurve(
                    profile=profile, d=int(d), depth=int(depth), direction=direction,
                    r_rel=[float(v) for v in rr], grad_change_median=[float(v) for v in med],
                    grad_change_q90=[float(v) for v in np.quantile(dgm, 0.9, axis=0)],
                    affine_err_median=[float(v) for v in np.median(
                        aff.reshape(-1, len(rr)).double().cpu().numpy(), axis=0)],
                    step_rel=step, breakdown_r_rel=_breakdown(rr, med, threshold),
                    threshold=threshold, seed=s,
                ))
        if progress:
            progress(f"near-linearity d={d}")
    return NearLinearityResult(curves=curves)


# ----------------------------------------------------------------------------- depth


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


@dataclass
class AngleCurve:
    theta0: float
    layers: list[int]
    simulated_mean: list[float]
    simulated_sem: list[float]  # standard error over networks
    theory: list[float]
    pair_sampler_mean: list[float]  # exact O(m) two-input sampler, many replicates
    pair_sampler_sem: list[float]
    pair_sampler_n: int


@dataclass
class DepthResult:
    """Angle recursion (width ``width``) and collapse of the one-step attack with depth."""

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
    collapse_success: list[list[float]]  # [depth][multiplier]
    collapse_output_angle: list[float]  # mean angle at layer L between two random inputs
    multipliers: list[float]


def depth_study(
    *,
    width: int = 2048,
    max_depth: int = 16,
    thetas0: Sequence[float] = (math.pi / 4, math.pi / 2, 3 * math.pi / 4, 0.95 * math.pi),
    angle_n_nets: int = 4,
    pair_reps: int = 400,
    collapse_d: int = 256,
    collapse_width: int = 256,
    collapse_depths: Sequence[int] = (0, 1, 2, 4, 8, 16, 32, 64),
    collapse_n_nets: int = 64,
    collapse_batch: int = 4,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    seed: int = 0,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
) -> DepthResult:
    """Hidden-angle recursion and the collapse of deep random ReLU networks.

    Parameters
    ----------
    width : int
        Input and hidden width of the angle study.
    max_depth : int
    thetas0 : sequence of float
        Input angles (radians).
    angle_n_nets : int
        Networks per input angle (one pair per network).
    pair_reps : int
        Replicates of the exact two-input sampler :func:`pair_gram_chain` per input angle.
    collapse_d, collapse_width, collapse_depths, collapse_n_nets, collapse_batch
        Setting of the collapse study (``batch ≥ 2``: the first two inputs give the output angle).
    multipliers : sequence of float
    seed : int
    device : str
    dtype : torch.dtype
    progress : callable, optional

    Returns
    -------
    DepthResult
    """
    if collapse_batch < 2:
        raise ValueError("collapse_batch must be >= 2 (two inputs give the output angle)")
    s_ang = _seed(seed, 5)
    gen = _generator(s_ang, device)
    nets = sample_relu_nets(angle_n_nets, [width] * (max_depth + 1), generator=gen, dtype=dtype)
    curves = []
    for t0 in thetas0:
        x, y = pairs_at_angle(angle_n_nets, width, t0, generator=gen, dtype=dtype)
        ang = hidden_angles(nets, x, y)[:, 0].double().cpu().numpy()  # (n, L+1)
        sem = ang.std(axis=0, ddof=1) / math.sqrt(angle_n_nets) if angle_n_nets > 1 else \
            np.full(ang.shape[1], np.nan)
        exact = pair_gram_chain(width, max_depth, t0, pair_reps, generator=gen).cpu().numpy()
        curves.append(AngleCurve(
            theta0=float(t0), layers=list(range(max_depth + 1)),
            simulated_mean=[float(v) for v in ang.mean(axis=0)],
            simulated_sem=[float(v) for v in sem], theory=arccos_recursion(t0, max_depth),
            pair_sampler_mean=[float(v) for v in exact.mean(axis=0)],
            pair_sampler_sem=[float(v) for v in exact.std(axis=0, ddof=1) / math.sqrt(pair_reps)],
            pair_sampler_n=pair_reps,
        ))
    del nets
    if progress:
        progress("depth: angle recursion")
    s_col = _seed(seed, 6)
    gen = _generator(s_col, device)
    depths = sorted({int(k) for k in collapse_depths})
    nets = sample_relu_nets(collapse_n_nets, width_profile(
        collapse_d, max(depths), "fixed", width=collapse_width), generator=gen, dtype=dtype)
    x = sphere_inputs(collapse_n_nets, collapse_batch, collapse_d, generator=gen, dtype=dtype)
    out = one_step_attack(nets, x, multipliers, depths)
    ratio = out["ratio"].double().cpu().numpy()
    succ = out["success"].double().cpu().numpy()
    ang = hidden_angles(nets, x[:, :1], x[:, 1:2])[:, 0].double().cpu().numpy()
    if progress:
        progress("depth: collapse")
    return DepthResult(
        width=width, angle_n_nets=angle_n_nets, angle_seed=s_ang, angles=curves,
        collapse_d=collapse_d, collapse_width=collapse_width, collapse_n_nets=collapse_n_nets,
        collapse_batch=collapse_batch, collapse_seed=s_col, collapse_depths=depths,
        collapse_median_ratio=[float(v) for v in np.median(ratio, axis=(0, 1))],
        collapse_success=[[float(v) for v in succ[:, :, k].mean(axis=(0, 1))]
                          for k in range(len(depths))],
        collapse_output_angle=[float(ang[:, k].mean()) for k in depths],
        multipliers=[float(c) for c in multipliers],
    )


# ----------------------------------------------------------------------------- classifiers


def logit_margin(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    """``z_label(x) − max_{k ≠ label} z_k(x)`` for a module mapping (B, d) to (B, n_classes)."""
    z = model(x)
    if z.dim() != 2 or z.shape[0] != x.shape[0] or z.shape[1] < 2:
        raise ValueError(f"model must map (B, d) to (B, n_classes >= 2) logits; got {z.shape}")
    zl = z.gather(1, labels.view(-1, 1)).squeeze(1)
    other = z.scatter(1, labels.view(-1, 1), float("-inf")).amax(dim=1)
    return zl - other


def _margin_and_grad(model: nn.Module, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().clone().requires_grad_(True)
    m = logit_margin(model, x, labels)
    (g,) = torch.autograd.grad(m.sum(), x)
    return m.detach(), g


@dataclass
class ClassifierAttack:
    """One-step attack on the logit margin of a classifier (inputs with positive margin only)."""

    name: str
    n_inputs: int
    d: int
    median_ratio: float  # ‖δ‖/‖x‖ at c = 1
    ratio_quartiles: list[float]
    success: list[float]  # per multiplier, unclipped
    success_clipped: list[float]  # per multiplier, x + δ clipped to the input box
    multipliers: list[float]
    clip: list[float] | None
    near_linearity: dict = field(default_factory=dict)


def classifier_one_step(
    model: nn.Module,
    x: Tensor,
    labels: Tensor | None = None,
    *,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    clip: tuple[float, float] | None = (0.0, 1.0),
    r_rel: Sequence[float] = tuple(np.geomspace(1e-3, 1.0, 13)),
    generator: torch.Generator | None = None,
    name: str = "classifier",
) -> ClassifierAttack:
    """The one-step measurements on any classifier ``model: (B, d) -> (B, n_classes)`` logits.

    The scalar output is the logit margin ``f = z_label − max_{k≠label} z_k``; ``f > 0`` means
    classified as ``label``, and the attack succeeds when ``f(x + δ) < 0`` (the predicted class
    changes). Inputs with ``f(x) ≤ 0`` (already misclassified) are dropped.

    Parameters
    ----------
    model : torch.nn.Module
        Deterministic; evaluated in its current mode (call ``model.eval()`` first if needed).
    x : Tensor of shape (B, d)
    labels : Tensor of shape (B,), optional
        Reference classes; default the model's own predictions.
    multipliers : sequence of float
    clip : (low, high) or None
        Input box for the clipped success rate.
    r_rel : sequence of float
        Radii ``r/‖x‖`` of the near-linearity scan (random and gradient directions).
    generator : torch.Generator, optional
        Draws the random directions (skipped without one).
    name : str

    Returns
    -------
    ClassifierAttack
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, d), got {tuple(x.shape)}")
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    labels = pred if labels is None else labels.to(x.device)
    keep = pred == labels
    x, labels = x[keep], labels[keep]
    if x.shape[0] == 0:
        raise ValueError("no input is classified as its label; nothing to attack")
    m, g = _margin_and_grad(model, x, labels)
    gn2 = (g**2).sum(1).clamp_min(torch.finfo(g.dtype).tiny)
    xn = x.norm(dim=1)
    ratio = (m.abs() / gn2.sqrt() / xn).cpu().numpy()
    succ, succ_c = [], []
    with torch.no_grad():
        for c in multipliers:
            xp = x - c * (m / gn2).unsqueeze(1) * g
            succ.append(float((logit_margin(model, xp, labels) < 0).double().mean()))
            if clip is not None:
                xp = xp.clamp(*clip)
                succ_c.append(float((logit_margin(model, xp, labels) < 0).double().mean()))
    nl = {}
    if generator is not None:
        rr = torch.as_tensor(list(r_rel), dtype=x.dtype, device=x.device)
        u = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        dirs = {"random": u / u.norm(dim=1, keepdim=True),
                "gradient": -torch.sign(m).unsqueeze(1) * g / gn2.sqrt().unsqueeze(1)}
        for key, u in dirs.items():
            y = x + (rr.view(-1, 1, 1) * xn.view(1, -1, 1)) * u  # (R, B, d), one autograd call
            _, gy = _margin_and_grad(model, y.reshape(-1, x.shape[1]), labels.repeat(len(rr)))
            dg = (gy.view(len(rr), *x.shape) - g).norm(dim=2) / gn2.sqrt()
            nl[key] = {"r_rel": [float(v) for v in rr],
                       "grad_change_median": [float(v) for v in dg.median(dim=1).values]}
    q = np.quantile(ratio, [0.25, 0.5, 0.75])
    return ClassifierAttack(
        name=name, n_inputs=int(x.shape[0]), d=int(x.shape[1]), median_ratio=float(q[1]),
        ratio_quartiles=[float(v) for v in q], success=succ, success_clipped=succ_c,
        multipliers=[float(c) for c in multipliers], clip=None if clip is None else list(clip),
        near_linearity=nl,
    )


def relu_mlp(widths: Sequence[int], *, generator: torch.Generator) -> nn.Sequential:
    """ReLU MLP ``widths[0] → … → widths[-1]``; talk's init ``N(0, 1/fan_in)``, zero biases."""
    layers: list[nn.Module] = []
    for k in range(1, len(widths)):
        lin = nn.Linear(widths[k - 1], widths[k])
        with torch.no_grad():
            w = torch.randn(lin.weight.shape, generator=generator) / widths[k - 1] ** 0.5
            lin.weight.copy_(w)
            lin.bias.zero_()
        layers += [lin, nn.ReLU()] if k < len(widths) - 1 else [lin]
    return nn.Sequential(*layers)


@dataclass
class TrainedResult:
    """Random-init and trained MLP on scikit-learn digits under the same one-step attack."""

    widths: list[int]
    seed: int
    epochs: int
    train_accuracy: float
    test_accuracy: float
    init: ClassifierAttack
    trained: ClassifierAttack


def digits_study(
    *,
    hidden: Sequence[int] = (128, 128),
    epochs: int = 300,
    lr: float = 1e-2,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    seed: int = 0,
    progress: Progress | None = None,
) -> TrainedResult:
    """Train a ReLU MLP on ``load_digits`` (X/16 in [0, 1], 25 % test split) and attack it.

    Full-batch Adam with cross-entropy, on CPU (it is tiny). The same architecture at its random
    initialisation (talk's ``N(0, 1/fan_in)`` weights) is attacked on its own predictions as the
    random-network reference; the trained network is attacked on correctly classified test points.
    """
    from sklearn.datasets import load_digits

    s = _seed(seed, 7)
    gen = torch.Generator().manual_seed(s)
    data = load_digits()
    X = torch.as_tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.as_tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=gen)
    n_test = len(y) // 4
    te, tr = perm[:n_test], perm[n_test:]
    widths = [X.shape[1], *hidden, 10]
    model = relu_mlp(widths, generator=gen)
    init = classifier_one_step(model, X[te], None, multipliers=multipliers, generator=gen,
                               name="random init")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X[tr]), y[tr])
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc_tr = float((model(X[tr]).argmax(1) == y[tr]).double().mean())
        acc_te = float((model(X[te]).argmax(1) == y[te]).double().mean())
    trained = classifier_one_step(model, X[te], y[te], multipliers=multipliers, generator=gen,
                                  name="trained")
    if progress:
        progress("trained digits MLP")
    return TrainedResult(widths=widths, seed=s, epochs=epochs, train_accuracy=acc_tr,
                         test_accuracy=acc_te, init=init, trained=trained)


# ----------------------------------------------------------------------------- Fisher (fact 6)


def bernoulli_input_fim(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """Input Fisher information of independent Bernoulli outputs ``p = σ(f(x))``.

    ``F = Jᵀ diag(p(1 − p)) J`` with ``J = ∂f/∂x`` the Jacobian of the logits (natural
    parameters), by autograd. For a scalar logit this is ``p(1−p) ∇f ∇fᵀ`` — rank one.

    Parameters
    ----------
    fn : callable
        Maps inputs of shape (d,) to logits of shape (k,) or ().
    x : Tensor of shape (d,)

    Returns
    -------
    fim : Tensor of shape (d, d)
    p : Tensor of shape (k,)
    """
    if x.dim() != 1:
        raise ValueError(f"x must be one input of shape (d,), got {tuple(x.shape)}")
    jac = torch.autograd.functional.jacobian(lambda v: fn(v).reshape(-1), x)  # (k, d)
    with torch.no_grad():
        p = torch.sigmoid(fn(x).reshape(-1))
    return jac.T @ (jac * (p * (1 - p)).unsqueeze(1)), p


def fim_top_direction(fim: Tensor) -> tuple[Tensor, Tensor]:
    """Largest eigenvalue (shape ()) and its unit eigenvector (shape (d,)) of a symmetric FIM."""
    vals, vecs = torch.linalg.eigh(fim)
    return vals[-1], vecs[:, -1]


def fim_step(fn: Callable[[Tensor], Tensor], x: Tensor, c: float = 1.0) -> Tensor:
    """Step along the top FIM eigenvector ``v`` that zeroes the linearised logit, times ``c``.

    ``δ = −c f(x) v / (v·∇f(x))``, independent of the sign of ``v``; shape (d,).
    """
    fim, _ = bernoulli_input_fim(fn, x)
    _, v = fim_top_direction(fim)
    xg = x.detach().clone().requires_grad_(True)
    f = fn(xg).reshape(())
    (g,) = torch.autograd.grad(f, xg)
    return -c * f.detach() * v / (v @ g)


def gradient_step(fn: Callable[[Tensor], Tensor], x: Tensor, c: float = 1.0) -> Tensor:
    """The one-step attack ``δ = −c f(x) ∇f(x)/‖∇f(x)‖²``; shape (d,)."""
    xg = x.detach().clone().requires_grad_(True)
    f = fn(xg).reshape(())
    (g,) = torch.autograd.grad(f, xg)
    return -c * f.detach() * g / (g @ g)


# ----------------------------------------------------------------------------- the whole study


@dataclass
class ReluStudyConfig:
    """Every setting of :func:`run_relu_study` (recorded in the result)."""

    seed: int = 0
    device: str = "cpu"
    multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS
    dims: tuple[int, ...] = (64, 256, 1024, 4096, 16384)
    depths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    profiles: tuple[str, ...] = ("constant", "fixed")
    width: int = 256
    n_nets: int = 24
    batch: int = 8
    max_weight_bytes: int = 600 * 2**20
    n_boot: int = 1000
    nl_dims: tuple[int, ...] = (256, 1024, 2048)
    nl_depths: tuple[int, ...] = (1, 2, 4)
    nl_n_nets: int = 4
    angle_width: int = 2048
    angle_max_depth: int = 16
    angle_pair_reps: int = 400
    collapse_depths: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64)
    collapse_n_nets: int = 64
    digits_epochs: int = 300

    @classmethod
    def quick(cls, **overrides: object) -> ReluStudyConfig:
        """A seconds-long smoke setting."""
        base = dict(dims=(16, 64, 256), depths=(1, 2), n_nets=6, batch=2, n_boot=100,
                    nl_dims=(64,), nl_depths=(1,), nl_n_nets=2, angle_width=128,
                    angle_max_depth=4, angle_pair_reps=50, collapse_depths=(0, 1, 4),
                    collapse_n_nets=4, digits_epochs=20)
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    def n_steps(self) -> int:
        """Number of progress messages the study emits."""
        return len(self.profiles) * len(self.dims) + len(self.nl_dims) + 3


@dataclass
class ReluStudyResult:
    config: dict
    scaling: ScalingResult
    near_linearity: NearLinearityResult
    depth: DepthResult
    trained: TrainedResult
    seconds: dict

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (``None`` for non-finite numbers)."""
        return _finite(asdict(self))


def _finite(obj: object) -> object:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def run_relu_study(config: ReluStudyConfig, progress: Progress | None = None) -> ReluStudyResult:
    """Run the scaling, near-linearity, depth and trained-network studies of ``config``."""
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r} requested but CUDA is not available; "
                         "use --device cpu")
    secs = {}
    t = time.perf_counter()
    scaling = scaling_study(
        dims=config.dims, depths=config.depths, profiles=config.profiles, width=config.width,
        n_nets=config.n_nets, batch=config.batch, multipliers=config.multipliers,
        seed=config.seed, device=config.device, max_weight_bytes=config.max_weight_bytes,
        n_boot=config.n_boot, progress=progress)
    secs["scaling"] = time.perf_counter() - t
    t = time.perf_counter()
    nl = near_linearity_study(dims=config.nl_dims, depths=config.nl_depths,
                              n_nets=config.nl_n_nets, seed=config.seed, device=config.device,
                              progress=progress)
    secs["near_linearity"] = time.perf_counter() - t
    t = time.perf_counter()
    depth = depth_study(width=config.angle_width, max_depth=config.angle_max_depth,
                        pair_reps=config.angle_pair_reps,
                        collapse_depths=config.collapse_depths,
                        collapse_n_nets=config.collapse_n_nets, multipliers=config.multipliers,
                        seed=config.seed, device=config.device, progress=progress)
    secs["depth"] = time.perf_counter() - t
    t = time.perf_counter()
    trained = digits_study(epochs=config.digits_epochs, multipliers=config.multipliers,
                           seed=config.seed, progress=progress)
    secs["trained"] = time.perf_counter() - t
    return ReluStudyResult(config=asdict(config), scaling=scaling, near_linearity=nl,
                           depth=depth, trained=trained, seconds=secs)
