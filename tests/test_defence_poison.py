"""Output poisoning keeps the argmax on every query, stays within budget, returns valid outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgaudit.defence.baselines import make_poisoner
from rgaudit.defence.budget import deviation, kl_divergence, poison_step
from rgaudit.nets.deep_rbm import DeepRBM

NORMS = ("l1", "l2", "kl")


def _outputs(kind: str, n: int, m: int, gen: torch.Generator) -> torch.Tensor:
    """Random outputs with many near-ties, exact ties, saturated and boundary entries."""
    z = torch.randn(n, m, generator=gen, dtype=torch.float64) * 3
    y = torch.softmax(z, -1) if kind == "simplex" else torch.sigmoid(z)
    y[0, :2] = y[0, :2].mean()                               # exact top-2 tie (maybe not top)
    top = y[1].argmax()
    y[1, (top + 1) % m] = y[1, top] - 1e-13                   # near-tie at float resolution
    top = y[2].argmax()
    y[2, (top + 1) % m] = y[2, top] * (1 - 1e-6)              # near-tie
    y[3] = 0.0
    y[3, 0] = 1.0                                             # one-hot: on a vertex
    y[4, :] = y[4].max()                                      # all tied
    if kind == "simplex":
        y = y / y.sum(-1, keepdim=True)
    return y


@pytest.mark.parametrize("kind", ["simplex", "unit"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("defence", ["rg", "random", "reverse-sigmoid", "mad"])
def test_argmax_budget_validity(kind: str, norm: str, defence: str) -> None:
    gen = torch.Generator().manual_seed(3)
    n, m = 60, 5
    net = DeepRBM.random([8, 6, m], generator=gen, scale=2.0)
    y = _outputs(kind, n, m, gen)
    x = torch.rand(n, 8, generator=gen, dtype=torch.float64)
    eps = 0.3 if norm != "kl" else 0.05
    res = make_poisoner(defence, eps=eps, norm=norm, kind=kind, net=net, n_inputs=8)(
        y, x, torch.Generator().manual_seed(1))
    Y, Z = res.y.numpy(), res.y_poisoned.numpy()
    assert np.all(np.isfinite(Z)) and Z.min() >= 0 and Z.max() <= 1
    if kind == "simplex":
        np.testing.assert_allclose(Z.sum(-1), 1.0, atol=1e-12)
    assert np.array_equal(Z.argmax(-1), Y.argmax(-1))
    for i in range(n):
        s = np.sort(Y[i])
        if s[-1] == s[-2]:
            assert np.array_equal(Z[i], Y[i]), "exact ties must be returned unchanged"
        else:
            others = np.delete(Z[i], Y[i].argmax())
            assert Z[i, Y[i].argmax()] > others.max(), "argmax must stay strict"
    dev = res.deviations(norm, kind)
    assert np.all(dev <= eps * (1 + 1e-9) + 1e-15)
    # most queries are not at a tie or a vertex: the budget is actually used on them
    assert np.mean(dev > 0.5 * eps) > 0.5


def test_step_uses_budget_when_free() -> None:
    y = np.array([0.5, 0.3, 0.2])
    v = np.array([0.0, 1.0, -1.0])
    for norm, eps in (("l1", 0.1), ("l2", 0.05), ("kl", 0.01)):
        z, info = poison_step(y, v, eps, norm, "simplex")
        assert info.limit == "budget"
        assert deviation(y, z, norm, "simplex") == pytest.approx(eps, rel=1e-6)


def test_step_shrinks_for_near_tie() -> None:
    y = np.array([0.4, 0.4 - 1e-9, 0.2])
    z, info = poison_step(y, np.array([-1.0, 1.0, 0.0]), 0.5, "l1", "simplex", flip=False)
    assert z.argmax() == 0 and z[0] > z[1]
    assert info.limit == "argmax"


def test_kl_divergence_values() -> None:
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert kl_divergence(p, q, "simplex") == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3))
    assert kl_divergence(np.array([0.5]), np.array([0.25]), "unit") == pytest.approx(
        kl_divergence(p, q, "simplex"))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="norm"):
        poison_step(np.array([0.6, 0.4]), np.array([1.0, -1.0]), 0.1, "linf", "simplex")
    with pytest.raises(ValueError, match="sum to 1"):
        make_poisoner("random", eps=0.1, norm="l1", kind="simplex")(torch.tensor([[0.5, 0.6]]))


@pytest.mark.parametrize("norm,eps", [("l1", 0.3), ("l2", 0.2), ("kl", 0.05)])
def test_rg_poison_does_the_most_fisher_damage(norm: str, eps: float) -> None:
    """The RG poison maximises the realised ``δyᵀF̃δy`` over a candidate set that contains every
    vertex direction ``e_k − y`` — MAD's kind of direction, stepped by the same ``poison_step``
    with the same sign rule — so it is ≥ MAD on every query. Random Gaussian directions are not
    in the set, so against random noise only the median is compared (and it wins clearly)."""
    gen = torch.Generator().manual_seed(5)
    n, m = 40, 5
    net = DeepRBM.random([8, 6, m], generator=gen, scale=2.0)
    y = torch.softmax(torch.randn(n, m, generator=gen, dtype=torch.float64) * 2, -1)
    x = torch.rand(n, 8, generator=gen, dtype=torch.float64)
    rg = make_poisoner("rg", eps=eps, norm=norm, kind="simplex", net=net)
    F = rg.fims(y).numpy()

    def damage(defence: str) -> np.ndarray:
        p = rg if defence == "rg" else make_poisoner(defence, eps=eps, norm=norm,
                                                     kind="simplex", n_inputs=8)
        res = p(y, x, torch.Generator().manual_seed(2))
        d = (res.y_poisoned - res.y).numpy()
        assert np.array_equal(res.y_poisoned.argmax(-1), y.argmax(-1))
        assert np.all(res.deviations(norm, "simplex") <= eps * (1 + 1e-9) + 1e-15)
        return np.einsum("ni,nij,nj->n", d, F, d)

    q_rg, q_mad, q_rand = damage("rg"), damage("mad"), damage("random")
    assert np.all(q_rg >= q_mad * (1 - 1e-12))
    assert np.median(q_rg) > np.median(q_rand)
    assert np.median(q_rg) > np.median(q_mad)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_step_rejects_non_finite_direction(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        poison_step(np.array([0.5, 0.3, 0.2]), np.array([bad, 1.0, -1.0]), 0.1, "l1", "simplex")


@pytest.mark.parametrize("scale", [1e-320, 1e-300, 1.0, 1e300, 1e308])
def test_step_is_scale_free_in_the_direction(scale: float) -> None:
    y = np.array([0.5, 0.3, 0.2])
    v = np.array([1.0, -1.0, 0.0]) * scale
    z, info = poison_step(y, v, 0.3, "l1", "simplex", flip=False)
    assert np.all(np.isfinite(z)) and info.limit == "budget"
    np.testing.assert_allclose(z, [0.65, 0.15, 0.2], atol=1e-9)
    assert info.scale == pytest.approx(0.15 * np.sqrt(2), rel=1e-6)   # unit-L2 direction
