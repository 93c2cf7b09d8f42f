"""Command-line interface: a thin layer over ``rgaudit.experiments``.

Each sub-command lives in ``rgaudit.commands.<name>`` and exposes ``register(app)``.
"""

from __future__ import annotations

import importlib

import typer

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

for _name in COMMAND_MODULES:
    importlib.import_module(f"rgaudit.commands.{_name}").register(app)


@app.command()
def version() -> None:
    """Print the rgaudit version."""
    from rgaudit import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``rgaudit`` script."""
    app()
