"""``rgaudit diagnose --executor local|ray``: the per-input MCRG studies as executor units.

One unit per analysed input (key ``input-<position>``) runs
:func:`rgaudit.experiments.diagnose.run_diagnose` on that input alone (main run, basis study,
sample study), seeded from the unit's seed sequence; the class fixed-point study needs all its
inputs together and runs once in the driver, with the seed of the plain path. :func:`merge`
stacks the per-input spectra into one :class:`DiagnoseResult` (rows in input order; counts,
drops and regularisations per input; maxima of condition numbers).

The numbers differ from the batched run (no ``--executor``) in their Monte Carlo draws and in
the ``pairs:K`` pilots (per input here), not in what is estimated. Units travel as Python
objects (tensors), so this path has no resume store.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from rgaudit.executors.base import Executor, Unit, int_seed


def diagnose_unit(unit: Unit, ss: np.random.SeedSequence, shared: dict[str, Any]) -> Any:
    """``run_diagnose`` on one input; ``shared``: ``net`` and the keyword arguments."""
    import torch

    from rgaudit.experiments.diagnose import run_diagnose

    x = torch.tensor([unit.payload["x"]], dtype=torch.float32)
    y = None if unit.payload["y"] is None else torch.tensor([unit.payload["y"]])
    return run_diagnose(shared["net"], x, y, seed=int_seed(ss) % 2**62, **shared["kwargs"])


def merge(parts: list[Any], settings: dict[str, Any]) -> Any:
    """Per-input :class:`DiagnoseResult` objects (input order) → one result."""
    import torch

    from rgaudit.experiments.diagnose import DepthStep, DiagnoseResult

    out = DiagnoseResult(settings=settings, notes=list(dict.fromkeys(
        n for p in parts for n in p.notes)))
    for i, s0 in enumerate(parts[0].spectra):
        ss = [p.spectra[i] for p in parts]
        k = min(s.fisher.shape[1] for s in ss)

        def cat(name: str, ss: list[Any] = ss, k: int = k) -> Any:
            vals = [getattr(s, name) for s in ss]
            return None if any(v is None for v in vals) else torch.cat([v[:, :k] for v in vals])

        counts: dict[str, list[dict[str, Any]]] = {}
        for s in ss:
            for name, c in s.counts.items():
                counts.setdefault(name, []).extend(c)
        out.spectra.append(replace(
            s0, fisher=cat("fisher"), fisher_err=cat("fisher_err"), eig_abs=cat("eig_abs"),
            eig_abs_err=cat("eig_abs_err"), fisher_raw=cat("fisher_raw"), counts=counts,
            max_cond=max(s.max_cond for s in ss), regularised=sum(s.regularised for s in ss),
            dropped=[d for s in ss for d in s.dropped],
            max_cond_prev=max(s.max_cond_prev for s in ss), floored=sum(s.floored for s in ss),
            replicates_regularised=sum(s.replicates_regularised for s in ss)))
    for i, d0 in enumerate(parts[0].depth):
        ds = [p.depth[i] for p in parts]
        out.depth.append(DepthStep(d0.pair, torch.cat([d.rel_change for d in ds]),
                                   torch.cat([d.rel_change_err for d in ds])))
    return out


def diagnose_with_executor(net: Any, x: Any, y: Any, executor: Executor, *,
                           fixed_point_inputs: Any = None, fixed_point_labels: Any = None,
                           fixed_point_samples: int = 2000, seed: int = 0,
                           **kwargs: Any) -> Any:
    """The diagnosis of inputs ``x`` with one unit per input (see the module docstring).

    ``kwargs`` go to :func:`run_diagnose` (``ops``, ``n_samples``, ``basis_specs``,
    ``sample_counts``, ``device``, ``n_blocks``). Raises RuntimeError when inputs failed.
    """
    import torch

    from rgaudit.experiments.diagnose import class_fixed_points
    from rgaudit.random import torch_generator

    if net.depth < 2:
        raise ValueError("diagnose needs at least two RBM layers (one pair of hidden layers)")
    units = [Unit(f"input-{i}", {"x": x[i].tolist(),
                                 "y": None if y is None else int(y[i])})
             for i in range(x.shape[0])]
    rep = executor.map(diagnose_unit, units, seed=seed, shared={"net": net, "kwargs": kwargs})
    rep.raise_on_failure("diagnose inputs")
    parts = rep.values
    settings = {**parts[0].settings, "n_inputs": int(x.shape[0]), "seed": seed,
                "labels": None if y is None else torch.as_tensor(y).tolist(),
                "executor": rep.executor,
                "per_input_generators": "SeedSequence(entropy=(seed, hash(input key)))",
                "execution": rep.summary()}
    result = merge(parts, settings)
    if fixed_point_inputs is not None:
        if net.widths[-1] > 12:
            result.notes.append(f"fixed-point study skipped: output layer has "
                                f"{net.widths[-1]} > 12 units")
        else:
            dev = torch.device(kwargs.get("device", "cpu"))
            result.fixed_points = class_fixed_points(
                net, fixed_point_inputs.to(dev), fixed_point_labels, fixed_point_samples,
                torch_generator(seed, "fixed-points", device=dev))
    return result
