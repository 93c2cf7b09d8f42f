"""The default training recipe: greedy CD pretraining → supervised output layer → fine-tuning.

``train_default(dataset, config)`` returns the trained :class:`DeepRBM` and a plain report
(settings, histories, accuracies, timings) ready to be stored as the model's metadata.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rgaudit import __version__
from rgaudit.data.dataset import Dataset
from rgaudit.device import make_generator, resolve_device
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.threads import limit_threads
from rgaudit.train.cd import CDConfig, greedy_pretrain
from rgaudit.train.evaluate import evaluate
from rgaudit.train.finetune import FinetuneConfig, finetune
from rgaudit.train.progress import Progress, no_progress
from rgaudit.train.supervised import fit_output_layer

DEFAULT_WIDTHS = (64, 100, 100, 10)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained network (with the data set).

    Attributes
    ----------
    widths : tuple of int
        ``(n_0, …, n_N)``; ``n_0`` must equal the data width and ``n_N`` the number of classes.
    seed : int
        Seeds the single generator behind initial weights, batch order and every sample.
    pretrain : CDConfig
    finetune : FinetuneConfig
    output_loss : {"bce", "softmax"}
        Loss of the supervised output-layer fit before fine-tuning.
    eval_samples : int
        Chains per input for the stochastic test accuracy.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    threads : int or None
        CPU threads for torch while training (restored afterwards); None leaves torch's setting.
        One thread is the default: the matrices are at most a few hundred wide, so extra
        threads only add synchronisation (and, on a busy machine, heavy oversubscription), and a
        fixed thread count keeps results bit-for-bit reproducible.
    """

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    seed: int = 0
    pretrain: CDConfig = field(default_factory=CDConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    output_loss: str = "bce"
    eval_samples: int = 1000
    device: str = "cpu"
    threads: int | None = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def check_widths(widths: tuple[int, ...], dataset: Dataset) -> None:
    """Raise ValueError unless ``widths`` fit the data set (input width, number of classes)."""
    if len(widths) < 2:
        raise ValueError(f"widths {list(widths)} need at least an input and an output width")
    if widths[0] != dataset.n_features:
        raise ValueError(f"widths start with {widths[0]} but {dataset.name} inputs have "
                         f"{dataset.n_features} features; use --widths "
                         f"{dataset.n_features},…,{dataset.n_classes}")
    if widths[-1] != dataset.n_classes:
        raise ValueError(f"widths end with {widths[-1]} but {dataset.name} has "
                         f"{dataset.n_classes} classes; the output layer needs one unit per class")


def train_default(dataset: Dataset, config: TrainConfig | None = None, *,
                  progress: Progress = no_progress) -> tuple[DeepRBM, dict[str, Any]]:
    """Train a classifier :class:`DeepRBM` on ``dataset``.

    Steps: (1) CD/PCD pretraining of layers ``1 … N-1`` on mean-field activations;
    (2) logistic-regression fit of the output layer ``σ(W_N h + a_N)`` to one-hot labels;
    (3) fine-tuning of the whole stack (default: the mean-field surrogate);
    (4) test accuracies, mean-field and stochastic (``config.eval_samples`` chains).

    Parameters
    ----------
    dataset : Dataset
    config : TrainConfig, optional
    progress : callable, optional
        ``progress(stage, done, total, **info)``.

    Returns
    -------
    net : DeepRBM (float32, on ``config.device``)
    report : dict
        JSON-ready: ``training`` (the config), ``dataset``, ``seed``, ``accuracy``,
        ``train_seconds`` (wall clock), ``train_cpu_seconds``
        (this process's CPU time), ``history``, ``package_version`` (``save_model`` adds
        ``rgaudit_version`` itself).
    """
    config = config or TrainConfig()
    with limit_threads(config.threads):
        return _train(dataset, config, progress)


def _train(dataset: Dataset, config: TrainConfig,
           progress: Progress) -> tuple[DeepRBM, dict[str, Any]]:
    widths = tuple(int(w) for w in config.widths)
    check_widths(widths, dataset)
    device = resolve_device(config.device)
    gen = make_generator(config.seed, device)
    net = DeepRBM(widths).to(device)
    X = dataset.X_train.to(device)
    y = dataset.y_train.to(device)
    t0 = time.perf_counter()
    c0 = time.process_time()
    pre = greedy_pretrain(net, X, config.pretrain, gen, progress=progress)
    with torch.no_grad():
        H = X
        for k in range(1, net.depth):
            H = net.layer(k).prob_up(H)
    net.layer(net.depth).b.data.copy_(torch.logit(H.mean(0).clamp(0.01, 0.99)))
    progress("output layer", 0, 1)
    top = fit_output_layer(net.layer(net.depth), H, y, loss=config.output_loss)
    progress("output layer", 1, 1, loss=top["loss"])
    ft = finetune(net, X, y, config.finetune, gen, progress=progress)
    train_seconds = time.perf_counter() - t0
    train_cpu_seconds = time.process_time() - c0
    progress("evaluate", 0, 1)
    t1 = time.perf_counter()
    acc = evaluate(net, dataset.X_test, dataset.y_test, n_samples=config.eval_samples,
                   generator=gen)
    progress("evaluate", 1, 1)
    report = {
        "training": config.to_dict(),
        "dataset": dataset.to_dict(),
        "seed": int(config.seed),
        "accuracy": acc,
        "train_seconds": round(train_seconds, 2),
        "train_cpu_seconds": round(train_cpu_seconds, 2),
        "eval_seconds": round(time.perf_counter() - t1, 2),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "history": {"pretrain": pre, "output_layer": top, "finetune": ft},
        "package_version": __version__,
    }
    return net, report
