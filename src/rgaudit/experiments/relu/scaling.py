"""Scaling: median one-step size ``‖δ‖/‖x‖`` against the input dimension ``d``.

For every width profile and ``d``, ``n_nets × batch`` one-step attacks at every depth; per depth
the log–log slope of the median against ``d`` with a 95 % percentile bootstrap interval that
resamples networks (the clusters) within each ``d`` independently, and the regression standard
error of the slope (which ignores the noise in the medians).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rgaudit.attacks.one_step import one_step_attack
from rgaudit.experiments.relu.config import ReluStudyConfig, make_generator
from rgaudit.nets.relu import sample_relu_nets, sphere_inputs, weight_bytes, width_profile
from rgaudit.random import child_seed, numpy_rng
from rgaudit.stats import cluster_bootstrap, loglog_fit, loglog_slopes, wilson_interval

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScalingCell:
    """One (width profile, d) cell: ``n_nets × batch`` attacks at every depth.

    ``median_ratio_ci`` is the 95 % bootstrap interval over networks per depth; ``success`` and
    its Wilson 95 % interval ``success_ci`` are indexed ``[depth][multiplier]``.
    """

    profile: str
    d: int
    widths: list[int]
    seed: int
    n_nets: int
    batch: int
    depths: list[int]
    median_ratio: list[float]
    median_ratio_ci: list[list[float]]
    success: list[list[float]]
    success_ci: list[list[list[float]]]
    seconds: float


@dataclass(frozen=True)
class ScalingFit:
    """Log–log fit of median ``‖δ‖/‖x‖`` against ``d`` at one depth and width profile.

    ``ci_low``/``ci_high``: 95 % percentile bootstrap over networks; ``boot_se``: its standard
    deviation; ``ols_se``: the regression standard error of the slope.
    """

    profile: str
    depth: int
    dims: list[int]
    slope: float
    ci_low: float
    ci_high: float
    boot_se: float
    ols_se: float
    intercept: float


@dataclass(frozen=True)
class SkippedCell:
    """A (profile, d) cell left out because one network exceeds ``max_weight_bytes``."""

    profile: str
    d: int
    weight_bytes: int
    reason: str


@dataclass(frozen=True)
class ScalingResult:
    """All cells and fits of :func:`scaling_study`; ``boot_seed`` seeds the slope bootstrap."""

    multipliers: list[float]
    cells: list[ScalingCell]
    fits: list[ScalingFit]
    skipped: list[SkippedCell]
    n_boot: int
    boot_seed: int


def profile_widths(d: int, depth: int, profile: str, width: int) -> list[int]:
    """Widths ``(d, d_1, …, d_depth)`` of a study profile (``constant`` or ``fixed``)."""
    kind = "fixed" if profile.startswith("fixed") else profile
    return width_profile(d, depth, kind, width=width)


def _median_over_inputs(r: np.ndarray) -> np.ndarray:
    """Median over networks and inputs: (..., n_nets, batch, D) -> (..., D)."""
    return np.median(r.reshape(*r.shape[:-3], -1, r.shape[-1]), axis=-2)


def _attack_cell(cfg: ReluStudyConfig, widths: list[int], depths: list[int], seed: int,
                 chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Ratios (n_nets, batch, D) and successes (n_nets, batch, D, C) of one cell."""
    gen = make_generator(seed, cfg.device)
    ratios, succ = [], []
    for start in range(0, cfg.n_nets, chunk):
        m = min(chunk, cfg.n_nets - start)
        nets = sample_relu_nets(m, widths, generator=gen, dtype=cfg.torch_dtype)
        x = sphere_inputs(m, cfg.batch, widths[0], generator=gen, dtype=cfg.torch_dtype)
        out = one_step_attack(nets, x, cfg.multipliers, depths)
        ratios.append(out.ratio.double().cpu().numpy())
        succ.append(out.success.cpu().numpy())
        del nets, x, out
    return np.concatenate(ratios), np.concatenate(succ)


def _summarise(cfg: ReluStudyConfig, r: np.ndarray, sc: np.ndarray,
               keys: tuple[int, int]) -> dict[str, list]:
    """Medians with bootstrap intervals and successes with Wilson intervals of one cell.

    ``r`` (n_nets, batch, D) ratios, ``sc`` (n_nets, batch, D, C) successes; the bootstrap
    resamples come from stream ``relu.cell-bootstrap`` [keys]. Returns the matching
    :class:`ScalingCell` fields.
    """
    rng = numpy_rng(cfg.seed, "relu.cell-bootstrap", *keys)
    boot = cluster_bootstrap([r], _median_over_inputs, n_resamples=cfg.n_boot, rng=rng)
    trials = sc.shape[0] * sc.shape[1]
    n_depths = r.shape[-1]
    return {
        "median_ratio": [float(v) for v in np.median(r, axis=(0, 1))],
        "median_ratio_ci": [[float(lo), float(hi)] for lo, hi in zip(boot.low, boot.high,
                                                                      strict=True)],
        "success": [[float(v) for v in sc[:, :, k].mean(axis=(0, 1))] for k in range(n_depths)],
        "success_ci": [[list(wilson_interval(int(sc[:, :, k, j].sum()), trials))
                        for j in range(sc.shape[-1])] for k in range(n_depths)],
    }


def scaling_study(cfg: ReluStudyConfig, progress: Progress | None = None) -> ScalingResult:
    """Median one-step size ``‖δ‖/‖x‖`` against ``d``, per depth and width profile.

    Reads ``cfg.dims``, ``depths`` (depth 0 is always added), ``profiles``, ``width``,
    ``n_nets``, ``batch``, ``multipliers``, ``max_weight_bytes``, ``max_chunk_bytes``,
    ``n_boot``, ``seed``, ``device``, ``dtype``. Cell ``(p, i)`` draws its networks and inputs
    from stream ``relu.scaling`` [p, i] (its integer seed is recorded in the cell).

    Parameters
    ----------
    cfg : ReluStudyConfig
    progress : callable, optional
        Called with a message after each cell.

    Returns
    -------
    ScalingResult
    """
    depths = sorted({0, *[int(k) for k in cfg.depths]})
    cells, skipped = [], []
    raw: dict[tuple[str, int], np.ndarray] = {}  # (profile, d) -> ratios (n_nets, batch, D)
    for p, profile in enumerate(cfg.profiles):
        for i, d in enumerate(cfg.dims):
            t0 = time.perf_counter()
            widths = profile_widths(d, max(depths), profile, cfg.width)
            wb = weight_bytes(widths, cfg.torch_dtype)
            if wb > cfg.max_weight_bytes:
                skipped.append(SkippedCell(
                    profile=profile, d=int(d), weight_bytes=wb,
                    reason=f"one network needs {wb / 2**20:.0f} MiB of weights > "
                           f"max_weight_bytes {cfg.max_weight_bytes / 2**20:.0f} MiB"))
                if progress:
                    progress(f"scaling {profile} d={d} skipped (memory)")
                continue
            chunk = max(1, min(cfg.n_nets, cfg.max_chunk_bytes // wb))
            cell_seed = child_seed(cfg.seed, "relu.scaling", p, i)
            r, sc = _attack_cell(cfg, widths, depths, cell_seed, chunk)
            raw[(profile, d)] = r
            cells.append(ScalingCell(
                profile=profile, d=int(d), widths=widths, seed=cell_seed,
                n_nets=cfg.n_nets, batch=cfg.batch, depths=depths,
                **_summarise(cfg, r, sc, (p, i)), seconds=time.perf_counter() - t0))
            if progress:
                progress(f"scaling {profile} d={d} ({cells[-1].seconds:.1f}s)")
    boot_seed = child_seed(cfg.seed, "relu.slope-bootstrap")
    fits = fit_slopes(raw, cfg.profiles, depths, cfg.n_boot, boot_seed)
    return ScalingResult(multipliers=[float(c) for c in cfg.multipliers], cells=cells, fits=fits,
                         skipped=skipped, n_boot=cfg.n_boot, boot_seed=boot_seed)


def fit_slopes(
    raw: dict[tuple[str, int], np.ndarray], profiles: Sequence[str], depths: list[int],
    n_boot: int, boot_seed: int,
) -> list[ScalingFit]:
    """Slope of log median ratio against log d per profile and depth.

    Parameters
    ----------
    raw : dict
        ``(profile, d) -> ratios`` of shape (n_nets, batch, D).
    profiles : sequence of str
    depths : list of int, length D
    n_boot, boot_seed : int
        Bootstrap resamples (networks within each d, independently) and their seed.

    Returns
    -------
    list of ScalingFit
        One per profile with >= 2 dimensions and per depth.
    """
    rng = np.random.default_rng(boot_seed)
    fits = []
    for profile in profiles:
        dims = sorted(d for (p, d) in raw if p == profile)
        if len(dims) < 2:
            continue
        samples = [raw[(profile, d)] for d in dims]
        point = np.stack([np.median(r, axis=(0, 1)) for r in samples])  # (n_d, D)

        def slopes(*resampled: np.ndarray, dims: list[int] = dims) -> np.ndarray:
            med = np.stack([_median_over_inputs(r) for r in resampled], axis=-1)  # (B, D, n_d)
            return loglog_slopes(dims, med)  # (B, D)

        boot = cluster_bootstrap(samples, slopes, n_resamples=n_boot, rng=rng)
        for k, depth in enumerate(depths):
            line = loglog_fit(dims, point[:, k])
            fits.append(ScalingFit(
                profile=profile, depth=depth, dims=dims, slope=line.slope,
                ci_low=float(boot.low[k]), ci_high=float(boot.high[k]),
                boot_se=float(boot.se[k]), ols_se=line.slope_se, intercept=line.intercept,
            ))
    return fits
