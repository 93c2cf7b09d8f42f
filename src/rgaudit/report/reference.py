"""Reference numbers the audit report compares a model with (measured, with their command)."""

from __future__ import annotations

from typing import Any

#: rgaudit's default digits model (``models/default``: the DeepRBM that ``rgaudit audit`` trains
#: without --model) through the audit of any classifier (its mean-field probabilities), 20 test
#: inputs, seed 0: median applied minimal flipping ‖δ‖₂ over inputs, best method. Measured
#: 2026-11-29 on a loaded 2-core machine (load average 20) with the command below (audit 28 s);
#: the number itself does not depend on the load. See docs/any-model.md.
DIGITS_REFERENCE: dict[str, Any] = {
    "median_l2": 0.54,
    "best_method": "deepfool",
    "command": "python benchmarks/any_model/reference.py",
}
