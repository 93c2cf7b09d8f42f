"""The reference number of the audit report: rgaudit's default digits model through the audit
of any classifier (its mean-field probabilities), 20 inputs, seed 0.

    python benchmarks/any_model/reference.py [MODEL_FOLDER]

trains the default model into MODEL_FOLDER (default ``models/default``) if it is not there,
runs :func:`rgaudit.audit` and prints the verdict; the numbers go into
``rgaudit/report/reference.py``.
"""

from __future__ import annotations

import json
import sys
import time

import rgaudit
from rgaudit.data import load_dataset
from rgaudit.experiments.train_default import ensure_default_model


def main(folder: str = "models/default") -> None:
    t = time.perf_counter()
    net, cfg = ensure_default_model(folder)
    print(f"train/load {time.perf_counter() - t:.0f} s", flush=True)
    ds = load_dataset("digits", seed=cfg["dataset"]["split_seed"])
    clf = rgaudit.RBMClassifier(net, (8, 8))
    t = time.perf_counter()
    r = rgaudit.audit(clf, ds.X_test, ds.y_test, seed=0, n_diagnose=0)
    print(f"audit {time.perf_counter() - t:.0f} s")
    print(json.dumps(r.verdict, indent=1))
    print(json.dumps({k: v["min_eps_actual_summary"] for k, v in r.attacks["l2"].items()},
                     indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
