"""Up-front syntax check of an operator basis spec, for the study configs' ``__post_init__``."""

from __future__ import annotations

import torch

from rgaudit.rg.operators import parse_basis


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
    pilot = (torch.rand(8, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    try:
        parse_basis(spec, 4, pilot=pilot)
    except ValueError as err:
        raise ValueError(f"{option} {spec!r}: {err}") from err
    return spec.strip()
