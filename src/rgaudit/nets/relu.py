"""Random ReLU networks, many at once (Bartlett, Bubeck, Cherapanamjeri, NeurIPS 2021).

A network of depth ``L`` with widths ``(d_0 = d, d_1, …, d_L)`` computes

    f_L(x) = r_L · relu(W_L relu(⋯ relu(W_1 x + b_1) ⋯) + b_L),

``W_k`` of shape ``(d_k, d_{k-1})`` with independent ``N(0, 1/d_{k-1})`` entries (the talk's
convention), readout ``r_L`` with ``N(0, 1/d_L)`` entries, optional biases ``b_k ~ N(0, s²)``.

``ReLUNetBatch`` holds ``n_nets`` independent networks whose weights are stacked along a leading
axis (``W_k`` of shape ``(n_nets, d_k, d_{k-1})``) so that every operation is one batched matmul,
on CPU or CUDA through the same code. It also holds one independent readout per depth
``k = 0 … L``: the depth-``k`` network ``f_k`` shares ``W_1 … W_k`` with the others and has its own
readout ``r_k`` (``k = 0`` is the random *linear* function ``r_0 · x``, the baseline of the talk).
Each ``f_k`` is exactly distributed as a random network of depth ``k``; the depths are correlated
with each other (common random numbers), which is fine for per-depth statistics and makes depth
comparisons less noisy.

Without biases ``f`` is positively 1-homogeneous, so ``x · ∇f(x) = f(x)`` (Euler); hence the
size of the one-step attack relative to the input, ``|f(x)| / (‖∇f(x)‖ ‖x‖)``, is exactly
``|cos ∠(x, ∇f(x))|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

Tensor = torch.Tensor

WIDTH_PROFILES = ("constant", "fixed", "bottleneck", "growing")


def width_profile(
    d: int, depth: int, kind: str = "constant", *, width: int | None = None
) -> list[int]:
    """Widths ``(d_0, d_1, …, d_L)`` of a named profile.

    Parameters
    ----------
    d : int
        Input dimension ``d_0``.
    depth : int
        Number of hidden layers ``L`` (0 gives the linear function).
    kind : {"constant", "fixed", "bottleneck", "growing"}
        ``"constant"``: every hidden width equals ``d`` (widths tied to ``d``).
        ``"fixed"``: every hidden width equals ``width`` whatever ``d``.
        ``"bottleneck"``: hidden widths ``d, d/4, d/4, …, d`` — the middle layers have ``d // 4``
        units (at least 1), the first and the last ``d``.
        ``"growing"``: hidden width of layer ``k`` is ``d · 2^(k-1)``, capped at ``width`` if given.
    width : int, optional
        Hidden width for ``"fixed"`` (required) and the cap for ``"growing"``.

    Returns
    -------
    list of int of length ``depth + 1``
    """
    if d < 1 or depth < 0:
        raise ValueError(f"need d >= 1 and depth >= 0, got d={d}, depth={depth}")
    if kind == "constant":
        hidden = [d] * depth
    elif kind == "fixed":
        if width is None or width < 1:
            raise ValueError("width profile 'fixed' needs width >= 1 (pass width=...)")
        hidden = [width] * depth
    elif kind == "bottleneck":
        hidden = [d if k in (0, depth - 1) else max(1, d // 4) for k in range(depth)]
    elif kind == "growing":
        hidden = [d * 2**k for k in range(depth)]
        if width is not None:
            hidden = [min(h, width) for h in hidden]
    else:
        raise ValueError(f"unknown width profile {kind!r}; choose one of {WIDTH_PROFILES}")
    return [d, *hidden]


@dataclass(frozen=True)
class ReLUNetBatch:
    """``n_nets`` random ReLU networks with readouts at every depth ``0 … L``.

    Attributes
    ----------
    weights : tuple of Tensor, ``weights[k-1]`` of shape (n_nets, d_k, d_{k-1})
    readouts : tuple of Tensor, ``readouts[k]`` of shape (n_nets, d_k), k = 0 … L
        Readout of the depth-``k`` network (``k = 0``: the linear function of the input).
    biases : tuple of Tensor or None, ``biases[k-1]`` of shape (n_nets, d_k)
    bias_scale : float
        Standard deviation the biases were drawn with (0 when ``biases`` is None).
    """

    weights: tuple[Tensor, ...]
    readouts: tuple[Tensor, ...]
    biases: tuple[Tensor, ...] | None = None
    bias_scale: float = 0.0

    @property
    def n_nets(self) -> int:
        return self.readouts[0].shape[0]

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def widths(self) -> list[int]:
        return [r.shape[1] for r in self.readouts]

    @property
    def device(self) -> torch.device:
        return self.readouts[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.readouts[0].dtype

    def truncate(self, depth: int) -> ReLUNetBatch:
        """The same networks cut after ``depth`` hidden layers (no copy)."""
        if not 0 <= depth <= self.depth:
            raise ValueError(f"depth must be in [0, {self.depth}], got {depth}")
        return ReLUNetBatch(
            weights=self.weights[:depth],
            readouts=self.readouts[: depth + 1],
            biases=None if self.biases is None else self.biases[:depth],
            bias_scale=self.bias_scale,
        )

    def select(self, index: slice | Tensor) -> ReLUNetBatch:
        """A sub-batch of networks (``index`` into the leading axis)."""
        return ReLUNetBatch(
            weights=tuple(w[index] for w in self.weights),
            readouts=tuple(r[index] for r in self.readouts),
            biases=None if self.biases is None else tuple(b[index] for b in self.biases),
            bias_scale=self.bias_scale,
        )

    def _batch(self, x: Tensor) -> Tensor:
        d = self.widths[0]
        if x.shape[-1] != d:
            raise ValueError(f"inputs have last dimension {x.shape[-1]}, the networks take {d}")
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.n_nets, -1, -1)
        if x.dim() != 3 or x.shape[0] != self.n_nets:
            raise ValueError(
                f"inputs must have shape (batch, {d}) or ({self.n_nets}, batch, {d}); "
                f"got {tuple(x.shape)}"
            )
        return x.to(device=self.device, dtype=self.dtype)

    def preactivations(self, x: Tensor) -> list[Tensor]:
        """Pre-activations ``W_k h_{k-1} + b_k`` of every hidden layer.

        Parameters
        ----------
        x : Tensor of shape (batch, d) or (n_nets, batch, d)

        Returns
        -------
        list of Tensor, entry ``k-1`` of shape (n_nets, batch, d_k)
        """
        h = self._batch(x)
        pre = []
        for k, w in enumerate(self.weights):
            z = torch.bmm(h, w.transpose(1, 2))
            if self.biases is not None:
                z = z + self.biases[k].unsqueeze(1)
            pre.append(z)
            h = torch.relu(z)
        return pre

    def hidden(self, x: Tensor) -> list[Tensor]:
        """Hidden representations ``h_k = relu(pre_k)``, k = 1 … L, each (n_nets, batch, d_k)."""
        return [torch.relu(z) for z in self.preactivations(x)]

    def forward_all(self, x: Tensor) -> Tensor:
        """Outputs of the networks of every depth.

        Parameters
        ----------
        x : Tensor of shape (batch, d) or (n_nets, batch, d)

        Returns
        -------
        Tensor of shape (n_nets, batch, L + 1)
            Entry ``[..., k]`` is ``f_k(x)``.
        """
        x = self._batch(x)
        outs = [torch.einsum("nbd,nd->nb", x, self.readouts[0])]
        for k, z in enumerate(self.preactivations(x), start=1):
            outs.append(torch.einsum("nbd,nd->nb", torch.relu(z), self.readouts[k]))
        return torch.stack(outs, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """Output of the deepest network ``f_L``, shape (n_nets, batch)."""
        return self.forward_all(x)[..., -1]

    def grad_all(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs and input gradients of the networks of every depth (analytic backward).

        One backward pass serves all depths: at layer ``k`` the cotangents of every network of
        depth ``≥ k`` are stacked as extra rows of one batched matmul.

        Parameters
        ----------
        x : Tensor of shape (batch, d) or (n_nets, batch, d)

        Returns
        -------
        f : Tensor of shape (n_nets, batch, L + 1)
        grad : Tensor of shape (n_nets, batch, L + 1, d)
            ``grad[..., k, :] = ∇f_k(x)``; the ReLU derivative at 0 is taken as 0 (as autograd).
        """
        x = self._batch(x)
        n, b, _ = x.shape
        pre = self.preactivations(x)
        f = [torch.einsum("nbd,nd->nb", x, self.readouts[0])]
        f += [torch.einsum("nbd,nd->nb", torch.relu(z), self.readouts[k + 1])
              for k, z in enumerate(pre)]
        # cot: (n, b, m, d_k) cotangents at layer k of the depths L, L-1, …, k (m of them)
        cot = x.new_zeros(n, b, 0, self.widths[-1])
        for k in range(self.depth, 0, -1):
            r = self.readouts[k].view(n, 1, 1, -1).expand(n, b, 1, -1)
            cot = torch.cat([cot, r], dim=2) * (pre[k - 1] > 0).unsqueeze(2).to(x.dtype)
            m = cot.shape[2]
            cot = torch.bmm(cot.reshape(n, b * m, -1), self.weights[k - 1]).view(n, b, m, -1)
        r0 = self.readouts[0].view(n, 1, 1, -1).expand(n, b, 1, -1)
        grad = torch.cat([cot, r0], dim=2).flip(2)
        return torch.stack(f, dim=-1), grad

    def grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Output and gradient of the deepest network: (n_nets, batch), (n_nets, batch, d)."""
        f, g = self.truncate(self.depth).grad_all(x)
        return f[..., -1], g[..., -1, :]

    def autograd_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`grad`, computed by autograd (reference for the analytic backward)."""
        x = self._batch(x).detach().clone().requires_grad_(True)
        f = self.forward(x)
        (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), g


def sample_relu_nets(
    n_nets: int,
    widths: Sequence[int],
    *,
    generator: torch.Generator,
    bias_scale: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> ReLUNetBatch:
    """Draw ``n_nets`` independent random ReLU networks.

    Parameters
    ----------
    n_nets : int
    widths : sequence of int
        ``(d, d_1, …, d_L)``; see :func:`width_profile`.
    generator : torch.Generator
        The only source of randomness; the networks live on ``generator.device``.
        It draws, in order, ``W_1, …, W_L``, then the readouts ``r_0, …, r_L``, then biases.
    bias_scale : float, default 0
        Standard deviation ``s`` of the hidden biases ``b_k ~ N(0, s²)``; 0 means no biases. For
        scale: with ``‖x‖ = √d`` the pre-activations of layer ``k`` have standard deviation
        ``2^{-(k-1)/2}``, so ``s`` is in units of the first layer's pre-activation.
    dtype : torch.dtype, default float32

    Returns
    -------
    ReLUNetBatch
    """
    widths = [int(w) for w in widths]
    if n_nets < 1 or not widths or min(widths) < 1:
        raise ValueError(f"need n_nets >= 1 and positive widths, got {n_nets}, {widths}")
    if bias_scale < 0:
        raise ValueError(f"bias_scale must be >= 0, got {bias_scale}")
    dev = generator.device

    def normal(*shape: int, std: float) -> Tensor:
        return torch.randn(*shape, generator=generator, device=dev, dtype=dtype) * std

    weights = tuple(
        normal(n_nets, widths[k], widths[k - 1], std=widths[k - 1] ** -0.5)
        for k in range(1, len(widths))
    )
    readouts = tuple(normal(n_nets, w, std=w**-0.5) for w in widths)
    biases = None
    if bias_scale > 0:
        biases = tuple(normal(n_nets, w, std=bias_scale) for w in widths[1:])
    return ReLUNetBatch(weights=weights, readouts=readouts, biases=biases, bias_scale=bias_scale)


def weight_bytes(widths: Sequence[int], dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the weights of one network with these widths (all readouts included)."""
    n = sum(widths[k] * widths[k - 1] for k in range(1, len(widths))) + sum(widths)
    return n * torch.empty((), dtype=dtype).element_size()


def sphere_inputs(
    n_nets: int, batch: int, d: int, *, generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Inputs uniform on the sphere of radius ``√d`` (the talk's normalisation).

    Returns
    -------
    Tensor of shape (n_nets, batch, d)
    """
    x = torch.randn(n_nets, batch, d, generator=generator, device=generator.device, dtype=dtype)
    return x * (d**0.5 / x.norm(dim=-1, keepdim=True))


def relu_mlp(widths: Sequence[int], *, generator: torch.Generator) -> nn.Sequential:
    """ReLU MLP ``widths[0] → … → widths[-1]`` as a ``torch.nn.Sequential`` (CPU, float32).

    The talk's initialisation: weights ``N(0, 1/fan_in)`` drawn from ``generator`` layer by
    layer (torch's global RNG is not touched), zero biases; no ReLU after the last layer (its
    outputs are logits).
    """
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"need >= 2 positive widths, got {list(widths)}")
    layers: list[nn.Module] = []
    for k in range(1, len(widths)):
        lin = nn.utils.skip_init(nn.Linear, widths[k - 1], widths[k])  # no global-RNG draw
        with torch.no_grad():
            w = torch.randn(lin.weight.shape, generator=generator) / widths[k - 1] ** 0.5
            lin.weight.copy_(w)
            lin.bias.zero_()
        layers += [lin, nn.ReLU()] if k < len(widths) - 1 else [lin]
    return nn.Sequential(*layers)
