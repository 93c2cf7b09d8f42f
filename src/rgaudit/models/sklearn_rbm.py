"""scikit-learn RBM pipelines (``BernoulliRBM`` stack + ``LogisticRegression``) saved with skops,
converted exactly into a :class:`~rgaudit.nets.deep_rbm.DeepRBM`.

Loading
-------
A skops file is a zip of ``.npy`` arrays and a JSON schema naming every Python type to build.
:func:`check_skops_types` reads that schema (plain JSON) and refuses any type outside
:data:`TRUSTED_TYPES` *before* skops builds anything; skops then loads with the same explicit
list (``skops.io.load(path, trusted=TRUSTED_TYPES)``), which audits the tree again. No pickle.

Conversion (exact)
------------------
scikit-learn's ``BernoulliRBM`` uses rgaudit's convention: ``components_`` = W (n_out, n_in),
``intercept_hidden_`` = a, ``intercept_visible_`` = b, and ``transform(v) = σ(v Wᵀ + a)`` =
``P(h = 1 | v)``. A pipeline passes these *probabilities* upwards, which is exactly the DeepRBM's
mean-field pass ``p_k = σ(W_k p_{k-1} + a_k)``. The logistic top layer becomes the DeepRBM's last
RBM with ``W = coef_``, ``a = intercept_`` (``b = 0``; the logistic model has no visible bias,
which only the generation direction would use); a binary logistic model (one row of ``coef_``)
becomes the two logits ``(0, z)``, since ``softmax(0, z) = (1 − σ(z), σ(z))``.

Class probabilities: sklearn's multinomial ``predict_proba`` is ``softmax(W_N p_{N-1} + a_N)``,
i.e. ``softmax`` of :meth:`DeepRBM.mean_field_logits`, and :class:`SklearnRBMClassifier` returns
exactly that (tested to 1e-6). A DeepRBM's output layer is a set of independent Bernoulli units
``P(y | h) ∝ exp(yᵀ(W h + a))``; conditioned on exactly one unit being on, that is
``softmax(W h + a)`` — so the softmax is the one-hot restriction of the same top RBM, not an
approximation of it.

What the MCRG diagnosis then covers: the *stochastic* network with the same weights (hidden units
sampled from sklearn's own conditionals ``σ(W h + a)``, output units Bernoulli). The deployed
sklearn pipeline is that network's mean-field pass; the layerwise stability spectra and the
RG-chain FIM describe the stochastic network, while the audit's attacks and its softmax FIM act
on the exact sklearn probabilities.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rgaudit.errors import ModelFileError
from rgaudit.models.base import RBMClassifier

#: every type a skops file of a supported pipeline may name; anything else is refused
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.pipeline.Pipeline",
    "sklearn.neural_network._rbm.BernoulliRBM",
    "sklearn.linear_model._logistic.LogisticRegression",
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int",
    "builtins.float", "builtins.bool", "builtins.NoneType", "numpy.ndarray",
)
_LOADERS = frozenset({"ObjectNode", "DictNode", "ListNode", "TupleNode", "JsonNode", "TypeNode",
                      "NdArrayNode"})


def _schema_types(tree: Any) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    stack = [tree]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if "__class__" in o or "__loader__" in o:
                out.add((f"{o.get('__module__')}.{o.get('__class__')}", str(o.get("__loader__"))))
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return out


def check_skops_types(path: str) -> None:
    """Refuse a skops file that names any type outside :data:`TRUSTED_TYPES`.

    Raises
    ------
    ModelFileError
        Not a skops file, or a type or loader outside the allow-list (listed in the message).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise ModelFileError(f"{path} is not a skops file (a zip with schema.json): {err}"
                             ) from None
    bad = sorted(t for t, loader in _schema_types(schema)
                 if t not in TRUSTED_TYPES or loader not in _LOADERS)
    if bad:
        raise ModelFileError(
            f"{path}: refused to load: the file names types outside rgaudit's trusted list "
            f"{bad[:8]}; rgaudit loads only a Pipeline of BernoulliRBM steps followed by a "
            "LogisticRegression (nothing was executed)")


def load_skops_pipeline(path: str) -> Any:
    """Load a skops file after :func:`check_skops_types`, trusting only :data:`TRUSTED_TYPES`."""
    import skops.io as sio

    check_skops_types(path)
    try:
        return sio.load(path, trusted=list(TRUSTED_TYPES))
    except Exception as err:  # noqa: BLE001 - skops raises many kinds on a bad file
        raise ModelFileError(f"{path}: skops could not load it: {type(err).__name__}: {err}"
                             ) from err


def deep_rbm_from_sklearn(pipeline: Any, *, dtype: torch.dtype = torch.float64) -> Any:
    """The exact DeepRBM of a fitted ``Pipeline([BernoulliRBM, …, LogisticRegression])``.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        One or more fitted ``BernoulliRBM`` steps, then a fitted ``LogisticRegression``
        (multinomial, or binary).
    dtype : torch.dtype
        Parameter dtype (float64 keeps the conversion exact).

    Returns
    -------
    DeepRBM
        Widths ``(n_features, n_hidden_1, …, n_classes)``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import BernoulliRBM
    from sklearn.pipeline import Pipeline

    from rgaudit.nets.deep_rbm import DeepRBM

    steps = [s for _, s in pipeline.steps] if isinstance(pipeline, Pipeline) else None
    if (not steps or len(steps) < 2 or not isinstance(steps[-1], LogisticRegression)
            or not all(isinstance(s, BernoulliRBM) for s in steps[:-1])):
        got = [type(s).__name__ for s in steps] if steps else type(pipeline).__name__
        raise ModelFileError(f"expected a Pipeline of BernoulliRBM steps followed by a "
                             f"LogisticRegression, got {got}")
    rbms, top = steps[:-1], steps[-1]
    if getattr(top, "multi_class", "auto") == "ovr" and len(top.classes_) > 2:
        raise ModelFileError("a one-vs-rest LogisticRegression is not supported (its "
                             "probabilities are normalised sigmoids); refit it multinomial")
    Ws = [torch.as_tensor(r.components_, dtype=dtype) for r in rbms]
    for k in range(1, len(Ws)):
        if Ws[k].shape[1] != Ws[k - 1].shape[0]:
            raise ModelFileError(f"RBM step {k + 1} takes {Ws[k].shape[1]} inputs but step {k} "
                                 f"has {Ws[k - 1].shape[0]} hidden units")
    coef = torch.as_tensor(top.coef_, dtype=dtype)
    icpt = torch.as_tensor(top.intercept_, dtype=dtype)
    if coef.shape[0] == 1:                                # binary: logits (0, z)
        coef = torch.cat([torch.zeros_like(coef), coef])
        icpt = torch.cat([torch.zeros_like(icpt), icpt])
    widths = [Ws[0].shape[1]] + [W.shape[0] for W in Ws] + [coef.shape[0]]
    net = DeepRBM(widths, dtype=dtype)
    with torch.no_grad():
        for k, r in enumerate(rbms, start=1):
            layer = net.layer(k)
            layer.W.copy_(Ws[k - 1])
            layer.a.copy_(torch.as_tensor(r.intercept_hidden_, dtype=dtype))
            layer.b.copy_(torch.as_tensor(r.intercept_visible_, dtype=dtype))
        last = net.layer(net.depth)
        last.W.copy_(coef)
        last.a.copy_(icpt)
        last.b.zero_()
    return net


@dataclass
class SklearnRBMClassifier(RBMClassifier):
    """A converted sklearn RBM pipeline: ``log_proba``/``answer`` are sklearn's exact
    ``predict_proba`` (softmax of the mean-field logits); ``rbm`` is the DeepRBM."""

    kind: str = "sklearn-rbm"

    def log_proba(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self.net.mean_field_logits(x), dim=-1)

    @torch.no_grad()
    def answer(self, x: Tensor) -> Tensor:
        z = self.net.mean_field_logits(x.to(self.net.device)).to(torch.float64)
        return torch.softmax(z, dim=-1).cpu()


def load_sklearn_classifier(path: str, *, input_shape: tuple[int, ...] | None = None
                            ) -> tuple[SklearnRBMClassifier, dict[str, Any]]:
    """Load a skops RBM pipeline and convert it; returns the classifier and its description."""
    import math

    pipe = load_skops_pipeline(path)
    net = deep_rbm_from_sklearn(pipe)
    d = int(net.widths[0])
    if input_shape is None:
        side = math.isqrt(d)
        input_shape = (side, side) if side * side == d else (d,)
    cfg = {"format": "skops", "path": str(path), "widths": list(net.widths),
           "classes": [c.item() if hasattr(c, "item") else c
                       for c in pipe.steps[-1][1].classes_],
           "steps": [name for name, _ in pipe.steps]}
    return SklearnRBMClassifier(net, tuple(input_shape), meta=cfg), cfg
