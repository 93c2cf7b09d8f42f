"""A typer app holding one command module's commands, for CLI tests."""

from __future__ import annotations

from collections.abc import Callable

import typer


def app_with(register: Callable[[typer.Typer], None]) -> typer.Typer:
    """``register``'s commands plus a no-op one, which keeps typer in multi-command mode (so
    the command name is the first argument, as with ``rgaudit``)."""
    app = typer.Typer()
    register(app)

    @app.command()
    def _noop() -> None:
        pass

    return app
