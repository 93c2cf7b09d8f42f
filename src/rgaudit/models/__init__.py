"""Model adapters: one small interface over every classifier rgaudit can audit or serve.

See :mod:`rgaudit.models.base` for the :class:`Classifier` protocol.
"""

from rgaudit.models.base import Classifier, RBMClassifier, TorchClassifier
from rgaudit.models.loading import load_classifier

__all__ = ["Classifier", "RBMClassifier", "TorchClassifier", "load_classifier"]
