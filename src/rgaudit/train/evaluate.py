"""Test accuracy of a trained :class:`DeepRBM`, mean-field and stochastic, with standard errors."""

from __future__ import annotations

import math
from typing import Any

import torch

from rgaudit.nets.deep_rbm import DeepRBM

Tensor = torch.Tensor


def _binomial(correct: Tensor) -> dict[str, float]:
    n = int(correct.numel())
    acc = float(correct.to(torch.float64).mean())
    return {"accuracy": acc, "stderr": math.sqrt(max(acc * (1 - acc), 0.0) / max(n, 1)),
            "n": n}


@torch.no_grad()
def evaluate(net: DeepRBM, X: Tensor, y: Tensor, *, n_samples: int = 1000,
             generator: torch.Generator | None = None) -> dict[str, Any]:
    """Accuracy of the mean-field surrogate and of the sampled network on ``(X, y)``.

    Parameters
    ----------
    net : DeepRBM
    X : Tensor of shape (n_inputs, n_0)
    y : Tensor of shape (n_inputs,)
    n_samples : int, default 1000
        Chains per input for :meth:`DeepRBM.predict_proba`.
    generator : torch.Generator, optional

    Returns
    -------
    dict
        ``{"mean_field": {"accuracy", "stderr", "n"}, "stochastic": {..., "n_samples",
        "mean_proba_stderr", "max_proba_stderr"}}``. ``stderr`` is the binomial standard error
        of the accuracy over the test inputs; the ``*_proba_stderr`` entries give the Monte Carlo
        error of the averaged output probabilities.
    """
    X = X.to(device=net.device, dtype=net.dtype)
    y = y.to(net.device)
    mf = _binomial(net.mean_field_logits(X).argmax(-1) == y)
    est = net.predict_proba(X, n_samples, generator, return_stderr=True)
    st = _binomial(est.mean.argmax(-1) == y)
    st.update(n_samples=int(n_samples), mean_proba_stderr=float(est.stderr.mean()),
              max_proba_stderr=float(est.stderr.max()))
    return {"mean_field": mf, "stochastic": st}
