"""Spectra of stability matrices with jackknife errors (eq. 15–17, DESIGN.md fact 3).

For each pair of layers ``k → k+1``:

- raw eigenvalues ``Λ_μ`` and right eigenvectors ``φ^(μ)`` of ``T`` (eq. 15), only where both
  layers carry one operator set (weight-tied networks, lattice blockings): "relevant if
  ``|Λ| > 1``";
- singular values of ``T`` (basis dependent, for reference);
- Fisher-normalised singular values ``s_μ = svd(C_{k+1}^{1/2} T C_k^{-1/2})`` on the kept (non-
  constant) operators. With ``T = C_{k+1}⁻¹ D`` these are the canonical correlations between the
  operators of the two layers, so ``0 ≤ s ≤ 1`` (data-processing inequality); ``s ≈ 1`` means a
  coupling direction keeps its Fisher information through the layer (relevant/marginal),
  ``s < 1`` that it is lost (irrelevant). They do not depend on how units are labelled.

Errors: every quantity is recomputed on the jackknife replicates of ``T``, ``C_next``, ``C_prev``
and paired by rank (sorted by magnitude), then :func:`~rgaudit.rg.moments.jackknife_stderr`.
Counts of relevant directions come with a range: ``lo`` counts values above the criterion by more
than ``n_sigma`` errors, ``hi`` those not below it by more than ``n_sigma`` errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from rgaudit.rg.moments import jackknife_stderr

Tensor = torch.Tensor


def _psd_power(c: Tensor, power: float, rel_floor: float = 1e-14) -> Tensor:
    """``C^power`` for symmetric PSD ``C`` (..., m, m), eigenvalues floored at rel_floor·max."""
    lam, v = torch.linalg.eigh(c)
    floor = lam[..., -1:].clamp_min(1e-300) * rel_floor
    lam = lam.clamp_min(0).maximum(floor)
    return (v * lam.pow(power).unsqueeze(-2)) @ v.transpose(-1, -2)


def fisher_singular_values(t: Tensor, c_next: Tensor, c_prev: Tensor,
                           kept_next: Tensor | None = None,
                           kept_prev: Tensor | None = None) -> Tensor:
    """Singular values of ``C_next^{1/2} T C_prev^{-1/2}`` on the kept operators.

    Parameters
    ----------
    t : Tensor of shape (..., m_next, m_prev)
    c_next : Tensor of shape (..., m_next, m_next)
    c_prev : Tensor of shape (..., m_prev, m_prev)
    kept_next, kept_prev : Tensor of int, optional
        Operators to keep (same for all leading dimensions); default all.

    Returns
    -------
    Tensor of shape (..., min(k_next, k_prev)), descending.
    """
    if kept_next is not None:
        t = t[..., kept_next, :]
        c_next = c_next[..., kept_next, :][..., :, kept_next]
    if kept_prev is not None:
        t = t[..., :, kept_prev]
        c_prev = c_prev[..., kept_prev, :][..., :, kept_prev]
    m = _psd_power(c_next, 0.5) @ t @ _psd_power(c_prev, -0.5)
    return torch.linalg.svdvals(m)


def eigen_sorted(t: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues and right eigenvectors of square ``T`` sorted by decreasing ``|Λ|``.

    Returns
    -------
    values : complex Tensor of shape (..., m)
    vectors : complex Tensor of shape (..., m, m)
        Column ``μ`` is ``φ^(μ)`` (eq. 15).
    """
    vals, vecs = torch.linalg.eig(t)
    order = torch.argsort(vals.abs(), dim=-1, descending=True, stable=True)
    vals = torch.gather(vals, -1, order)
    vecs = torch.gather(vecs, -1, order.unsqueeze(-2).expand_as(vecs))
    return vals, vecs


@dataclass
class Count:
    """A count of relevant directions with its uncertainty.

    Attributes
    ----------
    value : int
        Count on the full sample.
    stderr : float
        Jackknife standard error of the count.
    lo, hi : int
        Range from values within ``n_sigma`` errors of the criterion.
    criterion : str
    """

    value: int
    stderr: float
    lo: int
    hi: int
    criterion: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "stderr": self.stderr, "lo": self.lo, "hi": self.hi,
                "criterion": self.criterion}


def _count(values: Tensor, errors: Tensor, reps: Tensor, above: float, n_sigma: float,
           criterion: str) -> Count:
    full = int((values > above).sum())
    per_rep = (reps > above).sum(-1).to(torch.float64)
    err = float(jackknife_stderr(per_rep)) if reps.shape[0] > 1 else 0.0
    lo = int((values - n_sigma * errors > above).sum())
    hi = int((values + n_sigma * errors >= above).sum())
    return Count(full, err, lo, hi, criterion)


@dataclass
class PairSpectrum:
    """Spectra of one stability matrix (one batch element).

    Attributes
    ----------
    index : int
        Pair index ``i`` (positions ``i → i+1``).
    batch_index : int
        Flattened batch element.
    singular, singular_err : Tensor of shape (min(m_next, m_prev),)
        Singular values of ``T`` and errors.
    fisher, fisher_err : Tensor of shape (k,)
        Fisher-normalised singular values (descending) and errors.
    eig : complex Tensor of shape (m,) or None
        Eigenvalues of ``T`` by decreasing ``|Λ|`` (shared operator sets only).
    eig_abs_err : Tensor of shape (m,) or None
        Jackknife error of ``|Λ|`` (paired by rank).
    eigvecs : complex Tensor of shape (m, m) or None
        Columns are the eigenvectors ``φ^(μ)``.
    counts : dict of str to Count
        ``eig>1`` (shared sets), ``fisher~1`` (s within ``n_sigma`` errors of 1) and
        ``fisher>thr``.
    """

    index: int
    batch_index: int
    singular: Tensor
    singular_err: Tensor
    fisher: Tensor
    fisher_err: Tensor
    eig: Tensor | None
    eig_abs_err: Tensor | None
    eigvecs: Tensor | None
    counts: dict[str, Count] = field(default_factory=dict)

    def to_dict(self, top: int | None = 20) -> dict[str, Any]:
        """Plain data; keeps the ``top`` largest values of each spectrum (all when None)."""
        sl = slice(None) if top is None else slice(0, top)
        out: dict[str, Any] = {
            "index": self.index, "batch_index": self.batch_index,
            "singular": self.singular[sl], "singular_err": self.singular_err[sl],
            "fisher": self.fisher[sl], "fisher_err": self.fisher_err[sl],
            "counts": {k: c.to_dict() for k, c in self.counts.items()},
        }
        if self.eig is not None:
            out["eig_real"] = self.eig.real[sl]
            out["eig_imag"] = self.eig.imag[sl]
            out["eig_abs_err"] = self.eig_abs_err[sl]
        return out


def pair_spectra(pair: Any, *, shared_basis: bool = False, threshold: float = 0.9,
                 n_sigma: float = 2.0) -> list[PairSpectrum]:
    """Spectra of every batch element of a :class:`~rgaudit.rg.mcrg.LayerPair`.

    Parameters
    ----------
    pair : LayerPair
    shared_basis : bool, default False
        Whether both layers carry ONE operator set, so that raw eigenvalues of ``T`` are
        meaningful (DESIGN.md fact 3): pass ``net.tied`` for a network, ``True`` for a lattice
        blocking. Matching operator *names* are not evidence: a ``ProductBasis`` names its
        operators ``h0, h1, …`` on every layer, whether or not the units are the same.
    threshold : float, default 0.9
        Fisher-normalised values above it count as "information kept".
    n_sigma : float, default 2.0
        Width of the uncertainty range of the counts.

    Returns
    -------
    list of PairSpectrum, one per flattened batch element.
    """
    mn, mp = pair.T.shape[-2:]
    nb = math.prod(pair.batch_shape)
    nrep = pair.T_replicates.shape[0]
    t = pair.T.reshape(nb, mn, mp)
    t_r = pair.T_replicates.reshape(nrep, nb, mn, mp)
    cn = pair.C_next.reshape(nb, mn, mn)
    cp = pair.C_prev.reshape(nb, mp, mp)
    cn_r = pair.C_next_replicates.reshape(nrep, nb, mn, mn)
    cp_r = pair.C_prev_replicates.reshape(nrep, nb, mp, mp)
    out = []
    for b in range(nb):
        kn, kp = pair.kept_next[b], pair.kept_prev[b]
        sv = torch.linalg.svdvals(t[b])
        sv_r = torch.linalg.svdvals(t_r[:, b])
        fs = fisher_singular_values(t[b], cn[b], cp[b], kn, kp)
        fs_r = fisher_singular_values(t_r[:, b], cn_r[:, b], cp_r[:, b], kn, kp)
        fs_err = jackknife_stderr(fs_r)
        rep_within = (fs_r + n_sigma * fs_err >= 1.0).sum(-1).to(torch.float64)
        counts = {
            "fisher~1": Count(
                value=int((fs + n_sigma * fs_err >= 1.0).sum()),
                stderr=float(jackknife_stderr(rep_within)),
                lo=int((fs + fs_err >= 1.0).sum()), hi=int((fs + 3.0 * fs_err >= 1.0).sum()),
                criterion=f"s + {n_sigma}σ ≥ 1 (lo: s + 1σ ≥ 1, hi: s + 3σ ≥ 1)"),
            f"fisher>{threshold}": _count(fs, fs_err, fs_r, threshold, n_sigma,
                                          f"s > {threshold}"),
        }
        eig = eig_err = vecs = None
        if shared_basis and mn == mp:
            eig, vecs = eigen_sorted(t[b])
            eig_r, _ = eigen_sorted(t_r[:, b])
            eig_err = jackknife_stderr(eig_r.abs())
            counts["eig>1"] = _count(eig.abs(), eig_err, eig_r.abs(), 1.0, n_sigma, "|Λ| > 1")
        out.append(PairSpectrum(pair.index, b, sv, jackknife_stderr(sv_r), fs, fs_err,
                                eig, eig_err, vecs, counts))
    return out


def result_spectra(result: Any, **kwargs: Any) -> dict[int, list[PairSpectrum]]:
    """:func:`pair_spectra` for every computed pair of an :class:`~rgaudit.rg.mcrg.MCRGResult`."""
    return {p.index: pair_spectra(p, **kwargs) for p in result.computed()}
