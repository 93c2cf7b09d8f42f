"""Small fixed workloads for the executor tests and ``benchmarks/bench_ray.py``.

:func:`audit_like_unit` is the per-input work of an audit in miniature: the direct Monte Carlo
input FIM of one input of a DeepRBM (its top eigenvalue and eigenvector) and the minimal flipping
L2 budget along that eigenvector, judged on the stochastic network. All its random numbers come
from named streams of the unit's seed sequence (``fim``, ``unit.judge``). :func:`failing_unit`
raises for chosen keys (retry tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rgaudit.executors.base import Unit
from rgaudit.random import child_seed, torch_generator


def audit_like_unit(unit: Unit, ss: np.random.SeedSequence, shared: dict[str, Any]
                    ) -> dict[str, Any]:
    """One input's FIM and minimal flip; ``shared``: ``net`` (DeepRBM), ``fim_samples``,
    ``judge_samples``; ``unit.payload``: ``{"x": list of float, "y": int}``."""
    import time

    import torch

    from rgaudit.attacks.evaluate import StochasticJudge, minimal_eps
    from rgaudit.fisher.direct import direct_fim
    from rgaudit.fisher.eig import top_eigenpairs
    from rgaudit.threads import limit_threads

    net = shared["net"]
    with limit_threads(1):
        t0 = time.perf_counter()
        x = torch.tensor([unit.payload["x"]], dtype=net.dtype)
        y = torch.tensor([int(unit.payload["y"])])
        F = direct_fim(net, x, int(shared["fim_samples"]), torch_generator(ss, "fim"), n_blocks=8)
        top = top_eigenpairs(F.fim, 1)
        t1 = time.perf_counter()
        judge = StochasticJudge(net, n_samples=int(shared["judge_samples"]),
                                seed=child_seed(ss, "unit.judge", bits=31))
        me = minimal_eps(judge, x, y, top.vectors[..., 0], eps_max=4.0, steps=6)
        t2 = time.perf_counter()
    return {"top_eig": float(top.values[0, 0]), "min_eps": float(me.eps[0]),
            "actual_l2": float(me.actual_l2[0]),
            "timings": {"fim": t1 - t0, "min_eps": t2 - t1}}


def failing_unit(unit: Unit, ss: np.random.SeedSequence, shared: dict[str, Any]) -> float:
    """Appends a line to ``shared["log"]`` per attempt; raises for keys in ``shared["fail"]``,
    else returns the unit's first uniform number."""
    with Path(shared["log"]).open("a") as f:
        f.write(unit.key + "\n")
    if unit.key in shared["fail"]:
        raise RuntimeError(f"unit {unit.key} fails on purpose")
    return float(np.random.default_rng(ss).random())
