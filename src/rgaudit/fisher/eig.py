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
    k = min(int(k), F.shape[-1])
    Fs = 0.5 * (F + F.transpose(-1, -2)).to(torch.float64)
    w, V = torch.linalg.eigh(Fs)
    vals = w.flip(-1)[..., :k]
    vecs = _fix_sign(V.flip(-1)[..., :k])
    se = None
    if replicates is not None:
        R = 0.5 * (replicates + replicates.transpose(-1, -2)).to(torch.float64)
        se = jackknife_stderr(torch.linalg.eigvalsh(R).flip(-1)[..., :k])
    return EigenPairs(vals, vecs, se)


def abs_cosine(u: Tensor, v: Tensor) -> Tensor:
    """``|cos ∠(u, v)|`` along the last axis (eigenvectors have no sign); shape (*batch,)."""
    u = u.to(torch.float64)
    v = v.to(torch.float64)
    num = (u * v).sum(-1).abs()
    return num / (u.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-300)


@dataclass(frozen=True)
class SpectrumSummary:
    """Log-scale summary of one FIM spectrum.

    Attributes
    ----------
    eigenvalues : list of float
        Descending, clipped at 0.
    log10 : list of float
        ``log10(λ / λ_max)`` (``-inf`` → ``None`` in JSON).
    n_stiff : int
        Eigenvalues within ``stiff_decades`` decades of the largest.
    decades : float
        ``log10(λ_max / λ_min⁺)`` over the positive eigenvalues above the numerical floor.
    effective_rank : float
        ``exp`` of the entropy of ``λ / Σλ``.
    """

    eigenvalues: list[float]
    log10: list[float]
    n_stiff: int
    decades: float
    effective_rank: float

    def to_dict(self) -> dict:
        return {"eigenvalues": self.eigenvalues, "log10_rel": self.log10,
                "n_stiff": self.n_stiff, "decades": self.decades,
                "effective_rank": self.effective_rank}


def spectrum_summary(F: Tensor, *, stiff_decades: float = 2.0, floor: float = 1e-12
                     ) -> SpectrumSummary:
    """Summarise the spectrum of one symmetric matrix ``F`` of shape (d, d)."""
    w = torch.linalg.eigvalsh(0.5 * (F + F.T).to(torch.float64)).flip(0).clamp_min(0)
    top = float(w[0]) if w.numel() else 0.0
    if top <= 0:
        return SpectrumSummary(w.tolist(), [float("-inf")] * w.numel(), 0, 0.0, 0.0)
    rel = (w / top).tolist()
    log10 = [math.log10(r) if r > 0 else float("-inf") for r in rel]
    pos = w[w > floor * top]
    p = pos / pos.sum()
    return SpectrumSummary(
        eigenvalues=w.tolist(),
        log10=log10,
        n_stiff=int((w >= top * 10 ** (-stiff_decades)).sum()),
        decades=float(math.log10(top / float(pos[-1]))),
        effective_rank=float(torch.exp(-(p * p.log()).sum())),
    )
