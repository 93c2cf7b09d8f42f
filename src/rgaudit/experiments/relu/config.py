"""The one configuration of the random-ReLU study, with every default defined once.

Every sub-study (:mod:`.scaling`, :mod:`.near_linearity`, :mod:`.depth`, :mod:`.trained`) takes a
:class:`ReluStudyConfig` and reads its own fields (prefixed ``nl_``, ``angle_``, ``collapse_``,
``digits_``); there are no defaults in the study functions' signatures. The config is validated
in ``__post_init__`` and its error messages name the ``rgaudit relu-scaling`` option where there
is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from rgaudit.attacks.one_step import DEFAULT_MULTIPLIERS

PROFILES = ("constant", "fixed")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
NL_R_REL = tuple(float(v) for v in np.geomspace(1e-3, 2.0, 23))


def make_generator(seed: int, device: str | torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def _need(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


@dataclass(frozen=True)
class ReluStudyConfig:
    """Every setting of :func:`~rgaudit.experiments.relu.run.run_relu_study` (recorded in JSON).

    Attributes
    ----------
    seed : int
        Base seed; each sub-study draws from a named stream of it (``relu.*`` roles of
        :mod:`rgaudit.random`), whose 63-bit integer seed is recorded.
    device : str
        ``cpu``, ``cuda`` or ``cuda:N``.
    dtype : {"float32", "float64"}
    multipliers : tuple of float
        Step multipliers ``c`` of the one-step attack.
    dims, depths, profiles, width, n_nets, batch, max_weight_bytes, max_chunk_bytes, n_boot
        Scaling study: input dimensions, depths (0 = linear is always added), width profiles
        (``constant``: hidden width = d; ``fixed``: hidden width = ``width``), networks per
        cell, inputs per network, memory caps (cells whose one network needs more are skipped;
        networks are drawn in chunks of about ``max_chunk_bytes``), bootstrap resamples.
    nl_dims, nl_depths, nl_profile, nl_width, nl_n_nets, nl_batch, nl_threshold, nl_r_rel
        Near-linearity scan: radii ``r/‖x‖``; breakdown = first radius where the median
        relative gradient change reaches ``nl_threshold``.
    angle_width, angle_max_depth, angle_thetas0, angle_n_nets, angle_pair_reps
        Angle recursion: width, depth, input angles (radians), full networks per angle (one
        pair each), replicates of the exact two-input sampler.
    collapse_d, collapse_width, collapse_depths, collapse_n_nets, collapse_batch
        Collapse of the attack with depth (``collapse_batch >= 2``: the first two inputs give
        the output angle).
    digits_hidden, digits_epochs, digits_lr
        Trained MLP on scikit-learn digits (full-batch Adam).
    """

    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS
    # scaling
    dims: tuple[int, ...] = (64, 256, 1024, 4096, 16384)
    depths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    profiles: tuple[str, ...] = PROFILES
    width: int = 256
    n_nets: int = 24
    batch: int = 8
    max_weight_bytes: int = 600 * 2**20
    max_chunk_bytes: int = 512 * 2**20
    n_boot: int = 1000
    # near-linearity
    nl_dims: tuple[int, ...] = (256, 1024, 2048)
    nl_depths: tuple[int, ...] = (1, 2, 4)
    nl_profile: str = "constant"
    nl_width: int = 256
    nl_n_nets: int = 4
    nl_batch: int = 2
    nl_threshold: float = 0.5
    nl_r_rel: tuple[float, ...] = NL_R_REL
    # depth: angle recursion and collapse
    angle_width: int = 2048
    angle_max_depth: int = 16
    angle_thetas0: tuple[float, ...] = (math.pi / 4, math.pi / 2, 3 * math.pi / 4,
                                        0.95 * math.pi)
    angle_n_nets: int = 4
    angle_pair_reps: int = 400
    collapse_d: int = 256
    collapse_width: int = 256
    collapse_depths: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64)
    collapse_n_nets: int = 64
    collapse_batch: int = 4
    # trained network
    digits_hidden: tuple[int, ...] = (128, 128)
    digits_epochs: int = 300
    digits_lr: float = 1e-2

    def __post_init__(self) -> None:
        _need(self.device == "cpu" or self.device.startswith("cuda"),
              f"--device must be cpu, cuda or cuda:N, got {self.device!r}")
        _need(self.dtype in DTYPES, f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        _need(len(self.multipliers) > 0 and min(self.multipliers) > 0,
              f"multipliers must be positive and non-empty, got {self.multipliers}")
        _need(len(self.dims) >= 2 and min(self.dims) >= 2,
              f"--dims needs >= 2 dimensions, each >= 2, for a slope; got {self.dims}")
        _need(len(self.depths) > 0 and min(self.depths) >= 0,
              f"--depths must be non-empty and >= 0, got {self.depths}")
        _need(len(self.profiles) > 0 and set(self.profiles) <= set(PROFILES),
              f"profiles must be among {PROFILES}, got {self.profiles}")
        _need(self.nl_profile in PROFILES, f"nl_profile must be one of {PROFILES}, got "
                                           f"{self.nl_profile!r}")
        for name, opt in (("width", "--width"), ("n_nets", "--n-nets"), ("batch", "batch"),
                          ("max_weight_bytes", "--max-weight-mib"),
                          ("max_chunk_bytes", "max_chunk_bytes"), ("n_boot", "n_boot"),
                          ("nl_width", "nl_width"), ("nl_n_nets", "nl_n_nets"),
                          ("nl_batch", "nl_batch"), ("angle_width", "angle_width"),
                          ("angle_max_depth", "angle_max_depth"),
                          ("angle_n_nets", "angle_n_nets"),
                          ("angle_pair_reps", "angle_pair_reps"), ("collapse_d", "collapse_d"),
                          ("collapse_width", "collapse_width"),
                          ("collapse_n_nets", "collapse_n_nets")):
            value = getattr(self, name)
            _need(value >= 1, f"{opt} must be >= 1, got {value}")
        _need(self.n_boot >= 2, f"n_boot must be >= 2, got {self.n_boot}")
        _need(len(self.nl_dims) > 0 and min(self.nl_dims) >= 1 and len(self.nl_depths) > 0
              and min(self.nl_depths) >= 0,
              f"nl_dims must be >= 1 and nl_depths >= 0, got {self.nl_dims}, {self.nl_depths}")
        _need(self.nl_threshold > 0 and len(self.nl_r_rel) > 0 and min(self.nl_r_rel) > 0,
              "nl_threshold and nl_r_rel must be positive")
        _need(self.collapse_batch >= 2,
              "collapse_batch must be >= 2 (two inputs give the output angle)")
        _need(len(self.collapse_depths) > 0 and min(self.collapse_depths) >= 0,
              f"collapse_depths must be non-empty and >= 0, got {self.collapse_depths}")
        _need(len(self.angle_thetas0) > 0, "angle_thetas0 must be non-empty")
        _need(len(self.digits_hidden) > 0 and min(self.digits_hidden) >= 1
              and self.digits_epochs >= 0 and self.digits_lr > 0,
              "digits_hidden must be positive widths, digits_epochs >= 0, digits_lr > 0")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The ``torch.dtype`` named by :attr:`dtype`."""
        return DTYPES[self.dtype]

    @classmethod
    def quick(cls, **overrides: object) -> ReluStudyConfig:
        """A seconds-long smoke setting (``--quick``), with ``overrides`` applied."""
        base = cls(dims=(16, 64, 256), depths=(1, 2), n_nets=6, batch=2, n_boot=100,
                   nl_dims=(64,), nl_depths=(1,), nl_n_nets=2, angle_width=128,
                   angle_max_depth=4, angle_pair_reps=50, collapse_depths=(0, 1, 4),
                   collapse_n_nets=4, digits_epochs=20)
        return replace(base, **overrides)  # type: ignore[arg-type]

    def n_steps(self) -> int:
        """Number of progress messages the study emits."""
        return len(self.profiles) * len(self.dims) + len(self.nl_dims) + 3
