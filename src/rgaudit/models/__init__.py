"""Model adapters: one small interface over every classifier rgaudit can audit or serve.

See :mod:`rgaudit.models.base` for the :class:`Classifier` protocol.
"""

from rgaudit.models.base import Classifier, RBMClassifier, TorchClassifier

__all__ = ["Classifier", "RBMClassifier", "TorchClassifier"]
