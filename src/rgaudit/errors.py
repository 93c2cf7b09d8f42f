"""Exceptions raised by rgaudit, each naming what is wrong and what to do.

Every error class carries the exit status the ``rgaudit`` command ends with when it escapes a
command (the one mapping lives in :func:`rgaudit.cli.main`; the scheme is in ``docs/design.md``):

====  =====================================================================================
0     success
1     bad input: a model, data or config file that is missing, malformed or inconsistent, or
      a computation that cannot go on with the given input (:class:`RGAuditError`,
      ``ValueError``, ``OSError``)
2     usage error: a bad option or argument, including an ``--out`` rgaudit refuses to write
      into (:class:`UsageError`, click's usage errors)
3     resource refusal: the estimated memory or time is over the limit, or another rgaudit
      run is writing the same output (:class:`ResourceError`)
130   interrupted (Ctrl-C / SIGINT); 143: terminated (SIGTERM), unwound the same way
====  =====================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_RESOURCE = 3
EXIT_INTERRUPTED = 130


class RGAuditError(Exception):
    """Base class of all rgaudit errors (exit status 1: bad input)."""

    exit_code: int = EXIT_INPUT


class ModelFileError(RGAuditError):
    """A saved model is missing, truncated, corrupted or does not match its config."""


class DatasetError(RGAuditError):
    """A dataset file is malformed or its values are out of range."""


class IllConditionedError(RGAuditError):
    """A covariance is too ill-conditioned to solve even with the stated regulariser."""


class UsageError(RGAuditError):
    """An option or argument the command cannot accept (exit status 2)."""

    exit_code = EXIT_USAGE


class OutputExistsError(UsageError, FileExistsError):
    """``--out`` names a file or folder rgaudit did not write; refused unless ``--force``.

    Also a :class:`FileExistsError`, so code that saves models can catch it as such.
    """

    def __str__(self) -> str:  # OSError would format (errno, strerror) tuples
        return str(self.args[0]) if self.args else ""


class ResourceError(RGAuditError):
    """A requested computation would exceed the memory or time budget; refused before it starts."""

    exit_code = EXIT_RESOURCE


class OutputBusyError(ResourceError):
    """Another rgaudit process holds the lock of the same output."""
