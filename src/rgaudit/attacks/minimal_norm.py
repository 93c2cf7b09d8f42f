"""The field's reference attacks from adv-lib, on the :class:`~rgaudit.attacks.base.Attack` base.

adv-lib (Rony et al.; imported only through :func:`rgaudit.attacks.advlib.attack_fn`) holds the
reference PyTorch implementations of DDN (by its author), FMN, Carlini–Wagner L2, FAB and APGD,
all batched over inputs. Every attack acts on a differentiable *surrogate* (for a DeepRBM its
mean-field network, for a :class:`~rgaudit.models.base.TorchClassifier` the model itself) and is
judged elsewhere (the base class, or :mod:`rgaudit.attacks.search`).

Two kinds:

- :class:`MinimalNormAttack` (DDN, FMN, CW-L2, FAB): the library returns, per input, a
  perturbation ``δ`` just past the surrogate's boundary. It is used as a direction, scaled to
  norm ε: ``x + ε δ/‖δ‖`` (the norm of the budget), so the same bisection that judges every
  direction on the stochastic network judges it;
- :class:`FixedBudgetAttack` (APGD, PGD): the library attacks a given budget per input; the
  minimal flipping ε is searched by re-running the attack at every ε of the search
  (:func:`rgaudit.attacks.search.minimal_eps_rerun`).

All runs are deterministic (no random restarts; APGD's random first iterate is drawn from a
forked, seeded generator): a rerun gives the same numbers and no global random state changes.
The callers of rgaudit seed APGD from stream ``"attack.apgd"`` of the run seed
(``child_seed(seed, "attack.apgd")``), so ``--seed`` moves its start; ``seed=0`` is only the
library default of a direct call.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, cast

import torch

from rgaudit.attacks.advlib import attack_fn
from rgaudit.attacks.base import Attack, DirectionAttack, Norm

Tensor = torch.Tensor


def advlib_call(name: str, *args: Any, **kwargs: Any) -> Tensor:
    """Call adv-lib's attack ``name`` (see :func:`~rgaudit.attacks.advlib.attack_fn`)."""
    return cast(Tensor, attack_fn(name)(*args, **kwargs))


class Float32Logits(torch.nn.Module):
    """Feeds float32 inputs to a logits model of any dtype and returns float32 logits.

    adv-lib mixes float32 buffers with the model's outputs; running it in float32 keeps every
    library code path on its tested dtype.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        p = next(model.parameters(), None)
        self.dtype = p.dtype if p is not None else torch.float32

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.to(self.dtype)).float()


def surrogate_of(model: Any) -> torch.nn.Module:
    """The differentiable logits module attacks act on.

    Parameters
    ----------
    model : DeepRBM, RBMClassifier, TorchClassifier or nn.Module
        A DeepRBM (or its :class:`~rgaudit.models.base.RBMClassifier`) gives its mean-field
        network; a :class:`~rgaudit.models.base.TorchClassifier` its module; a plain module is
        taken as a logits model.
    """
    from rgaudit.nets.deep_rbm import DeepRBM

    rbm = getattr(model, "rbm", None)
    if isinstance(model, DeepRBM):
        rbm = model
    if rbm is not None:
        return rbm.mean_field()
    module = getattr(model, "module", None)
    if isinstance(module, torch.nn.Module):
        return module
    if isinstance(model, torch.nn.Module):
        return model
    raise TypeError(f"cannot attack a {type(model).__name__}: give a DeepRBM, a Classifier or a "
                    "torch module mapping flat inputs to logits")


def _scaled_unit(v: Tensor, norm: Norm) -> Tensor:
    """``v / ‖v‖`` in the budget's norm (rows of zeros stay zero)."""
    ord_ = 2 if norm == "l2" else float("inf")
    n = torch.linalg.vector_norm(v.flatten(1), ord=ord_, dim=1).clamp_min(1e-300)
    return v / n.reshape(-1, *([1] * (v.dim() - 1)))


class MinimalNormAttack(DirectionAttack):
    """A budget-free minimal-norm attack used as a direction ``δ = x_adv − x``.

    The budget-ε candidate is ``x + ε δ/‖δ‖`` (norm of the budget): the shape of the library's
    perturbation is kept (under L∞ this differs from the ``sign(δ)`` step of
    :class:`DirectionAttack`, which would move the untouched pixels too).

    Parameters
    ----------
    model : module or Classifier
        See :func:`surrogate_of`.
    norm : {"l2", "linf"}
    """

    name = "minimal-norm"
    scaled_step = True

    def __init__(self, *, model: Any, norm: Norm = "l2") -> None:
        super().__init__(norm=norm)
        self.model = Float32Logits(surrogate_of(model)).eval()

    @abstractmethod
    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        """The library's adversarial inputs (n, d) (float32 in, same shape out)."""

    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        xa = self.perturb(x.detach().float(), y.long())
        return (xa.to(x.dtype) - x).detach()

    def unit(self, x: Tensor, y: Tensor) -> Tensor:
        """The budget-1 step, ``δ/‖δ‖`` (n, d)."""
        return _scaled_unit(self.cached_direction(x, y), self.norm).to(x.dtype)

    def run(self, x: Tensor, y: Tensor, *, epsilons: Tensor) -> Tensor:
        step = self.unit(x, y)
        return torch.stack([x + float(e) * step for e in epsilons])


class DDN(MinimalNormAttack):
    """Decoupled direction and norm (Rony et al. 2019), L2; adv-lib ``ddn``, no quantisation."""

    name = "ddn"

    def __init__(self, *, model: Any, norm: Norm = "l2", steps: int = 200) -> None:
        super().__init__(model=model, norm=norm)
        self.steps = int(steps)

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        return advlib_call("ddn", self.model, x, y, steps=self.steps, levels=None)


class FMN(MinimalNormAttack):
    """Fast minimum-norm attack (Pintor et al. 2021), L2 or L∞ (the budget's norm)."""

    def __init__(self, *, model: Any, norm: Norm = "l2", steps: int = 200) -> None:
        super().__init__(model=model, norm=norm)
        self.steps = int(steps)
        self.name = f"fmn-{norm}"

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        return advlib_call("fmn", self.model, x, y, norm=2 if self.norm == "l2" else float("inf"),
                                steps=self.steps)


class CarliniWagnerL2(MinimalNormAttack):
    """Carlini–Wagner L2 (adv-lib ``carlini_wagner_l2``): binary search on the constant."""

    name = "cw-l2"

    def __init__(self, *, model: Any, norm: Norm = "l2", binary_search_steps: int = 9,
                 max_iterations: int = 1000, initial_const: float = 0.1) -> None:
        super().__init__(model=model, norm=norm)
        self.bss, self.max_iter, self.c0 = (int(binary_search_steps), int(max_iterations),
                                            float(initial_const))

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        return advlib_call("cw_l2", self.model, x, y, binary_search_steps=self.bss,
                                  max_iterations=self.max_iter, initial_const=self.c0,
                                  learning_rate=0.01)


class FAB(MinimalNormAttack):
    """Fast adaptive boundary (Croce & Hein 2020), L2 or L∞ (the budget's norm), no restarts."""

    def __init__(self, *, model: Any, norm: Norm = "l2", n_iter: int = 100) -> None:
        super().__init__(model=model, norm=norm)
        self.n_iter = int(n_iter)
        self.name = f"fab-{norm}"

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        return advlib_call("fab", self.model, x, y, norm=2 if self.norm == "l2" else float("inf"),
                                n_iter=self.n_iter)


class FixedBudgetAttack(Attack):
    """An attack for a given budget per input; :meth:`run` re-runs it at every ε.

    Subclasses write :meth:`attack_at`. The minimal flipping ε is searched by re-running the
    attack at each ε of the search (:func:`rgaudit.attacks.search.minimal_eps_rerun`), never by
    bisection along one direction.
    """

    @abstractmethod
    def attack_at(self, x: Tensor, y: Tensor, eps: Tensor) -> Tensor:
        """Adversarial inputs (n, d) for per-input budgets ``eps`` (n,)."""

    def run(self, x: Tensor, y: Tensor, *, epsilons: Tensor) -> Tensor:
        n = x.shape[0]
        out = []
        for e in epsilons:
            if float(e) == 0:
                out.append(x.clone())
                continue
            out.append(self.attack_at(x, y, torch.full((n,), float(e), dtype=torch.float64)))
        return torch.stack(out)

    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        raise TypeError(f"{self.name} is a fixed-budget attack: search its minimal ε by "
                        "re-running it (rgaudit.attacks.search.minimal_eps_rerun), not along "
                        "one direction")


class APGD(FixedBudgetAttack):
    """Auto-PGD (Croce & Hein 2020, AutoAttack's), adv-lib ``apgd``, DLR loss.

    APGD's first iterate is a random point of the ε-ball (adv-lib draws it from torch's global
    generator); it is drawn inside a forked, seeded generator (``seed``), so the global state is
    untouched and a rerun repeats. The same ``seed`` starts every ε of a re-run bisection.

    Parameters
    ----------
    model : module or Classifier
    norm : {"l2", "linf"}
    n_iter : int, default 100
    loss : {"dlr", "ce"}, default "dlr"
    seed : int, default 0
        Seed of the random first iterate (``torch.manual_seed`` of the fork). 0 is the library
        default of a direct call; rgaudit's audit, attack and attack study pass
        ``child_seed(run_seed, "attack.apgd")`` (docs/design.md, "Random streams").
    """

    def __init__(self, *, model: Any, norm: Norm = "l2", n_iter: int = 100,
                 loss: str = "dlr", seed: int = 0) -> None:
        super().__init__(norm=norm)
        self.model = Float32Logits(surrogate_of(model)).eval()
        self.n_iter, self.loss, self.seed = int(n_iter), loss, int(seed)
        self.name = f"apgd-{loss}"

    def attack_at(self, x: Tensor, y: Tensor, eps: Tensor) -> Tensor:
        # APGD starts from a random point of the ball drawn from torch's global generator:
        # fork it (restored on exit) and seed the fork, so runs repeat and nothing leaks
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            xa = advlib_call("apgd", self.model, x.detach().float(), y.long(), eps=eps.float(),
                                   norm=2 if self.norm == "l2" else float("inf"),
                                   n_iter=self.n_iter, loss_function=self.loss, use_rs=False)
        return xa.to(x.dtype).detach()


class PGDEachEps(FixedBudgetAttack):
    """Projected gradient descent re-run at every ε (ART ``ProjectedGradientDescent``).

    Same settings as the audit's PGD (cross-entropy, step ε/4, no random start), with per-input
    budgets so that a bisection can re-run it at each input's own ε.

    Parameters
    ----------
    model : module or Classifier
    norm : {"l2", "linf"}
    max_iter : int, default 20
    rel_step : float, default 0.25
    """

    name = "pgd"

    def __init__(self, *, model: Any, norm: Norm = "l2", max_iter: int = 20,
                 rel_step: float = 0.25, n_classes: int | None = None,
                 n_features: int | None = None) -> None:
        super().__init__(norm=norm)
        from rgaudit.attacks.baselines import art_classifier

        sur = surrogate_of(model)
        nc = n_classes or int(getattr(model, "n_classes", 0) or 0)
        nf = n_features or int(getattr(model, "n_features", 0) or 0)
        if not nc or not nf:
            rbm = getattr(model, "rbm", None) or model
            widths = getattr(rbm, "widths", None)
            if widths is None:
                raise ValueError("PGDEachEps needs n_classes and n_features for a plain module")
            nf, nc = int(widths[0]), int(widths[-1])
        self.classifier = art_classifier(sur, nf, nc)
        self.max_iter, self.rel_step = int(max_iter), float(rel_step)

    def attack_at(self, x: Tensor, y: Tensor, eps: Tensor) -> Tensor:
        import numpy as np
        from art.attacks.evasion import ProjectedGradientDescent

        e = eps.detach().cpu().numpy().astype(np.float32).reshape(-1, 1)
        e = np.maximum(e, 1e-12)
        atk = ProjectedGradientDescent(
            self.classifier, norm=2 if self.norm == "l2" else np.inf, eps=e,
            eps_step=self.rel_step * e, max_iter=self.max_iter, num_random_init=0,
            batch_size=max(1, x.shape[0]), verbose=False)
        onehot = np.eye(self.classifier.nb_classes, dtype=np.float32)[y.cpu().numpy()]
        adv = atk.generate(x.detach().cpu().float().numpy(), y=onehot)
        return torch.from_numpy(adv).to(device=x.device, dtype=x.dtype)
