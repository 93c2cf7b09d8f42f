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

from rgaudit.executors.base import UNIT_STREAMS, Executor, Unit
from rgaudit.random import child_seed


def diagnose_unit(unit: Unit, ss: np.random.SeedSequence, shared: dict[str, Any]) -> Any:
    """``run_diagnose`` on one input; ``shared``: ``net`` and the ``config``."""
    import torch

    from rgaudit.experiments.diagnose import run_diagnose

    x = torch.tensor([unit.payload["x"]], dtype=torch.float32)
    y = None if unit.payload["y"] is None else torch.tensor([unit.payload["y"]])
    return run_diagnose(shared["net"], x, y, shared["config"],
                        seed=child_seed(ss, "unit.diagnose", bits=62))


def merge(parts: list[Any], config: Any, inputs: Any, execution: Any) -> Any:
    """Per-input :class:`DiagnoseResult` objects (input order) → one result with the driver's
    ``config`` (:class:`DiagnoseConfig`), ``inputs`` (:class:`DiagnosedInputs`) and
    ``execution`` (:class:`DiagnoseExecution`)."""
    import torch

    from rgaudit.experiments.diagnose import DepthStep, DiagnoseResult

    out = DiagnoseResult(config, inputs, notes=list(dict.fromkeys(
        n for p in parts for n in p.notes)), execution=execution)
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


def diagnose_with_executor(net: Any, x: Any, y: Any, executor: Executor, config: Any = None,
                           *, fixed_point_inputs: Any = None, fixed_point_labels: Any = None,
                           **overrides: Any) -> Any:
    """The diagnosis of inputs ``x`` with one unit per input (see the module docstring).

    ``config`` is the :class:`~rgaudit.experiments.diagnose.DiagnoseConfig` of
    :func:`run_diagnose` (``overrides``: its fields, applied to it); its seed is the root of
    the units' seeds and of the fixed-point study. Raises RuntimeError when inputs failed.
    """
    import torch

    from rgaudit.experiments.diagnose import (
        DiagnoseConfig,
        DiagnoseExecution,
        class_fixed_points,
    )
    from rgaudit.experiments.execution_summary import ExecutionSummary
    from rgaudit.random import torch_generator

    cfg = replace(config or DiagnoseConfig(), **overrides)
    seed, fixed_point_samples = cfg.seed, cfg.fixed_point_samples
    if net.depth < 2:
        raise ValueError("diagnose needs at least two RBM layers (one pair of hidden layers)")
    units = [Unit(f"input-{i}", {"x": x[i].tolist(),
                                 "y": None if y is None else int(y[i])})
             for i in range(x.shape[0])]
    rep = executor.map(diagnose_unit, units, seed=seed, shared={"net": net, "config": cfg})
    rep.raise_on_failure("diagnose inputs")
    parts = rep.values
    inputs = replace(parts[0].inputs, n_inputs=int(x.shape[0]),
                     labels=None if y is None else torch.as_tensor(y).tolist())
    execution = DiagnoseExecution(rep.executor, UNIT_STREAMS,
                                   ExecutionSummary.from_dict(rep.summary()))
    result = merge(parts, cfg, inputs, execution)
    if fixed_point_inputs is not None:
        if net.widths[-1] > 12:
            result.notes.append(f"fixed-point study skipped: output layer has "
                                f"{net.widths[-1]} > 12 units")
        else:
            dev = torch.device(cfg.device)
            result.fixed_points = class_fixed_points(
                net, fixed_point_inputs.to(dev), fixed_point_labels, fixed_point_samples,
                torch_generator(seed, "fixed-points", device=dev))
    return result
