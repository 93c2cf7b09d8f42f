"""The compiled (numba) step search of ``budget.poison_steps`` returns bit-identical steps to
the batched NumPy search (itself tested against the per-answer reference in
``test_serve_poison_batched.py``), and the RG poison built on it answers alike at batch 1 and
batch N."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from poison_reference import rg_reference

from rgaudit.defence.baselines import make_poisoner
from rgaudit.defence.budget import poison_steps
from rgaudit.defence.step_search import MAX_M, _pairwise_sum
from rgaudit.nets.deep_rbm import DeepRBM

EPS = {"l1": 0.3, "l2": 0.2, "kl": 0.05}


def _outputs(kind: str, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Softmax/sigmoid outputs of several temperatures, with an exact top-2 tie (row 0), a
    vertex (row 1), a near-tie (row 2) and exact zeros (row 3)."""
    z = rng.standard_normal((n, m)) * rng.choice([1.0, 3.0, 8.0], (n, 1))
    if kind == "simplex":
        y = np.exp(z - z.max(-1, keepdims=True))
    else:
        y = 1.0 / (1.0 + np.exp(-z))
    y[0, :2] = y[0, :2].mean()
    y[1] = 0.0
    y[1, 0] = 1.0
    top = int(np.argmax(y[2]))
    y[2, (top + 1) % m] = y[2, top] * (1 - 1e-6)
    if m > 3:
        y[3, 3:] = 0.0
    if kind == "simplex":
        y /= y.sum(-1, keepdims=True)
    return y


def _directions(Y: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    n, m = Y.shape
    V = rng.standard_normal((n, c, m))
    V[:, 0] = 0.0                                            # zero direction
    V[:, 1] = np.eye(m)[0] - Y                               # vertex direction
    V[:, 2] = 0.0
    V[:, 2, 0], V[:, 2, -1] = 1.0, -1.0                      # e_0 - e_{m-1}
    V[:, 3] *= 1e-300                                        # subnormal scale
    return V


@pytest.mark.parametrize("m", [2, 3, 10, 17])
@pytest.mark.parametrize("kind", ["simplex", "unit"])
@pytest.mark.parametrize("norm", ["l1", "l2", "kl"])
def test_compiled_steps_equal_numpy_steps(m: int, kind: str, norm: str) -> None:
    rng = np.random.default_rng(100 * m + len(kind) + len(norm))
    Y = _outputs(kind, 40, m, rng)
    V = _directions(Y, 6, rng)
    for flip in (True, False):
        a = poison_steps(Y, V, EPS[norm], norm, kind, flip=flip, engine="compiled")
        b = poison_steps(Y, V, EPS[norm], norm, kind, flip=flip, engine="numpy")
        if norm == "kl":                # log may differ by an ulp between NumPy and libm
            np.testing.assert_allclose(a.z, b.z, rtol=0, atol=1e-9)
            np.testing.assert_allclose(a.scale, b.scale, rtol=1e-9, atol=1e-15)
        else:                           # same operations in the same order: bit-identical
            np.testing.assert_array_equal(a.z, b.z)
            np.testing.assert_array_equal(a.scale, b.scale)
        np.testing.assert_array_equal(a.limit, b.limit)
        np.testing.assert_array_equal(a.movable, b.movable)
        np.testing.assert_array_equal(a.tie, b.tie)
        assert np.mean(a.scale > 0) > 0.3                    # not vacuous


def test_compiled_steps_fall_back_beyond_max_m() -> None:
    rng = np.random.default_rng(5)
    Y = _outputs("simplex", 5, MAX_M + 2, rng)
    V = _directions(Y, 4, rng)
    a = poison_steps(Y, V, 0.3, "l1", "simplex", engine="compiled")
    b = poison_steps(Y, V, 0.3, "l1", "simplex", engine="numpy")
    np.testing.assert_array_equal(a.z, b.z)
    with pytest.raises(ValueError, match="engine"):
        poison_steps(Y, V, 0.3, "l1", "simplex", engine="fortran")


def test_pairwise_sum_is_numpys_sum() -> None:
    rng = np.random.default_rng(6)
    for n in range(1, MAX_M + 1):
        for _ in range(5):
            a = rng.standard_normal(n) * 10.0 ** rng.integers(-12, 12, n)
            assert _pairwise_sum(a, n) == a.sum()


@pytest.mark.parametrize("kind", ["simplex", "unit"])
@pytest.mark.parametrize("norm", ["l1", "l2", "kl"])
def test_rg_meanfield_batch1_equals_batchN_and_reference(kind: str, norm: str) -> None:
    gen = torch.Generator().manual_seed(8)
    m = 6
    net = DeepRBM.random([9, 7, m], generator=gen, scale=2.0)
    y = torch.from_numpy(_outputs(kind, 10, m, np.random.default_rng(9)))
    rg = make_poisoner("rg", eps=EPS[norm], norm=norm, kind=kind, net=net,
                       estimator="mean-field")
    whole = rg(y)
    alone = [rg(y[i:i + 1]) for i in range(len(y))]
    np.testing.assert_allclose(torch.cat([a.y_poisoned for a in alone]).numpy(),
                               whole.y_poisoned.numpy(), rtol=0, atol=1e-12)
    assert [a.limits[0] for a in alone] == whole.limits
    rg.engine = "numpy"
    slow = rg(y)
    np.testing.assert_allclose(slow.y_poisoned.numpy(), whole.y_poisoned.numpy(), rtol=0,
                               atol=0 if norm != "kl" else 1e-9)
    assert slow.limits == whole.limits
    want, scales, limits = rg_reference(rg.fims(y).numpy(), y.numpy(), EPS[norm], norm, kind)
    np.testing.assert_allclose(whole.y_poisoned.numpy(), want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(whole.scales, scales, rtol=1e-9, atol=1e-12)
    assert whole.limits == limits
    assert np.mean(whole.scales > 0) > 0.5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rg_meanfield_fims_equal_the_estimator_and_follow_weight_updates(
        dtype: torch.dtype) -> None:
    from rgaudit.defence.generation_fim import meanfield_generation_fim

    net = DeepRBM.random([9, 7, 5], generator=torch.Generator().manual_seed(4),
                         scale=2.0).to(dtype)
    y = torch.softmax(torch.randn(7, 5, generator=torch.Generator().manual_seed(5),
                                  dtype=torch.float64), -1)
    rg = make_poisoner("rg", eps=0.3, norm="l1", kind="simplex", net=net,
                       estimator="mean-field")
    assert torch.equal(rg.fims(y), meanfield_generation_fim(net, y))       # same numbers
    before = rg.fims(y)
    with torch.no_grad():
        net.layer(1).W.mul_(0.5)                       # an in-place update (a training step)
    assert torch.equal(rg.fims(y), meanfield_generation_fim(net, y))
    assert not torch.equal(rg.fims(y), before)
