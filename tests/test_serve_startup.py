"""``rgaudit serve`` says at start-up which generation-FIM estimator the RG poison uses and
what a batch-1 answer costs (``DefendedModel.startup_line``), without touching the served
random stream."""

from __future__ import annotations

import numpy as np
import torch

from rgaudit.models.base import RBMClassifier
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.serve.defended import DefendedModel, build_poisoner


def _classifier(d: int = 16, h: int = 8) -> RBMClassifier:
    net = DeepRBM.random([d, h, 4], generator=torch.Generator().manual_seed(0), scale=2.0)
    return RBMClassifier(net, (d // 4, 4))


def test_startup_line_names_the_estimator_and_its_cost() -> None:
    clf = _classifier()
    fast = DefendedModel(clf, build_poisoner(clf, "rg", eps=0.3, norm="l1",
                                             extra={"estimator": "mean-field"}))
    m = fast.measure(n=3)
    assert m["answers"] == 3 and m["cpu_ms_median"] > 0 and m["wall_ms_median"] > 0
    assert m["estimator"] == m["estimator_resolved"] == "mean-field"
    line = fast.startup_line(n=2)
    assert "'mean-field'" in line and "ms CPU" in line and "per answer at batch 1" in line
    assert "\n" not in line
    auto = DefendedModel(clf, build_poisoner(clf, "rg", eps=0.3, norm="l1"))
    line = auto.startup_line(n=1)             # 16 input units: too wide to enumerate
    assert "'auto' (= 'chain' on this network)" in line and "too slow" in line
    small = _classifier(8, 6)
    exact = DefendedModel(small, build_poisoner(small, "rg", eps=0.3, norm="l1"))
    line = exact.startup_line(n=1)
    assert "'auto' (= 'exact-chain' on this network)" in line and "too slow" not in line
    none = DefendedModel(clf, build_poisoner(clf, "none", eps=0.0, norm="l1"))
    assert "estimator" not in none.startup_line(n=1)


def test_measuring_does_not_move_the_served_random_stream() -> None:
    clf = _classifier()
    x = torch.rand(5, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a = DefendedModel(clf, build_poisoner(clf, "random", eps=0.3, norm="l1"), seed=7)
    b = DefendedModel(clf, build_poisoner(clf, "random", eps=0.3, norm="l1"), seed=7)
    a.startup_line(n=2)
    pa, _ = a.predict(x.numpy())
    pb, _ = b.predict(x.numpy())
    np.testing.assert_array_equal(pa, pb)
