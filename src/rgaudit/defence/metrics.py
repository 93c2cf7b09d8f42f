"""Metrics of a cloning study: clone quality, transfer of adversarial examples, victim utility.

- **accuracy**: the clone's top-1 accuracy on held-out labelled data;
- **fidelity**: fraction of held-out inputs on which the clone's label equals the victim's;
- **transfer rate**: among held-out inputs the victim classifies correctly, the fraction the
  victim misclassifies after an L2 perturbation of size ``eps_adv`` crafted *on the clone*
  (FIM direction of the clone's softmax output, or FGM via ART) — what a cloner gains;
- **victim utility**: fraction of answers whose top-1 class is unchanged by the defence (must be
  1), and the mean L1 and KL deviations of the returned answers from the honest ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rgaudit.defence.budget import OutputKind, deviation
from rgaudit.defence.cloning_attacks import Clone
from rgaudit.defence.poison import PoisonedOutputs

Tensor = torch.Tensor
Predict = Callable[[Tensor], Tensor]


def victim_utility(po: PoisonedOutputs, kind: OutputKind) -> dict[str, float]:
    """Utility of the returned answers for legitimate use.

    Returns
    -------
    dict
        ``top1_preserved`` (fraction), ``mean_l1``, ``max_l1``, ``mean_kl``, ``n``.
    """
    y = po.y.detach().cpu().double().numpy()
    z = po.y_poisoned.detach().cpu().double().numpy()
    l1 = np.array([deviation(a, b, "l1", kind) for a, b in zip(y, z, strict=True)])
    kl = np.array([deviation(a, b, "kl", kind) for a, b in zip(y, z, strict=True)])
    return {"top1_preserved": float(np.mean(y.argmax(1) == z.argmax(1))),
            "mean_l1": float(l1.mean()), "max_l1": float(l1.max()),
            "mean_kl": float(kl.mean()), "n": int(len(y))}


def clone_quality(clone: Clone, victim_predict: Predict, x: Tensor, labels: Tensor
                  ) -> dict[str, float]:
    """Clone accuracy and fidelity on held-out inputs ``x`` (n, d) with labels (n,)."""
    c = clone.predict(x)
    v = victim_predict(x).cpu()
    return {"accuracy": float((c == labels.cpu()).double().mean()),
            "fidelity": float((c == v).double().mean())}


def _softmax_grad(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``∇_x softmax(model(x))_y`` for every row; shape (n, d)."""
    p = next(model.parameters())
    xx = x.detach().to(p.dtype).requires_grad_(True)
    prob = torch.softmax(model(xx), -1).gather(1, y.view(-1, 1).to(xx.device)).sum()
    (g,) = torch.autograd.grad(prob, xx)
    return g.to(x.dtype)


def batched_softmax_fim(model: torch.nn.Module, x: Tensor) -> Tensor:
    """Input FIM ``Jᵀ (diag p − p pᵀ) J`` of a logits model's softmax output; (n, d, d)."""
    p0 = next(model.parameters())
    xx = x.detach().to(p0.dtype)
    J = torch.func.vmap(torch.func.jacrev(lambda v: model(v.unsqueeze(0))[0]))(xx)
    with torch.no_grad():
        p = torch.softmax(model(xx), -1)
    M = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    F = J.transpose(-1, -2) @ M @ J
    return (0.5 * (F + F.transpose(-1, -2))).detach().to(torch.float64)


def transfer_rates(clone: Clone, victim_predict: Predict, x: Tensor, labels: Tensor,
                   eps_adv: float, methods: tuple[str, ...] = ("fim", "fgm")
                   ) -> dict[str, float]:
    """Victim error rate on adversarial examples crafted on the clone (L2 budget ``eps_adv``).

    Parameters
    ----------
    clone : Clone
    victim_predict : callable
        Victim's predicted classes for inputs (n, d).
    x : Tensor of shape (n, d)
    labels : Tensor of shape (n,)
    eps_adv : float
        L2 radius of the perturbation.
    methods : tuple of str
        ``"fim"`` (top eigenvector of the clone's softmax-output FIM, signed against the true
        class; :class:`rgaudit.attacks.fim.FIMAttack`; the FIM is the ``Jᵀ M J`` of
        :func:`rgaudit.fisher.autograd.dense_fim`, batched with ``vmap``) and/or ``"fgm"``
        (ART's fast gradient method on the clone; :class:`rgaudit.attacks.baselines.FGM`).

    Returns
    -------
    dict
        ``{method: rate}`` over the inputs the victim gets right, plus ``n_correct``.
    """
    from rgaudit.attacks.base import DirectionAttack
    from rgaudit.attacks.baselines import FGM, art_classifier
    from rgaudit.attacks.fim import FIMAttack

    x = x.to(torch.float64)
    ok = victim_predict(x).cpu() == labels.cpu()
    xs, ys = x[ok], labels[ok]
    out: dict[str, float] = {"n_correct": int(ok.sum())}
    if not bool(ok.any()):
        return {**out, **{m: float("nan") for m in methods}}
    model = clone.model
    k = int(labels.max()) + 1
    for m in methods:
        att: DirectionAttack
        if m == "fim":
            att = FIMAttack(fim_fn=lambda z: batched_softmax_fim(model, z),
                            grad_fn=lambda z, t: _softmax_grad(model, z, t), norm="l2")
        elif m == "fgm":
            n_out = model(xs[:1].to(next(model.parameters()).dtype)).shape[-1]
            att = FGM(classifier=art_classifier(model, x.shape[1], max(n_out, k)), norm="l2")
        else:
            raise ValueError(f"unknown transfer attack {m!r}; use 'fim' or 'fgm'")
        res = att(xs, ys, epsilons=[float(eps_adv)],
                  judge=lambda z: victim_predict(z).cpu())
        out[m] = float(res.flip_rate[0])
    return out
