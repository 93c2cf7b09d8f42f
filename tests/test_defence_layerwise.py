"""Eq. 14 layerwise training increases the exact joint likelihood it maximises (tiny nets)."""

from __future__ import annotations

import torch

from rgaudit.defence.layerwise import (
    LayerwiseConfig,
    _fit_layer,
    exact_objectives,
    exact_pair_means,
    layer_objective,
    train_layerwise,
)
from rgaudit.nets.deep_rbm import DeepRBM


def _problem(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    teacher = DeepRBM.random([6, 4, 3], generator=gen, scale=4.0)
    x = (torch.rand(300, 6, generator=gen, dtype=torch.float64) < 0.3).double()
    x[:150, :3] = 1.0                                        # structured inputs
    return x, teacher.predict_proba(x, 400, gen)


def test_pcd_sweeps_increase_exact_objectives() -> None:
    x, y = _problem(0)
    net = DeepRBM.random([6, 4, 3], generator=torch.Generator().manual_seed(1), scale=0.1,
                         bias_scale=0.0)
    before = exact_objectives(net, x, y)
    cfg = LayerwiseConfig(max_sweeps=6, epochs=3, lr=0.1, n_chains=300, tol=1e-9)
    res = train_layerwise(net, x, y, cfg, torch.Generator().manual_seed(2))
    after = exact_objectives(net, x, y)
    assert res.sweeps == 6 and not res.converged
    # per-layer gains are O(0.1) nats; PCD noise at this size is O(0.01)
    assert all(b + 0.02 < a for a, b in zip(after, before, strict=True)), (before, after)


def test_exact_layer_fit_is_ascent_and_training_converges() -> None:
    x, y = _problem(3)
    net = DeepRBM.random([6, 4, 3], generator=torch.Generator().manual_seed(4), scale=0.5)
    lower, upper = exact_pair_means(net, 1, x, y)
    cfg = LayerwiseConfig(epochs=1, lr=0.05, batch_size=10_000, exact=True, weight_decay=0.0)
    values = [layer_objective(net.layer(1), lower, upper)]
    for _ in range(20):
        _fit_layer(net.layer(1), lower, upper, torch.zeros(1, 6), cfg, None)
        values.append(layer_objective(net.layer(1), lower, upper))
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    res = train_layerwise(net, x, y, LayerwiseConfig(max_sweeps=60, epochs=5, lr=0.2,
                                                     batch_size=10_000, exact=True, tol=2e-2))
    assert res.converged and len(res.objective) == res.sweeps
