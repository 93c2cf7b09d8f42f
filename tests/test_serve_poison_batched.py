"""The batched poisoning loop (one final ``Poisoner.__call__``, all candidates of a batch at
once) returns the same answers as the per-answer search it replaced (``poison_reference``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from poison_reference import poison_step as reference_step
from poison_reference import rg_reference

from rgaudit.defence.baselines import make_poisoner
from rgaudit.defence.budget import poison_step
from rgaudit.defence.poison import NoDefence, Poisoner
from rgaudit.nets.deep_rbm import DeepRBM


def _outputs(kind: str, n: int, m: int, gen: torch.Generator) -> torch.Tensor:
    z = torch.randn(n, m, generator=gen, dtype=torch.float64) * 3
    y = torch.softmax(z, -1) if kind == "simplex" else torch.sigmoid(z)
    y[0, :2] = y[0, :2].mean()                               # exact top-2 tie
    y[1] = 0.0
    y[1, 0] = 1.0                                             # a vertex
    top = y[2].argmax()
    y[2, (top + 1) % m] = y[2, top] * (1 - 1e-6)              # near-tie
    if kind == "simplex":
        y = y / y.sum(-1, keepdim=True)
    return y


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["simplex", "unit"])
@pytest.mark.parametrize("norm", ["l1", "l2", "kl"])
def test_rg_batched_equals_per_answer_search(kind: str, norm: str) -> None:
    gen = torch.Generator().manual_seed(11)
    n, m = (12 if norm == "kl" else 20), 5              # the per-answer reference is slow
    net = DeepRBM.random([8, 6, m], generator=gen, scale=2.0)
    y = _outputs(kind, n, m, gen)
    eps = 0.3 if norm != "kl" else 0.05
    rg = make_poisoner("rg", eps=eps, norm=norm, kind=kind, net=net)
    got = rg(y)
    want, scales, limits = rg_reference(rg.fims(y).numpy(), y.numpy(), eps, norm, kind)
    np.testing.assert_allclose(got.y_poisoned.numpy(), want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.scales, scales, rtol=1e-9, atol=1e-12)
    assert got.limits == limits
    assert np.mean(got.scales > 0) > 0.5                    # the comparison is not vacuous


@pytest.mark.parametrize("kind", ["simplex", "unit"])
@pytest.mark.parametrize("norm", ["l1", "l2", "kl"])
@pytest.mark.parametrize("flip", [True, False])
def test_step_equals_per_row_reference(kind: str, norm: str, flip: bool) -> None:
    gen = torch.Generator().manual_seed(4)
    y = _outputs(kind, 12, 4, gen).numpy()
    V = torch.randn(12, 4, generator=gen, dtype=torch.float64).numpy()
    eps = 0.2 if norm != "kl" else 0.03
    for yi, vi in zip(y, V, strict=True):
        z, info = poison_step(yi, vi, eps, norm, kind, flip=flip)
        z_ref, info_ref = reference_step(yi, vi, eps, norm, kind, flip=flip)
        np.testing.assert_allclose(z, z_ref, rtol=0, atol=1e-12)
        assert info.limit == info_ref.limit
        assert info.scale == pytest.approx(info_ref.scale, rel=1e-9, abs=1e-15)


def test_rg_answers_are_deterministic_and_batch_independent() -> None:
    gen = torch.Generator().manual_seed(2)
    net = DeepRBM.random([8, 6, 5], generator=gen, scale=2.0)
    y = _outputs("simplex", 40, 5, gen)
    rg = make_poisoner("rg", eps=0.2, norm="l1", kind="simplex", net=net)
    whole = rg(y).y_poisoned
    assert torch.equal(whole, rg(y).y_poisoned)
    one_by_one = torch.cat([rg(y[i:i + 1]).y_poisoned for i in range(len(y))])
    # the default estimator is exact here; batched and single solves round differently
    assert torch.allclose(whole, one_by_one, rtol=0, atol=1e-12)


def test_rg_chain_estimator_answers_do_not_depend_on_the_batch() -> None:
    """The Monte Carlo (chain) generation FIM draws one stream per answer, keyed by the answer:
    the same query answered alone, or in a batch in another order, gets the same poison."""
    gen = torch.Generator().manual_seed(3)
    net = DeepRBM.random([8, 6, 5], generator=gen, scale=2.0)
    y = _outputs("simplex", 6, 5, gen)
    rg = make_poisoner("rg", eps=0.2, norm="l1", kind="simplex", net=net, estimator="chain",
                       fim_kwargs={"n_samples": 256})
    whole = rg(y).y_poisoned
    alone = torch.cat([rg(y[i:i + 1]).y_poisoned for i in range(len(y))])
    flipped = rg(y.flip(0)).y_poisoned.flip(0)
    assert torch.allclose(whole, alone, rtol=0, atol=1e-12)
    assert torch.allclose(whole, flipped, rtol=0, atol=1e-12)


def test_call_is_final() -> None:
    with pytest.raises(TypeError, match="final"):
        class Bad(NoDefence):
            def __call__(self, y, x=None, generator=None):  # type: ignore[no-untyped-def]
                return y

    assert "__call__" not in NoDefence.__dict__ and callable(Poisoner.__call__)
