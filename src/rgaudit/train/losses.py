"""Classification losses on the output RBM's logits ``W_N h_{N-1} + a_N``."""

from __future__ import annotations

import torch
from torch.nn import functional as F

Tensor = torch.Tensor

LOSSES = ("softmax", "bce")


def output_loss(logits: Tensor, y: Tensor, kind: str) -> Tensor:
    """Mean loss of output logits against class labels.

    Parameters
    ----------
    logits : Tensor of shape (batch, n_out) or (batch, n_chains, n_out)
        With a chain axis, every chain is scored against its input's label.
    y : Tensor of shape (batch,), int64
    kind : {"softmax", "bce"}
        ``"softmax"``: cross-entropy of ``softmax(logits)``; ``"bce"``: each output unit's
        Bernoulli ``σ(logit)`` against the one-hot label (the output conditional of the RBM
        taken literally), summed over units.

    Returns
    -------
    Tensor (scalar)
    """
    if logits.dim() == 3:
        y = y.unsqueeze(1).expand(logits.shape[:2])
        logits = logits.reshape(-1, logits.shape[-1])
        y = y.reshape(-1)
    if kind == "softmax":
        return F.cross_entropy(logits, y)
    if kind == "bce":
        target = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / y.shape[0]
    raise ValueError(f"unknown loss {kind!r}; use one of {LOSSES}")
