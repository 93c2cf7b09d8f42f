"""Device selection: CPU by default, CUDA when asked for or (with ``"auto"``) available."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """Turn a user's device choice into a :class:`torch.device`.

    Parameters
    ----------
    device : str, torch.device or None
        ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present).

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If CUDA is requested but not available.
    """
    if device is None or device == "cpu":
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available; use --device cpu or auto"
        )
    return dev


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a seeded :class:`torch.Generator` on ``device``."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen
