"""One-step gradient attacks on a scalar output (Bartlett, Bubeck, Cherapanamjeri, NeurIPS 2021).

The step ``δ = −c f(x) ∇f(x)/‖∇f(x)‖²`` zeroes the linearised output at ``c = 1``; ``c > 1``
overshoots. Three entry points:

- :func:`one_step_attack`: many random ReLU networks (:class:`~rgaudit.nets.relu.ReLUNetBatch`)
  of several depths at once, with the analytic backward;
- :func:`classifier_one_step`: any ``torch.nn.Module`` classifier, through its logit margin
  ``z_label − max_{k≠label} z_k`` (sign flip = misclassification);
- :func:`gradient_step` and :func:`fim_step` on a single scalar-logit function: the latter steps
  along the top eigenvector of the Bernoulli input FIM (:func:`rgaudit.fisher.autograd.dense_fim`),
  which for one logit is ``p(1−p) ∇f ∇fᵀ`` — so both steps coincide (DESIGN fact 6).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from rgaudit.fisher.autograd import dense_fim
from rgaudit.fisher.eig import top_eigenpairs
from rgaudit.nets.relu import ReLUNetBatch

Tensor = torch.Tensor
ScalarFn = Callable[[Tensor], Tensor]

DEFAULT_MULTIPLIERS = (1.0, 1.5, 2.0, 4.0)
NEAR_LINEARITY_R_REL = tuple(float(v) for v in np.geomspace(1e-3, 1.0, 13))


@dataclass(frozen=True)
class OneStepResult:
    """Outcome of :func:`one_step_attack` on ``n_nets`` networks × ``batch`` inputs.

    Attributes
    ----------
    f : Tensor of shape (n_nets, batch, D)
        Clean outputs at each attacked depth.
    ratio : Tensor of shape (n_nets, batch, D)
        ``‖δ‖/‖x‖`` at ``c = 1`` (``inf`` where the attack is undefined).
    f_after : Tensor of shape (n_nets, batch, D, C)
        Outputs after the step, per multiplier.
    success : Tensor of shape (n_nets, batch, D, C), bool
        The sign of ``f`` flipped (never counted when ``f(x) = 0`` or ``∇f(x) = 0``).
    """

    f: Tensor
    ratio: Tensor
    f_after: Tensor
    success: Tensor


def one_step_attack(
    nets: ReLUNetBatch,
    x: Tensor,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    depths: Sequence[int] | None = None,
) -> OneStepResult:
    """One gradient step ``δ = −c f(x) ∇f(x)/‖∇f(x)‖²`` on random ReLU networks of several depths.

    Parameters
    ----------
    nets : ReLUNetBatch
        ``n_nets`` networks with readouts at every depth.
    x : Tensor of shape (n_nets, batch, d) or (batch, d)
    multipliers : sequence of float, length C
    depths : sequence of int, length D, optional
        Depths to attack (0 = linear baseline); default all ``0 … nets.depth``.

    Returns
    -------
    OneStepResult
    """
    depths = list(range(nets.depth + 1)) if depths is None else [int(k) for k in depths]
    if not depths or min(depths) < 0 or max(depths) > nets.depth:
        raise ValueError(f"depths must lie in [0, {nets.depth}], got {depths}")
    cs = torch.as_tensor(list(multipliers), dtype=nets.dtype, device=nets.device)
    if cs.numel() == 0:
        raise ValueError("give at least one step multiplier")
    sub = nets.truncate(max(depths))
    x = sub._batch(x)
    n, b, d = x.shape
    f_all, g_all = sub.grad_all(x)
    idx = torch.as_tensor(depths, device=nets.device)
    f, g = f_all[..., idx], g_all[..., idx, :]  # (n,b,D), (n,b,D,d)
    gn2 = (g**2).sum(-1)
    valid = (gn2 > 0) & (f != 0)
    tiny = torch.finfo(g.dtype).tiny
    scale = torch.where(valid, f / gn2.clamp_min(tiny), torch.zeros_like(f))
    ratio = f.abs() / (gn2.sqrt() * x.norm(dim=-1, keepdim=True)).clamp_min(tiny)
    ratio = torch.where(valid, ratio, torch.full_like(f, math.inf))
    delta = -cs.view(1, 1, 1, -1, 1) * (scale.unsqueeze(-1) * g).unsqueeze(3)  # (n,b,D,C,d)
    xp = x.view(n, b, 1, 1, d) + delta
    f_after = torch.stack([  # each depth through its own layers only
        sub.truncate(k).forward_all(xp[:, :, i].reshape(n, -1, d))[..., -1].view(n, b, len(cs))
        for i, k in enumerate(depths)], dim=2)
    success = valid.unsqueeze(-1) & (torch.sign(f_after) == -torch.sign(f).unsqueeze(-1))
    return OneStepResult(f=f, ratio=ratio, f_after=f_after, success=success)


# ----------------------------------------------------------------------------- classifiers


def logit_margin(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    """``z_label(x) − max_{k ≠ label} z_k(x)`` for a module mapping (B, d) to (B, n_classes)."""
    z = model(x)
    if z.dim() != 2 or z.shape[0] != x.shape[0] or z.shape[1] < 2:
        raise ValueError(f"model must map (B, d) to (B, n_classes >= 2) logits; got {z.shape}")
    zl = z.gather(1, labels.view(-1, 1)).squeeze(1)
    other = z.scatter(1, labels.view(-1, 1), float("-inf")).amax(dim=1)
    return zl - other


def _margin_and_grad(model: nn.Module, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().clone().requires_grad_(True)
    m = logit_margin(model, x, labels)
    (g,) = torch.autograd.grad(m.sum(), x)
    return m.detach(), g


@dataclass(frozen=True)
class NearLinearityScan:
    """Median relative gradient change ``‖∇f(x + r u) − ∇f(x)‖/‖∇f(x)‖`` against ``r/‖x‖``."""

    r_rel: list[float]
    grad_change_median: list[float]


@dataclass(frozen=True)
class ClassifierAttack:
    """One-step attack on the logit margin of a classifier (inputs with positive margin only).

    ``success``/``success_clipped`` are per multiplier; clipped means ``x + δ`` clipped to the
    input box ``clip``. ``near_linearity`` maps ``"random"``/``"gradient"`` to the scan along that
    direction (empty without a generator).
    """

    name: str
    n_inputs: int
    d: int
    median_ratio: float  # ‖δ‖/‖x‖ at c = 1
    ratio_quartiles: list[float]
    success: list[float]
    success_clipped: list[float]
    multipliers: list[float]
    clip: list[float] | None
    near_linearity: dict[str, NearLinearityScan] = field(default_factory=dict)


def _near_linearity(model: nn.Module, x: Tensor, labels: Tensor, r_rel: Sequence[float],
                    generator: torch.Generator) -> dict[str, NearLinearityScan]:
    """Gradient change along a random and the descent direction (one autograd call each).

    ``x`` (B, d) are correctly classified inputs with reference classes ``labels`` (B,).
    """
    m, g = _margin_and_grad(model, x, labels)
    gn = (g**2).sum(1).clamp_min(torch.finfo(g.dtype).tiny).sqrt()
    xn = x.norm(dim=1)
    rr = torch.as_tensor(list(r_rel), dtype=x.dtype, device=x.device)
    u = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    dirs = {"random": u / u.norm(dim=1, keepdim=True),
            "gradient": -torch.sign(m).unsqueeze(1) * g / gn.unsqueeze(1)}
    out = {}
    for key, u in dirs.items():
        y = x + (rr.view(-1, 1, 1) * xn.view(1, -1, 1)) * u  # (R, B, d)
        _, gy = _margin_and_grad(model, y.reshape(-1, x.shape[1]), labels.repeat(len(rr)))
        dg = (gy.view(len(rr), *x.shape) - g).norm(dim=2) / gn
        out[key] = NearLinearityScan(r_rel=[float(v) for v in rr],
                                     grad_change_median=[float(v) for v in
                                                         dg.median(dim=1).values])
    return out


def classifier_one_step(
    model: nn.Module,
    x: Tensor,
    labels: Tensor | None = None,
    *,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    clip: tuple[float, float] | None = (0.0, 1.0),
    r_rel: Sequence[float] = NEAR_LINEARITY_R_REL,
    generator: torch.Generator | None = None,
    name: str = "classifier",
) -> ClassifierAttack:
    """The one-step measurements on any classifier ``model: (B, d) -> (B, n_classes)`` logits.

    The scalar output is the logit margin ``f = z_label − max_{k≠label} z_k``; ``f > 0`` means
    classified as ``label``, and the attack succeeds when ``f(x + δ) < 0`` (the predicted class
    changes). Inputs with ``f(x) ≤ 0`` (already misclassified) are dropped.

    Parameters
    ----------
    model : torch.nn.Module
        Deterministic; evaluated in its current mode (call ``model.eval()`` first if needed).
    x : Tensor of shape (B, d)
    labels : Tensor of shape (B,), optional
        Reference classes; default the model's own predictions.
    multipliers : sequence of float
    clip : (low, high) or None
        Input box for the clipped success rate.
    r_rel : sequence of float
        Radii ``r/‖x‖`` of the near-linearity scan (random and gradient directions).
    generator : torch.Generator, optional
        Draws the random directions (the scan is skipped without one).
    name : str

    Returns
    -------
    ClassifierAttack
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, d), got {tuple(x.shape)}")
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    labels = pred if labels is None else labels.to(x.device)
    keep = pred == labels
    x, labels = x[keep], labels[keep]
    if x.shape[0] == 0:
        raise ValueError("no input is classified as its label; nothing to attack")
    m, g = _margin_and_grad(model, x, labels)
    gn2 = (g**2).sum(1).clamp_min(torch.finfo(g.dtype).tiny)
    ratio = (m.abs() / gn2.sqrt() / x.norm(dim=1)).cpu().numpy()
    succ, succ_c = [], []
    with torch.no_grad():
        for c in multipliers:
            xp = x - c * (m / gn2).unsqueeze(1) * g
            succ.append(float((logit_margin(model, xp, labels) < 0).double().mean()))
            if clip is not None:
                xp = xp.clamp(*clip)
                succ_c.append(float((logit_margin(model, xp, labels) < 0).double().mean()))
    nl = {} if generator is None else _near_linearity(model, x, labels, r_rel, generator)
    q = np.quantile(ratio, [0.25, 0.5, 0.75])
    return ClassifierAttack(
        name=name, n_inputs=int(x.shape[0]), d=int(x.shape[1]), median_ratio=float(q[1]),
        ratio_quartiles=[float(v) for v in q], success=succ, success_clipped=succ_c,
        multipliers=[float(c) for c in multipliers], clip=None if clip is None else list(clip),
        near_linearity=nl,
    )


# ----------------------------------------------------------------------------- one function


def _value_and_grad(fn: ScalarFn, x: Tensor) -> tuple[Tensor, Tensor]:
    xg = x.detach().clone().requires_grad_(True)
    f = fn(xg).reshape(())
    (g,) = torch.autograd.grad(f, xg)
    return f.detach(), g


def gradient_step(fn: ScalarFn, x: Tensor, c: float = 1.0) -> Tensor:
    """The one-step attack ``δ = −c f(x) ∇f(x)/‖∇f(x)‖²`` on ``fn: (d,) -> ()``; shape (d,)."""
    f, g = _value_and_grad(fn, x)
    return -c * f * g / (g @ g)


def fim_step(fn: ScalarFn, x: Tensor, c: float = 1.0) -> Tensor:
    """Step along the top eigenvector ``v`` of the Bernoulli input FIM of ``σ(fn(x))``.

    ``δ = −c f(x) v / (v·∇f(x))`` zeroes the linearised logit at ``c = 1`` and does not depend
    on the sign of ``v``. The FIM is :func:`~rgaudit.fisher.autograd.dense_fim` with
    ``kind="bernoulli"``, its top eigenvector :func:`~rgaudit.fisher.eig.top_eigenpairs`.

    Parameters
    ----------
    fn : callable
        Maps one input of shape (d,) to a scalar logit.
    x : Tensor of shape (d,)
    c : float

    Returns
    -------
    Tensor of shape (d,), in ``x``'s dtype
    """
    if x.dim() != 1:
        raise ValueError(f"x must be one input of shape (d,), got {tuple(x.shape)}")
    fim = dense_fim(lambda v: fn(v[0]).reshape(1, 1), x.unsqueeze(0), kind="bernoulli")[0]
    v = top_eigenpairs(fim, 1).vectors[:, 0].to(x.dtype)
    f, g = _value_and_grad(fn, x)
    return -c * f * v / (v @ g)
