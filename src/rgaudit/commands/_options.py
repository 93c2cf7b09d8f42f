"""Option validation shared by the commands: seeds, thread counts, memory budget, --force.

Light on purpose (typer only): every command module imports it at startup. The callbacks turn
bad values into click usage errors (exit status 2) that name the option.
"""

from __future__ import annotations

import os
from typing import Any

import typer

#: Upper bounds of counts that only cost time; each is far above any useful value and is stated
#: in docs/design.md ("Memory and time guards").
MAX_EPOCHS = 100_000
MAX_GIBBS_K = 10_000
MAX_THERMAL = 10_000_000
MAX_N_NETS = 100_000
MAX_CHAINS_PER_INPUT = 100_000_000


def check_seed(value: int | None) -> int | None:
    """``--seed`` callback: integers in 0 … 2**63-1 (what torch generators accept)."""
    from rgaudit.guards import MAX_SEED

    if value is not None and not 0 <= value <= MAX_SEED:
        raise typer.BadParameter(f"{value} is out of range: seeds are integers in 0 … 2**63-1 "
                                 f"= {MAX_SEED}", param_hint="--seed")
    return value


def max_threads() -> int:
    """The most torch threads a command may ask for: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(value: int | None) -> int | None:
    """``--threads`` callback: 1 … the CPUs available (torch segfaults on absurd counts)."""
    if value is not None and not 1 <= value <= max_threads():
        raise typer.BadParameter(f"{value} is out of range: this machine lets rgaudit use 1 … "
                                 f"{max_threads()} CPU threads", param_hint="--threads")
    return value


def check_max_memory(value: str | None) -> str | None:
    """``--max-memory`` callback: parse the size and make it the process's memory budget."""
    from rgaudit.errors import UsageError
    from rgaudit.guards import parse_memory, set_memory_limit

    if value is None:
        set_memory_limit(None)
        return value
    try:
        set_memory_limit(parse_memory(value))
    except UsageError as err:
        raise typer.BadParameter(str(err), param_hint="--max-memory") from err
    return value


def check_device(value: str | None) -> str | None:
    """``--device`` callback: cpu, cuda, cuda:N or auto, and CUDA only where it exists."""
    if value is None:
        return value
    text = value.strip()
    kind = text.split(":", 1)[0]
    if kind not in ("cpu", "cuda", "auto") or (kind != "cuda" and ":" in text) or (
            kind == "cuda" and ":" in text and not text.split(":", 1)[1].isdigit()):
        raise typer.BadParameter(f"{value!r} is not supported: use cpu, cuda, cuda:N or auto "
                                 "(rgaudit runs on CPU and CUDA only)", param_hint="--device")
    if kind == "cuda":
        from rgaudit.device import resolve_device

        try:
            resolve_device(text)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--device") from err
    return text


def force_option() -> Any:
    """The ``--force`` option of commands that write a run folder or a result file."""
    return typer.Option(False, "--force", help="Write into an existing --out that rgaudit did "
                        "not create (only the files this command writes are replaced).")


def max_memory_option() -> Any:
    """The ``--max-memory`` option (default: 80 % of the memory available now)."""
    return typer.Option(None, "--max-memory", callback=check_max_memory,
                        help="Memory budget, e.g. 4G; work estimated to need more is refused "
                        "up front (default: 80% of the available memory, or "
                        "$RGAUDIT_MAX_MEMORY).")
