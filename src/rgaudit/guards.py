"""Resource guards: refuse, before any allocation, work that would not fit the machine.

Every command that can be asked for more than the machine has estimates its peak memory (and,
where it can, its time) from the options alone and calls :func:`check_memory` first. The limit
is ``--max-memory`` where a command has that option, else :func:`default_max_memory`.
"""

from __future__ import annotations

import os

from rgaudit.errors import ResourceError

GIB = 1024**3


def available_memory_bytes() -> int:
    """Memory this process may use: ``MemAvailable`` (Linux), else total physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * GIB


def default_max_memory() -> int:
    """Default memory budget: 80 % of the memory available now."""
    return int(0.8 * available_memory_bytes())


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable string (``"1.5 GiB"``)."""
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def check_memory(estimate_bytes: float, *, what: str, limit: int | None = None,
                 option: str = "--max-memory") -> None:
    """Raise :class:`ResourceError` when ``estimate_bytes`` exceeds the budget.

    Parameters
    ----------
    estimate_bytes : float
        Estimated peak memory of the step.
    what : str
        The step and the options that size it, e.g. ``"--ops full on a 100-unit layer"``.
    limit : int, optional
        Budget in bytes; default :func:`default_max_memory`.
    option : str
        The option that raises the budget, named in the message.
    """
    lim = default_max_memory() if limit is None else int(limit)
    if not estimate_bytes <= lim:  # also refuses NaN/inf estimates
        raise ResourceError(
            f"{what} needs about {format_bytes(estimate_bytes)} of memory, over the limit of "
            f"{format_bytes(lim)}; reduce the size, or raise the limit with {option} if the "
            "machine really has the memory")
