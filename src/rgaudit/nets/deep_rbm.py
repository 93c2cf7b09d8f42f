"""A deep network of stacked RBMs, run upwards (classification) or downwards (generation).

Layer ``k`` (1-based, as in the papers) is the RBM ``t_k(h_k, h_{k-1})``; ``h_0 = x`` is the input
(real values in [0, 1] allowed) and ``h_N = y`` the output. ``layers[k-1]`` holds ``t_k``.

- The classification chain (vulnerability eq. 2) samples ``h_k ~ t_k(· | h_{k-1})`` upwards.
- The generation chain (cloning eq. 9) samples ``h_{k-1} ~ t_k(· | h_k)`` downwards from ``y``.
- ``predict_proba`` averages the top layer's conditional ``σ(W_N h_{N-1} + a_N)`` over sampled
  chains; it is the network's estimate of ``P(y_j = 1 | x)`` for every output unit.
- The mean-field surrogate propagates probabilities instead of samples; it is a deterministic
  ``torch.nn.Module`` for gradients, fine-tuning and attack baselines.
- A weight-tied network applies one square RBM ``N`` times: a true RG transformation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, cast, overload

import torch
from torch import nn

from rgaudit.nets.rbm import RBM

Tensor = torch.Tensor


@dataclass(frozen=True)
class ProbaEstimate:
    """Monte Carlo estimate of the output probabilities.

    Attributes
    ----------
    mean : Tensor of shape (n_inputs, n_out)
    stderr : Tensor of shape (n_inputs, n_out)
        Standard error of the mean over chains.
    n_samples : int
    """

    mean: Tensor
    stderr: Tensor
    n_samples: int


class DeepRBM(nn.Module):
    """Stacked RBMs ``t_1 … t_N``.

    Parameters
    ----------
    widths : sequence of int
        ``(n_0, n_1, …, n_N)``: input width, hidden widths, output width.
    tied : bool, default False
        One square RBM shared by all ``N = len(widths) - 1`` layers (all widths equal).
    dtype : torch.dtype, default torch.float32
    """

    def __init__(
        self, widths: list[int] | tuple[int, ...], *, tied: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths must list at least two positive sizes, got {widths}")
        if tied and len(set(widths)) != 1:
            raise ValueError(f"a weight-tied network needs equal widths, got {widths}")
        self.widths = widths
        self.tied = bool(tied)
        if tied:
            self.layers = nn.ModuleList([RBM(widths[0], widths[0], dtype=dtype)])
        else:
            self.layers = nn.ModuleList(
                [RBM(widths[k], widths[k + 1], dtype=dtype) for k in range(len(widths) - 1)]
            )

    @property
    def depth(self) -> int:
        """Number of RBM layers ``N``."""
        return len(self.widths) - 1

    def layer(self, k: int) -> RBM:
        """The RBM ``t_k`` (1-based, ``1 ≤ k ≤ N``)."""
        if not 1 <= k <= self.depth:
            raise IndexError(f"layer index {k} outside 1..{self.depth}")
        return cast(RBM, self.layers[0] if self.tied else self.layers[k - 1])

    @property
    def dtype(self) -> torch.dtype:
        return self.layer(1).W.dtype

    @property
    def device(self) -> torch.device:
        return self.layer(1).W.device

    @classmethod
    def random(
        cls,
        widths: list[int] | tuple[int, ...],
        *,
        tied: bool = False,
        scale: float = 1.0,
        bias_scale: float = 0.5,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> DeepRBM:
        """A network with random Gaussian weights (see :meth:`RBM.random`)."""
        net = cls(widths, tied=tied, dtype=dtype)
        for layer in net.layers:
            rbm = cast(RBM, layer)
            r = RBM.random(rbm.n_in, rbm.n_out, scale=scale, bias_scale=bias_scale,
                           generator=generator, dtype=dtype)
            rbm.load_state_dict(r.state_dict())
        return net

    # -- input handling ---------------------------------------------------------------------
    def _as_batch(self, x: Tensor, width: int) -> tuple[Tensor, bool]:
        x = torch.as_tensor(x)
        single = x.dim() == 1
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != width:
            raise ValueError(f"expected inputs of shape (n, {width}) or ({width},), "
                             f"got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("inputs contain NaN or inf")
        return x.to(device=self.device, dtype=self.dtype), single

    # -- chains -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_up(
        self, x: Tensor, n_samples: int, generator: torch.Generator | None = None,
        *, upto: int | None = None,
    ) -> list[Tensor]:
        """Sample the classification chain.

        Parameters
        ----------
        x : Tensor of shape (n_inputs, n_0) or (n_0,)
        n_samples : int
            Chains per input.
        generator : torch.Generator, optional
        upto : int, optional
            Stop at layer ``upto`` (default ``N``).

        Returns
        -------
        list of Tensor
            ``[h_0, h_1, …, h_upto]``, each of shape (n_inputs, n_samples, n_k) (the leading
            dimension is dropped for a single 1-D input). ``h_0`` is ``x`` broadcast.
        """
        x, single = self._as_batch(x, self.widths[0])
        upto = self.depth if upto is None else int(upto)
        h = x.unsqueeze(1).expand(x.shape[0], int(n_samples), x.shape[1])
        out = [h]
        for k in range(1, upto + 1):
            h = self.layer(k).sample_up(h, generator)
            out.append(h)
        return [t[0] for t in out] if single else out

    @torch.no_grad()
    def sample_down(
        self, y: Tensor, n_samples: int, generator: torch.Generator | None = None,
        *, downto: int = 0,
    ) -> list[Tensor]:
        """Sample the generation chain from an output vector ``y`` (real values allowed).

        Returns
        -------
        list of Tensor
            ``[h_N = y, h_{N-1}, …, h_downto]``, each (n_inputs, n_samples, n_k).
        """
        y, single = self._as_batch(y, self.widths[-1])
        h = y.unsqueeze(1).expand(y.shape[0], int(n_samples), y.shape[1])
        out = [h]
        for k in range(self.depth, downto, -1):
            h = self.layer(k).sample_down(h, generator)
            out.append(h)
        return [t[0] for t in out] if single else out

    @overload
    def predict_proba(self, x: Tensor, n_samples: int = ...,
                      generator: torch.Generator | None = ..., *,
                      return_stderr: Literal[False] = ..., chunk: int = ...) -> Tensor: ...

    @overload
    def predict_proba(self, x: Tensor, n_samples: int = ...,
                      generator: torch.Generator | None = ..., *,
                      return_stderr: Literal[True], chunk: int = ...) -> ProbaEstimate: ...

    @torch.no_grad()
    def predict_proba(
        self,
        x: Tensor,
        n_samples: int = 1000,
        generator: torch.Generator | None = None,
        *,
        return_stderr: bool = False,
        chunk: int = 250,
    ) -> Tensor | ProbaEstimate:
        """Output probabilities averaged over sampled classification chains.

        Parameters
        ----------
        x : Tensor of shape (n_inputs, n_0) or (n_0,)
        n_samples : int, default 1000
            Chains per input.
        generator : torch.Generator, optional
        return_stderr : bool, default False
            Return a :class:`ProbaEstimate` with the standard error of the mean.
        chunk : int
            Chains sampled at once (memory stays flat in ``n_samples``).

        Returns
        -------
        Tensor of shape (n_inputs, n_N) (or (n_N,)), or ProbaEstimate
        """
        if n_samples < 1:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        xb, single = self._as_batch(x, self.widths[0])
        s1 = torch.zeros(xb.shape[0], self.widths[-1], dtype=torch.float64, device=self.device)
        s2 = torch.zeros_like(s1)
        done = 0
        while done < n_samples:
            m = min(chunk, n_samples - done)
            hs = self.sample_up(xb, m, generator, upto=self.depth - 1)
            p = self.layer(self.depth).prob_up(hs[-1]).to(torch.float64)
            s1 += p.sum(1)
            s2 += (p * p).sum(1)
            done += m
        mean = s1 / n_samples
        var = (s2 / n_samples - mean**2).clamp_min(0) * n_samples / max(n_samples - 1, 1)
        se = (var / n_samples).sqrt()
        if single:
            mean, se = mean[0], se[0]
        if return_stderr:
            return ProbaEstimate(mean, se, int(n_samples))
        return mean

    @torch.no_grad()
    def predict_proba_chains(
        self, x: Tensor, n_samples: int = 1000, generator: torch.Generator | None = None,
        *, chunk: int = 250,
    ) -> Iterator[Tensor]:
        """Per-chain top conditionals ``σ(W_N h_{N-1} + a_N)``, chunk by chunk.

        Yields float64 tensors of shape (n_inputs, m, n_N) (``m ≤ chunk``, ``Σ m = n_samples``)
        drawn exactly as :meth:`predict_proba` draws them (same generator → same chains), so
        callers can form any per-chain statistic (e.g. differences of two classes) in one pass.
        """
        if n_samples < 1:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        xb, _ = self._as_batch(x, self.widths[0])
        done = 0
        while done < n_samples:
            m = min(chunk, n_samples - done)
            hs = self.sample_up(xb, m, generator, upto=self.depth - 1)
            yield self.layer(self.depth).prob_up(hs[-1]).to(torch.float64)
            done += m

    def predict(
        self, x: Tensor, n_samples: int = 1000, generator: torch.Generator | None = None,
    ) -> Tensor:
        """Predicted class: argmax of :meth:`predict_proba`; shape (n_inputs,)."""
        return self.predict_proba(x, n_samples, generator).argmax(-1)

    # -- mean field -------------------------------------------------------------------------
    def mean_field_logits(self, x: Tensor) -> Tensor:
        """Deterministic surrogate: propagate probabilities, return the top logits.

        ``p_0 = x``, ``p_k = σ(W_k p_{k-1} + a_k)``; returns ``W_N p_{N-1} + a_N``.
        Differentiable in ``x`` and in the parameters. Shape (..., n_N).
        """
        p = x.to(self.dtype)
        for k in range(1, self.depth):
            p = self.layer(k).prob_up(p)
        return self.layer(self.depth).logits_up(p)

    def mean_field_down(self, y: Tensor) -> Tensor:
        """Deterministic generation surrogate: ``p_{k-1} = σ(W_kᵀ p_k + b_k)``; returns ``p_0``."""
        p = y.to(self.dtype)
        for k in range(self.depth, 0, -1):
            p = self.layer(k).prob_down(p)
        return p

    def mean_field(self) -> MeanFieldNet:
        """The mean-field surrogate as an ``nn.Module`` sharing this network's parameters."""
        return MeanFieldNet(self)

    def config(self) -> dict:
        """Architecture as plain data."""
        return {"widths": list(self.widths), "tied": self.tied,
                "dtype": str(self.dtype).replace("torch.", "")}


class MeanFieldNet(nn.Module):
    """Mean-field surrogate ``x ↦`` top logits of a :class:`DeepRBM` (shares its parameters).

    ``forward(x)`` maps (batch, n_0) to logits (batch, n_N); the class scores are the
    sigmoids of these logits, and their argmax is the predicted class.
    """

    def __init__(self, net: DeepRBM) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.mean_field_logits(x)
