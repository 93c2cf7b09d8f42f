"""rgaudit: audit deep networks with the renormalisation group.

The public API is the names in ``__all__``; they are imported on first use (PEP 562), so
``import rgaudit`` stays light (no torch, sklearn or matplotlib until needed). Everything
else is implementation and may move. See docs/api.md.

>>> import rgaudit
>>> clf, info = rgaudit.load_classifier("model.pt2")            # doctest: +SKIP
>>> result = rgaudit.audit(clf, X_test, y_test, n_inputs=10)    # doctest: +SKIP
>>> print(result.verdict["text"])                               # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → module that defines it
_LAZY: dict[str, str] = {
    # models
    "Classifier": "rgaudit.models.base",
    "TorchClassifier": "rgaudit.models.base",
    "RBMClassifier": "rgaudit.models.base",
    "load_classifier": "rgaudit.models.loading",
    "deep_rbm_from_sklearn": "rgaudit.models.sklearn_rbm",
    "DeepRBM": "rgaudit.nets.deep_rbm",
    # analyses
    "input_fim": "rgaudit.api",
    "InputFIM": "rgaudit.api",
    "audit": "rgaudit.api",
    "AnyAuditConfig": "rgaudit.experiments.audit_any",
    "AnyAuditResult": "rgaudit.experiments.audit_any",
    "write_report": "rgaudit.api",
    "attack": "rgaudit.api",
    "protect": "rgaudit.api",
    "ProtectedClassifier": "rgaudit.api",
    # errors
    "RGAuditError": "rgaudit.errors",
    "ModelFileError": "rgaudit.errors",
    "DatasetError": "rgaudit.errors",
    "ResourceError": "rgaudit.errors",
}

__all__ = [
    "__version__",
    "AnyAuditConfig",
    "AnyAuditResult",
    "Classifier",
    "DatasetError",
    "DeepRBM",
    "InputFIM",
    "ModelFileError",
    "ProtectedClassifier",
    "RBMClassifier",
    "RGAuditError",
    "ResourceError",
    "TorchClassifier",
    "attack",
    "audit",
    "deep_rbm_from_sklearn",
    "input_fim",
    "load_classifier",
    "protect",
    "write_report",
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'rgaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value          # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from rgaudit.api import (
        InputFIM,
        ProtectedClassifier,
        attack,
        audit,
        input_fim,
        protect,
        write_report,
    )
    from rgaudit.errors import DatasetError, ModelFileError, ResourceError, RGAuditError
    from rgaudit.experiments.audit_any import AnyAuditConfig, AnyAuditResult
    from rgaudit.models.base import Classifier, RBMClassifier, TorchClassifier
    from rgaudit.models.loading import load_classifier
    from rgaudit.models.sklearn_rbm import deep_rbm_from_sklearn
    from rgaudit.nets.deep_rbm import DeepRBM
