"""The functions of rgaudit's public API (re-exported lazily by :mod:`rgaudit`).

Conventions, as in scikit-learn, Foolbox and ART: numpy arrays or torch tensors in, flat inputs
``(n, n_features)`` with values in the model's ``bounds``; an explicit ``random_state`` (int)
wherever randomness is used, never global seeding; typed results (dataclasses) whose
``to_dict()`` is the JSON the CLI writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from rgaudit.attacks.base import AttackResult, Norm
    from rgaudit.defence.poison import PoisonedOutputs, Poisoner
    from rgaudit.experiments.audit_any import AnyAuditConfig, AnyAuditResult
    from rgaudit.models.base import Classifier

ArrayLike = Any  # numpy array or torch tensor
ATTACKS = ("fim", "gradient", "deepfool", "pgd", "random")


def _tensor(x: ArrayLike, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(x).to(dtype)


def _inputs(clf: Classifier, x: ArrayLike) -> torch.Tensor:
    t = _tensor(x)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    t = t.reshape(t.shape[0], -1)
    if t.shape[1] != clf.n_features:
        raise ValueError(f"x has {t.shape[1]} features per row; the model takes "
                         f"{clf.n_features} (input shape {clf.input_shape})")
    net = clf.rbm
    return t.to(net.dtype) if net is not None else t


@dataclass(frozen=True)
class InputFIM:
    """Top eigenpairs of the input Fisher information of a classifier's softmax output.

    Attributes
    ----------
    values : ndarray of shape (n, k)
        Top eigenvalues per input, largest first.
    vectors : ndarray of shape (n, n_features)
        Top eigenvector per input (unit L2 norm, sign arbitrary).
    method : str
        ``"dense autograd"`` or ``"matrix-free Lanczos"`` (both exact up to roundoff).
    """

    values: np.ndarray
    vectors: np.ndarray
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "vectors": self.vectors.tolist(),
                "method": self.method}


def input_fim(classifier: Classifier, x: ArrayLike, k: int = 5, *,
              dense_max_features: int = 4096, random_state: int = 0) -> InputFIM:
    """Input FIM ``Jᵀ(diag p − p pᵀ)J`` of the softmax output and its top ``k`` eigenpairs.

    Parameters
    ----------
    classifier : Classifier
    x : array of shape (n, n_features)
    k : int
    dense_max_features : int
        Above this input size ``F`` is never formed (matrix-free Lanczos).
    random_state : int
        Seed of the Lanczos start vectors (stream ``"lanczos"``, as in :func:`audit`).
    """
    from rgaudit.experiments.audit_any import fim_top
    from rgaudit.random import child_seed

    vals, vecs, method = fim_top(classifier, _inputs(classifier, x), k, dense_max_features,
                                 child_seed(random_state, "lanczos"))
    return InputFIM(vals.detach().cpu().numpy(), vecs.detach().cpu().numpy(), method)


def audit(classifier: Classifier, X: ArrayLike, y: ArrayLike,
          config: AnyAuditConfig | None = None, **overrides: Any) -> AnyAuditResult:
    """Audit a classifier on labelled data: input FIM, attacks, minimal flipping budgets and a
    plain-words verdict (:func:`rgaudit.experiments.audit_any.run_any_audit`).

    Parameters
    ----------
    classifier : Classifier
    X : array of shape (n, n_features)
    y : array of shape (n,)
        Labels ``0 … n_classes-1``.
    config : AnyAuditConfig, optional
    **overrides
        Fields of :class:`AnyAuditConfig` (e.g. ``n_inputs=10, seed=1``).
    """
    from dataclasses import replace

    from rgaudit.experiments.audit_any import AnyAuditConfig, run_any_audit

    cfg = replace(config or AnyAuditConfig(), **overrides)
    return run_any_audit(classifier, _inputs(classifier, X), _tensor(y, torch.long), cfg)


def write_report(result: AnyAuditResult, folder: Any, header: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Write an audit's JSON, ``examples.npz``, Markdown and HTML into a new ``folder``.

    Refuses a folder that exists (rgaudit never overwrites what it did not write).
    """
    from pathlib import Path

    from rgaudit.report.any_audit_report import write_any_audit_report

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=False)
    return write_any_audit_report(result, folder, header)


def attack(classifier: Classifier, x: ArrayLike, y: ArrayLike, *, method: str = "fim",
           eps: float | list[float] = 1.0, norm: Norm = "l2", random_state: int = 0
           ) -> AttackResult:
    """Run one attack at one or more budgets, judged by the classifier's argmax.

    Parameters
    ----------
    method : {"fim", "gradient", "deepfool", "pgd", "random"}
    eps : float or list of float
        Budgets in ``norm``.
    norm : {"l2", "linf"}

    Returns
    -------
    AttackResult
        ``success`` (E, n), ``clipped`` adversarial inputs (E, n, d), ``flip_rate`` (E,).
    """
    from rgaudit.experiments.audit_any import (
        AnyAuditConfig,
        ArgmaxJudge,
        _attacks,
        _true_class_grad,
        fim_top,
    )

    if method not in ATTACKS:
        raise ValueError(f"method must be one of {ATTACKS}, got {method!r}")
    xt = _inputs(classifier, x)
    yt = _tensor(y, torch.long).reshape(-1)
    cfg = AnyAuditConfig(seed=random_state)
    _, vec, _ = fim_top(classifier, xt, 1, cfg.dense_max_features, cfg.streams()["lanczos"])
    grad = _true_class_grad(classifier, xt, yt)
    names = {"fim": "fim", "gradient": "gradient (FGM)", "deepfool": "deepfool", "pgd": "pgd",
             "random": "random"}
    (atk,) = [a for a in _attacks(classifier, xt, yt, norm, vec, grad, cfg)
              if a.name == names[method]]
    budgets = [float(eps)] if np.isscalar(eps) else [float(e) for e in eps]  # type: ignore[union-attr, arg-type]
    return atk(xt, yt, epsilons=budgets, judge=ArgmaxJudge(classifier))


@dataclass
class ProtectedClassifier:
    """A classifier whose answers are poisoned by a defence (cloning paper, section IV).

    ``answer(x)`` returns the poisoned probability vectors (argmax preserved, within the
    budget); ``last`` keeps the last :class:`~rgaudit.defence.poison.PoisonedOutputs`.
    """

    classifier: Any
    poisoner: Poisoner
    random_state: int = 0
    last: PoisonedOutputs | None = None

    def answer(self, x: ArrayLike) -> np.ndarray:
        xt = _inputs(self.classifier, x)
        y = self.classifier.answer(xt)
        from rgaudit.random import torch_generator

        gen = torch_generator(self.random_state, "poison")
        self.last = self.poisoner(y, xt, gen)
        return self.last.y_poisoned.detach().cpu().numpy()


def protect(classifier: Classifier, defence: str = "rg", *, eps: float = 0.1,
            norm: str = "l1", random_state: int = 0, **kwargs: Any) -> ProtectedClassifier:
    """Wrap a classifier in an output-poisoning defence.

    Parameters
    ----------
    defence : {"rg", "random", "reverse-sigmoid", "mad", "none"}
        ``"rg"`` (the renormalisation-group poison) needs an RBM-family network.
    eps : float
        Budget per answer in ``norm``.
    norm : {"l1", "l2", "kl"}
    """
    from rgaudit.defence.baselines import make_poisoner

    if defence == "rg" and classifier.rbm is None:
        raise ValueError("the rg defence needs an RBM-family network (classifier.rbm); use "
                         "random, reverse-sigmoid or mad for other models")
    p = make_poisoner(defence, eps=eps, norm=norm, kind="simplex", net=classifier.rbm,
                      n_inputs=classifier.n_features, **kwargs)
    return ProtectedClassifier(classifier, p, random_state)
