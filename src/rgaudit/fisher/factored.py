"""Chain FIMs kept as factors ``F = Jᵀ C J``: spectra through an ``r × r`` matrix.

The RG-chain FIM (:mod:`rgaudit.fisher.chain`) of one input is ``F = Jᵀ C J`` with ``J`` of
shape ``(r, d)`` (``r = m_N`` operators at the output layer, ``d`` inputs) and ``C`` the
``r × r`` output covariance: rank ≤ r. At MNIST scale (d = 784, r ≤ 55) a dense ``d × d``
matrix per jackknife replicate costs ``17·d²`` float64 per input (84 MB) and ``17·d³`` eigenvalue
work; the factors cost ``17·r·d``.

The spectrum is exact without forming ``F``: with the reduced QR factorisation ``Jᵀ = Q R``
(``Q`` of shape ``(d, r)`` with orthonormal columns, ``R`` of shape ``(r, r)``),

    F = Q (R C Rᵀ) Qᵀ,

so the eigenvalues of ``F`` are those of the ``r × r`` matrix ``M = R C Rᵀ`` together with
``d − r`` zeros, and its eigenvectors are ``Q u`` for the eigenvectors ``u`` of ``M``. The dense
path (``eigvalsh(sym(Jᵀ C J))``) returns the same values up to rounding: its ``d − r`` "zeros" are
rounding noise of size ``ε·‖F‖`` (``tests/test_fisher_factored.py`` checks 1e-10).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor

__all__ = ["FactoredFIM", "factored_eigvalsh", "factored_dense"]


def _sym(a: Tensor) -> Tensor:
    return 0.5 * (a + a.transpose(-1, -2))


def factored_dense(J: Tensor, C: Tensor) -> Tensor:
    """``sym(Jᵀ C J)`` as a dense matrix, the value :func:`rgaudit.fisher.chain.chain_fim` returns.

    Parameters
    ----------
    J : Tensor of shape (*batch, r, d)
    C : Tensor of shape (*batch, r, r)

    Returns
    -------
    Tensor of shape (*batch, d, d), float64
    """
    J = J.to(torch.float64)
    F = J.transpose(-1, -2) @ C.to(device=J.device, dtype=torch.float64) @ J
    return _sym(F)


def factored_eigvalsh(J: Tensor, C: Tensor) -> Tensor:
    """All ``d`` eigenvalues of ``sym(Jᵀ C J)``, **descending**, without forming the matrix.

    Parameters
    ----------
    J : Tensor of shape (*batch, r, d)
    C : Tensor of shape (*batch, r, r)
        Any real matrix; its symmetric part is used (as the dense path's symmetrisation does).

    Returns
    -------
    Tensor of shape (*batch, d), float64
        The ``r`` eigenvalues of ``M = R sym(C) Rᵀ`` (``Jᵀ = Q R``) and ``d − r`` exact zeros,
        sorted descending. When ``r ≥ d`` the dense matrix is decomposed instead (no saving).
    """
    J = J.to(torch.float64)
    C = C.to(device=J.device, dtype=torch.float64)
    r, d = J.shape[-2], J.shape[-1]
    if r >= d:
        return torch.linalg.eigvalsh(factored_dense(J, C)).flip(-1)
    _, R = torch.linalg.qr(J.transpose(-1, -2), mode="r")         # (*batch, r, r)
    M = _sym(R @ _sym(C) @ R.transpose(-1, -2))
    w = torch.linalg.eigvalsh(M)
    zeros = torch.zeros(*w.shape[:-1], d - r, dtype=w.dtype, device=w.device)
    return torch.cat([w, zeros], dim=-1).sort(dim=-1, descending=True).values


@dataclass(frozen=True)
class FactoredFIM:
    """Jackknife replicates of a chain FIM as factors: replicate ``b`` is ``sym(J_bᵀ C_b J_b)``.

    Attributes
    ----------
    J : Tensor of shape (n_rep, *batch, r, d)
        Chain Jacobians ``T^(N)_b ⋯ T^(2)_b ∂g^(1)/∂x`` (float64).
    C : Tensor of shape (n_rep, *batch, r, r)
        Output-layer covariances ``C^(N)_b`` (float64).
    """

    J: Tensor
    C: Tensor

    @property
    def n_replicates(self) -> int:
        return int(self.J.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the factors."""
        return int(self.J.numel() * self.J.element_size() + self.C.numel() * self.C.element_size())

    def eigvalsh(self) -> Tensor:
        """Descending eigenvalues of every replicate, shape (n_rep, *batch, d)."""
        return factored_eigvalsh(self.J, self.C)

    def dense(self, index: int | slice | None = None) -> Tensor:
        """Dense replicates (all, or ``index`` along the replicate axis): (…, d, d) float64.

        For tests and small ``d``; the audit never calls it.
        """
        if index is None:
            return factored_dense(self.J, self.C)
        return factored_dense(self.J[index], self.C[index])

    def entry_stderr(self) -> Tensor:
        """Entrywise jackknife standard error of ``F``, shape (*batch, d, d).

        The formula of :func:`rgaudit.rg.moments.jackknife_stderr` (two passes over the
        replicates, one dense replicate at a time: memory ``3·d²`` per batch element).
        """
        n = self.n_replicates
        mean = self.dense(0)
        for b in range(1, n):
            mean = mean + self.dense(b)
        mean = mean / n
        ss = torch.zeros_like(mean)
        for b in range(n):
            ss += (self.dense(b) - mean) ** 2
        return ((n - 1) / n * ss).sqrt()
