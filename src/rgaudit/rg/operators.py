"""Operator bases for effective Hamiltonians: products of binary unit values (eq. 7).

An effective Hamiltonian of a layer of ``n`` binary units is ``H(h) = Σ_α g_α O_α(h)`` with
``O_α(h) = Π_{i∈α} h_i`` for non-empty subsets ``α`` of the units. The complete basis has all
``2^n − 1`` subsets; truncated bases (singles, selected pairs, products up to an order) are
approximations (DESIGN.md fact 2).

Any object with ``size``, ``names`` and ``evaluate(h)`` is an operator set (:class:`Operators`),
so lattice sums for the Ising model plug into the same MCRG engine as :class:`ProductBasis`.

Ordering of the complete basis (used by :mod:`rgaudit.rg.exact` as well): operator ``α`` sits at
index ``mask(α) − 1`` where ``mask(α) = Σ_{i∈α} 2^i``; the binary state ``s`` (an integer) has
unit ``i`` equal to bit ``i`` of ``s``.

Spec strings understood by :func:`parse_basis`:

==============  ===================================================================
``singles``     the ``n`` single-unit operators ``h_i``
``pairs``       singles plus all ``n(n−1)/2`` pairs ``h_i h_j``
``pairs:K``     singles plus the ``K`` pairs with the largest ``|connected correlation|``
                on a pilot sample (needs ``pilot``)
``order:M``     all products of at most ``M`` distinct units
``full``        the complete basis, all ``2^n − 1`` products (``n ≤ 16``)
==============  ===================================================================
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from math import comb
from typing import Protocol, runtime_checkable

import torch

Tensor = torch.Tensor

#: Largest layer for which the complete basis may be built.
MAX_FULL_UNITS = 16


@runtime_checkable
class Operators(Protocol):
    """A set of operators ``O_α(h)`` on one layer.

    Attributes
    ----------
    size : int
        Number of operators ``m``.
    names : list of str
        One human-readable name per operator.

    Both are read-only here: a plain attribute or a property satisfies the protocol.
    """

    @property
    def size(self) -> int:
        """Number of operators ``m``."""
        ...

    @property
    def names(self) -> list[str]:
        """One human-readable name per operator."""
        ...

    def evaluate(self, h: Tensor) -> Tensor:
        """Operator values for configurations ``h`` of shape (..., n_units); returns (..., size)."""
        ...


class ProductBasis:
    """Operators that are products of unit values, ``O_α(h) = Π_{i∈α} h_i``.

    Parameters
    ----------
    n_units : int
        Width of the layer.
    subsets : sequence of sequence of int
        The non-empty subsets ``α`` (unit indices in ``0..n_units-1``), one per operator, in the
        order of the operator index. Duplicates are an error.

    Attributes
    ----------
    size : int
    names : list of str
        ``"h3"``, ``"h1*h5"``, …
    subsets : list of tuple of int
        Sorted unit indices of every operator.
    """

    def __init__(self, n_units: int, subsets: Sequence[Sequence[int]]) -> None:
        if n_units < 1:
            raise ValueError(f"n_units must be positive, got {n_units}")
        self.n_units = int(n_units)
        subs = [tuple(sorted(int(i) for i in s)) for s in subsets]
        for s in subs:
            if not s:
                raise ValueError("the empty product (a constant) is not an operator")
            if len(set(s)) != len(s):
                raise ValueError(f"subset {s} repeats a unit (h_i² = h_i for binary units)")
            if s[0] < 0 or s[-1] >= n_units:
                raise ValueError(f"subset {s} has a unit outside 0..{n_units - 1}")
        if len(set(subs)) != len(subs):
            raise ValueError("duplicate operators in the basis")
        if not subs:
            raise ValueError("an operator basis needs at least one operator")
        self.subsets: list[tuple[int, ...]] = subs
        self.size = len(subs)
        self.names = ["*".join(f"h{i}" for i in s) for s in subs]
        self._complete = self.size == 2**self.n_units - 1 and all(
            _mask(s) == k + 1 for k, s in enumerate(subs)
        )
        self._groups = self._build_groups()

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def singles(cls, n_units: int) -> ProductBasis:
        """The ``n_units`` single-unit operators ``h_i``."""
        return cls(n_units, [(i,) for i in range(n_units)])

    @classmethod
    def pairs(
        cls, n_units: int, pairs: Sequence[tuple[int, int]] | None = None, *,
        with_singles: bool = True,
    ) -> ProductBasis:
        """Singles (optional) plus pair products; all pairs unless ``pairs`` lists them."""
        if pairs is None:
            pairs = list(itertools.combinations(range(n_units), 2))
        singles = [(i,) for i in range(n_units)] if with_singles else []
        return cls(n_units, singles + [tuple(p) for p in pairs])

    @classmethod
    def top_pairs(
        cls, pilot: Tensor, k: int, *, with_singles: bool = True,
    ) -> ProductBasis:
        """Singles plus the ``k`` pairs with the largest ``|connected correlation|``.

        Parameters
        ----------
        pilot : Tensor of shape (..., n_samples, n_units)
            Pilot configurations; all leading dimensions are pooled.
        k : int
            Number of pairs kept (at most ``n(n−1)/2``).
        with_singles : bool, default True

        Notes
        -----
        Ties (e.g. pairs involving constant units, whose correlation is set to 0) are broken by
        the pair index, so the choice is deterministic.
        """
        n = pilot.shape[-1]
        n_pairs = n * (n - 1) // 2
        if not 1 <= k <= n_pairs:
            raise ValueError(f"pairs:{k} needs 1 ≤ k ≤ n(n−1)/2 = {n_pairs} for {n} units")
        corr = connected_correlation(pilot)
        iu = torch.triu_indices(n, n, offset=1)
        score = corr[iu[0], iu[1]].abs()
        order = torch.sort(score, descending=True, stable=True).indices[:k]
        chosen = sorted((int(iu[0, j]), int(iu[1, j])) for j in order)
        return cls.pairs(n, chosen, with_singles=with_singles)

    @classmethod
    def up_to_order(cls, n_units: int, order: int) -> ProductBasis:
        """All products of at most ``order`` distinct units (ordered by order, then lexically)."""
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        order = min(order, n_units)
        total = sum(comb(n_units, r) for r in range(1, order + 1))
        if total > 200_000:
            raise ValueError(f"order:{order} on {n_units} units gives {total} operators; too many")
        subs = [s for r in range(1, order + 1) for s in itertools.combinations(range(n_units), r)]
        return cls(n_units, subs)

    @classmethod
    def complete(cls, n_units: int) -> ProductBasis:
        """All ``2^n − 1`` products, operator ``α`` at index ``mask(α) − 1`` (module docstring)."""
        if n_units > MAX_FULL_UNITS:
            raise ValueError(
                f"the complete basis of {n_units} units has 2^{n_units} − 1 operators; "
                f"use it for at most {MAX_FULL_UNITS} units (or a truncated basis)"
            )
        return cls(n_units, complete_subsets(n_units))

    # -- evaluation --------------------------------------------------------------------------
    def _build_groups(self) -> list[tuple[Tensor, Tensor]]:
        """Operators grouped by order: (positions in the basis, unit index table (m_r, r))."""
        by_order: dict[int, list[int]] = {}
        for pos, s in enumerate(self.subsets):
            by_order.setdefault(len(s), []).append(pos)
        groups = []
        for r, positions in sorted(by_order.items()):
            idx = torch.tensor([self.subsets[p] for p in positions], dtype=torch.long)
            groups.append((torch.tensor(positions, dtype=torch.long), idx.reshape(-1, r)))
        return groups

    def evaluate(self, h: Tensor) -> Tensor:
        """Operator values.

        Parameters
        ----------
        h : Tensor of shape (..., n_units)
            Configurations (binary values; real values give the multilinear extension).

        Returns
        -------
        Tensor of shape (..., size), dtype of ``h`` (floating).
        """
        if h.shape[-1] != self.n_units:
            raise ValueError(f"expected configurations with {self.n_units} units, got "
                             f"shape {tuple(h.shape)}")
        if not h.is_floating_point():
            h = h.to(torch.float32)
        if self._complete:
            return complete_products(h)
        if len(self._groups) == 1 and self._groups[0][1].shape[1] == 1 and self._is_identity():
            return h
        parts = []
        for _positions, idx in self._groups:
            idx = idx.to(h.device)
            v = h[..., idx[:, 0]]
            for c in range(1, idx.shape[1]):
                v = v * h[..., idx[:, c]]
            parts.append(v)
        out = torch.cat(parts, dim=-1)
        perm = torch.cat([p for p, _ in self._groups])
        if torch.equal(perm, torch.arange(self.size)):
            return out
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(self.size)
        return out[..., inv.to(h.device)]

    def _is_identity(self) -> bool:
        return self.size == self.n_units and all(s == (i,) for i, s in enumerate(self.subsets))

    def orders(self) -> Tensor:
        """Order ``|α|`` of every operator; shape (size,)."""
        return torch.tensor([len(s) for s in self.subsets], dtype=torch.long)

    def __repr__(self) -> str:
        return f"ProductBasis(n_units={self.n_units}, size={self.size})"


class CallableOperators:
    """Operators given by a user function.

    Parameters
    ----------
    fn : callable
        Maps configurations (..., n_units) to operator values (..., size).
    size : int
    names : list of str, optional
        Defaults to ``O0, O1, …``.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], size: int,
                 names: list[str] | None = None) -> None:
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.fn = fn
        self.size = int(size)
        self.names = list(names) if names is not None else [f"O{i}" for i in range(size)]
        if len(self.names) != self.size:
            raise ValueError(f"{len(self.names)} names for {self.size} operators")

    def evaluate(self, h: Tensor) -> Tensor:
        out = self.fn(h)
        if out.shape[-1] != self.size or out.shape[:-1] != h.shape[:-1]:
            raise ValueError(f"operator function returned shape {tuple(out.shape)}, expected "
                             f"{(*h.shape[:-1], self.size)}")
        return out


# -- helpers ---------------------------------------------------------------------------------
def _mask(subset: Sequence[int]) -> int:
    return sum(1 << i for i in subset)


def complete_subsets(n_units: int) -> list[tuple[int, ...]]:
    """All non-empty subsets of ``range(n_units)`` in mask order (index = mask − 1)."""
    return [tuple(i for i in range(n_units) if (m >> i) & 1) for m in range(1, 2**n_units)]


def complete_products(h: Tensor) -> Tensor:
    """All ``2^n − 1`` products in mask order by recursive doubling.

    Parameters
    ----------
    h : Tensor of shape (..., n)

    Returns
    -------
    Tensor of shape (..., 2^n − 1)
    """
    out = torch.ones(*h.shape[:-1], 1, dtype=h.dtype, device=h.device)
    for i in range(h.shape[-1]):
        out = torch.cat([out, out * h[..., i : i + 1]], dim=-1)
    return out[..., 1:]


def connected_correlation(h: Tensor) -> Tensor:
    """Connected correlation matrix of unit values pooled over leading dimensions.

    Parameters
    ----------
    h : Tensor of shape (..., n_samples, n_units)

    Returns
    -------
    Tensor of shape (n_units, n_units), float64; rows/columns of constant units are 0.
    """
    x = h.reshape(-1, h.shape[-1]).to(torch.float64)
    x = x - x.mean(0)
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    sd = torch.diagonal(cov).clamp_min(0).sqrt()
    ok = sd > 1e-12
    denom = torch.where(ok, sd, torch.ones_like(sd))
    corr = cov / denom[:, None] / denom[None, :]
    return corr * (ok[:, None] & ok[None, :])


def parse_basis(spec: str, n_units: int, pilot: Tensor | None = None) -> ProductBasis:
    """Build a :class:`ProductBasis` from a spec string (see the module docstring).

    Parameters
    ----------
    spec : str
        ``singles``, ``pairs``, ``pairs:K``, ``order:M`` or ``full``.
    n_units : int
    pilot : Tensor of shape (..., n_samples, n_units), optional
        Pilot configurations, required by ``pairs:K`` when ``K`` is below the number of pairs.

    Raises
    ------
    ValueError
        For an unknown spec, a bad number or a missing pilot.
    """
    s = spec.strip().lower()
    name, _, arg = s.partition(":")
    if name == "singles" and not arg:
        return ProductBasis.singles(n_units)
    if name == "full" and not arg:
        return ProductBasis.complete(n_units)
    if name in ("pairs", "order") and arg:
        try:
            num = int(arg)
        except ValueError:
            raise ValueError(f"basis spec {spec!r}: {arg!r} is not an integer") from None
        if name == "order":
            return ProductBasis.up_to_order(n_units, num)
        n_pairs = n_units * (n_units - 1) // 2
        if num >= n_pairs:
            return ProductBasis.pairs(n_units)
        if pilot is None:
            raise ValueError(f"basis spec {spec!r} selects pairs by correlation and needs a "
                             "pilot sample of the layer")
        if pilot.shape[-1] != n_units:
            raise ValueError(f"pilot has {pilot.shape[-1]} units, layer has {n_units}")
        return ProductBasis.top_pairs(pilot, num)
    if name == "pairs" and not arg:
        return ProductBasis.pairs(n_units)
    raise ValueError(f"unknown operator basis {spec!r}; use singles, pairs, pairs:K, order:M "
                     "or full")


def basis_needs_pilot(spec: str, n_units: int) -> bool:
    """Whether :func:`parse_basis` needs a pilot sample for ``spec`` on ``n_units`` units."""
    name, _, arg = spec.strip().lower().partition(":")
    return name == "pairs" and arg.isdigit() and int(arg) < n_units * (n_units - 1) // 2
