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

Finite-sample bias: plug-in canonical correlations are biased upwards (spurious correlations
among many operators, roughly ``m/S``). The reported Fisher-normalised values are jackknife
bias-corrected, ``s = n θ − (n−1) θ̄`` (``θ`` the plug-in value, ``θ̄`` the mean of the ``n``
leave-one-block-out replicates), which removes the ``O(1/S)`` bias; the plug-in values are kept
as ``fisher_raw``. The corrected values are estimates, not canonical correlations of one
covariance: they may exceed 1 or fall below 0 within their errors.

Counts of relevant directions (``criterion`` fixed in advance, independent of ``S``):

- ``fisher~1``: "information kept", ``s ≥ 1 − δ`` (``δ = kept_delta``, default 0.05) on the
  bias-corrected values;
- ``fisher>thr``: ``s > thr`` on the bias-corrected values;
- ``eig>1``: ``|Λ| > 1`` (shared operator sets only).

Each count comes with its jackknife standard error and a range: ``lo`` counts values that pass
the criterion by more than ``n_sigma`` errors, ``hi`` those that do not fail it by more than
``n_sigma`` errors (same ``n_sigma`` on both sides). As ``S`` grows the range shrinks onto the
count of the true values; it does not drift with ``S`` as a "within ``kσ`` of 1" rule would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from rgaudit.rg.moments import jackknife_stderr

if TYPE_CHECKING:
    from rgaudit.rg.mcrg import LayerPair

Tensor = torch.Tensor


#: Eigenvalues of a covariance below this fraction of its largest are floored in ``C^{±1/2}``.
PSD_REL_FLOOR = 1e-14


@dataclass(frozen=True)
class PowerInfo:
    """Diagnostics of :func:`psd_power`.

    Attributes
    ----------
    cond : Tensor of shape (...,)
        ``λ_max / λ_min`` of the matrix before flooring (``inf`` when ``λ_min ≤ 0``).
    n_floored : Tensor of shape (...,), int
        Eigenvalues raised to the floor ``rel_floor · λ_max``. Non-zero means ``C^{-1/2}`` acts
        as a regularised pseudo-inverse there (directions of (near-)zero variance).
    """

    cond: Tensor
    n_floored: Tensor


def psd_power(c: Tensor, power: float,
              rel_floor: float = PSD_REL_FLOOR) -> tuple[Tensor, PowerInfo]:
    """``C^power`` for symmetric PSD ``C`` (..., m, m), eigenvalues floored at rel_floor·max.

    Returns the power and a :class:`PowerInfo` (condition number, number of floored
    eigenvalues), so that a floor (a pseudo-inverse for negative powers) is never silent.
    """
    lam, v = torch.linalg.eigh(c)
    top = lam[..., -1:].clamp_min(1e-300)
    floor = top * rel_floor
    low = lam[..., 0]
    cond = torch.where(low > 0, top[..., 0] / low.clamp_min(1e-300),
                       torch.full_like(low, float("inf")))
    n_floored = (lam < floor).sum(-1)
    lam = lam.clamp_min(0).maximum(floor)
    return (v * lam.pow(power).unsqueeze(-2)) @ v.transpose(-1, -2), PowerInfo(cond, n_floored)


def fisher_singular_values(t: Tensor, c_next: Tensor, c_prev: Tensor,
                           kept_next: Tensor | None = None,
                           kept_prev: Tensor | None = None, *,
                           return_info: bool = False) -> Any:
    """Singular values of ``C_next^{1/2} T C_prev^{-1/2}`` on the kept operators.

    Parameters
    ----------
    t : Tensor of shape (..., m_next, m_prev)
    c_next : Tensor of shape (..., m_next, m_next)
    c_prev : Tensor of shape (..., m_prev, m_prev)
    kept_next, kept_prev : Tensor of int, optional
        Operators to keep (same for all leading dimensions); default all.

    return_info : bool, default False
        Also return the :class:`PowerInfo` of ``C_next^{1/2}`` and ``C_prev^{-1/2}``.

    Returns
    -------
    Tensor of shape (..., min(k_next, k_prev)), descending
        (and ``(info_next, info_prev)`` when ``return_info``).

    Notes
    -----
    These are plug-in canonical correlations of one covariance: in ``[0, 1]`` up to rounding,
    biased upwards at finite samples (see :func:`pair_spectra` for the bias-corrected values).
    Eigenvalues of ``C_prev`` below ``PSD_REL_FLOOR`` × the largest are floored (the inverse
    square root is then a pseudo-inverse on those directions); ``return_info`` reports it.
    """
    if kept_next is not None:
        t = t[..., kept_next, :]
        c_next = c_next[..., kept_next, :][..., :, kept_next]
    if kept_prev is not None:
        t = t[..., :, kept_prev]
        c_prev = c_prev[..., kept_prev, :][..., :, kept_prev]
    half_next, info_next = psd_power(c_next, 0.5)
    ihalf_prev, info_prev = psd_power(c_prev, -0.5)
    sv = torch.linalg.svdvals(half_next @ t @ ihalf_prev)
    return (sv, (info_next, info_prev)) if return_info else sv


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


def _frozen_spectrum(index: int, b: int, sv: Tensor, sv_err: Tensor, nrep: int,
                     threshold: float, kept_delta: float, n_sigma: float,
                     shared_basis: bool) -> PairSpectrum:
    """Spectrum of a frozen layer (``LayerPair.frozen``: no operator fluctuated, ``T = 0``):
    no Fisher-normalised value exists; every count is 0 and a flag says why."""
    z = torch.zeros(0, dtype=torch.float64)
    zr = torch.zeros(nrep, 0, dtype=torch.float64)
    why = "frozen layer: no operator fluctuated on the samples"
    counts = {"fisher~1": _count(z, z, zr, 1.0 - kept_delta, n_sigma, why),
              f"fisher>{threshold}": _count(z, z, zr, threshold, n_sigma, why)}
    if shared_basis:
        counts["eig>1"] = _count(z, z, zr, 1.0, n_sigma, why)
    return PairSpectrum(index, b, sv, sv_err, z, z, None, None, None, counts, fisher_raw=z,
                        cond_next=float("nan"), cond_prev=float("nan"), floored_next=0,
                        floored_prev=0, flags=[f"{why}: T = 0, no spectrum (more samples or "
                                               "another input)"])


def _count(values: Tensor, errors: Tensor, reps: Tensor, above: float, n_sigma: float,
           criterion: str, *, inclusive: bool = False) -> Count:
    """Count ``values > above`` (``≥`` when ``inclusive``); ``lo``/``hi`` shift the values by
    ``∓ n_sigma`` errors; the error is the jackknife error of the count over ``reps``."""

    def passes(v: Tensor) -> Tensor:
        return v >= above if inclusive else v > above

    full = int(passes(values).sum())
    per_rep = passes(reps).sum(-1).to(torch.float64)
    err = float(jackknife_stderr(per_rep)) if reps.shape[0] > 1 else 0.0
    lo = int(passes(values - n_sigma * errors).sum())
    hi = int(passes(values + n_sigma * errors).sum())
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
        Fisher-normalised singular values, jackknife bias-corrected (the reported values; rank
        order of the plug-in values), and their jackknife errors.
    eig : complex Tensor of shape (m,) or None
        Eigenvalues of ``T`` by decreasing ``|Λ|`` (shared operator sets only).
    eig_abs_err : Tensor of shape (m,) or None
        Jackknife error of ``|Λ|`` (paired by rank).
    eigvecs : complex Tensor of shape (m, m) or None
        Columns are the eigenvectors ``φ^(μ)``.
    counts : dict of str to Count
        ``eig>1`` (shared sets), ``fisher~1`` (bias-corrected ``s ≥ 1 − δ``) and ``fisher>thr``.
    fisher_raw : Tensor of shape (k,)
        Plug-in (not bias-corrected) values: canonical correlations in ``[0, 1]``, biased up.
    cond_next, cond_prev : float
        Condition numbers of the kept blocks of ``C_next`` and ``C_prev``.
    floored_next, floored_prev : int
        Eigenvalues of those blocks floored in ``C^{±1/2}`` (``> 0``: ``C_prev^{-1/2}`` is a
        pseudo-inverse on (near-)constant directions; flagged in ``flags``).
    flags : list of str
        Human-readable warnings (floors applied).
    n_unestimated : int
        Unestimated (collapsed) entries of ``T`` for this batch element
        (:func:`rgaudit.rg.solve.unestimated_entries`). When positive, every value here rests
        on entries the samples do not determine: their errors are too small, by an unknown
        amount (``unestimated_warning`` says so in words).
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
    fisher_raw: Tensor | None = None
    cond_next: float = float("nan")
    cond_prev: float = float("nan")
    floored_next: int = 0
    floored_prev: int = 0
    flags: list[str] = field(default_factory=list)
    n_unestimated: int = 0

    @property
    def unestimated_warning(self) -> str | None:
        """One sentence when the spectrum rests on unestimated entries of ``T``, else None."""
        if not self.n_unestimated:
            return None
        return (f"T has {self.n_unestimated} unestimated entr"
                f"{'y' if self.n_unestimated == 1 else 'ies'} (operator values never seen with "
                "some states of the other layer): these values and errors rest on them; use more "
                "samples or a smaller basis")

    def to_dict(self, top: int | None = 20) -> dict[str, Any]:
        """Plain data; keeps the ``top`` largest values of each spectrum (all when None)."""
        sl = slice(None) if top is None else slice(0, top)
        out: dict[str, Any] = {
            "index": self.index, "batch_index": self.batch_index,
            "singular": self.singular[sl], "singular_err": self.singular_err[sl],
            "fisher": self.fisher[sl], "fisher_err": self.fisher_err[sl],
            "fisher_raw": None if self.fisher_raw is None else self.fisher_raw[sl],
            "counts": {k: c.to_dict() for k, c in self.counts.items()},
            "cond_next": self.cond_next if math.isfinite(self.cond_next) else None,
            "cond_prev": self.cond_prev if math.isfinite(self.cond_prev) else None,
            "floored_next": self.floored_next, "floored_prev": self.floored_prev,
            "flags": list(self.flags),
            "n_unestimated": self.n_unestimated,
            "unestimated_warning": self.unestimated_warning,
        }
        if self.eig is not None and self.eig_abs_err is not None:  # set together
            out["eig_real"] = self.eig.real[sl]
            out["eig_imag"] = self.eig.imag[sl]
            out["eig_abs_err"] = self.eig_abs_err[sl]
        return out


def pair_spectra(pair: LayerPair, *, shared_basis: bool = False, threshold: float = 0.9,
                 n_sigma: float = 2.0, kept_delta: float = 0.05) -> list[PairSpectrum]:
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
        Count ``fisher>thr`` of bias-corrected values above it.
    n_sigma : float, default 2.0
        Width (in jackknife errors) of the ``lo``–``hi`` range of every count.
    kept_delta : float, default 0.05
        ``fisher~1`` counts bias-corrected values ``s ≥ 1 − kept_delta`` ("information kept").

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
    unest = pair.unestimated_counts() if hasattr(pair, "unestimated_counts") else [0] * nb
    out = []
    for b in range(nb):
        kn, kp = pair.kept_next[b], pair.kept_prev[b]
        sv = torch.linalg.svdvals(t[b])
        sv_r = torch.linalg.svdvals(t_r[:, b])
        if kn.numel() == 0 or kp.numel() == 0:
            out.append(_frozen_spectrum(pair.index, b, sv, jackknife_stderr(sv_r), nrep,
                                        threshold, kept_delta, n_sigma, shared_basis))
            continue
        fs_raw, (inf_n, inf_p) = fisher_singular_values(t[b], cn[b], cp[b], kn, kp,
                                                         return_info=True)
        fs_r = fisher_singular_values(t_r[:, b], cn_r[:, b], cp_r[:, b], kn, kp)
        fs_err = jackknife_stderr(fs_r)
        # jackknife bias correction n θ − (n−1) θ̄; replicates shifted onto the corrected scale
        # (same spread) for the errors of the counts
        shift = (nrep - 1) * (fs_raw - fs_r.mean(0)) if nrep > 1 else torch.zeros_like(fs_raw)
        fs = fs_raw + shift
        fs_rc = fs_r + shift
        floor_kept = 1.0 - kept_delta
        counts = {
            "fisher~1": _count(fs, fs_err, fs_rc, floor_kept, n_sigma,
                               f"bias-corrected s ≥ 1 − {kept_delta:g} (lo/hi: ∓{n_sigma:g}σ)",
                               inclusive=True),
            f"fisher>{threshold}": _count(fs, fs_err, fs_rc, threshold, n_sigma,
                                          f"bias-corrected s > {threshold} "
                                          f"(lo/hi: ∓{n_sigma:g}σ)"),
        }
        flags = []
        fl_n, fl_p = int(inf_n.n_floored), int(inf_p.n_floored)
        if fl_p:
            flags.append(f"C_prev (cond {float(inf_p.cond):.3g}): {fl_p} eigenvalue(s) below "
                         f"{PSD_REL_FLOOR:g}·max floored; C_prev^(-1/2) is a pseudo-inverse there")
        if fl_n:
            flags.append(f"C_next (cond {float(inf_n.cond):.3g}): {fl_n} eigenvalue(s) below "
                         f"{PSD_REL_FLOOR:g}·max floored in C_next^(1/2)")
        eig = eig_err = vecs = None
        if shared_basis and mn == mp:
            eig, vecs = eigen_sorted(t[b])
            eig_r, _ = eigen_sorted(t_r[:, b])
            eig_err = jackknife_stderr(eig_r.abs())
            counts["eig>1"] = _count(eig.abs(), eig_err, eig_r.abs(), 1.0, n_sigma, "|Λ| > 1")
        out.append(PairSpectrum(pair.index, b, sv, jackknife_stderr(sv_r), fs, fs_err,
                                eig, eig_err, vecs, counts, fisher_raw=fs_raw,
                                cond_next=float(inf_n.cond), cond_prev=float(inf_p.cond),
                                floored_next=fl_n, floored_prev=fl_p, flags=flags,
                                n_unestimated=unest[b]))
    return out


def result_spectra(result: Any, **kwargs: Any) -> dict[int, list[PairSpectrum]]:
    """:func:`pair_spectra` for every computed pair of an :class:`~rgaudit.rg.mcrg.MCRGResult`."""
    return {p.index: pair_spectra(p, **kwargs) for p in result.computed()}
