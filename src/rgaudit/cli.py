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
    "attack",
    "cloning",
    "relu",
    "ising",
    "zoo",
    "serve",
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


def exit_status(err: BaseException) -> int:
    """The exit status of an error escaping a command (the scheme of :mod:`rgaudit.errors`).

    ========================================================  ==============================
    click usage errors, :class:`~rgaudit.errors.UsageError`   2 (usage)
    :class:`~rgaudit.errors.ResourceError`                    3 (memory/time/lock refusal)
    other rgaudit errors, ``ValueError``, ``OSError``,        1 (bad input)
    ``RecursionError`` (a file nested too deeply)
    ``KeyboardInterrupt``                                     130 (interrupted)
    ========================================================  ==============================
    """
    from rgaudit.errors import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_USAGE

    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(err, RGAuditError):
        return err.exit_code
    if isinstance(err, _click_exceptions()):
        return int(getattr(err, "exit_code", EXIT_USAGE) or EXIT_USAGE)
    return EXIT_INPUT


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """Click's usage-error base class: typer's vendored copy, and click's own if installed."""
    from typer._click.exceptions import ClickException

    classes: list[type[BaseException]] = [ClickException]
    try:
        import click

        classes.append(click.exceptions.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(classes)


def _message(text: str) -> None:
    """Print one error line to stderr (plain text: no rich markup is interpreted)."""
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rgaudit`` script: run a command, map every error to one exit status.

    Usage errors exit 2, bad input files 1, refused resources (memory/time estimate over the
    limit, an output locked by another run) 3, Ctrl-C 130 with a one-line message; see
    :mod:`rgaudit.errors` and ``docs/design.md``. Errors are printed as one message; set
    ``RGAUDIT_DEBUG=1`` to see the traceback instead. A traceback without it is a bug.
    """
    import signal

    from rgaudit.guards import set_memory_limit
    from rgaudit.outputs import release_all

    terminated: list[int] = []

    def _on_sigterm(signum: int, frame: object) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt  # unwind: release locks, remove temporary files

    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        previous = None
    code = 0
    try:
        rv = app(args=argv, standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == 130:  # typer turns KeyboardInterrupt into Exit(130)
            raise KeyboardInterrupt
    except _click_exceptions() as err:
        if os.environ.get("RGAUDIT_DEBUG"):
            raise
        try:
            from typer import rich_utils

            rich_utils.rich_format_error(err)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - fall back to click's plain rendering
            err.show()  # type: ignore[attr-defined]
        code = exit_status(err)
    except typer.Abort:
        _message("aborted")
        code = 1
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if terminated else "interrupted"
        _message(f"{how}: stopped before finishing; nothing was written for the unfinished "
                 "step (outputs are written atomically at the end)")
        code = 143 if terminated else 130
    except (RGAuditError, ValueError, OSError, RecursionError, OverflowError) as err:
        if os.environ.get("RGAUDIT_DEBUG"):
            raise
        kind = type(err).__name__
        text = str(err) if not isinstance(err, RecursionError) else (
            "input nested too deeply to be parsed")
        _message(f"error ({kind}): {text}\n(set RGAUDIT_DEBUG=1 to see the traceback)")
        code = exit_status(err)
    finally:
        release_all()
        set_memory_limit(None)  # --max-memory holds for one command
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if code in (130, 143) and argv is None:
        # The script was interrupted: locks are released and temporary files removed, so skip
        # the interpreter's teardown of torch/numba/matplotlib (about 11 s on a loaded 2-core
        # machine) and stop now. Only for the real script (argv None), never in-process callers.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
