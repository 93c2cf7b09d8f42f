"""Standard attacks from the adversarial-robustness-toolbox (ART), plus random directions.

All gradient attacks act on a differentiable surrogate (for a DeepRBM: the mean-field network,
wrapped by :func:`art_classifier` in ``art.estimators.classification.PyTorchClassifier``); success
is judged on the stochastic network by the base class, so every method meets the same budget
projection, the same [0, 1] clipping and the same judge.

- :class:`FGM`: fast gradient method; a direction attack whose direction is the classifier's
  loss gradient from ART (``loss_gradient``, what ART's ``FastGradientMethod`` steps along) — with
  the L∞ budget its step ``ε sign(∇)`` is FGSM. The gradient is read unclipped: ART's own FGM
  would clip a tiny probe step at the box and lose the components of black (0) pixels.
- :class:`PGD`: ART ``ProjectedGradientDescent`` run for every budget.
- :class:`DeepFool`: ART ``DeepFool`` (budget-free minimal perturbation); projected per budget.
- :class:`RandomDirection`: a Gaussian direction per input (explicit generator).
"""

from __future__ import annotations

import numpy as np
import torch
from art.attacks.evasion import DeepFool as _ARTDeepFool
from art.attacks.evasion import ProjectedGradientDescent
from art.estimators.classification import PyTorchClassifier

from rgaudit.attacks.base import Attack, DirectionAttack, Norm

Tensor = torch.Tensor


class _Float32Logits(torch.nn.Module):
    """Feeds ART's float32 arrays to a model of any dtype and returns float32 logits."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.to(self.dtype)).float()


def art_classifier(model: torch.nn.Module, n_features: int, n_classes: int, *,
                   clip: bool = True) -> PyTorchClassifier:
    """Wrap a logits model (batch, d) → (batch, n_classes) as an ART classifier.

    Parameters
    ----------
    model : torch.nn.Module
        E.g. ``DeepRBM.mean_field()``.
    n_features, n_classes : int
    clip : bool
        Give ART the input box (0, 1) (ART then clips its own outputs).
    """
    p = next(model.parameters())
    dev = "gpu" if p.device.type == "cuda" else "cpu"
    return PyTorchClassifier(
        model=_Float32Logits(model, p.dtype), loss=torch.nn.CrossEntropyLoss(),
        input_shape=(n_features,), nb_classes=n_classes,
        clip_values=(0.0, 1.0) if clip else None, device_type=dev,
    )


def _np(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()


def _onehot(y: Tensor, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[y.cpu().numpy()]


class FGM(DirectionAttack):
    """Fast gradient method; L2 → normalised gradient, L∞ → FGSM.

    Parameters
    ----------
    classifier : PyTorchClassifier
        From :func:`art_classifier`.
    norm : {"l2", "linf"}
    """

    name = "fgm"

    def __init__(self, *, classifier: PyTorchClassifier, norm: Norm = "l2") -> None:
        super().__init__(norm=norm)
        self.classifier = classifier
        self.name = "fgm" if norm == "l2" else "fgsm"

    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        # the gradient of the loss, read from ART (no clipping: unbounded tiny step)
        grad = self.classifier.loss_gradient(_np(x), _onehot(y, self.classifier.nb_classes))
        return torch.from_numpy(grad).to(device=x.device, dtype=x.dtype)


class PGD(Attack):
    """Projected gradient descent (ART), run for each budget.

    Parameters
    ----------
    classifier : PyTorchClassifier
    norm : {"l2", "linf"}
    max_iter : int, default 20
    rel_step : float, default 0.25
        Step size as a fraction of the budget.
    """

    name = "pgd"

    def __init__(self, *, classifier: PyTorchClassifier, norm: Norm = "l2", max_iter: int = 20,
                 rel_step: float = 0.25) -> None:
        super().__init__(norm=norm)
        self.classifier, self.max_iter, self.rel_step = classifier, int(max_iter), rel_step

    def run(self, x: Tensor, y: Tensor, *, epsilons: Tensor) -> Tensor:
        out = []
        for e in epsilons:
            eps = float(e)
            if eps == 0:
                out.append(x.clone())
                continue
            atk = ProjectedGradientDescent(
                self.classifier, norm=2 if self.norm == "l2" else np.inf, eps=eps,
                eps_step=self.rel_step * eps, max_iter=self.max_iter, num_random_init=0,
                batch_size=max(1, x.shape[0]), verbose=False)
            adv = atk.generate(_np(x), y=_onehot(y, self.classifier.nb_classes))
            out.append(torch.from_numpy(adv).to(device=x.device, dtype=x.dtype))
        return torch.stack(out)


class DeepFool(DirectionAttack):
    """DeepFool (ART) as a direction: ``δ_DF = x_DeepFool − x``, scaled to each budget.

    DeepFool's own output sits just past the surrogate's decision boundary; projecting that
    point per budget would never exceed its size, so the flip-rate curve uses its direction.

    Parameters
    ----------
    classifier : PyTorchClassifier
    norm : {"l2", "linf"}
        The budget norm (DeepFool itself is an L2 method).
    max_iter : int, default 50
    overshoot : float, default 0.02
    """

    name = "deepfool"

    def __init__(self, *, classifier: PyTorchClassifier, norm: Norm = "l2", max_iter: int = 50,
                 overshoot: float = 0.02) -> None:
        super().__init__(norm=norm)
        self.classifier, self.max_iter, self.overshoot = classifier, int(max_iter), overshoot

    def _adv(self, x: Tensor) -> Tensor:
        atk = _ARTDeepFool(self.classifier, max_iter=self.max_iter, epsilon=self.overshoot,
                           nb_grads=self.classifier.nb_classes,
                           batch_size=max(1, x.shape[0]), verbose=False)
        return torch.from_numpy(atk.generate(_np(x))).to(device=x.device, dtype=x.dtype)

    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        return self._adv(x) - x


class RandomDirection(DirectionAttack):
    """A Gaussian random direction per input.

    Parameters
    ----------
    generator : torch.Generator
    norm : {"l2", "linf"}
    """

    name = "random"

    def __init__(self, *, generator: torch.Generator, norm: Norm = "l2") -> None:
        super().__init__(norm=norm)
        self.generator = generator

    def direction(self, x: Tensor, y: Tensor, *, reference_eps: float = 1.0) -> Tensor:
        v = torch.randn(x.shape, generator=self.generator, dtype=torch.float64,
                        device=self.generator.device)
        return v.to(device=x.device, dtype=x.dtype)
