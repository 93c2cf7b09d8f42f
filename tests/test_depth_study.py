"""The depth study (``rgaudit audit --depth``) on tiny networks, against the exact FIM.

Statistical checks: the direct-FIM top eigenvalue of every selected input is compared with the
exact one at |z| < 4 with jackknife errors (16 blocks, t-distribution with 15 degrees of freedom:
P(|t| > 4) ≈ 1.2e-3 per check); with 2 sampled depths × at most 3 inputs the family-wise
false-failure rate is below 0.7 % (Bonferroni). Depth 1 is exact (closed form). Fixed seeds, so
the test is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rgaudit.data.dataset import make_dataset
from rgaudit.experiments.depth import DepthConfig, run_depth_study
from rgaudit.fisher.exact import exact_fim
from rgaudit.nets.deep_rbm import DeepRBM

N_FEATURES, N_CLASSES = 6, 3


def _dataset():
    rng = np.random.default_rng(0)
    X = rng.random((24, N_FEATURES)).astype(np.float32)
    y = np.zeros(24, dtype=np.int64)
    y[:3] = [0, 1, 2]  # every class present; the networks below predict class 0
    return make_dataset("tiny", X[:12], y[:12], X[12:], np.zeros(12, dtype=np.int64))


def _trainer(dataset, depth: int, cfg: DepthConfig):
    """A random network whose output layer favours class 0 (so test inputs are 'correct')."""
    widths = [N_FEATURES, *([4] * (depth - 1)), N_CLASSES]
    net = DeepRBM.random(widths, generator=torch.Generator().manual_seed(depth), scale=2.0)
    with torch.no_grad():
        net.layer(depth).a.copy_(torch.tensor([1.5, -1.5, -1.5], dtype=net.dtype))
    return net, {"accuracy": {"stochastic": {"accuracy": 1.0}}}


def test_depth_study_rows_agree_with_exact_fim():
    ds = _dataset()
    cfg = DepthConfig(depths=(1, 2, 3), n_inputs=3, mcrg_samples=1600, direct_samples=8000,
                      judge_samples=200, eps_max=6.0, seed=0)
    res = run_depth_study(ds, cfg, trainer=_trainer)
    assert [r.depth for r in res.rows] == [1, 2, 3]
    assert res.config.n_inputs == 3
    for row in res.rows:
        depth = row.depth
        net, _ = _trainer(ds, depth, cfg)
        n = len(row.top_eig)
        assert 1 <= n <= 3
        # the study keeps the first correctly classified test inputs; here every network
        # predicts class 0 for the first ones, so they are the first n test inputs
        x = ds.X_test[:n].to(torch.float64)
        top_exact = torch.linalg.eigvalsh(exact_fim(net, x))[:, -1]
        top = torch.tensor(row.top_eig, dtype=torch.float64)
        if depth == 1:  # the direct FIM of one layer is the closed form: exact up to rounding
            torch.testing.assert_close(top, top_exact, rtol=1e-10, atol=0.0)
        else:
            z = (top - top_exact).abs() / torch.tensor(row.top_eig_err, dtype=torch.float64)
            assert float(z.max()) < 4.0, (depth, z)
        assert len(row.fisher_sv_top) == depth - 1  # one MCRG layer pair per hidden layer
        assert row.accuracy == 1.0
        finite = [e for e in row.min_eps if math.isfinite(e)]
        assert all(0 < e <= cfg.eps_max for e in finite)
        med = float(np.median([e if math.isfinite(e) else np.inf for e in row.min_eps]))
        assert row.min_eps_median == med or (math.isinf(med) and
                                                math.isinf(row.min_eps_median))


def test_depth_config_validates_and_the_json_keeps_its_shape():
    import dataclasses

    import pytest

    with pytest.raises(ValueError, match="depths"):
        DepthConfig(depths=(0, 2))
    with pytest.raises(ValueError, match="n_inputs"):
        DepthConfig(n_inputs=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DepthConfig().seed = 1  # type: ignore[misc]
    from rgaudit.experiments.depth import DepthResult, DepthRow

    row = DepthRow(2, [4, 3, 2], 1.0, [0.5], [0.1], 0.5, 0.1, [0.9], [1.0], [1.0], 1.0, 0.1)
    d = DepthResult(DepthConfig(), [row]).to_dict()
    assert d["config"] == dataclasses.asdict(DepthConfig())
    assert d["rows"] == [dataclasses.asdict(row)] and d["rows"][0]["depth"] == 2
