"""The zoo: does an RG/Fisher diagnosis predict adversarial robustness across networks?

The vulnerability paper claims that relevant directions of a network's RG flow and stiff
directions of its input Fisher information make it vulnerable. This study trains a zoo of small
networks on 8×8 digits — deep RBMs spanning depth (1–5 hidden layers), width, training length
and weight decay, and plain PyTorch MLPs/CNNs — and measures for each (one executor unit per
network, :func:`zoo_unit`):

robustness
    The minimal applied L2 perturbation that flips the model's own prediction, on the first
    ``n_inputs`` test inputs (the same inputs for every network): DDN (adv-lib, the strongest
    minimal-L2 attack available here) on the differentiable surrogate finds a perturbation
    ``δ``; the flip is then judged on the model itself by bisection on the budget along ``δ``
    (``rgaudit.attacks.evaluate.minimal_eps``): the stochastic network (chain-averaged output,
    common random numbers) for an RBM, the argmax of the logits for a PyTorch model. An input the
    model already misclassifies counts 0; one not flipped within ``eps_max`` counts ``inf``.
    Median and quartiles over the inputs.
RG/Fisher predictors
    Softmax input FIM of the surrogate's class probabilities at each input (dense, exact by
    autograd): median top eigenvalue, median effective rank; the fraction
    ``‖P_k δ‖²/‖δ‖²`` of the DDN perturbation inside the top-``k`` FIM eigenspace (median over
    flipped inputs; a random direction gives ``k/d``); RBM family only: MCRG Fisher-normalised
    stability values per layer pair (singles basis; rg/spectra.py): the number ``≥ 1 − δ``
    (kept information) and the largest value, medians over ``mcrg_inputs`` inputs.
reference predictors
    CLEVER (ART ``clever_u``, L2) median over ``clever_inputs`` inputs; median L2 norm of the
    input gradient of the cross-entropy loss; the Lipschitz bound of the surrogate logits (the
    product of layer spectral norms, × 1/4 per sigmoid layer of an RBM); test accuracy
    (stochastic for RBMs).

No file I/O here; ``rgaudit.report.zoo_report`` renders the correlation table and the plots.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from rgaudit.executors.base import Unit
from rgaudit.experiments.audit_results import inf_from_json, nan_from_json
from rgaudit.experiments.execution_summary import ExecutionSummary
from rgaudit.random import child_seed, numpy_rng, torch_generator
from rgaudit.stats import censored_quantiles

Tensor = torch.Tensor

#: Predictors and whether a larger value is expected to mean a *less* robust network.
PREDICTORS: dict[str, str] = {
    "fim_top": "top input-FIM eigenvalue (median over inputs)",
    "fim_eff_rank": "FIM effective rank (median)",
    "eig_fraction": "fraction of the DDN perturbation in the top-k FIM eigenspace (median)",
    "stab_n_kept": "stability values ≥ 1−δ, summed over layer pairs (RBMs only)",
    "stab_top": "largest Fisher-normalised stability value, mean over layer pairs (RBMs only)",
    "clever": "CLEVER-u score, L2 (ART; median)",
    "grad_norm": "‖∇ₓ cross-entropy‖₂ (median)",
    "lipschitz": "product of layer spectral norms (Lipschitz bound of the logits)",
    "accuracy": "test accuracy",
    "depth": "hidden layers (a design variable, not a diagnostic: shows confounding)",
}
RG_PREDICTORS = ("fim_top", "fim_eff_rank", "eig_fraction", "stab_n_kept", "stab_top")


@dataclass(frozen=True)
class ZooConfig:
    """Settings of a zoo run (defaults: the full zoo, ≈ 30 min on 2 loaded cores).

    Attributes
    ----------
    n_rbm : int
        Deep RBMs (``--n-rbm``), ≥ 1; the design cycles depth 1–5 over width × training length
        × weight decay.
    n_torch : int
        PyTorch MLPs/CNNs (``--n-torch``).
    n_inputs : int
        Test inputs attacked per network (``--n-inputs``).
    judge_samples : int
        Chains per stochastic judgement of an RBM (``--judge-samples``).
    eps_max : float
        Largest L2 budget of the bisection (``--eps-max``).
    bisect_steps : int
    ddn_steps : int
        DDN iterations (``--ddn-steps``).
    top_k : int
        FIM eigenspace dimension of the eigenspace fraction.
    mcrg_inputs, mcrg_samples : int
        Inputs and chains per input of the MCRG stability spectra (RBMs).
    clever_inputs, clever_batches, clever_batch_size : int
        CLEVER settings (ART ``clever_u``); radius ``eps_max``.
    epochs_scale : float
        Multiplies every training length (``--epochs-scale``; tiny zoos in tests).
    min_accuracy : float
        Networks below this test accuracy are left out of the correlations (fixed in advance:
        a network wrong on most inputs has no robustness to speak of); they are listed.
    n_boot : int
        Bootstrap resamples of each correlation's interval.
    n_splits : int
        Random half/half splits of the held-out check (besides the fixed one).
    data : str
    seed : int
    """

    n_rbm: int = 24
    n_torch: int = 8
    n_inputs: int = 50
    judge_samples: int = 400
    eps_max: float = 6.0
    bisect_steps: int = 8
    ddn_steps: int = 100
    top_k: int = 3
    mcrg_inputs: int = 4
    mcrg_samples: int = 4000
    clever_inputs: int = 5
    clever_batches: int = 10
    clever_batch_size: int = 10
    epochs_scale: float = 1.0
    min_accuracy: float = 0.5
    n_boot: int = 2000
    n_splits: int = 200
    data: str = "digits"
    seed: int = 0

    def __post_init__(self) -> None:
        rules = (  # (holds, message naming the option), checked in this order
            (self.n_rbm >= 0 and self.n_torch >= 0 and self.n_rbm + self.n_torch >= 1,
             "--n-rbm and --n-torch must be ≥ 0 and together ≥ 1"),
            (self.n_inputs >= 2, f"--n-inputs must be ≥ 2, got {self.n_inputs}"),
            (self.judge_samples >= 10, f"--judge-samples must be ≥ 10, got {self.judge_samples}"),
            (self.eps_max > 0, f"--eps-max must be positive, got {self.eps_max}"),
            (self.ddn_steps >= 1 and self.bisect_steps >= 1,
             "--ddn-steps and bisect_steps must be ≥ 1"),
            (self.epochs_scale > 0, f"--epochs-scale must be positive, got {self.epochs_scale}"),
            (0 <= self.min_accuracy < 1,
             f"--min-accuracy must lie in [0, 1), got {self.min_accuracy}"),
            (self.n_boot >= 100 and self.n_splits >= 1, "n_boot must be ≥ 100 and n_splits ≥ 1"),
            (self.seed >= 0, f"--seed must be ≥ 0, got {self.seed}"),
            (min(self.top_k, self.mcrg_inputs, self.mcrg_samples, self.clever_inputs,
                 self.clever_batches, self.clever_batch_size) >= 1,
             "top_k, mcrg_* and clever_* settings must be ≥ 1"),
        )
        for holds, message in rules:
            if not holds:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RBM_WIDTHS = (32, 64, 128)
RBM_LENGTHS = {"short": (2, 6), "long": (5, 20)}     # (CD epochs per layer, fine-tune epochs)
RBM_DECAY = (0.0, 1e-2)                               # fine-tune AdamW decay (CD: × 0.1)
TORCH_ARCHS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("mlp", (32,)), ("mlp", (128,)), ("mlp", (64, 64)), ("mlp", (128, 128, 128)),
    ("cnn", (8, 16)), ("cnn", (16, 32)), ("mlp", (256,)), ("cnn", (4, 8)))
TORCH_LENGTHS = {"short": 3, "long": 20}


def zoo_members(cfg: ZooConfig) -> list[Unit]:
    """The networks of the zoo as executor units (keys name the architecture and training).

    RBMs: the 12 combinations width × length × decay in turn, depth cycling 1–5 over the list.
    PyTorch models: the architectures of :data:`TORCH_ARCHS` in turn, training length and decay
    alternating.
    """
    units: list[Unit] = []
    combos = [(w, ln, wd) for w in RBM_WIDTHS for ln in RBM_LENGTHS for wd in RBM_DECAY]
    for i in range(cfg.n_rbm):
        w, ln, wd = combos[i % len(combos)]
        depth = 1 + i % 5
        spec = {"family": "rbm", "depth": depth, "width": w, "length": ln, "weight_decay": wd,
                "replica": i // len(combos)}
        units.append(Unit(f"rbm-d{depth}-w{w}-{ln}-wd{wd:g}-r{spec['replica']}", spec))
    for i in range(cfg.n_torch):
        fam, hidden = TORCH_ARCHS[i % len(TORCH_ARCHS)]
        ln = ("short", "long")[(i // 2) % 2] if i < 4 else ("long", "short")[(i // 2) % 2]
        wd = RBM_DECAY[i % 2]
        spec = {"family": fam, "hidden": list(hidden), "length": ln, "weight_decay": wd,
                "replica": i // len(TORCH_ARCHS), "depth": len(hidden),
                "width": max(hidden)}
        units.append(Unit(f"{fam}-{'x'.join(map(str, hidden))}-{ln}-wd{wd:g}-"
                          f"r{spec['replica']}", spec))
    return units


# -- models ---------------------------------------------------------------------------------

class _CNN(nn.Module):
    """Two 3×3 conv layers (ReLU) and a linear read-out on flat 8×8 inputs."""

    def __init__(self, c1: int, c2: int, n_classes: int = 10, side: int = 8) -> None:
        super().__init__()
        self.side = side
        self.body = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(c1, c2, 3, padding=1, stride=2), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(c2 * (side // 2) ** 2, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.reshape(-1, 1, self.side, self.side))


def _mlp(d: int, hidden: tuple[int, ...], n_classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    prev = d
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, n_classes))
    return nn.Sequential(*layers)


def train_torch(spec: dict[str, Any], X: Tensor, y: Tensor, cfg: ZooConfig,
                gen: torch.Generator) -> nn.Module:
    """Train an MLP/CNN (float64, AdamW, cross-entropy) with the unit's generator."""
    d, k = X.shape[1], int(y.max()) + 1
    with torch.random.fork_rng(devices=[]):   # default init draws are overwritten below
        model = (_mlp(d, tuple(spec["hidden"]), k) if spec["family"] == "mlp"
                 else _CNN(spec["hidden"][0], spec["hidden"][1], n_classes=k))
    model = model.to(torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / math.sqrt(fan_in))
            else:
                p.zero_()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=spec["weight_decay"])
    epochs = max(1, round(TORCH_LENGTHS[spec["length"]] * cfg.epochs_scale))
    Xd = X.to(torch.float64)
    for _ in range(epochs):
        perm = torch.randperm(len(Xd), generator=gen)
        for b in range(0, len(Xd), 64):
            idx = perm[b:b + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(Xd[idx]), y[idx])
            loss.backward()
            opt.step()
    return model.eval()


def train_rbm(spec: dict[str, Any], dataset: Any, cfg: ZooConfig, seed: int
              ) -> tuple[Any, float]:
    """Train a DeepRBM with the default recipe at the zoo's small budgets; (net, accuracy)."""
    from rgaudit.train.cd import CDConfig
    from rgaudit.train.finetune import FinetuneConfig
    from rgaudit.train.pipeline import TrainConfig, train_default

    cd_ep, ft_ep = RBM_LENGTHS[spec["length"]]
    widths = (dataset.n_features, *([spec["width"]] * spec["depth"]), dataset.n_classes)
    tc = TrainConfig(
        widths=widths, seed=seed,
        pretrain=CDConfig(epochs=max(1, round(cd_ep * cfg.epochs_scale)),
                          weight_decay=0.1 * spec["weight_decay"]),
        finetune=FinetuneConfig(epochs=max(1, round(ft_ep * cfg.epochs_scale)),
                                weight_decay=spec["weight_decay"]),
        eval_samples=100, threads=1)
    net, report = train_default(dataset, tc)
    return net.to(torch.float64), float(report["accuracy"]["stochastic"]["accuracy"])


# -- judges ---------------------------------------------------------------------------------

class ArgmaxJudge:
    """Deterministic judge of a logits model with :class:`StochasticJudge`'s interface."""

    z = 0.0

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def verdict(self, x: Tensor) -> Any:
        from rgaudit.attacks.evaluate import Verdict

        logits = self.model(x)
        return Verdict(logits.argmax(-1), torch.full((x.shape[0],), float("inf")),
                       torch.softmax(logits.to(torch.float64), -1))

    def __call__(self, x: Tensor) -> Tensor:
        return self.verdict(x).pred


# -- predictors -----------------------------------------------------------------------------

def _linear_maps(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Matrices of the Linear/Conv2d layers of ``model`` at the shapes ``x`` gives them."""
    shapes: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((m, tuple(i[0].shape[1:]))))
             for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    mats = []
    for m, shp in shapes:
        if isinstance(m, nn.Linear):
            mats.append(m.weight.detach())
        else:
            conv = cast(nn.Conv2d, m)

            def lin(v: Tensor, conv: nn.Conv2d = conv, shp: tuple[int, ...] = shp) -> Tensor:
                return nn.functional.conv2d(v.reshape(1, *shp), conv.weight, None, conv.stride,
                                            conv.padding).reshape(-1)

            z = torch.zeros(math.prod(shp), dtype=x.dtype)
            mats.append(torch.func.jacrev(lin)(z).detach())
    return mats


def lipschitz_bound(model: nn.Module, x: Tensor, *, sigmoid_layers: int = 0) -> float:
    """Product of the layers' spectral norms, × (1/4)^sigmoid_layers."""
    out = 0.25 ** sigmoid_layers
    for M in _linear_maps(model, x):
        out *= float(torch.linalg.matrix_norm(M.to(torch.float64), ord=2))
    return out


def rbm_lipschitz_bound(net: Any) -> float:
    """Lipschitz bound of a DeepRBM's mean-field logits: ``Π_k ‖W_k‖₂ · (1/4)^(N−1)``."""
    out = 0.25 ** (net.depth - 1)
    for k in range(1, net.depth + 1):
        out *= float(torch.linalg.matrix_norm(net.layer(k).W.detach().to(torch.float64), ord=2))
    return out


def fim_predictors(model: nn.Module, x: Tensor, delta: Tensor, flipped: Tensor, k: int
                   ) -> dict[str, Any]:
    """Softmax input-FIM spectra at ``x`` (n, d) and the eigenspace fraction of ``delta``."""
    from rgaudit.fisher.autograd import dense_fim
    from rgaudit.fisher.eig import spectrum_summary

    F = dense_fim(model, x.to(torch.float64), "softmax").to(torch.float64)
    w, V = torch.linalg.eigh(F)
    top = w[:, -1]
    eff = torch.tensor([spectrum_summary(F[i]).effective_rank for i in range(len(F))])
    Vk = V[:, :, -k:]
    dn = delta / delta.norm(dim=1, keepdim=True).clamp_min(1e-300)
    frac = (torch.einsum("nd,ndk->nk", dn.to(torch.float64), Vk) ** 2).sum(1)
    use = flipped & (delta.norm(dim=1) > 0)
    return {"fim_top": float(top.median()), "fim_eff_rank": float(eff.median()),
            "eig_fraction": float(frac[use].median()) if use.any() else float("nan"),
            "eig_fraction_random": k / x.shape[1],
            "fim_top_per_input": top.tolist()}


def grad_norm(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """L2 norms of ``∇ₓ CE(model(x), y)`` per input."""
    xx = x.detach().to(torch.float64).requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xx), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xx)
    return g.norm(dim=1)


def clever_scores(model: nn.Module, x: Tensor, n_classes: int, cfg: ZooConfig,
                  seed: int) -> list[float]:
    """ART ``clever_u`` (L2, radius ``eps_max``) of the first ``clever_inputs`` inputs.

    CLEVER samples with NumPy's global generator (ART offers no generator argument); it is
    seeded from the unit's seed sequence inside a scope that restores the caller's state.
    """
    from art.metrics import clever_u

    from rgaudit.attacks.baselines import art_classifier
    from rgaudit.defence.cloning_attacks import scoped_global_rng

    clf = art_classifier(model, x.shape[1], n_classes)
    with scoped_global_rng(seed % 2**32, seed % 2**31):
        return [float(clever_u(clf, x[i].numpy().astype(np.float32), cfg.clever_batches,
                               cfg.clever_batch_size, cfg.eps_max, 2, verbose=False))
                for i in range(min(cfg.clever_inputs, len(x)))]


def stability_predictors(net: Any, x: Tensor, cfg: ZooConfig, gen: torch.Generator
                         ) -> dict[str, Any]:
    """Fisher-normalised stability values per layer pair (singles basis)."""
    from rgaudit.rg.mcrg import mcrg_network
    from rgaudit.rg.spectra import pair_spectra

    res = mcrg_network(net, x, "singles", cfg.mcrg_samples, generator=gen)
    per: list[dict[str, Any]] = []
    for p in res.computed():
        spec = pair_spectra(p, shared_basis=False)
        kept = [s.counts["fisher~1"].value for s in spec]
        top = [float(s.fisher[0]) for s in spec]
        per.append({"pair": f"{p.index}->{p.index + 1}", "n_kept_median": float(np.median(kept)),
                    "top_median": float(np.median(top)), "n_kept": kept, "top": top})
    return {"stab_n_kept": float(sum(d["n_kept_median"] for d in per)),
            "stab_top": float(np.mean([d["top_median"] for d in per])) if per else float("nan"),
            "stability_pairs": per}


def _quartiles(v: np.ndarray) -> dict[str, float]:
    q = censored_quantiles(v, (0.25, 0.5, 0.75))
    return {"q1": q[0], "median": q[1], "q3": q[2]}


# -- one network ----------------------------------------------------------------------------

def zoo_unit(unit: Unit, ss: np.random.SeedSequence, shared: dict[str, Any]) -> dict[str, Any]:
    """Train one network of the zoo and measure its robustness and predictors.

    ``shared``: ``{"config": ZooConfig, "dataset": Dataset}``. Every random number comes from
    ``ss`` through named streams (``zoo.train``, ``unit.judge``, ``mcrg``, ``zoo.clever``), so the
    result depends only on the run seed and the unit's key.
    """
    from rgaudit.attacks.advlib import attack_fn
    from rgaudit.attacks.evaluate import StochasticJudge, minimal_eps
    from rgaudit.threads import limit_threads

    cfg: ZooConfig = shared["config"]
    ds = shared["dataset"]
    spec = dict(unit.payload)
    timings: dict[str, float] = {}
    with limit_threads(1):
        t0 = time.perf_counter()
        n = min(cfg.n_inputs, len(ds.X_test))
        x = ds.X_test[:n].to(torch.float64)
        y = ds.y_test[:n].long()
        if spec["family"] == "rbm":
            net, acc = train_rbm(spec, ds, cfg, child_seed(ss, "zoo.train"))
            model: nn.Module = net.mean_field()
            judge: Any = StochasticJudge(
                net, n_samples=cfg.judge_samples, seed=child_seed(ss, "unit.judge", bits=31)
            ).for_inputs(range(n))
        else:
            model = train_torch(spec, ds.X_train, ds.y_train.long(), cfg,
                                torch_generator(ss, "zoo.train"))
            with torch.no_grad():
                acc = float((model(ds.X_test.to(torch.float64)).argmax(-1) == ds.y_test)
                            .double().mean())
            judge = ArgmaxJudge(model)
        for p in model.parameters():
            p.requires_grad_(False)
        timings["train"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        ddn = attack_fn("ddn")
        delta = (ddn(model, x, y, steps=cfg.ddn_steps, levels=None) - x).detach()
        surrogate_flipped = model(x + delta).argmax(-1) != y
        g = torch.func.vmap(torch.func.grad(
            lambda xi, yi: nn.functional.cross_entropy(model(xi[None]), yi[None])))(x, y)
        direction = torch.where(delta.norm(dim=1, keepdim=True) > 0, delta, g)
        timings["ddn"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        me = minimal_eps(judge, x, y, direction, norm="l2", eps_max=cfg.eps_max,
                         steps=cfg.bisect_steps)
        dist = torch.where(me.clean_correct, me.actual_l2, torch.zeros_like(me.actual_l2))
        dist_np = dist.numpy()
        timings["judge"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        flipped = torch.isfinite(dist) & me.clean_correct
        preds: dict[str, Any] = fim_predictors(model, x, delta, flipped, cfg.top_k)
        timings["fim"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        preds["grad_norm"] = float(grad_norm(model, x, y).median())
        preds["lipschitz"] = (rbm_lipschitz_bound(net) if spec["family"] == "rbm"
                              else lipschitz_bound(model, x))
        preds["accuracy"] = acc
        timings["reference"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cl = clever_scores(model, x, int(ds.n_classes), cfg, child_seed(ss, "zoo.clever"))
        preds["clever"] = float(np.median(cl))
        timings["clever"] = time.perf_counter() - t0
        if spec["family"] == "rbm":
            t0 = time.perf_counter()
            preds.update(stability_predictors(net, x[:cfg.mcrg_inputs].to(net.dtype), cfg,
                                              torch_generator(ss, "mcrg")))
            timings["mcrg"] = time.perf_counter() - t0
        else:
            preds.update(stab_n_kept=None, stab_top=None)
    return {
        "key": unit.key, "spec": spec,
        "robustness": {**_quartiles(dist_np), "n": int(n),
                       "n_clean_wrong": int((~me.clean_correct).sum()),
                       "n_unflipped": int((~torch.isfinite(dist)).sum()),
                       "n_confident": int(me.confident.sum()),
                       "ddn_l2_median": float(delta.norm(dim=1).median()),
                       "ddn_surrogate_success": float(surrogate_flipped.double().mean()),
                       "per_input": [float(v) for v in dist_np],
                       "judge": ("stochastic network, chain-averaged output "
                                 f"({cfg.judge_samples} chains, common random numbers)"
                                 if spec["family"] == "rbm" else "argmax of the logits")},
        "predictors": preds, "timings": timings,
    }


# -- the whole zoo ----------------------------------------------------------------------------

# JSON numbers back in memory: ``null`` (a non-finite number) is NaN, and inf for a minimal
# flipping L2 (not flipped within ``eps_max``)
_num, _censored = nan_from_json, inf_from_json


@dataclass(frozen=True)
class NetworkSpec:
    """Architecture and training of one network of the zoo (:func:`zoo_members`).

    Attributes
    ----------
    family : str
        ``"rbm"``, ``"mlp"`` or ``"cnn"``.
    depth, width : int
        Hidden layers; width (PyTorch models: the widest layer).
    length : str
        ``"short"`` or ``"long"`` training.
    weight_decay : float
    replica : int
    hidden : list of int or None
        Hidden widths (conv channels of a CNN); None for an RBM.
    """

    family: str
    depth: int
    width: int
    length: str
    weight_decay: float
    replica: int
    hidden: list[int] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkSpec:
        return cls(d["family"], int(d["depth"]), int(d["width"]), d["length"],
                   float(d["weight_decay"]), int(d["replica"]),
                   None if d.get("hidden") is None else [int(h) for h in d["hidden"]])

    def to_dict(self) -> dict[str, Any]:
        if self.hidden is None:
            return {"family": self.family, "depth": self.depth, "width": self.width,
                    "length": self.length, "weight_decay": self.weight_decay,
                    "replica": self.replica}
        return {"family": self.family, "hidden": list(self.hidden), "length": self.length,
                "weight_decay": self.weight_decay, "replica": self.replica,
                "depth": self.depth, "width": self.width}


@dataclass(frozen=True)
class Robustness:
    """Minimal flipping L2 of one network over the attacked inputs (:func:`zoo_unit`).

    Attributes
    ----------
    q1, median, q3 : float
        Censored quartiles over the inputs (misclassified inputs 0, unflipped ones inf).
    n, n_clean_wrong, n_unflipped, n_confident : int
        Inputs; misclassified; not flipped within ``eps_max``; verdicts confident.
    ddn_l2_median : float
        Median L2 norm of the DDN perturbation.
    ddn_surrogate_success : float
        Fraction of inputs DDN flipped on the differentiable surrogate.
    per_input : list of float
        Minimal flipping L2 per input (0: misclassified, inf: unflipped).
    judge : str
        How the flip was judged.
    """

    q1: float
    median: float
    q3: float
    n: int
    n_clean_wrong: int
    n_unflipped: int
    n_confident: int
    ddn_l2_median: float
    ddn_surrogate_success: float
    per_input: list[float]
    judge: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Robustness:
        return cls(_censored(d["q1"]), _censored(d["median"]), _censored(d["q3"]), int(d["n"]),
                   int(d["n_clean_wrong"]), int(d["n_unflipped"]), int(d["n_confident"]),
                   _num(d["ddn_l2_median"]), _num(d["ddn_surrogate_success"]),
                   [_censored(v) for v in d["per_input"]], d["judge"])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_input"] = list(self.per_input)
        return out


@dataclass(frozen=True)
class StabilityPair:
    """Fisher-normalised stability values of one layer pair (:func:`stability_predictors`).

    Attributes
    ----------
    pair : str
        ``"k->k+1"``.
    n_kept_median, top_median : float
        Medians over the inputs of ``n_kept`` and ``top``.
    n_kept : list of int
        Per input: stability values ``≥ 1 − δ``.
    top : list of float
        Per input: the largest stability value.
    """

    pair: str
    n_kept_median: float
    top_median: float
    n_kept: list[int]
    top: list[float]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StabilityPair:
        return cls(d["pair"], _num(d["n_kept_median"]), _num(d["top_median"]),
                   [int(v) for v in d["n_kept"]], [_num(v) for v in d["top"]])

    def to_dict(self) -> dict[str, Any]:
        return {"pair": self.pair, "n_kept_median": self.n_kept_median,
                "top_median": self.top_median, "n_kept": list(self.n_kept),
                "top": list(self.top)}


@dataclass(frozen=True)
class Predictors:
    """The RG/Fisher and reference predictors of one network (:data:`PREDICTORS`; ``depth``
    is the spec's).

    Attributes
    ----------
    fim_top, fim_eff_rank, eig_fraction : float
        Medians over the inputs (:func:`fim_predictors`).
    eig_fraction_random : float
        ``k/d``: the fraction of a random direction.
    fim_top_per_input : list of float
    grad_norm, lipschitz, accuracy, clever : float
    stab_n_kept, stab_top : float or None
        MCRG stability predictors; None for a PyTorch model.
    stability_pairs : list of StabilityPair or None
        Per layer pair (RBMs); None (left out of the JSON) for a PyTorch model.
    """

    fim_top: float
    fim_eff_rank: float
    eig_fraction: float
    eig_fraction_random: float
    fim_top_per_input: list[float]
    grad_norm: float
    lipschitz: float
    accuracy: float
    clever: float
    stab_n_kept: float | None = None
    stab_top: float | None = None
    stability_pairs: list[StabilityPair] | None = None

    def value(self, name: str) -> float | None:
        """The predictor ``name`` of :data:`PREDICTORS` (not ``depth``)."""
        return cast("float | None", getattr(self, name))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Predictors:
        sp = d.get("stability_pairs")
        return cls(
            fim_top=_num(d["fim_top"]), fim_eff_rank=_num(d["fim_eff_rank"]),
            eig_fraction=_num(d["eig_fraction"]),
            eig_fraction_random=_num(d["eig_fraction_random"]),
            fim_top_per_input=[_num(v) for v in d["fim_top_per_input"]],
            grad_norm=_num(d["grad_norm"]), lipschitz=_num(d["lipschitz"]),
            accuracy=_num(d["accuracy"]), clever=_num(d["clever"]),
            stab_n_kept=None if d["stab_n_kept"] is None else float(d["stab_n_kept"]),
            stab_top=None if d["stab_top"] is None else float(d["stab_top"]),
            stability_pairs=None if sp is None else [StabilityPair.from_dict(p) for p in sp])

    def to_dict(self) -> dict[str, Any]:
        out = {"fim_top": self.fim_top, "fim_eff_rank": self.fim_eff_rank,
               "eig_fraction": self.eig_fraction,
               "eig_fraction_random": self.eig_fraction_random,
               "fim_top_per_input": list(self.fim_top_per_input), "grad_norm": self.grad_norm,
               "lipschitz": self.lipschitz, "accuracy": self.accuracy, "clever": self.clever,
               "stab_n_kept": self.stab_n_kept, "stab_top": self.stab_top}
        if self.stability_pairs is not None:
            out["stability_pairs"] = [p.to_dict() for p in self.stability_pairs]
        return out


@dataclass(frozen=True)
class ZooNetwork:
    """What the zoo measured of one network (:func:`zoo_unit` returns it as plain data, which
    the run folder stores).

    Attributes
    ----------
    key : str
    spec : NetworkSpec
    robustness : Robustness
    predictors : Predictors
    timings : dict of str to float
        Seconds per stage (the stages the network went through).
    """

    key: str
    spec: NetworkSpec
    robustness: Robustness
    predictors: Predictors
    timings: dict[str, float]

    def value(self, name: str) -> float | None:
        """Predictor ``name`` of :data:`PREDICTORS` (``depth``: the spec's depth)."""
        return float(self.spec.depth) if name == "depth" else self.predictors.value(name)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooNetwork:
        return cls(d["key"], NetworkSpec.from_dict(d["spec"]),
                   Robustness.from_dict(d["robustness"]), Predictors.from_dict(d["predictors"]),
                   {k: float(v) for k, v in d["timings"].items()})

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "spec": self.spec.to_dict(),
                "robustness": self.robustness.to_dict(), "predictors": self.predictors.to_dict(),
                "timings": dict(self.timings)}


@dataclass(frozen=True)
class HeldOut:
    """The held-out check of one predictor (:func:`held_out`).

    Attributes
    ----------
    fixed_split_rho : float
        Spearman ρ on the held-out half of the fixed split (NaN: undefined).
    random_splits_median_rho : float
    random_splits_frac_positive : float
        Median ρ and fraction of positive ρ over the random splits with a defined ρ.
    n_splits : int
        Random splits with a defined ρ (0 with fewer than 8 networks).
    random_splits_q : list of float or None
        10% and 90% quantiles of those ρ; None (left out of the JSON) with fewer than 8
        networks, as is ``transform``.
    transform : str or None
        ``"log"`` or ``"identity"``: the predictor's transform in the fitted line.
    """

    fixed_split_rho: float
    random_splits_median_rho: float
    random_splits_frac_positive: float
    n_splits: int
    random_splits_q: list[float] | None = None
    transform: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeldOut:
        q = d.get("random_splits_q")
        return cls(_num(d["fixed_split_rho"]), _num(d["random_splits_median_rho"]),
                   _num(d["random_splits_frac_positive"]), int(d["n_splits"]),
                   None if q is None else [_num(v) for v in q], d.get("transform"))

    def to_dict(self) -> dict[str, Any]:
        if self.random_splits_q is None:
            return {"fixed_split_rho": self.fixed_split_rho,
                    "random_splits_median_rho": self.random_splits_median_rho,
                    "random_splits_frac_positive": self.random_splits_frac_positive,
                    "n_splits": self.n_splits}
        return {"fixed_split_rho": self.fixed_split_rho,
                "random_splits_median_rho": self.random_splits_median_rho,
                "random_splits_q": list(self.random_splits_q),
                "random_splits_frac_positive": self.random_splits_frac_positive,
                "n_splits": self.n_splits, "transform": self.transform}


@dataclass(frozen=True)
class Spearman:
    """Spearman ρ of a predictor with robustness over a group of networks.

    Attributes
    ----------
    rho, p_value : float
        NaN where undefined.
    n : int
        Networks with a finite predictor value.
    ci : list of float
        95% percentile-bootstrap interval ``[low, high]``.
    held_out : HeldOut or None
        The held-out check (whole zoo; RBM family for the stability predictors).
    computed : bool
        False when ρ was not computed (fewer than 4 networks or a constant column): ρ,
        interval and p-value are NaN, and the JSON lists ``ci`` before ``n`` and ``p_value``.
    """

    rho: float
    p_value: float
    n: int
    ci: list[float]
    held_out: HeldOut | None = None
    computed: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spearman:
        ho = d.get("held_out")
        return cls(_num(d["rho"]), _num(d["p_value"]), int(d["n"]), [_num(v) for v in d["ci"]],
                   None if ho is None else HeldOut.from_dict(ho),
                   computed=list(d)[1] != "ci")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = (
            {"rho": self.rho, "p_value": self.p_value, "n": self.n, "ci": list(self.ci)}
            if self.computed else
            {"rho": self.rho, "ci": list(self.ci), "n": self.n, "p_value": self.p_value})
        if self.held_out is not None:
            out["held_out"] = self.held_out.to_dict()
        return out


@dataclass(frozen=True)
class CorrelationRow:
    """One predictor's correlations with robustness (the JSON keys are the group names).

    Attributes
    ----------
    description : str
    family : str
        ``"rg"`` or ``"reference"``.
    all, rbm, torch : Spearman
        Over all networks used, the RBM family, the PyTorch family.
    all_correct_only : Spearman
        All networks, robustness over correctly classified inputs only.
    """

    description: str
    family: str
    all: Spearman
    rbm: Spearman
    torch: Spearman
    all_correct_only: Spearman

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorrelationRow:
        return cls(d["description"], d["family"],
                   *(Spearman.from_dict(d[g]) for g in ("all", "rbm", "torch",
                                                        "all_correct_only")))

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "family": self.family,
                "all": self.all.to_dict(), "rbm": self.rbm.to_dict(),
                "torch": self.torch.to_dict(),
                "all_correct_only": self.all_correct_only.to_dict()}


@dataclass(frozen=True)
class Excluded:
    """A network left out of the correlations (accuracy below the threshold, or no finite
    robustness median)."""

    key: str
    accuracy: float
    robustness_median: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Excluded:
        return cls(d["key"], _num(d["accuracy"]), _num(d["robustness_median"]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ZooAnalysis:
    """The correlation analysis of a zoo (:func:`analyse`).

    Attributes
    ----------
    n_networks, n_used : int
        Networks measured; used in the correlations.
    excluded : list of Excluded
    min_accuracy : float
    robustness_range : list of float
        Smallest and largest robustness median of the networks used (empty if none).
    correlations : dict of str to CorrelationRow
        By predictor name (:data:`PREDICTORS`, in its order).
    """

    n_networks: int
    n_used: int
    excluded: list[Excluded]
    min_accuracy: float
    robustness_range: list[float]
    correlations: dict[str, CorrelationRow]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooAnalysis:
        return cls(int(d["n_networks"]), int(d["n_used"]),
                   [Excluded.from_dict(e) for e in d["excluded"]], float(d["min_accuracy"]),
                   [_num(v) for v in d["robustness_range"]],
                   {k: CorrelationRow.from_dict(r) for k, r in d["correlations"].items()})

    def to_dict(self) -> dict[str, Any]:
        return {"n_networks": self.n_networks, "n_used": self.n_used,
                "excluded": [e.to_dict() for e in self.excluded],
                "min_accuracy": self.min_accuracy,
                "robustness_range": list(self.robustness_range),
                "correlations": {k: r.to_dict() for k, r in self.correlations.items()}}


@dataclass
class ZooResult:
    """Per-network measurements, failures, the analysis and where the time went.

    Attributes
    ----------
    config : ZooConfig
    networks : list of ZooNetwork
        One record per measured network, in the order of :func:`zoo_members`.
    failures : dict of str to str
        Error by key of every network that failed after retries.
    analysis : ZooAnalysis
    execution : ExecutionSummary
        With ``summary_text``.
    """

    config: ZooConfig
    networks: list[ZooNetwork]
    failures: dict[str, str]
    analysis: ZooAnalysis
    execution: ExecutionSummary

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooResult:
        """From :meth:`to_dict` or the JSON written from it (``null`` read back as NaN)."""
        names = {f.name for f in fields(ZooConfig)}
        return cls(ZooConfig(**{k: v for k, v in d["config"].items() if k in names}),
                   [ZooNetwork.from_dict(n) for n in d["networks"]], dict(d["failures"]),
                   ZooAnalysis.from_dict(d["analysis"]),
                   ExecutionSummary.from_dict(d["execution"]))

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(),
                "networks": [n.to_dict() for n in self.networks],
                "failures": dict(self.failures), "analysis": self.analysis.to_dict(),
                "execution": self.execution.to_dict()}


def run_zoo(cfg: ZooConfig, executor: Any, *, store: Any = None, progress: bool = False
            ) -> ZooResult:
    """Train and measure every network of the zoo on ``executor``; analyse the correlations.

    Parameters
    ----------
    cfg : ZooConfig
    executor : rgaudit.executors.Executor
    store : rgaudit.executors.UnitStore, optional
        Finished networks are kept there and skipped on a restart.
    progress : bool
        Show a progress bar over finished networks.
    """
    from rgaudit.data.registry import load_dataset

    ds = load_dataset(cfg.data)
    if ds.n_features != 64:
        raise ValueError(f"the zoo's CNNs expect 8×8 inputs; --data {cfg.data} has "
                         f"{ds.n_features} features")
    units = zoo_members(cfg)
    rep = executor.map(zoo_unit, units, seed=cfg.seed, shared={"config": cfg, "dataset": ds},
                       store=store, progress=progress)
    nets = [ZooNetwork.from_dict(v) for v in rep.values if v is not None]
    execution = replace(ExecutionSummary.from_dict(rep.summary()),
                        summary_text=rep.summary_text())
    return ZooResult(cfg, nets, rep.failures, analyse(nets, cfg), execution)


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def spearman_with_ci(x: np.ndarray, y: np.ndarray, n_boot: int, rng: np.random.Generator
                     ) -> Spearman:
    """Spearman ρ of paired samples and its 95% percentile-bootstrap interval (scipy)."""
    from scipy.stats import bootstrap, spearmanr

    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Spearman(float("nan"), float("nan"), n, [float("nan"), float("nan")],
                        computed=False)
    r = spearmanr(x, y)

    def stat(a: np.ndarray, b: np.ndarray) -> float:
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            return 0.0
        return float(spearmanr(a, b).statistic)

    bs = bootstrap((x, y), stat, paired=True, vectorized=False, n_resamples=n_boot,
                   method="percentile", rng=rng)
    return Spearman(float(r.statistic), float(r.pvalue), n,
                    [float(bs.confidence_interval.low), float(bs.confidence_interval.high)])


def held_out(x: np.ndarray, y: np.ndarray, keys: list[str], n_splits: int,
             rng: np.random.Generator) -> HeldOut:
    """Fit ``y ≈ a + b·t(x)`` on half the zoo, rank the other half by the prediction.

    ``t`` is ``log`` for positive predictors, the identity otherwise. The fixed split puts
    networks in alternate positions of their keys' sorted hashes; ``n_splits`` random splits
    give the spread. The score is Spearman ρ between prediction and robustness on the held-out
    half (a monotone fit ranks the held-out half as ``sign(b)·x``).
    """
    from scipy.stats import spearmanr

    from rgaudit.executors.base import key_hash

    t = np.log(x) if np.all(x > 0) else x
    n = len(x)
    if n < 8:
        return HeldOut(float("nan"), float("nan"), float("nan"), 0)

    def score(train: np.ndarray, test: np.ndarray) -> float:
        if np.ptp(t[train]) == 0 or np.ptp(t[test]) == 0 or np.ptp(y[test]) == 0:
            return float("nan")
        b = np.polyfit(t[train], y[train], 1)[0]
        pred = b * t[test]
        if np.ptp(pred) == 0:
            return float("nan")
        return float(spearmanr(pred, y[test]).statistic)

    order = np.argsort([key_hash(k) for k in keys], kind="stable")
    fixed = score(order[0::2], order[1::2])
    rs = []
    for _ in range(n_splits):
        p = rng.permutation(n)
        rs.append(score(p[: n // 2], p[n // 2:]))
    arr = np.array([r for r in rs if math.isfinite(r)])
    return HeldOut(
        fixed, float(np.median(arr)) if len(arr) else float("nan"),
        float((arr > 0).mean()) if len(arr) else float("nan"), int(len(arr)),
        [float(v) for v in np.quantile(arr, [0.1, 0.9])] if len(arr) else [float("nan")] * 2,
        "log" if np.all(x > 0) else "identity")


def correct_only_median(net: ZooNetwork) -> float:
    """Median minimal flipping L2 over the inputs the network classifies correctly (the
    misclassified ones, stored as 0, left out): robustness without accuracy mixed in."""
    v = np.array(net.robustness.per_input, dtype=np.float64)
    v = v[v > 0]
    return float(np.median(v)) if len(v) else float("nan")


def analyse(nets: list[ZooNetwork], cfg: ZooConfig) -> ZooAnalysis:
    """Spearman ρ (bootstrap 95% intervals) of every predictor with robustness, and the
    held-out check, over all networks, the RBM family and the PyTorch family; and, as a
    sensitivity check, over all networks with robustness taken on correctly classified inputs
    only (``all_correct_only``)."""
    ok = [r for r in nets if r.predictors.accuracy >= cfg.min_accuracy
          and _finite(r.robustness.median)]
    excluded = [Excluded(r.key, r.predictors.accuracy, r.robustness.median)
                for r in nets if r not in ok]
    rng = numpy_rng(cfg.seed, "zoo.bootstrap")
    groups = {"all": ok, "rbm": [r for r in ok if r.spec.family == "rbm"],
              "torch": [r for r in ok if r.spec.family != "rbm"]}
    table: dict[str, CorrelationRow] = {}
    for name in PREDICTORS:
        per: dict[str, Spearman] = {}
        for g, rows in groups.items():
            use = [r for r in rows if _finite(r.value(name))]
            x = np.array([r.value(name) for r in use], dtype=np.float64)
            y = np.array([r.robustness.median for r in use], dtype=np.float64)
            per[g] = spearman_with_ci(x, y, cfg.n_boot, rng)
            if g == "all" or (g == "rbm" and name.startswith("stab")):
                per[g] = replace(per[g], held_out=held_out(x, y, [r.key for r in use],
                                                           cfg.n_splits, rng))
        use = [r for r in ok if _finite(r.value(name))]
        correct_only = spearman_with_ci(
            np.array([r.value(name) for r in use], dtype=np.float64),
            np.array([correct_only_median(r) for r in use]), cfg.n_boot, rng)
        table[name] = CorrelationRow(PREDICTORS[name],
                                     "rg" if name in RG_PREDICTORS else "reference",
                                     per["all"], per["rbm"], per["torch"], correct_only)
    rob = np.array([r.robustness.median for r in ok])
    return ZooAnalysis(len(nets), len(ok), excluded, cfg.min_accuracy,
                       [float(rob.min()), float(rob.max())] if len(rob) else [], table)
