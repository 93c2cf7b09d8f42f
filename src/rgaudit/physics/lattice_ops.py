"""Translation-invariant lattice operators of the 2D Ising model (the ``Operators`` protocol).

Each operator is a *shape* — a set of lattice offsets — summed over all lattice translations and
over its distinct orientations under the square's symmetry group D4:

    O(s) = Σ_x Σ_{g ∈ D4 / stab} Π_{o ∈ shape} s(x + g·o),     s = 2h − 1 ∈ {−1, +1}

(periodic boundaries). Sums, not per-site averages: the stability matrix ``T = C⁻¹D`` compares
couplings of lattices of different sizes, and only extensive operators keep its eigenvalues
equal to ``b^y``. Orientations that coincide up to a translation are counted once.

Even sector (products of an even number of spins), in Swendsen's order:
``nn`` (1,0) · ``nnn`` (1,1) · ``d2`` (2,0) · ``plaq`` 2×2 plaquette · ``d5`` (2,1) · ``d8``
(2,2) · ``diamond`` 4-spin plaquette of the diagonal sublattice.
Odd sector: ``m`` Σs · ``tri`` 3 spins of a plaquette · ``line3`` 3 spins in a row · ``diag3``
3 spins on a diagonal.

On a small lattice an offset may wrap around (e.g. (2,0) on L = 4 joins each pair twice); that
is the operator the formula defines on that lattice, and it is a finite-size effect of the
deepest blocking levels — reported, not patched.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
Shape = tuple[tuple[int, int], ...]

EVEN_SHAPES: dict[str, Shape] = {
    "nn": ((0, 0), (0, 1)),
    "nnn": ((0, 0), (1, 1)),
    "d2": ((0, 0), (0, 2)),
    "plaq": ((0, 0), (0, 1), (1, 0), (1, 1)),
    "d5": ((0, 0), (1, 2)),
    "d8": ((0, 0), (2, 2)),
    "diamond": ((0, 1), (1, 0), (1, 2), (2, 1)),
}
"""Even operators, in the order in which truncations add them."""

ODD_SHAPES: dict[str, Shape] = {
    "m": ((0, 0),),
    "tri": ((0, 0), (0, 1), (1, 0)),
    "line3": ((0, 0), (0, 1), (0, 2)),
    "diag3": ((0, 0), (1, 1), (2, 2)),
}
"""Odd operators, in the order in which truncations add them."""

_D4 = (
    lambda x, y: (x, y),
    lambda x, y: (-y, x),
    lambda x, y: (-x, -y),
    lambda x, y: (y, -x),
    lambda x, y: (x, -y),
    lambda x, y: (-x, y),
    lambda x, y: (y, x),
    lambda x, y: (-y, -x),
)


def _canonical(offsets: Shape) -> Shape:
    """The shape translated so that its smallest offset is (0, 0), sorted."""
    pts = sorted(offsets)
    x0, y0 = pts[0]
    return tuple(sorted((x - x0, y - y0) for x, y in pts))


def orientations(shape: Shape) -> list[Shape]:
    """Distinct images of ``shape`` under D4, up to translation."""
    seen: list[Shape] = []
    for g in _D4:
        c = _canonical(tuple(g(x, y) for x, y in shape))
        if c not in seen:
            seen.append(c)
    return seen


class LatticeOperators:
    """A set of translation-invariant operators on an L×L periodic lattice.

    Implements the ``Operators`` protocol: ``size``, ``names``, ``evaluate``.

    Parameters
    ----------
    lattice_size : int
        Linear size ``L``; ``evaluate`` expects ``L²`` units.
    shapes : dict of str to tuple of (int, int)
        Operator name → offsets (see :data:`EVEN_SHAPES`, :data:`ODD_SHAPES`).
    """

    def __init__(self, lattice_size: int, shapes: dict[str, Shape]) -> None:
        if lattice_size < 2:
            raise ValueError(f"lattice size must be at least 2, got {lattice_size}")
        if not shapes:
            raise ValueError("need at least one operator shape")
        self.lattice_size = int(lattice_size)
        self.shapes = dict(shapes)
        self._orient = {k: orientations(v) for k, v in self.shapes.items()}
        offs = [c for o in self._orient.values() for sh in o for xy in sh for c in xy]
        self._pad = (max(0, -min(offs)), max(0, max(offs)))

    @property
    def size(self) -> int:
        """Number of operators."""
        return len(self.shapes)

    @property
    def names(self) -> list[str]:
        """Operator names, in order."""
        return list(self.shapes)

    def __repr__(self) -> str:
        return f"LatticeOperators(L={self.lattice_size}, names={self.names})"

    def evaluate(self, h: Tensor) -> Tensor:
        """Operator values.

        Parameters
        ----------
        h : Tensor of shape (..., L*L)
            {0,1} units, row-major lattice.

        Returns
        -------
        Tensor of shape (..., size), float64 (integer-valued sums).
        """
        n = self.lattice_size
        if h.shape[-1] != n * n:
            raise ValueError(
                f"expected {n * n} = {n}² units in the last dimension, got {h.shape[-1]}"
            )
        s = (2.0 * h.to(torch.float32) - 1.0).reshape(*h.shape[:-1], n, n)
        # periodic padding once, then every shifted copy is a view (no roll)
        lo, hi = self._pad
        rows = torch.arange(-lo, n + hi, device=h.device) % n
        padded = s[..., rows, :][..., rows]
        out = []
        for name in self.shapes:
            total = torch.zeros(h.shape[:-1], dtype=torch.float64, device=h.device)
            for shape in self._orient[name]:
                (x, y), rest = shape[0], shape[1:]
                prod = padded[..., lo + x : lo + x + n, lo + y : lo + y + n]
                for x, y in rest:
                    prod = prod * padded[..., lo + x : lo + x + n, lo + y : lo + y + n]
                # ±1 products summed in float32 are exact below 2**24
                total = total + prod.sum(dim=(-2, -1)).to(torch.float64)
            out.append(total)
        return torch.stack(out, dim=-1)


def even_operators(lattice_size: int, n_ops: int = 7) -> LatticeOperators:
    """The first ``n_ops`` (1–7) even operators on an L×L lattice."""
    if not 1 <= n_ops <= len(EVEN_SHAPES):
        raise ValueError(f"n_ops must be in 1..{len(EVEN_SHAPES)}, got {n_ops}")
    return LatticeOperators(lattice_size, dict(list(EVEN_SHAPES.items())[:n_ops]))


def odd_operators(lattice_size: int, n_ops: int = 4) -> LatticeOperators:
    """The first ``n_ops`` (1–4) odd operators on an L×L lattice."""
    if not 1 <= n_ops <= len(ODD_SHAPES):
        raise ValueError(f"n_ops must be in 1..{len(ODD_SHAPES)}, got {n_ops}")
    return LatticeOperators(lattice_size, dict(list(ODD_SHAPES.items())[:n_ops]))
