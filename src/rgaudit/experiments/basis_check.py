"""Up-front syntax check of an operator basis spec, for the study configs' ``__post_init__``."""

from __future__ import annotations

import torch

from rgaudit.rg.operators import parse_basis


def pilot_design(n_units: int = 4) -> torch.Tensor:
    """The toy layer's pilot: every binary configuration of ``n_units`` units, once.

    A full two-level factorial design, row ``r`` the bits of ``r``; no randomness. Every unit
    is 0 in half the rows and 1 in the other half, so every unit has variance and every pair a
    defined (zero) connected correlation, which is all the syntax check of ``pairs:K`` needs.

    Returns
    -------
    Tensor of shape (2**n_units, n_units), float32, entries 0 or 1
    """
    rows = torch.arange(2 ** n_units)
    return ((rows[:, None] >> torch.arange(n_units)) & 1).float()


def check_basis_spec(spec: str, option: str) -> str:
    """Check an operator basis spec (``singles``, ``pairs:K``, ``order:M``…); returns it stripped.

    Only the syntax and the numbers of the spec are checked (on a toy layer of 4 units), not
    its size on the real network.

    Raises
    ------
    ValueError
        The spec is malformed; the message names ``option`` (the CLI option that sets it).
    """
    name, _, arg = spec.strip().lower().partition(":")
    if name in ("pairs", "order") and arg and not (arg.isdigit() and int(arg) >= 1):
        raise ValueError(f"{option} {spec!r}: the number after '{name}:' must be a positive "
                         f"integer, got {arg!r}")
    try:
        parse_basis(spec, 4, pilot=pilot_design())
    except ValueError as err:
        raise ValueError(f"{option} {spec!r}: {err}") from err
    return spec.strip()
