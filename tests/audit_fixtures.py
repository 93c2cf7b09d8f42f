"""Small typed RBM audit results for the report tests, built from the parts a test cares about
(the rest filled with neutral values)."""

from __future__ import annotations

from typing import Any

from rgaudit.experiments.audit import AuditResult


def _fim(info: dict[str, Any]) -> dict[str, Any]:
    spectrum = {"top_eigs": [info["top_eig"]], "top_eigs_err": None, "top_eig_err": None,
                "spectrum_log10_median": [], "noise_floor_median": None,
                "noise_floor_rel_median": None, "n_significant_median": None,
                "decades_median": None, "effective_rank_median": None, "significance": "",
                "cos_top_vs_direct": [], "top_vectors": []}
    return {**spectrum, **info}


def _attack(row: dict[str, Any]) -> dict[str, Any]:
    n = row["min_eps_summary"]["n"]
    actual = {"n_flipped": row["min_eps_summary"]["n_flipped"], "n": n,
              **row["min_eps_actual_summary"]}
    return {"flip_rate": [0.0] * len(row["epsilons"]), "min_eps_along": "", "min_eps": [],
            "min_eps_actual_l2": [], "min_eps_actual_linf": [], "clean_correct": [],
            "confident": None, "resolution": 0.1, "seconds": 0.0,
            **row, "min_eps_actual_summary": actual}


def audit_result(payload: dict[str, Any]) -> AuditResult:
    """An :class:`AuditResult` from a partial JSON-like ``payload`` (``model``, ``inputs``,
    ``diagnosis``, ``fim``, ``attacks``, ``timings``)."""
    inputs = {"indices": [], "pool": 0, **payload["inputs"]}
    pairs = [{"fisher_sv_err": [], "max_cond": 1.0, "unestimated": [], **p}
             for p in payload["diagnosis"]["pairs"]]
    return AuditResult.from_dict({
        "config": {}, "model": payload["model"], "inputs": inputs,
        "diagnosis": {"basis": "singles", "pairs": pairs},
        "fim": {k: _fim(v) for k, v in payload["fim"].items()},
        "attacks": {n: {m: _attack(r) for m, r in per.items()}
                    for n, per in payload["attacks"].items()},
        "timings": payload.get("timings", {})})
