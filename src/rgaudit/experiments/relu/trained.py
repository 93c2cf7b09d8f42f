"""Trained network: the one-step attack on a small ReLU MLP trained on scikit-learn digits.

The talk leaves open whether trained networks behave like random ones. Same measurements through
the logit margin (:func:`rgaudit.attacks.one_step.classifier_one_step`): the MLP at its random
initialisation (on its own predictions) is the reference, the trained MLP is attacked on its
correctly classified test digits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rgaudit.attacks.one_step import ClassifierAttack, classifier_one_step
from rgaudit.data.digits import load_digits
from rgaudit.experiments.relu.config import ReluStudyConfig
from rgaudit.nets.relu import relu_mlp
from rgaudit.random import child_seed

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainedResult:
    """Random-init and trained MLP on scikit-learn digits under the same one-step attack.

    ``seed`` seeds the initialisation and the random directions; ``split_seed`` the stratified
    train/test split of :func:`rgaudit.data.digits.load_digits`.
    """

    widths: list[int]
    seed: int
    split_seed: int
    n_train: int
    n_test: int
    epochs: int
    train_accuracy: float
    test_accuracy: float
    init: ClassifierAttack
    trained: ClassifierAttack


def _accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(X).argmax(1) == y).double().mean())


def digits_study(cfg: ReluStudyConfig, progress: Progress | None = None) -> TrainedResult:
    """Train a ReLU MLP on digits (X/16 in [0, 1], stratified 25 % test split) and attack it.

    Reads ``cfg.digits_hidden``, ``digits_epochs``, ``digits_lr``, ``multipliers`` and ``seed``
    (split seed ``seed``; initialisation and directions stream ``relu.trained``). Full-batch
    Adam with cross-entropy, on CPU (it is tiny).

    Parameters
    ----------
    cfg : ReluStudyConfig
    progress : callable, optional
        Called once, after training and both attacks.

    Returns
    -------
    TrainedResult
    """
    data = load_digits(seed=cfg.seed)
    X_tr, y_tr, X_te, y_te = data.X_train, data.y_train, data.X_test, data.y_test
    s = child_seed(cfg.seed, "relu.trained")
    gen = torch.Generator().manual_seed(s)
    widths = [data.n_features, *cfg.digits_hidden, data.n_classes]
    model = relu_mlp(widths, generator=gen)
    init = classifier_one_step(model, X_te, None, multipliers=cfg.multipliers, generator=gen,
                               name="random init")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.digits_lr)
    for _ in range(cfg.digits_epochs):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X_tr), y_tr)
        loss.backward()
        opt.step()
    trained = classifier_one_step(model, X_te, y_te, multipliers=cfg.multipliers, generator=gen,
                                  name="trained")
    if progress:
        progress("trained digits MLP")
    return TrainedResult(widths=widths, seed=s, split_seed=cfg.seed, n_train=len(y_tr),
                         n_test=len(y_te), epochs=cfg.digits_epochs,
                         train_accuracy=_accuracy(model, X_tr, y_tr),
                         test_accuracy=_accuracy(model, X_te, y_te), init=init, trained=trained)
