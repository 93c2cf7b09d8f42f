"""The supervised output layer: fit ``P(y_j = 1 | h) = σ(W_N h + a_N)`` to one-hot labels.

With the layers below frozen this is a convex problem (logistic regression on the
penultimate-layer activations), solved full-batch with L-BFGS: deterministic and fast.
"""

from __future__ import annotations

from typing import Any

import torch

from rgaudit.nets.rbm import RBM
from rgaudit.train.losses import output_loss

Tensor = torch.Tensor


def fit_output_layer(rbm: RBM, H: Tensor, y: Tensor, *, loss: str = "bce",
                     l2: float = 1e-4, max_iter: int = 200) -> dict[str, Any]:
    """Fit the output RBM's up-conditional to labels by L2-regularised logistic regression.

    Parameters
    ----------
    rbm : RBM
        The output layer ``t_N`` (``n_out`` = number of classes).
    H : Tensor of shape (n_samples, n_in)
        Penultimate activations (mean-field probabilities or samples), fixed.
    y : Tensor of shape (n_samples,), int64 class indices ``< n_out``
    loss : {"bce", "softmax"}, default "bce"
    l2 : float
        Penalty ``l2 · ‖W‖²`` (keeps the problem strictly convex when classes separate).
    max_iter : int
        L-BFGS iterations.

    Returns
    -------
    dict
        ``{"loss": final loss, "train_accuracy": …}``.
    """
    if int(y.max()) >= rbm.n_out:
        raise ValueError(f"labels up to {int(y.max())} but the output layer has {rbm.n_out} units")
    H = H.detach().to(device=rbm.W.device, dtype=rbm.W.dtype)
    y = y.to(rbm.W.device)
    with torch.no_grad():
        rbm.W.zero_()
        rbm.a.zero_()
    opt = torch.optim.LBFGS([rbm.W, rbm.a], lr=1.0, max_iter=max_iter,
                            line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        value = output_loss(rbm.logits_up(H), y, loss) + l2 * (rbm.W**2).sum()
        value.backward()
        return value

    opt.step(closure)
    with torch.no_grad():
        logits = rbm.logits_up(H)
        final = float(output_loss(logits, y, loss))
        acc = float((logits.argmax(-1) == y).to(torch.float64).mean())
    rbm.zero_grad(set_to_none=True)
    return {"loss": final, "train_accuracy": acc}
