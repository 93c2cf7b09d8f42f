"""Command-line interface: a thin layer over ``rgaudit.experiments``.

Each sub-command lives in ``rgaudit.commands.<name>`` and exposes ``register(app)``.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from rgaudit.errors import RGAuditError

app = typer.Typer(
    name="rgaudit",
    help="Audit deep networks with the renormalisation group: stability matrices, input Fisher "
    "information, adversarial directions and protection against cloning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

COMMAND_MODULES: tuple[str, ...] = (
    "train",
    "diagnose",
    "audit",
    "cloning",
    "relu",
    "ising",
)

# Command modules import only typer/rich at module level (heavy modules inside the command
# functions), so registering them all keeps `rgaudit --help` fast.
for _name in COMMAND_MODULES:
    importlib.import_module(f"rgaudit.commands.{_name}").register(app)


def _print_version(value: bool) -> None:
    if value:
        from rgaudit import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the rgaudit version and exit."),
) -> None:
    """Audit deep networks with the renormalisation group."""


@app.command()
def version() -> None:
    """Print the rgaudit version."""
    from rgaudit import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``rgaudit`` script.

    Errors that describe bad input or a bad file (rgaudit's own errors, ``ValueError``,
    ``OSError``) are printed as one message with exit status 1; set ``RGAUDIT_DEBUG=1`` to see
    the traceback instead.
    """
    try:
        app()
    except (RGAuditError, ValueError, OSError) as err:
        if os.environ.get("RGAUDIT_DEBUG"):
            raise
        kind = type(err).__name__
        print(f"error ({kind}): {err}\n(set RGAUDIT_DEBUG=1 to see the traceback)",
              file=sys.stderr)
        raise SystemExit(1) from None
