"""The audit's per-input work as executor units (``rgaudit audit --executor local|ray``).

One unit per selected input (key ``input-<test index>``): its FIMs (MCRG chain in both bases,
direct Monte Carlo, mean field), its singles-basis stability spectra and every attack with its
minimal flipping ε. The unit's Monte Carlo generator is stream ``fim`` of its seed sequence
(:func:`rgaudit.executors.base.unit_seed_sequence` of the audit seed and the key) and its attacks
take the integer seed of stream ``unit.attacks`` of the same sequence; the stochastic judge is
keyed by test index exactly as in :func:`rgaudit.experiments.audit.run_audit`. So ``--executor
local`` and ``--executor ray`` give the same result, input by input, and a run can resume from
the units already stored.

The numbers differ from the batched ``run_audit`` (no ``--executor``) in their Monte Carlo
draws only: there one generator serves all inputs in turn, and ``pairs:K`` bases are chosen
from a pilot pooled over the inputs (here: over the unit's own input).

:func:`merge_units` reassembles the per-input parts into the :class:`AuditResult` schema:
per-input lists are concatenated in input order, medians and quartiles over inputs are
recomputed from the merged values, flip rates averaged, seconds summed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from rgaudit.executors.base import UNIT_STREAMS, Executor, Unit
from rgaudit.random import child_seed, torch_generator

#: FIM entries that hold one value per input (concatenated when merging).
FIM_PER_INPUT = ("top_eigs", "top_eigs_err", "top_eig", "top_eig_err", "cos_top_vs_direct",
                 "top_vectors")
ATTACK_PER_INPUT = ("min_eps", "min_eps_actual_l2", "min_eps_actual_linf", "clean_correct",
                    "confident")
DIAG_PER_INPUT = ("fisher_sv", "fisher_sv_err", "n_kept_fisher~1")


def audit_unit(unit: Unit, ss: np.random.SeedSequence, shared: dict[str, Any]
               ) -> dict[str, Any]:
    """FIMs, stability spectra and attacks of one input; ``shared``: ``net``, ``config``."""
    import torch

    from rgaudit.attacks.evaluate import StochasticJudge
    from rgaudit.experiments.audit import _diagnose, compute_fims, run_attacks
    from rgaudit.threads import limit_threads

    net, cfg = shared["net"], shared["config"]
    with limit_threads(cfg.threads):
        t0 = time.perf_counter()
        x = torch.tensor([unit.payload["x"]], dtype=net.dtype, device=net.device)
        y = torch.tensor([int(unit.payload["y"])], device=net.device)
        judge = StochasticJudge(net, n_samples=cfg.judge_samples, seed=cfg.seed
                                ).for_inputs([int(unit.payload["index"])])
        fims, finfo, dfim, res_s = compute_fims(
            net, x, cfg, torch_generator(ss, "fim", device=net.device), lambda s: None)
        t1 = time.perf_counter()
        diag = _diagnose(res_s, 1)
        grad_true = dfim.unit_prob_grad(y)
        attacks = run_attacks(net, x, y, fims, grad_true, judge,
                              replace(cfg, seed=child_seed(ss, "unit.attacks", bits=31)),
                              lambda s: None)
        t2 = time.perf_counter()
    return {"index": int(unit.payload["index"]),
            "fim": {name: info.to_dict() for name, info in finfo.items()},
            "diagnosis": diag.to_dict(),
            "attacks": {norm: {m: row.to_dict() for m, row in per.items()}
                        for norm, per in attacks.items()},
            "timings": {"fim": t1 - t0, "attacks": t2 - t1}}


def _median(vals: list[Any]) -> Any:
    arr = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
    return float(np.median(arr))


def _merge_fim(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v0 in parts[0].items():
        vals: list[Any] = [p.get(k) for p in parts]
        if k in FIM_PER_INPUT:
            out[k] = None if any(v is None for v in vals) else [e for v in vals for e in v]
            if k == "top_vectors":
                out[k] = out[k][:4]
        elif k == "spectrum_log10_median":
            arr = np.array([[-np.inf if e is None else e for e in v] for v in vals])
            med = np.median(arr, axis=0)
            out[k] = [float(e) if np.isfinite(e) else None for e in med]
        elif k == "median_cos_top_vs_direct":
            out[k] = _median([e for p in parts for e in p["cos_top_vs_direct"]])
        elif k.endswith("_median"):
            out[k] = _median(vals)
        elif k == "seconds":
            out[k] = float(sum(vals))
        elif k == "regularised" and isinstance(v0, list):
            out[k] = [any(t) for t in zip(*vals, strict=True)]
        elif k == "max_cond" and isinstance(v0, list):
            out[k] = [max(t) for t in zip(*vals, strict=True)]
        else:
            out[k] = v0
    return out


def _merge_attack(parts: list[dict[str, Any]], norm: str) -> dict[str, Any]:
    import torch

    from rgaudit.experiments.audit import _quartiles

    out: dict[str, Any] = {}
    for k, v0 in parts[0].items():
        vals = [p[k] for p in parts]
        if k in ATTACK_PER_INPUT:   # None: not recorded by this method (e.g. ``confident``)
            out[k] = None if any(v is None for v in vals) else [e for v in vals for e in v]
        elif k == "flip_rate":
            out[k] = np.mean(np.array(vals, dtype=np.float64), axis=0).tolist()
        elif k == "seconds":
            out[k] = float(sum(vals))
        elif k.endswith("_summary"):
            continue
        else:
            out[k] = v0
    out["min_eps_summary"] = _quartiles(torch.tensor(out["min_eps"], dtype=torch.float64)
                                        ).to_dict()
    applied = out["min_eps_actual_l2"] if norm == "l2" else out["min_eps_actual_linf"]
    out["min_eps_actual_summary"] = _quartiles(torch.tensor(applied, dtype=torch.float64)
                                               ).to_dict()
    return out


def merge_units(parts: list[dict[str, Any]], n_diagnose: int) -> dict[str, Any]:
    """Per-input unit results (in input order) → the ``fim``, ``diagnosis``, ``attacks``
    sections of an :class:`~rgaudit.experiments.audit.AuditResult`."""
    fim = {name: _merge_fim([p["fim"][name] for p in parts]) for name in parts[0]["fim"]}
    attacks = {norm: {m: _merge_attack([p["attacks"][norm][m] for p in parts], norm)
                      for m in parts[0]["attacks"][norm]} for norm in parts[0]["attacks"]}
    diag_parts = parts[:max(1, n_diagnose)]
    pairs = []
    for i, pair in enumerate(diag_parts[0]["diagnosis"]["pairs"]):
        ps = [p["diagnosis"]["pairs"][i] for p in diag_parts]
        merged = {k: [e for q in ps for e in q[k]] if k in DIAG_PER_INPUT else v
                  for k, v in pair.items()}
        merged["regularised"] = any(q["regularised"] for q in ps)
        merged["max_cond"] = max(q["max_cond"] for q in ps)
        pairs.append(merged)
    return {"fim": fim, "attacks": attacks,
            "diagnosis": {**diag_parts[0]["diagnosis"], "pairs": pairs}}


def run_audit_units(net: Any, X_test: Any, y_test: Any, cfg: Any, executor: Executor, *,
                    store: Any = None, model_info: dict[str, Any] | None = None,
                    progress: bool = False) -> Any:
    """The audit with its per-input work mapped over ``executor`` (see module docstring).

    Parameters
    ----------
    net : DeepRBM
    X_test : Tensor of shape (n_test, d)
    y_test : Tensor of shape (n_test,)
    cfg : AuditConfig
    executor : Executor
    store : UnitStore, optional
        Finished inputs are kept there and skipped when the audit is rerun.
    model_info : dict, optional
    progress : bool

    Returns
    -------
    AuditResult
        ``config["execution"]`` holds the executor's summary of where the time went.

    Raises
    ------
    RuntimeError
        When inputs failed after retries (the finished ones stay in ``store``).
    """
    from rgaudit.attacks.evaluate import StochasticJudge
    from rgaudit.experiments.audit import (
        AttackRow,
        AuditResult,
        Diagnosis,
        FimInfo,
        select_inputs,
    )
    from rgaudit.experiments.execution_summary import ExecutionSummary, PerInputExecution
    from rgaudit.threads import limit_threads

    t_all = time.perf_counter()
    judge = StochasticJudge(net, n_samples=cfg.judge_samples, seed=cfg.seed)
    X = X_test.to(device=net.device, dtype=net.dtype)
    with limit_threads(cfg.threads):
        x, y, sel = select_inputs(net, X, y_test.to(net.device), cfg.n_inputs, judge)
    units = [Unit(f"input-{idx}", {"index": idx, "x": x[i].tolist(), "y": int(y[i])})
             for i, idx in enumerate(sel.indices)]
    rep = executor.map(audit_unit, units, seed=cfg.seed, shared={"net": net, "config": cfg},
                       store=store, progress=progress)
    rep.raise_on_failure("audit inputs")
    merged = merge_units(rep.values, cfg.n_diagnose)
    sel.images = x[: min(4, x.shape[0])].tolist()
    sel.labels = y.tolist()
    summary = rep.summary()
    timings = {"fim (sum over inputs)": summary["stage_seconds_total"].get("fim", 0.0),
               "attacks (sum over inputs)": summary["stage_seconds_total"].get("attacks", 0.0),
               "executor start-up": summary["startup_seconds"],
               "total": time.perf_counter() - t_all}
    return AuditResult(
        cfg, {"widths": list(net.widths), **(model_info or {})}, sel,
        Diagnosis.from_dict(merged["diagnosis"]),
        {name: FimInfo.from_dict(d) for name, d in merged["fim"].items()},
        {norm: {m: AttackRow.from_dict(d) for m, d in per.items()}
         for norm, per in merged["attacks"].items()}, timings,
        execution=PerInputExecution(rep.executor, UNIT_STREAMS,
                                    ExecutionSummary.from_dict(summary)))


def audit_with_executor(net: Any, ds: Any, cfg: Any, info: dict[str, Any], executor: str,
                        address: str | None, out: Any) -> Any:
    """The CLI hook of ``rgaudit audit --executor``: units stored under
    ``<out>/audit-units-<hash of the settings>`` (a rerun with the same settings resumes)."""
    import hashlib
    import json
    from pathlib import Path

    from rgaudit.executors.base import make_executor
    from rgaudit.executors.store import UnitStore
    from rgaudit.report.io import to_plain

    sig = {"study": "audit", "config": cfg.to_dict(), "model": to_plain(info),
           "n_test": int(len(ds.y_test))}
    digest = hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:12]
    store = UnitStore(Path(out) / f"audit-units-{digest}", sig)
    ex = make_executor(executor, address=address)
    try:
        return run_audit_units(net, ds.X_test, ds.y_test, cfg, ex, store=store,
                               model_info=info, progress=False)
    finally:
        ex.close()
