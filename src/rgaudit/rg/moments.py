"""Streaming first and second moments in float64 with jackknife blocks.

The MCRG estimator needs, for operator values ``A`` of layer k+1 and ``B`` of layer k measured on
the same samples, the covariances ``C_AA = Cov(A, A)``, ``C_AB = Cov(A, B)`` and ``C_BB = Cov(B,
B)``. Samples arrive in chunks (sampling may run in float32); every chunk is cast to float64 and
added to the running sums of one of ``n_blocks`` jackknife blocks (chunk ``i`` goes to block
``i mod n_blocks``), so memory is ``O(n_blocks · m²)`` whatever the number of samples.

Leave-one-block-out sums give the jackknife replicates of any smooth function of the moments
(:func:`jackknife`). Integer-valued operators (products of binary units) are multiplied in
float32, where every partial sum is an exact integer below 2^24, and summed as raw moments;
other values are shifted by the first chunk's mean and multiplied and summed in float64.
Samples inside one block may be correlated (a Markov chain): choose chunks
longer than the autocorrelation time, so that blocks are nearly independent.

Block sums of integers (issue 16). While every partial sum of a block stays an exact integer
below :data:`EXACT32` = 2^24 (tracked per block from each chunk's largest magnitude: ``big² ·
s`` per chunk of ``s`` samples), the second-moment block sums are themselves held in float32:
exact, half the memory of float64, and the products accumulate into them in place. A chunk
that would pass the bound, or one that is not integer-valued, first moves every block sum to
float64 (same values), and the float64 path goes on from there. The totals and replicates are
formed in float64 from the exact integers, so every moment is the same bits either way
(``tests/test_moments_fast.py``).

Cost. Per chunk of ``s`` samples the three products cost ``s·m²`` multiply-adds each as plain
GEMMs; the symmetric ``AᵀA`` and ``BᵀB`` are formed by BLAS ``syrk`` through numpy (one
triangle, half the multiply-adds, mirrored by numpy; ``m ≥`` :data:`SYRK_MIN` on the CPU) and
added to the block, or, for float64 sums elsewhere, tile by tile (upper-triangular tiles only,
:data:`GRAM_TILES` column tiles), ``(t+1)/(2t)`` of the plain cost; the cross product ``AᵀB``
of integer sums is one GEMM accumulating into its float32 block in place (``beta = 1``).
Integer sums are exact in any order, so none of this changes a bit on the integer path; on the
float64 path it changes rounding only (< 1e-15 relative). Leave-one-block-out replicates are
formed by subtraction from the total (:meth:`CovarianceAccumulator.replicates`) straight into
one stacked array, without per-replicate temporaries.

Memory (per batch element): the block sums ``n_blocks·(m_a² + m_a·m_b + m_b²)`` numbers, float32
on the integer path (float64 otherwise); one ``m × m`` product buffer; the stacked replicates
add ``n_blocks·(m_a² + m_a·m_b + m_b²)`` float64 numbers while they exist; nothing grows with
the number of samples (chunks are bounded by the caller). :class:`BlockReplicates` forms
replicates on request, one at a time or one moment's stack at a time, from the block sums
(same operations, same bits).

All arrays may carry leading batch dimensions (several inputs analysed at once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor

#: Column tiles of the symmetric products ``AᵀA``, ``BᵀB`` (upper-triangular tiles only).
GRAM_TILES = 4
#: Smallest operator count for which the tiled symmetric product is used (below it the GEMM
#: call overhead of the tiles outweighs the saved work).
GRAM_TILE_MIN = 384
#: Smallest operator count for which the symmetric products use BLAS ``syrk`` through numpy
#: on the CPU (numpy's bundled OpenBLAS). Same-process timings of one 2500 × m product, load
#: 2–3 (session 5): m = 500: numpy ``xᵀ @ x`` plus a float32 add 10.5–11.4 ms, scipy's
#: ``ssyrk`` 11.5–16.3 ms, MKL GEMM 15.8–19.2 ms; m = 2000: 137–144 ms, tiled MKL GEMMs
#: 192–196 ms, one GEMM 277–279 ms (it replaced scipy ``ssyrk`` below m = 1536 and the tiles
#: above).
SYRK_MIN = 256
#: Float32 block sums of integers stay exact while every partial sum is below this (2^24).
EXACT32 = 2**24


@dataclass(frozen=True)
class Moments:
    """Means and covariances of two sets of operators.

    Attributes
    ----------
    n : float
        Number of samples.
    mean_a : Tensor of shape (*batch, m_a)
    mean_b : Tensor of shape (*batch, m_b)
    c_aa : Tensor of shape (*batch, m_a, m_a)
        ``Cov(A, A)``.
    c_ab : Tensor of shape (*batch, m_a, m_b)
        ``Cov(A, B)``.
    c_bb : Tensor of shape (*batch, m_b, m_b)
        ``Cov(B, B)``.
    """

    n: float
    mean_a: Tensor
    mean_b: Tensor
    c_aa: Tensor
    c_ab: Tensor
    c_bb: Tensor


class CovarianceAccumulator:
    """Accumulate ``Cov(A,A)``, ``Cov(A,B)``, ``Cov(B,B)`` over chunks in float64.

    Parameters
    ----------
    m_a, m_b : int
        Numbers of operators in the two sets.
    n_blocks : int, default 16
        Number of jackknife blocks (at least 2).
    batch_shape : tuple of int, default ()
        Leading batch dimensions of every chunk (e.g. ``(n_inputs,)``).
    device : torch.device or str, default "cpu"
    with_bb : bool, default True
        Also accumulate ``Cov(B, B)`` (needed for Fisher-normalised spectra).

    Notes
    -----
    Sums are kept about a shift (the first chunk's mean) to avoid cancellation in
    ``E[AB] - E[A]E[B]`` when operators have large means.
    """

    def __init__(
        self,
        m_a: int,
        m_b: int,
        *,
        n_blocks: int = 16,
        batch_shape: tuple[int, ...] = (),
        device: torch.device | str = "cpu",
        with_bb: bool = True,
    ) -> None:
        if n_blocks < 2:
            raise ValueError(f"n_blocks must be at least 2 for jackknife errors, got {n_blocks}")
        self.m_a, self.m_b, self.n_blocks = int(m_a), int(m_b), int(n_blocks)
        self.batch_shape = tuple(batch_shape)
        self.with_bb = with_bb
        self.device = torch.device(device)
        kw: dict[str, Any] = {"dtype": torch.float64, "device": self.device}
        bs = (self.n_blocks, *self.batch_shape)
        self.count = torch.zeros(self.n_blocks, dtype=torch.float64)
        self.sa = torch.zeros(*bs, self.m_a, **kw)
        self.sb = torch.zeros(*bs, self.m_b, **kw)
        # second-moment block sums, allocated by the first chunk: exact float32 integers on the
        # integer path (see ``_store32``), float64 otherwise
        self._saa: Tensor | None = None
        self._sab: Tensor | None = None
        self._sbb: Tensor | None = None
        self.shift_a: Tensor | None = None
        self.shift_b: Tensor | None = None
        self._integer = False
        #: every chunk so far summed exactly in integers (the sums are then exactly symmetric)
        self._exact_sums = True
        #: block sums held in float32 (exact integers below EXACT32, half the memory of float64)
        self._store32 = False
        #: per block, an upper bound on the magnitude of any of its float32 partial sums
        self._bound = [0.0] * self.n_blocks
        self._chunks = 0
        #: reused product buffers (no fresh m×m allocation, hence no page faults, per chunk)
        self._scratch: dict[Any, Any] = {}
        self._totals: tuple[int, float, list[Tensor | None]] | None = None

    def _allocate(self, dtype: torch.dtype) -> None:
        bs = (self.n_blocks, *self.batch_shape)
        kw: dict[str, Any] = {"dtype": dtype, "device": self.device}
        self._saa = torch.zeros(*bs, self.m_a, self.m_a, **kw)
        self._sab = torch.zeros(*bs, self.m_a, self.m_b, **kw)
        self._sbb = torch.zeros(*bs, self.m_b, self.m_b, **kw) if self.with_bb else None
        self._store32 = dtype == torch.float32

    def _block_sums(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The block sums (allocated in float64 if no chunk came yet)."""
        if self._saa is None:
            self._allocate(torch.float64)
        assert self._saa is not None and self._sab is not None
        return self._saa, self._sab, self._sbb

    def _promote(self) -> None:
        """Move float32 block sums to float64 (a chunk that is not exact in float32 arrived, or
        a block's sums could pass :data:`EXACT32`); later chunks take the float64 path."""
        saa, sab, sbb = self._block_sums()
        self._saa, self._sab = saa.to(torch.float64), sab.to(torch.float64)
        self._sbb = None if sbb is None else sbb.to(torch.float64)
        self._store32 = False

    @property
    def saa(self) -> Tensor:
        """Block sums of ``A_i A_j``, (n_blocks, *batch, m_a, m_a); float32 (exact integers) on
        the integer path, else float64 (about the shift)."""
        return self._block_sums()[0]

    @property
    def sab(self) -> Tensor:
        """Block sums of ``A_i B_j``, (n_blocks, *batch, m_a, m_b) (dtype as :attr:`saa`)."""
        return self._block_sums()[1]

    @property
    def sbb(self) -> Tensor | None:
        """Block sums of ``B_i B_j``, (n_blocks, *batch, m_b, m_b), or None without them."""
        return self._block_sums()[2]

    def update(self, a: Tensor, b: Tensor, block: int | None = None) -> None:
        """Add one chunk of samples.

        Parameters
        ----------
        a : Tensor of shape (*batch, s, m_a)
            Operator values of the first set for ``s`` samples.
        b : Tensor of shape (*batch, s, m_b)
            Operator values of the second set on the same samples.
        block : int, optional
            Jackknife block receiving the chunk; default round-robin (chunk ``i`` to block
            ``i mod n_blocks``). Pass contiguous blocks for Markov-chain samples.
        """
        exp_a = (*self.batch_shape, a.shape[-2], self.m_a)
        exp_b = (*self.batch_shape, a.shape[-2], self.m_b)
        if tuple(a.shape) != exp_a or tuple(b.shape) != exp_b:
            raise ValueError(
                f"chunk shapes {tuple(a.shape)} and {tuple(b.shape)} do not match the expected "
                f"{exp_a} and {exp_b} (batch_shape, samples, operators)"
            )
        k = self._chunks % self.n_blocks if block is None else int(block)
        if not 0 <= k < self.n_blocks:
            raise ValueError(f"block {k} outside 0..{self.n_blocks - 1}")
        n = a.shape[-2]
        first = self.shift_a is None
        big = _exact_scale(a, b, n) if first or self._integer else None
        if first:
            self._start(a, b, integer=big is not None)
        if self._integer and big is not None:
            self._add_integers(k, a, b, big * big * n)
        else:
            self._add_floats(k, a, b)
        self._chunks += 1
        self.count[k] += n

    def _start(self, a: Tensor, b: Tensor, *, integer: bool) -> None:
        """First chunk: integer-valued operators (products of binary units, lattice sums) are
        summed exactly as raw moments (no shift, float32 block sums); other values are shifted
        by the first chunk's mean and summed in float64."""
        self._integer = integer
        if integer:
            self.shift_a = torch.zeros(*self.batch_shape, self.m_a, dtype=torch.float64,
                                       device=self.sa.device)
            self.shift_b = torch.zeros(*self.batch_shape, self.m_b, dtype=torch.float64,
                                       device=self.sa.device)
        else:
            self._check_finite(a, b)
            self.shift_a = a.to(torch.float64).mean(dim=-2)
            self.shift_b = b.to(torch.float64).mean(dim=-2)
        self._allocate(torch.float32 if integer else torch.float64)

    def _add_integers(self, k: int, a: Tensor, b: Tensor, grow: float) -> None:
        """Add a chunk whose products and sums are exact integers in float32 to block ``k``;
        ``grow`` bounds what it adds to any partial sum. The float32 block sums stay exact
        while their bound stays below :data:`EXACT32` (else everything moves to float64)."""
        if self._store32 and self._bound[k] + grow >= EXACT32:
            self._promote()
        self._bound[k] += grow
        a32 = a.to(torch.float32)
        b32 = b.to(torch.float32)
        if self._store32:
            assert self._saa is not None and self._sab is not None
            _gram_into(self._saa[k], a32, self._scratch)
            _product_into(self._sab[k], a32, b32)
            if self._sbb is not None:
                _gram_into(self._sbb[k], b32, self._scratch)
        else:
            saa, sab, sbb = self._block_sums()
            _gram_into(saa[k], a32, self._scratch)
            sab[k].add_(self._product32(a32, b32))     # cast on the fly: exact integers
            if sbb is not None:
                _gram_into(sbb[k], b32, self._scratch)
        self.sa[k] += a32.sum(dim=-2).to(torch.float64)  # exact: integers below 2^24
        self.sb[k] += b32.sum(dim=-2).to(torch.float64)

    def _add_floats(self, k: int, a: Tensor, b: Tensor) -> None:
        """Add a chunk in float64 about the shift to block ``k`` (float32 sums move first)."""
        self._exact_sums = False
        self._check_finite(a, b)
        if self._store32:
            self._promote()
        saa, sab, sbb = self._block_sums()
        assert self.shift_a is not None and self.shift_b is not None  # set by the first chunk
        a = a.to(torch.float64) - self.shift_a.unsqueeze(-2)
        b = b.to(torch.float64) - self.shift_b.unsqueeze(-2)
        self.sa[k] += a.sum(dim=-2)
        self.sb[k] += b.sum(dim=-2)
        _gram_into(saa[k], a, self._scratch)
        sab[k] += a.transpose(-1, -2) @ b
        if sbb is not None:
            _gram_into(sbb[k], b, self._scratch)

    def _product32(self, a32: Tensor, b32: Tensor) -> Tensor:
        """``a32ᵀ b32`` (float32, exact on the integer path) in a reused buffer."""
        shape = (*a32.shape[:-2], a32.shape[-1], b32.shape[-1])
        key = ("ab", shape, a32.device)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = torch.empty(shape, dtype=torch.float32,
                                                   device=a32.device)
        return torch.matmul(a32.transpose(-1, -2), b32, out=buf)

    @staticmethod
    def _check_finite(a: Tensor, b: Tensor) -> None:
        # One reduction instead of an element-wise isfinite (much slower on CPU): a NaN or inf
        # anywhere makes the sum non-finite.
        if not bool(torch.isfinite(a.sum(dtype=torch.float64) + b.sum(dtype=torch.float64))):
            raise ValueError("operator values contain NaN or inf; check the inputs and the model")

    @property
    def n_samples(self) -> int:
        """Total number of samples seen."""
        return int(self.count.sum().item())

    def _sums(self, w: Tensor) -> tuple[float, list[Tensor | None]]:
        """Block-weighted sums (1 = included, 0 = left out)."""
        n = float((w * self.count).sum())

        all_in = bool((w == 1).all())
        if all_in and self._totals is not None and self._totals[0] == self._chunks:
            return self._totals[1], list(self._totals[2])   # moments() and replicates share it

        def wsum(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            if t.dtype == torch.float32:   # exact integer block sums: any order, same bits
                return self._sum32(t, w)
            if all_in:  # the total: no n_blocks-sized weighted temporary (same sums: w = 1)
                return t.sum(dim=0, dtype=torch.float64)   # float32 blocks: exact integers
            ww = w.to(device=t.device, dtype=torch.float64).reshape(-1, *([1] * (t.dim() - 1)))
            return (ww * t).sum(dim=0)

        sums = [wsum(t) for t in (self.sa, self.sb, self.saa, self.sab, self.sbb)]
        if all_in:
            self._totals = (self._chunks, n, sums)
        return n, list(sums)

    def _sum32(self, t: Tensor, w: Tensor) -> Tensor:
        """Float64 weighted sum over blocks of float32 exact-integer block sums ``t``."""
        if sum(self._bound) < EXACT32:   # every partial sum stays exact in float32
            keep = [k for k in range(self.n_blocks) if float(w[k]) == 1.0]
            if len(keep) == self.n_blocks:
                return t.sum(dim=0).to(torch.float64)
            if float(w.abs().sum()) == len(keep):   # weights 0 or 1
                return t[keep].sum(dim=0).to(torch.float64)
        out = torch.zeros(t.shape[1:], dtype=torch.float64, device=t.device)
        for k in range(self.n_blocks):            # cast, then a same-dtype add (a mixed-dtype
            if float(w[k]) != 0.0:                 # op is several times slower in torch)
                out.add_(t[k].to(torch.float64), alpha=float(w[k]))
        return out

    def _from_sums(self, n: float, sums: list[Tensor | None]) -> Moments:
        if self.shift_a is None or self.shift_b is None:
            raise ValueError("no samples were accumulated")
        if n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, have {n:.0f}")
        sa, sb, saa, sab, sbb = sums
        assert sa is not None and sb is not None and saa is not None and sab is not None
        ma = sa / n
        mb = sb / n
        c_aa = saa / n - ma.unsqueeze(-1) * ma.unsqueeze(-2)
        c_ab = sab / n - ma.unsqueeze(-1) * mb.unsqueeze(-2)
        # exact integer sums: c_aa, c_bb are exactly symmetric already (same bits either way)
        sym = not (self._integer and self._exact_sums)
        if sbb is not None:
            c_bb = sbb / n - mb.unsqueeze(-1) * mb.unsqueeze(-2)
            if sym:
                c_bb = 0.5 * (c_bb + c_bb.transpose(-1, -2))
        else:
            c_bb = torch.empty(0, dtype=torch.float64)
        if sym:
            c_aa = 0.5 * (c_aa + c_aa.transpose(-1, -2))
        return Moments(n, ma + self.shift_a, mb + self.shift_b, c_aa, c_ab, c_bb)

    def _moments(self, w: Tensor) -> Moments:
        """Moments of the blocks weighted by ``w`` (1 = included, 0 = left out)."""
        if self.shift_a is None:
            raise ValueError("no samples were accumulated")
        n, sums = self._sums(w)
        return self._from_sums(n, sums)

    def moments(self) -> Moments:
        """Moments over all samples."""
        return self._moments(torch.ones(self.n_blocks, dtype=torch.float64))

    def leave_one_out(self) -> list[Moments]:
        """Moments with each non-empty block left out in turn (jackknife replicates).

        Views into :meth:`replicates` (total minus one block), so the cost is
        ``O(n_blocks · m²)``.
        """
        r = self.replicates()
        return [Moments(float(r.n[i]), r.mean_a[i], r.mean_b[i], r.c_aa[i], r.c_ab[i],
                        r.c_bb[i] if r.c_bb.numel() else r.c_bb)
                for i in range(r.n.shape[0])]

    def replicates(self) -> ReplicateMoments:
        """All leave-one-block-out moments, stacked (non-empty blocks only).

        Each replicate is formed from the total sums minus one block's sums, written straight
        into one preallocated array per moment (no list of per-replicate matrices), with the
        same floating-point operations as :meth:`moments` applies to the full sums, so a
        replicate equals ``moments()`` of the same samples bit for bit in the integer path.

        Returns
        -------
        ReplicateMoments
            Leading dimension ``n_rep`` (number of non-empty blocks).
        """
        return self.block_replicates().stacked()

    def block_replicates(self) -> BlockReplicates:
        """Leave-one-block-out moments formed on request, one replicate at a time.

        References the block sums (no copy): ``O(n_blocks · m²)`` memory whether or not any
        replicate is formed. See :class:`BlockReplicates`.
        """
        return BlockReplicates(self)


class BlockReplicates:
    """Leave-one-block-out moments of a :class:`CovarianceAccumulator`, formed on request.

    The replicate covariances are ``O(n_blocks · m²)`` numbers whose formation (total minus one
    block, scaled, centred, symmetrised) is memory-bound; a consumer that needs one replicate
    at a time (a factorisation) or one moment only forms just that (:meth:`c_aa`,
    :meth:`c_ab`, :meth:`c_bb`), and :meth:`stack` forms (and caches) one stacked moment, with
    exactly the operations of :meth:`CovarianceAccumulator.replicates`. Means and sample
    counts are formed at once (``O(n_blocks · m)``).

    Parameters
    ----------
    acc : CovarianceAccumulator
        Its block sums are referenced, not copied (later updates would show through).

    Attributes
    ----------
    n : Tensor of shape (n_rep,)
    mean_a, mean_b : Tensor of shape (n_rep, *batch, m)
        Replicate means (shifted back).
    n_rep : int
    """

    def __init__(self, acc: CovarianceAccumulator) -> None:
        if acc.shift_a is None or acc.shift_b is None:
            raise ValueError("no samples were accumulated")
        nonempty = [k for k in range(acc.n_blocks) if acc.count[k] > 0]
        if len(nonempty) < 2:
            raise ValueError(
                "fewer than 2 non-empty jackknife blocks: feed at least n_blocks chunks"
            )
        n_tot, tot = acc._sums(torch.ones(acc.n_blocks, dtype=torch.float64))
        ns = [n_tot - float(acc.count[k]) for k in nonempty]
        if min(ns) < 2:
            raise ValueError(f"need at least 2 samples for a covariance, have {min(ns):.0f}")
        tsa, tsb, tsaa, tsab, tsbb = tot
        assert tsa is not None and tsb is not None and tsaa is not None and tsab is not None
        idx = torch.tensor(nonempty, device=acc.sa.device)
        ma = tsa.unsqueeze(0) - acc.sa[idx]
        mb = tsb.unsqueeze(0) - acc.sb[idx]
        for i, n in enumerate(ns):
            ma[i] /= n
            mb[i] /= n
        # exact integer sums are exactly symmetric, and so is every covariance formed from
        # them ((i, j) and (j, i) see the same operations): symmetrising would change no bit
        self._exact = bool(acc._integer and acc._exact_sums)
        self._blocks = nonempty
        self._ns = ns
        self._ma, self._mb = ma, mb         # centred (unshifted) means, as the covariances use
        self._sums: dict[str, tuple[Tensor, Tensor]] = {"c_aa": (tsaa, acc.saa),
                                                        "c_ab": (tsab, acc.sab)}
        if acc.sbb is not None and tsbb is not None:
            self._sums["c_bb"] = (tsbb, acc.sbb)
        self._stacks: dict[str, Tensor] = {}
        self.n = torch.tensor(ns, dtype=torch.float64)
        self.mean_a = ma + acc.shift_a
        self.mean_b = mb + acc.shift_b
        self.n_rep = len(nonempty)

    def _one(self, name: str, i: int, out: Tensor | None = None) -> Tensor:
        if name in self._stacks:
            return self._stacks[name][i]
        if name not in self._sums:
            return torch.empty(0, dtype=torch.float64)
        total, blocks = self._sums[name]
        mx = self._ma[i]
        my = self._mb[i] if name == "c_ab" else mx
        if name == "c_bb":
            mx = my = self._mb[i]
        if out is None:
            out = torch.empty_like(total)
        _cov_into(out, total, blocks[self._blocks[i]], self._ns[i], mx, my,
                  sym=name != "c_ab" and not self._exact)
        return out

    def c_aa(self, i: int) -> Tensor:
        """``Cov(A, A)`` of replicate ``i``, shape (*batch, m_a, m_a)."""
        return self._one("c_aa", i)

    def c_ab(self, i: int) -> Tensor:
        """``Cov(A, B)`` of replicate ``i``, shape (*batch, m_a, m_b)."""
        return self._one("c_ab", i)

    def c_bb(self, i: int) -> Tensor:
        """``Cov(B, B)`` of replicate ``i`` (empty without ``Cov(B, B)``)."""
        return self._one("c_bb", i)

    def stack(self, name: str) -> Tensor:
        """One moment of every replicate, (n_rep, *batch, ...), formed once and cached.

        Once all moments are stacked the block sums are released.
        """
        if name not in ("c_aa", "c_ab", "c_bb"):
            raise ValueError(f"unknown moment {name!r}; one of c_aa, c_ab, c_bb")
        if name not in self._stacks:
            if name not in self._sums:
                return torch.empty(0, dtype=torch.float64)
            total, _ = self._sums[name]
            out = torch.empty(self.n_rep, *total.shape, dtype=total.dtype, device=total.device)
            for i in range(self.n_rep):
                self._one(name, i, out[i])
            self._stacks[name] = out
            if all(k in self._stacks for k in self._sums):
                self._sums = {}
        return self._stacks[name]

    def stacked(self) -> ReplicateMoments:
        """All replicates as a :class:`ReplicateMoments` (forms every stack)."""
        return ReplicateMoments(self.n, self.mean_a, self.mean_b, self.stack("c_aa"),
                                self.stack("c_ab"), self.stack("c_bb"))


@dataclass(frozen=True)
class ReplicateMoments:
    """Leave-one-block-out :class:`Moments`, stacked along a leading replicate dimension.

    Attributes
    ----------
    n : Tensor of shape (n_rep,)
        Samples in each replicate.
    mean_a : Tensor of shape (n_rep, *batch, m_a)
    mean_b : Tensor of shape (n_rep, *batch, m_b)
    c_aa : Tensor of shape (n_rep, *batch, m_a, m_a)
    c_ab : Tensor of shape (n_rep, *batch, m_a, m_b)
    c_bb : Tensor of shape (n_rep, *batch, m_b, m_b), or empty without ``Cov(B, B)``
    """

    n: Tensor
    mean_a: Tensor
    mean_b: Tensor
    c_aa: Tensor
    c_ab: Tensor
    c_bb: Tensor


def _cov_into(out: Tensor, total: Tensor, block: Tensor, n: float, mx: Tensor, my: Tensor,
              *, sym: bool) -> None:
    """``out = sym((total − block)/n − mx ⊗ my)``, the operations of ``_from_sums`` in place.

    ``sym=False`` skips the symmetrisation: pass it only when the result is exactly symmetric
    already (exact integer sums: then ``sym`` would return the same bits).
    """
    # a float32 block (exact integers) is cast first: a mixed-dtype subtraction is slow in torch
    torch.sub(total, block if block.dtype == total.dtype else block.to(total.dtype), out=out)
    out /= n
    out -= mx.unsqueeze(-1) * my.unsqueeze(-2)
    if sym:
        tmp = out + out.transpose(-1, -2)
        torch.mul(tmp, 0.5, out=out)


def _gram_into(out: Tensor, x: Tensor, scratch: dict[Any, Any] | None = None) -> None:
    """``out += xᵀx`` in place, exploiting symmetry; ``x`` (*batch, s, m), ``out`` (*batch, m, m)
    float64, or float32 holding exact integer sums (the block sums of the integer path).

    On the CPU, for ``m ≥`` :data:`SYRK_MIN`, numpy's ``xᵀ @ x`` per batch element — numpy
    computes it by BLAS ``syrk`` (half the multiply-adds) and mirrors the triangle — into a
    reused buffer, then one add into ``out`` (numpy's bundled OpenBLAS 0.3.31 ran this
    1.2–1.4× faster than scipy's ``ssyrk`` plus mirroring at m = 500, and 1.4× faster than
    tiled GEMMs at m = 2000). Elsewhere a float32 ``out`` takes one batched GEMM accumulating
    in place, and a float64 one, for ``m ≥`` :data:`GRAM_TILE_MIN`, :data:`GRAM_TILES` column
    tiles of which only those on and above the diagonal are multiplied (each off-diagonal tile
    added to both of its places), ``(t+1)/(2t)`` of the multiply-adds of one product. Exact
    integer sums are the same bits on every path; float64 sums differ only in rounding.
    ``out`` stays exactly symmetric when it was.
    """
    m, s = x.shape[-1], x.shape[-2]
    if m >= SYRK_MIN and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        xs = x.detach().reshape(-1, s, m)
        os_ = out.view(-1, m, m)                 # a view: the sums are updated in place
        key = ("gram", m, x.dtype)
        buf = None if scratch is None else scratch.get(key)
        if buf is None:
            buf = np.empty((m, m), dtype=np.float32 if x.dtype == torch.float32 else np.float64)
            if scratch is not None:
                scratch[key] = buf
        for k in range(xs.shape[0]):
            xk = xs[k].contiguous().numpy()
            np.matmul(xk.T, xk, out=buf)         # syrk inside numpy: exactly symmetric
            os_[k].add_(torch.from_numpy(buf))   # cast on the fly into a float64 out
        return
    xt = x.transpose(-1, -2)
    if out.dtype == torch.float32:
        out.view(-1, m, m).baddbmm_(xt.reshape(-1, m, s), x.reshape(-1, s, m))
        return
    if m < GRAM_TILE_MIN:
        out += (xt @ x).to(torch.float64)
        return
    edges = [round(i * m / GRAM_TILES) for i in range(GRAM_TILES + 1)]
    for i in range(GRAM_TILES):
        ri = slice(edges[i], edges[i + 1])
        for j in range(i, GRAM_TILES):
            rj = slice(edges[j], edges[j + 1])
            tile = xt[..., ri, :] @ x[..., :, rj]      # added with an on-the-fly cast
            out[..., ri, rj] += tile
            if i != j:
                out[..., rj, ri] += tile.transpose(-1, -2)


def _product_into(out: Tensor, a: Tensor, b: Tensor) -> None:
    """``out += aᵀb`` in place (one batched GEMM with ``beta = 1``); ``out`` (*batch, m_a, m_b),
    ``a`` (*batch, s, m_a), ``b`` (*batch, s, m_b), all float32."""
    s = a.shape[-2]
    out.view(-1, a.shape[-1], b.shape[-1]).baddbmm_(
        a.reshape(-1, s, a.shape[-1]).transpose(-1, -2), b.reshape(-1, s, b.shape[-1]))


def _exact_scale(a: Tensor, b: Tensor, n: int) -> float | None:
    """The largest magnitude in ``a``, ``b`` if every product and chunk sum of the ``n``
    samples is an exact integer in float32 (integer entries, ``big² · n < 2^24``), else None."""
    if a.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        return None
    big = 0.0
    for t in (a, b):
        if t.numel():
            lo, hi = torch.aminmax(t)
            big = max(big, abs(float(lo)), abs(float(hi)))
    if not big * big * n < 2**24:  # also rejects NaN and inf
        return None
    return big if _integer_valued(a) and _integer_valued(b) else None


def _integer_valued(t: Tensor) -> bool:
    """Whether every entry is an integer: all fractional parts 0 (one pass and a reduction,
    cheaper than comparing with ``t.round()``; NaN or inf give a NaN fraction: False)."""
    if not t.numel():
        return True
    lo, hi = torch.aminmax(torch.frac(t))
    return bool(lo == 0) and bool(hi == 0)


@dataclass(frozen=True)
class JackknifeEstimate:
    """A statistic and its blocked-jackknife standard error.

    Attributes
    ----------
    value : Tensor
        The statistic on all samples.
    stderr : Tensor
        Jackknife standard error, same shape as ``value``.
    replicates : Tensor of shape (n_blocks, *value.shape)
        Leave-one-block-out values.
    """

    value: Tensor
    stderr: Tensor
    replicates: Tensor


def jackknife(acc: CovarianceAccumulator, fn: Callable[[Moments], Tensor]) -> JackknifeEstimate:
    """Blocked jackknife of a smooth statistic of the moments.

    Parameters
    ----------
    acc : CovarianceAccumulator
        The filled accumulator.
    fn : callable
        Maps :class:`Moments` to a tensor (any shape, same on every call).

    Returns
    -------
    JackknifeEstimate
        ``stderr = sqrt((n-1)/n · Σ_i (θ_i − θ̄)²)`` over the ``n`` leave-one-out replicates.
    """
    value = fn(acc.moments())
    reps = torch.stack([fn(m) for m in acc.leave_one_out()])
    return JackknifeEstimate(value, jackknife_stderr(reps), reps)


def jackknife_stderr(replicates: Tensor) -> Tensor:
    """Jackknife standard error from leave-one-out replicates of shape (n_blocks, ...)."""
    nb = replicates.shape[0]
    mean = replicates.mean(dim=0)
    return ((nb - 1) / nb * ((replicates - mean) ** 2).sum(dim=0)).sqrt()
