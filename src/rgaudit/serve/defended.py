"""What is served: a :class:`~rgaudit.models.base.Classifier` and its output-poisoning defence.

The served answer to a batch ``x`` is exactly the library's: ``poisoner(classifier.answer(x),
x, generator)`` (the RG and reverse-sigmoid poisons and MAD are deterministic; the random-noise
defence draws from one generator seeded at start-up).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rgaudit.defence.baselines import DEFENCES, make_poisoner
from rgaudit.defence.budget import NORMS
from rgaudit.defence.poison import Poisoner
from rgaudit.models.base import Classifier
from rgaudit.random import torch_generator


@dataclass
class DefendedModel:
    """A classifier behind a defence.

    Attributes
    ----------
    classifier : Classifier
    poisoner : Poisoner
    source : dict
        Where the model and the defence came from (paths, config), for ``GET /v1/model``.
    """

    classifier: Classifier
    poisoner: Poisoner
    source: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self._generator = torch_generator(self.seed, "poison")
        self._lock = threading.Lock()
        self._dtype = _input_dtype(self.classifier)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Answers to a batch of flat inputs ``x`` (n, n_features), float64.

        Returns
        -------
        probabilities : ndarray of shape (n, n_classes), float64 rows on the simplex
        labels : ndarray of shape (n,), int
        """
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(self._dtype)
        with self._lock:                                   # one computation at a time
            y = self.classifier.answer(xt)
            po = self.poisoner(y, xt, self._generator)
        p = po.y_poisoned.detach().cpu().double().numpy()
        return p, p.argmax(-1)

    def measure(self, n: int = 5, budget_s: float = 5.0) -> dict[str, Any]:
        """Time batch-1 answers (the classifier's answer plus the defence) on inputs drawn
        uniformly in the model's bounds, after one untimed warm-up answer (which also loads
        the compiled step search). Uses its own generator: the served random stream is not
        touched.

        Parameters
        ----------
        n : int
            Answers timed (fewer if ``budget_s`` seconds run out first).
        budget_s : float
            Wall-clock limit of the timed answers.

        Returns
        -------
        dict
            ``answers``, ``cpu_ms_median`` (thread CPU time per answer), ``wall_ms_median``,
            ``warmup_s``, and for the RG poison ``estimator`` (as configured) and
            ``estimator_resolved`` (what ``auto`` stands for on this network).
        """
        import time

        from rgaudit.random import torch_generator

        gen = torch_generator(self.seed, "serve.measure")
        lo, hi = (float(b) for b in self.classifier.bounds)
        x = lo + (hi - lo) * torch.rand(n + 1, self.classifier.n_features, generator=gen,
                                        dtype=torch.float64)
        x = x.to(self._dtype)
        t0 = time.perf_counter()
        with self._lock:
            self.poisoner(self.classifier.answer(x[:1]), x[:1], gen)
            warmup = time.perf_counter() - t0
            cpu, wall = [], []
            stop = time.perf_counter() + budget_s
            for i in range(1, n + 1):
                t, c = time.perf_counter(), time.thread_time()
                self.poisoner(self.classifier.answer(x[i:i + 1]), x[i:i + 1], gen)
                cpu.append(time.thread_time() - c)
                wall.append(time.perf_counter() - t)
                if time.perf_counter() > stop:
                    break
        out: dict[str, Any] = {"answers": len(cpu), "cpu_ms_median": 1e3 * float(np.median(cpu)),
                               "wall_ms_median": 1e3 * float(np.median(wall)),
                               "warmup_s": warmup}
        est = getattr(self.poisoner, "estimator", None)
        net = self.classifier.rbm
        if est is not None and net is not None:
            from rgaudit.defence.generation_fim import resolve_estimator

            out["estimator"], out["estimator_resolved"] = est, resolve_estimator(net, est)
        return out

    def startup_line(self, n: int = 5) -> str:
        """One line for the server's start-up log: the defence, its generation-FIM estimator
        (RG poison) and the measured cost of a batch-1 answer (:meth:`measure`)."""
        m = self.measure(n)
        po = self.poisoner
        head = f"defence {po.name!r}"
        if po.name != "none":
            head += f" ({po.norm} budget {po.eps:g})"
        if "estimator" in m:
            est, res = m["estimator"], m["estimator_resolved"]
            head += f", generation-FIM estimator {est!r}" + (f" (= {res!r} on this network)"
                                                              if res != est else "")
            if res == "mean-field":
                head += " [fast surrogate; its magnitude is off, docs/cloning.md]"
        line = (f"{head}: measured at start-up {m['cpu_ms_median']:.3g} ms CPU "
                f"({m['wall_ms_median']:.3g} ms wall) per answer at batch 1, median of "
                f"{m['answers']}; load average {_loadavg()}")
        if m.get("estimator_resolved") == "chain":
            line += (" -- an MCRG chain per answer is too slow to serve at scale; "
                     "--estimator mean-field answers in milliseconds (docs/serving.md)")
        return line

    def describe(self) -> dict[str, Any]:
        """Public description: shapes, classes, defence and budget — never the weights."""
        clf = self.classifier
        return {"kind": clf.kind, "input_shape": list(clf.input_shape),
                "n_features": clf.n_features, "n_classes": clf.n_classes,
                "classes": list(range(clf.n_classes)), "bounds": list(clf.bounds),
                "defence": self.poisoner.config()}


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "unavailable"


def _input_dtype(classifier: Classifier) -> torch.dtype:
    """The dtype a model's parameters expect (float64 when it has none or is an RBM)."""
    module = getattr(classifier, "module", None)
    if classifier.rbm is None and isinstance(module, torch.nn.Module):
        for param in module.parameters():
            return param.dtype
    return torch.float64


def build_poisoner(classifier: Classifier, defence: str, *, eps: float, norm: str,
                   extra: dict[str, Any] | None = None) -> Poisoner:
    """The named defence for ``classifier`` (outputs on the simplex).

    Raises
    ------
    ValueError
        Unknown defence or norm, a bad budget, or ``rg`` on a model that is not an RBM-family
        network (the RG poison needs the network's generation direction).
    """
    if defence not in DEFENCES:
        raise ValueError(f"--defence must be one of {', '.join(DEFENCES)}, got {defence!r}")
    if norm not in NORMS:
        raise ValueError(f"--norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"--eps must be finite and >= 0, got {eps}")
    if defence == "rg" and classifier.rbm is None:
        raise ValueError(
            f"the rg defence needs an RBM-family model (a DeepRBM); this model is a "
            f"{classifier.kind!r} classifier. Serve it with --defence none, random, "
            "reverse-sigmoid or mad")
    kwargs = dict(extra or {})
    return make_poisoner(defence, eps=eps, norm=norm, kind="simplex", net=classifier.rbm,
                         n_inputs=classifier.n_features, **kwargs)


def poisoner_from_config(classifier: Classifier, doc: dict[str, Any],
                         model_config: dict[str, Any], path: Path | str) -> Poisoner:
    """Rebuild the defence a ``rgaudit protect`` config describes.

    The config's ``model_sha256`` (when present) must match the served model's weights, so a
    config written for one model is not silently applied to another.
    """
    want = doc.get("model_sha256")
    have = model_config.get("weights_sha256")
    if want and have and want != have:
        raise ValueError(f"{path} was written for another model (weights sha256 {want[:12]}…, "
                         f"this model {have[:12]}…); run rgaudit protect on this model")
    unknown = sorted(k for k in ("output_domain",) if doc.get(k, "simplex") != "simplex")
    if unknown:
        raise ValueError(f"{path}: only simplex outputs can be served, got output_domain "
                         f"{doc.get('output_domain')!r}")
    missing = [k for k in ("defence", "eps", "norm") if k not in doc]
    if missing:
        raise ValueError(f"{path} is not a poisoning config (missing {missing}); write one "
                         "with rgaudit protect")
    extra: dict[str, Any] = {}
    if doc["defence"] == "rg":
        extra = {k: doc[k] for k in ("estimator", "k_eig", "n_pairs", "keep_margin")
                 if k in doc}
        if doc.get("fim_kwargs"):
            extra["fim_kwargs"] = dict(doc["fim_kwargs"])
    return build_poisoner(classifier, str(doc["defence"]), eps=float(doc["eps"]),
                          norm=str(doc["norm"]), extra=extra)
