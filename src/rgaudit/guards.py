"""Resource guards: refuse, before any allocation, work that would not fit the machine.

Every command that can be asked for more than the machine has estimates its peak memory from the
options alone and calls :func:`check_memory` first; loaders estimate from file headers before they
read a payload. The limit is, in order: ``--max-memory`` where a command has that option (it calls
:func:`set_memory_limit`), the environment variable ``RGAUDIT_MAX_MEMORY`` (e.g. ``4G``), else
:func:`default_max_memory` (80 % of the memory available now, within the cgroup limit).

Counts that only cost time (epochs, Gibbs steps, thermalisation sweeps, …) are bounded by
:func:`check_count` with a limit stated in the message, and lists given as ranges (``1-8``) are
bounded by :data:`MAX_LIST_VALUES` before they are expanded.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable

from rgaudit.errors import ResourceError, UsageError

GIB = 1024**3
#: Most values a comma/range list option (``--dims``, ``--depths``) may expand to.
MAX_LIST_VALUES = 10_000
#: Seeds are 64-bit: torch generators take at most 2**63 - 1.
MAX_SEED = 2**63 - 1

_limit_override: int | None = None
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1000, "KIB": 1024, "M": 1024**2, "MB": 1000**2,
          "MIB": 1024**2, "G": GIB, "GB": 1000**3, "GIB": GIB, "T": 1024**4, "TB": 1000**4,
          "TIB": 1024**4}


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 or v1), or None when unlimited/unknown."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def available_memory_bytes() -> int:
    """Memory this process may use: ``MemAvailable`` (Linux), else total physical memory.

    Capped by the cgroup memory limit when there is one (containers, CI runners).
    """
    avail: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            avail = 8 * GIB
    cg = _cgroup_limit()
    return min(avail, cg) if cg is not None else avail


def default_max_memory() -> int:
    """Default memory budget: 80 % of the memory available now."""
    return int(0.8 * available_memory_bytes())


def parse_memory(text: str, option: str = "--max-memory") -> int:
    """``"4G"``, ``"512M"``, ``"1.5GiB"`` or a plain byte count → bytes.

    Raises
    ------
    UsageError
        Not a positive size.
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if m is None or unit not in _UNITS:
        raise UsageError(f"{option} {text!r}: give a size such as 4G, 512M or 2GiB")
    value = float(m.group(1)) * _UNITS[unit]
    if not (math.isfinite(value) and 1 <= value < 2**63):
        raise UsageError(f"{option} {text!r}: must be a positive size below 8 EiB")
    return int(value)


def set_memory_limit(limit: int | None) -> None:
    """Set (or, with None, clear) the process-wide memory budget used by :func:`check_memory`."""
    global _limit_override
    _limit_override = None if limit is None else int(limit)


def memory_limit() -> int:
    """The budget now in force: :func:`set_memory_limit`, ``RGAUDIT_MAX_MEMORY``, or the default."""
    if _limit_override is not None:
        return _limit_override
    env = os.environ.get("RGAUDIT_MAX_MEMORY")
    if env:
        return parse_memory(env, "RGAUDIT_MAX_MEMORY")
    return default_max_memory()


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable string (``"1.5 GiB"``)."""
    if not math.isfinite(n):
        return "an unbounded amount"
    for unit, scale in (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", GIB), ("MiB", 1024**2),
                        ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def check_memory(estimate_bytes: float, *, what: str, limit: int | None = None,
                 option: str = "--max-memory") -> None:
    """Raise :class:`ResourceError` when ``estimate_bytes`` exceeds the budget.

    Parameters
    ----------
    estimate_bytes : float
        Estimated peak memory of the step (a Python int is exact however large).
    what : str
        The step and the options that size it, e.g. ``"--ops full on a 100-unit layer"``.
    limit : int, optional
        Budget in bytes; default :func:`memory_limit`.
    option : str
        The option that raises the budget, named in the message.
    """
    lim = memory_limit() if limit is None else int(limit)
    try:
        fits = estimate_bytes <= lim  # also refuses NaN estimates
    except OverflowError:
        fits = False
    if not fits:
        raise ResourceError(
            f"{what} needs about {format_bytes(float(min(estimate_bytes, 1e300)))} of memory, "
            f"over the limit of {format_bytes(lim)}; reduce the size, or raise the limit with "
            f"{option} (or RGAUDIT_MAX_MEMORY) if the machine really has the memory")


def check_count(value: int, *, option: str, maximum: int, why: str) -> int:
    """Refuse a count above ``maximum`` (a time bound); return it unchanged otherwise.

    Parameters
    ----------
    value : int
    option : str
        The option, named in the message.
    maximum : int
    why : str
        What the count costs, e.g. ``"each epoch is one pass over the training set"``.
    """
    if value > maximum:
        raise ResourceError(f"{option} {value} is over the bound of {maximum:,}: {why}; "
                            "split the work or use a smaller value")
    return value


def dense_bytes(shape: Iterable[int], itemsize: int) -> int:
    """Bytes of a dense array of ``shape`` (exact Python integers, never overflows)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def network_parameters(widths: Iterable[int]) -> int:
    """Parameters of a layered network of ``widths``: weights plus both bias vectors per layer."""
    w = [int(v) for v in widths]
    return sum(a * b + a + b for a, b in zip(w[:-1], w[1:], strict=False))


def check_seed(seed: int, option: str = "--seed") -> int:
    """Refuse a seed outside ``0 … 2**63-1`` naming the option (torch generators need it)."""
    if not 0 <= int(seed) <= MAX_SEED:
        raise UsageError(f"{option} {seed} is out of range: seeds are integers in "
                         f"0 … 2**63-1 = {MAX_SEED}")
    return int(seed)


def expand_int_list(text: str, option: str) -> tuple[int, ...]:
    """Parse ``"64,256,1024"`` or ``"1-8"`` (inclusive range) without expanding absurd ranges.

    Raises
    ------
    UsageError
        Bad syntax, an empty list, or more than :data:`MAX_LIST_VALUES` values.
    """
    out: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo_s, hi_s = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
                lo, hi = int(lo_s), int(hi_s)
                if hi - lo + 1 + len(out) > MAX_LIST_VALUES:
                    raise UsageError(f"{option} {text!r}: the range {part} has "
                                     f"{max(hi - lo + 1, 0):,} values, over the bound of "
                                     f"{MAX_LIST_VALUES:,}; give a shorter range or a list")
                out += list(range(lo, hi + 1))
            elif part:
                out.append(int(part))
            if len(out) > MAX_LIST_VALUES:
                raise UsageError(f"{option} {text!r}: more than {MAX_LIST_VALUES:,} values")
    except ValueError as err:
        raise UsageError(f"{option} must look like '64,256,1024' or '1-8', got {text!r}") from err
    if not out:
        raise UsageError(f"{option} is empty")
    return tuple(out)


#: Jackknife blocks plus the full-sample accumulator held by the MCRG moment streams.
MCRG_ACCUMULATORS = 17


def operator_count(spec: str, n_units: int) -> int | None:
    """Number of operators a basis spec gives on a layer of ``n_units`` (None: unknown spec).

    ``singles`` n, ``pairs`` n + n(n−1)/2, ``pairs:K`` n + min(K, n(n−1)/2), ``order:M``
    Σ_{k≤M} C(n, k), ``full`` 2^n − 1 (exact Python integers: ``full`` on 100 units is 2^100−1).
    """
    name, _, arg = spec.strip().lower().partition(":")
    n = int(n_units)
    pairs = n * (n - 1) // 2
    if name == "singles" and not arg:
        return n
    if name == "full" and not arg:
        return 2**n - 1
    if name == "pairs":
        if not arg:
            return n + pairs
        return n + min(int(arg), pairs) if arg.isdigit() else None
    if name == "order" and arg.isdigit():
        return sum(math.comb(n, k) for k in range(1, min(int(arg), n) + 1))
    return None


def check_mcrg_memory(spec: str, widths: Iterable[int], n_samples: int, *, what: str,
                      chunk_bytes: int = 64 * 2**20) -> None:
    """Refuse an MCRG basis whose moment accumulators would not fit, before any sampling.

    Per adjacent pair of layers with ``m`` and ``m'`` operators the engine keeps
    :data:`MCRG_ACCUMULATORS` float64 copies of the ``m×m``, ``m×m'`` and ``m'×m'`` moments,
    plus one chunk of operator values (bounded by ``chunk_bytes``, at least one row).
    """
    w = [int(v) for v in widths]
    counts = [operator_count(spec, n) for n in w[1:]]
    if any(c is None for c in counts):
        return  # the basis parser reports a bad spec
    cs = [int(c) for c in counts if c is not None]
    worst = max((a * a + a * b + b * b for a, b in zip(cs[:-1], cs[1:], strict=False)),
                default=cs[0] * cs[0] if cs else 0)
    est = MCRG_ACCUMULATORS * 8 * worst + max(chunk_bytes, 8 * max(cs, default=0) * 2)
    widest = w[1 + cs.index(max(cs))] if cs else 0
    check_memory(est, what=f"{what} on a {widest}-unit layer ({max(cs, default=0):,} "
                 f"operators, {n_samples:,} samples)")
