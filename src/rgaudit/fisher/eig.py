"""Top eigenpairs of FIMs and spectrum summaries (stiff versus sloppy, on a log scale)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rgaudit.rg.moments import jackknife_stderr

Tensor = torch.Tensor


@dataclass(frozen=True)
class EigenPairs:
    """Leading eigenpairs of symmetric matrices.

    Attributes
    ----------
    values : Tensor of shape (*batch, k)
        Descending.
    vectors : Tensor of shape (*batch, d, k)
        Unit columns; the sign is fixed so that the largest-magnitude entry is positive
        (attacks choose their own sign).
    stderr : Tensor of shape (*batch, k) or None
        Jackknife standard error of the eigenvalues, when replicates were given.
    """

    values: Tensor
    vectors: Tensor
    stderr: Tensor | None = None


def _fix_sign(v: Tensor) -> Tensor:
    idx = v.abs().argmax(dim=-2, keepdim=True)
    s = torch.gather(v, -2, idx).sign()
    s = torch.where(s == 0, torch.ones_like(s), s)
    return v * s


def top_eigenpairs(F: Tensor, k: int = 1, *, replicates: Tensor | None = None) -> EigenPairs:
    """The ``k`` largest eigenpairs of symmetric ``F``.

    Parameters
    ----------
    F : Tensor of shape (*batch, d, d)
    k : int
    replicates : Tensor of shape (n_blocks, *batch, d, d), optional
        Jackknife replicates of ``F``; gives eigenvalue standard errors.

    Returns
    -------
    EigenPairs
    """
    if F.shape[-1] != F.shape[-2]:
        raise ValueError(f"F must be square, got {tuple(F.shape)}")
    Fs = 0.5 * (F + F.transpose(-1, -2)).to(torch.float64)
    w, V = torch.linalg.eigh(Fs)
    rep_w = None
    if replicates is not None:
        R = 0.5 * (replicates + replicates.transpose(-1, -2)).to(torch.float64)
        rep_w = torch.linalg.eigvalsh(R).flip(-1)
    return eigenpairs_from_eigh(w, V, k, replicate_eigenvalues=rep_w)


def eigenpairs_from_eigh(w: Tensor, V: Tensor, k: int = 1, *,
                         replicate_eigenvalues: Tensor | None = None) -> EigenPairs:
    """:func:`top_eigenpairs` from an eigendecomposition already computed.

    Parameters
    ----------
    w : Tensor of shape (*batch, d)
        Eigenvalues, ascending (as ``torch.linalg.eigh`` returns them).
    V : Tensor of shape (*batch, d, d)
        Eigenvectors in the columns, in the order of ``w``.
    k : int
    replicate_eigenvalues : Tensor of shape (n_blocks, *batch, d), optional
        **Descending** eigenvalues of the jackknife replicates (e.g. from
        :meth:`rgaudit.fisher.chain.ChainFIM.replicate_eigvalsh`); gives the standard errors.

    Returns
    -------
    EigenPairs
    """
    k = min(int(k), w.shape[-1])
    vals = w.flip(-1)[..., :k]
    vecs = _fix_sign(V.flip(-1)[..., :k])
    se = None
    if replicate_eigenvalues is not None:
        se = jackknife_stderr(replicate_eigenvalues[..., :k])
    return EigenPairs(vals, vecs, se)


def abs_cosine(u: Tensor, v: Tensor) -> Tensor:
    """``|cos ∠(u, v)|`` along the last axis (eigenvectors have no sign); shape (*batch,)."""
    u = u.to(torch.float64)
    v = v.to(torch.float64)
    num = (u * v).sum(-1).abs()
    return num / (u.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-300)


@dataclass(frozen=True)
class SpectrumSummary:
    """Log-scale summary of one FIM spectrum, counting only eigenvalues above the noise.

    A Monte Carlo FIM need not be positive semi-definite: the direct estimator
    (:mod:`rgaudit.fisher.direct`) is an unbiased U-statistic and is indefinite at finite
    sample size. Its most negative eigenvalue measures the noise: ``noise_floor = |λ_min|``
    (0 when ``λ_min ≥ 0``). An eigenvalue is *significant* when it exceeds the noise floor by
    ``n_sigma`` jackknife standard errors (when replicates are given) and is above the
    numerical floor ``floor·λ_max``. Stiff counts, decades and the effective rank use only the
    significant eigenvalues; nothing is clamped.

    Attributes
    ----------
    eigenvalues : list of float
        Descending, as computed (negative ones kept).
    stderr : list of float or None
        Jackknife standard error of each (sorted) eigenvalue.
    log10 : list of float
        ``log10(λ / λ_max)`` for significant eigenvalues, ``-inf`` for the others.
    noise_floor : float
        ``max(0, −λ_min)``.
    n_significant : int
    n_stiff : int
        Significant eigenvalues within ``stiff_decades`` decades of the largest.
    decades : float
        ``log10(λ_max / λ_min_significant)``.
    effective_rank : float
        ``exp`` of the entropy of ``λ / Σλ`` over the significant eigenvalues.
    n_sigma : float
        The significance threshold used (in jackknife σ above the noise floor).
    """

    eigenvalues: list[float]
    log10: list[float]
    n_stiff: int
    decades: float
    effective_rank: float
    noise_floor: float = 0.0
    n_significant: int = 0
    stderr: list[float] | None = None
    n_sigma: float = 0.0

    def to_dict(self) -> dict:
        return {"eigenvalues": self.eigenvalues, "stderr": self.stderr, "log10_rel": self.log10,
                "noise_floor": self.noise_floor, "n_significant": self.n_significant,
                "n_sigma": self.n_sigma, "n_stiff": self.n_stiff, "decades": self.decades,
                "effective_rank": self.effective_rank}


def spectrum_summary(F: Tensor, *, replicates: Tensor | None = None, n_sigma: float = 3.0,
                     stiff_decades: float = 2.0, floor: float = 1e-12) -> SpectrumSummary:
    """Summarise the spectrum of one symmetric matrix ``F`` of shape (d, d).

    Parameters
    ----------
    F : Tensor of shape (d, d)
    replicates : Tensor of shape (n_blocks, d, d), optional
        Jackknife replicates of ``F``: give each sorted eigenvalue a standard error.
    n_sigma : float, default 3
        Significant: ``λ > noise_floor + n_sigma·σ_λ`` (σ = 0 without replicates).
    stiff_decades : float, default 2
    floor : float, default 1e-12
        Numerical floor relative to ``λ_max`` (exact matrices have no noise floor but roundoff).
    """
    w = torch.linalg.eigvalsh(0.5 * (F + F.T).to(torch.float64)).flip(0)
    se = None
    if replicates is not None:
        R = 0.5 * (replicates + replicates.transpose(-1, -2)).to(torch.float64)
        se = jackknife_stderr(torch.linalg.eigvalsh(R).flip(-1))
    return summary_from_eigenvalues(w, se, n_sigma=n_sigma, stiff_decades=stiff_decades,
                                    floor=floor)


def summary_from_eigenvalues(w: Tensor, se: Tensor | None = None, *, n_sigma: float = 3.0,
                             stiff_decades: float = 2.0, floor: float = 1e-12
                             ) -> SpectrumSummary:
    """:func:`spectrum_summary` from eigenvalues already computed.

    Parameters
    ----------
    w : Tensor of shape (d,)
        Eigenvalues of ``F``, **descending**.
    se : Tensor of shape (d,), optional
        Jackknife standard error of each sorted eigenvalue (``jackknife_stderr`` of the
        replicates' descending eigenvalues).
    n_sigma, stiff_decades, floor
        As in :func:`spectrum_summary`.
    """
    top = float(w[0]) if w.numel() else 0.0
    noise = max(0.0, -float(w[-1])) if w.numel() else 0.0
    if top <= 0:
        return SpectrumSummary(w.tolist(), [float("-inf")] * w.numel(), 0, 0.0, 0.0, noise, 0,
                               None if se is None else se.tolist(), float(n_sigma))
    thr = noise + (float(n_sigma) * se if se is not None else torch.zeros_like(w))
    sig = (w > thr) & (w > floor * top)
    log10 = [math.log10(float(v) / top) if ok else float("-inf")
             for v, ok in zip(w.tolist(), sig.tolist(), strict=True)]
    pos = w[sig]
    if pos.numel() == 0:
        return SpectrumSummary(w.tolist(), log10, 0, 0.0, 0.0, noise, 0,
                               None if se is None else se.tolist(), float(n_sigma))
    p = pos / pos.sum()
    return SpectrumSummary(
        eigenvalues=w.tolist(),
        log10=log10,
        n_stiff=int((pos >= top * 10 ** (-stiff_decades)).sum()),
        decades=float(math.log10(top / float(pos[-1]))),
        effective_rank=float(torch.exp(-(p * p.log()).sum())),
        noise_floor=noise,
        n_significant=int(pos.numel()),
        stderr=None if se is None else se.tolist(),
        n_sigma=float(n_sigma),
    )
