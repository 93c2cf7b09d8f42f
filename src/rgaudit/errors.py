"""Exceptions raised by rgaudit, each naming what is wrong and what to do."""

from __future__ import annotations


class RGAuditError(Exception):
    """Base class of all rgaudit errors."""


class ModelFileError(RGAuditError):
    """A saved model is missing, truncated, corrupted or does not match its config."""


class DatasetError(RGAuditError):
    """A dataset file is malformed or its values are out of range."""


class IllConditionedError(RGAuditError):
    """A covariance is too ill-conditioned to solve even with the stated regulariser."""


class ResourceError(RGAuditError):
    """A requested computation would exceed the memory or time budget; refused before it starts."""
