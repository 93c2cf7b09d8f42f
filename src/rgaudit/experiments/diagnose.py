"""Convergence studies of MCRG spectra (vulnerability paper, section III) and class fixed points.

- spectra versus operator basis (subset and size), versus number of samples, versus depth (do the
  stability matrices of successive layers converge, eq. 19?);
- per-class fixed points: the output-layer effective Hamiltonians ``q_N(y|x)`` of many inputs per
  class, compared within and between classes (eq. 10–11). For an output layer of at most 12 units
  ``q_N`` is estimated over all ``2^{n_N}`` states by averaging ``t_N(y|h_{N−1})`` over sampled
  chains and turned into couplings by the Möbius transform.

:func:`run_diagnose` takes one validated :class:`DiagnoseConfig` and returns a typed
:class:`DiagnoseResult` (``to_dict`` is the JSON the CLI writes); no file I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from rgaudit.experiments.basis_check import check_basis_spec
from rgaudit.experiments.execution_summary import PerInputExecution
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.random import torch_generator
from rgaudit.rg.exact import couplings_from_logq, output_logq_mc
from rgaudit.rg.mcrg import MCRGResult, mcrg_network
from rgaudit.rg.moments import jackknife_stderr
from rgaudit.rg.spectra import Count, pair_spectra

Tensor = torch.Tensor
Progress = Callable[[str, int, int], None]


@dataclass
class SpectrumSummary:
    """Spectra of one layer pair under one setting, for every input.

    Attributes
    ----------
    study : str
        ``basis``, ``samples`` or ``depth``.
    pair : int
        Pair index ``i`` (layers ``i → i+1``).
    basis : str
    n_samples : int
    n_ops : tuple of int
        Operators of the lower and upper layer.
    fisher, fisher_err : Tensor of shape (n_inputs, k)
        Top ``k`` Fisher-normalised singular values, jackknife bias-corrected (reported), and
        their jackknife errors.
    eig_abs, eig_abs_err : Tensor of shape (n_inputs, k) or None
        Top ``|Λ|`` (shared operator sets only).
    counts : dict of str to list of Count
        Per criterion (``"fisher~1"``, ``"eig>1"``, … as :mod:`rgaudit.rg.spectra` names
        them), one :class:`~rgaudit.rg.spectra.Count` per input.
    max_cond : float
    regularised : int
        Number of inputs whose solve was regularised.
    dropped : list of int
        Dropped (constant) upper-layer operators per input.
    fisher_raw : Tensor of shape (n_inputs, k) or None
        Plug-in values (canonical correlations, in [0, 1], biased upwards at finite S).
    max_cond_prev : float
        Largest condition number of the lower-layer covariance ``C_prev`` (kept block).
    floored : int
        Inputs whose ``C_prev^{-1/2}`` or ``C_next^{1/2}`` needed the eigenvalue floor
        (pseudo-inverse on near-constant directions).
    replicates_regularised : int
        Jackknife replicates (summed over inputs) regularised on their own.
    unestimated : list of int
        Unestimated (collapsed) entries of ``T`` per input: the spectra rest on them.
    """

    study: str
    pair: int
    basis: str
    n_samples: int
    n_ops: tuple[int, int]
    fisher: Tensor
    fisher_err: Tensor
    eig_abs: Tensor | None
    eig_abs_err: Tensor | None
    counts: dict[str, list[Count]]
    max_cond: float
    regularised: int
    dropped: list[int]
    fisher_raw: Tensor | None = None
    max_cond_prev: float = float("nan")
    floored: int = 0
    replicates_regularised: int = 0
    unestimated: list[int] = field(default_factory=list)

    def mean_fisher(self, raw: bool = False) -> tuple[Tensor, Tensor]:
        """Input-averaged top values and the standard error of that average, shape (k,).

        ``raw=True`` averages the plug-in values instead of the bias-corrected ones.
        """
        vals = self.fisher_raw if raw and self.fisher_raw is not None else self.fisher
        n = vals.shape[0]
        mean = vals.mean(0)
        spread = vals.std(0, correction=1) / math.sqrt(n) if n > 1 else 0 * mean
        stat = (self.fisher_err**2).sum(0).sqrt() / n
        return mean, torch.maximum(spread, stat)

    def to_dict(self) -> dict[str, Any]:
        mean, err = self.mean_fisher()
        out = {"study": self.study, "pair": self.pair, "basis": self.basis,
               "n_samples": self.n_samples, "n_ops": list(self.n_ops),
               "fisher": self.fisher, "fisher_err": self.fisher_err,
               "fisher_mean": mean, "fisher_mean_err": err,
               "counts": {k: [c.to_dict() for c in cs] for k, cs in self.counts.items()},
               "max_cond": self.max_cond, "regularised": self.regularised,
               "dropped": self.dropped, "fisher_raw": self.fisher_raw,
               "fisher_raw_mean": self.mean_fisher(raw=True)[0],
               "max_cond_prev": self.max_cond_prev, "floored": self.floored,
               "replicates_regularised": self.replicates_regularised,
               "unestimated": self.unestimated}
        if self.eig_abs is not None:
            out.update(eig_abs=self.eig_abs, eig_abs_err=self.eig_abs_err)
        return out


def summarise(res: MCRGResult, study: str, basis: str, *, top: int = 10,
              shared_basis: bool = False) -> list[SpectrumSummary]:
    """One :class:`SpectrumSummary` per computed pair of ``res``.

    ``shared_basis`` (pass ``net.tied``): whether adjacent layers carry one operator set, the
    only case where raw eigenvalues ``|Λ|`` are reported (DESIGN.md fact 3).
    """
    out = []
    for pair in res.computed():
        sps = pair_spectra(pair, shared_basis=shared_basis)
        k = min(top, min(len(s.fisher) for s in sps))
        fisher = torch.stack([s.fisher[:k] for s in sps])
        raws = [s.fisher_raw[:k] for s in sps if s.fisher_raw is not None]
        fisher_raw = torch.stack(raws) if len(raws) == len(sps) else None
        ferr = torch.stack([s.fisher_err[:k] for s in sps])
        eig = eig_err = None
        if sps[0].eig is not None:
            ke = min(top, len(sps[0].eig))
            # eig and eig_abs_err are set together, for every input or none (shared_basis)
            eig = torch.stack([s.eig.abs()[:ke] for s in sps if s.eig is not None])
            eig_err = torch.stack([s.eig_abs_err[:ke] for s in sps if s.eig_abs_err is not None])
        counts: dict[str, list[Count]] = {}
        for s in sps:
            for name, c in s.counts.items():
                counts.setdefault(name, []).append(c)
        out.append(SpectrumSummary(
            study=study, pair=pair.index, basis=basis, n_samples=pair.n_samples,
            n_ops=(len(pair.names_prev), len(pair.names_next)), fisher=fisher, fisher_err=ferr,
            eig_abs=eig, eig_abs_err=eig_err, counts=counts, max_cond=pair.max_cond,
            regularised=sum(bool(i.regularised) for i in pair.solve_info),
            dropped=[int(i.dropped.numel()) for i in pair.solve_info], fisher_raw=fisher_raw,
            max_cond_prev=max(s.cond_prev for s in sps),
            floored=sum(bool(s.flags) for s in sps),
            replicates_regularised=sum(int(i.n_replicates_regularised)
                                       for i in pair.solve_info),
            unestimated=pair.unestimated_counts()))
    return out


@dataclass
class DepthStep:
    """Convergence of successive stability matrices with one operator set (eq. 19).

    Attributes
    ----------
    pair : int
        Compares ``T`` of pair ``pair`` with pair ``pair + 1``.
    rel_change, rel_change_err : Tensor of shape (n_inputs,)
        ``‖T_{i+1} − T_i‖_F / ‖T_i‖_F`` and its jackknife error.
    """

    pair: int
    rel_change: Tensor
    rel_change_err: Tensor

    def to_dict(self) -> dict[str, Any]:
        return {"pair": self.pair, "rel_change": self.rel_change,
                "rel_change_err": self.rel_change_err}


def depth_convergence(res: MCRGResult, *, shared_basis: bool = False) -> list[DepthStep]:
    """Relative change of ``T`` between successive pairs that share operator sets and shapes.

    Only meaningful when successive layers carry one operator set (``shared_basis``: a
    weight-tied network); for an untied network entry-wise comparison of ``T`` depends on how
    the units of each layer are labelled, and nothing is returned.
    """
    pairs = res.computed()
    out: list[DepthStep] = []
    if not shared_basis:
        return out
    for a, b in zip(pairs[:-1], pairs[1:], strict=True):
        if b.index != a.index + 1 or a.T.shape != b.T.shape or a.names_next != b.names_next \
                or a.names_prev != b.names_prev:
            continue
        n = min(a.n_replicates, b.n_replicates)

        def rel(ta: Tensor, tb: Tensor) -> Tensor:
            return (tb - ta).flatten(-2).norm(dim=-1) / ta.flatten(-2).norm(dim=-1).clamp_min(
                1e-300)

        value = rel(a.T, b.T)
        err = jackknife_stderr(rel(a.T_replicates[:n], b.T_replicates[:n]))
        out.append(DepthStep(a.index, value.reshape(-1), err.reshape(-1)))
    return out


@dataclass
class FixedPointStudy:
    """Output-layer effective Hamiltonians per class (eq. 10–11).

    Attributes
    ----------
    labels : Tensor of shape (n_inputs,)
    predicted : Tensor of shape (n_inputs,)
        Argmax of the output marginals ``P(y_j = 1 | x)``.
    couplings : Tensor of shape (n_inputs, 2^{n_N} − 1)
        Complete-basis couplings of ``q_N(y|x)``.
    kl_class, kl_class_err : Tensor of shape (n_classes, n_classes)
        Mean symmetrised KL divergence between ``q_N`` of inputs of class ``a`` and ``b`` (pairs of
        distinct inputs) and its standard error over pairs.
    coupling_class : Tensor of shape (n_classes, n_classes)
        Mean Euclidean distance between coupling vectors of orders ≤ ``max_order``.
    max_order : int
    n_samples : int
    """

    labels: Tensor
    predicted: Tensor
    couplings: Tensor
    kl_class: Tensor
    kl_class_err: Tensor
    coupling_class: Tensor
    max_order: int
    n_samples: int

    def within_between(self) -> dict[str, float]:
        """Average within-class (diagonal) and between-class (off-diagonal) distances."""
        eye = torch.eye(self.kl_class.shape[0], dtype=torch.bool)
        return {
            "kl_within": float(self.kl_class[eye].nanmean()),
            "kl_between": float(self.kl_class[~eye].nanmean()),
            "coupling_within": float(self.coupling_class[eye].nanmean()),
            "coupling_between": float(self.coupling_class[~eye].nanmean()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "predicted": self.predicted,
                "accuracy": float((self.labels == self.predicted).double().mean()),
                "kl_class": self.kl_class, "kl_class_err": self.kl_class_err,
                "coupling_class": self.coupling_class, "max_order": self.max_order,
                "n_samples": self.n_samples, "summary": self.within_between(),
                "couplings_low_order_mean": self.couplings.mean(0)[:64]}


def class_fixed_points(
    net: DeepRBM, x: Tensor, labels: Tensor, n_samples: int,
    generator: torch.Generator | None = None, *, max_order: int = 2, chunk: int = 500,
) -> FixedPointStudy:
    """Compare output-layer effective Hamiltonians within and between classes.

    Parameters
    ----------
    net : DeepRBM
        Output layer of at most 12 units.
    x : Tensor of shape (n_inputs, n_0)
    labels : Tensor of shape (n_inputs,), int
    n_samples : int
        Chains per input for ``q_N(y|x)``.
    generator : torch.Generator, optional
    max_order : int, default 2
        Operators of order ≤ ``max_order`` enter the coupling distance (high orders are dominated
        by the rarely visited states).

    Returns
    -------
    FixedPointStudy
    """
    logq = output_logq_mc(net, x, n_samples, generator, chunk=chunk).cpu()
    g = couplings_from_logq(logq)
    n_out = net.widths[-1]
    orders = torch.tensor([bin(m).count("1") for m in range(1, 2**n_out)])
    low = g[:, orders <= max_order]
    q = logq.exp()
    kl = ((q.unsqueeze(1) - q.unsqueeze(0)) * (logq.unsqueeze(1) - logq.unsqueeze(0))).sum(-1) / 2
    dist = torch.cdist(low, low)
    labels = torch.as_tensor(labels).cpu().long()
    classes = torch.unique(labels)
    nc = len(classes)
    klc = torch.full((nc, nc), float("nan"), dtype=torch.float64)
    klc_err = torch.full_like(klc, float("nan"))
    dc = torch.full_like(klc, float("nan"))
    for i, ca in enumerate(classes):
        for j, cb in enumerate(classes):
            mask = (labels == ca).unsqueeze(1) & (labels == cb).unsqueeze(0)
            mask &= ~torch.eye(len(labels), dtype=torch.bool)
            if mask.sum() == 0:
                continue
            v = kl[mask]
            klc[i, j] = v.mean()
            klc_err[i, j] = v.std(correction=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0
            dc[i, j] = dist[mask].mean()
    ys = torch.tensor([[(s >> u) & 1 for u in range(n_out)] for s in range(2**n_out)],
                      dtype=torch.float64)
    marginals = q @ ys
    return FixedPointStudy(labels, marginals.argmax(-1), g, klc, klc_err, dc, max_order,
                           int(n_samples))


@dataclass(frozen=True)
class DiagnoseConfig:
    """Settings of :func:`run_diagnose` (``rgaudit diagnose``), validated on construction.

    Errors are ``ValueError`` naming the CLI option. Sequences are stored as tuples.

    Attributes
    ----------
    ops : str
        Main operator basis (``--ops``; spec of :func:`rgaudit.rg.operators.parse_basis`).
    n_samples : int
        Chains per input for the main run (``--samples``), ≥ 2 per jackknife block.
    basis_specs : tuple of str or None
        Bases of the basis study at ``n_samples // 4`` chains (``--bases`` plus ``--ops``;
        None: ``singles``, ``pairs:64``, ``ops``).
    sample_counts : tuple of int or None
        Chain counts of the sample study with ``ops`` (None: ``n_samples/16``, ``/4``, at least
        512 each).
    fixed_point_samples : int
        Chains per input of the class fixed-point study (``--fp-samples``).
    seed : int
        Seed of every generator (each study gets its own offset).
    device : str
        ``cpu``, ``cuda`` or ``cuda:N`` (a ``torch.device`` is accepted and stored as text).
    n_blocks : int
        Jackknife blocks, ≥ 2.
    """

    ops: str = "pairs:256"
    n_samples: int = 100_000
    basis_specs: tuple[str, ...] | None = None
    sample_counts: tuple[int, ...] | None = None
    fixed_point_samples: int = 2000
    seed: int = 0
    device: str = "cpu"
    n_blocks: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", str(self.device))
        if self.basis_specs is not None:
            object.__setattr__(self, "basis_specs", tuple(self.basis_specs))
        if self.sample_counts is not None:
            object.__setattr__(self, "sample_counts", tuple(int(s) for s in self.sample_counts))
        for spec in (self.ops, *(self.basis_specs or ())):
            check_basis_spec(spec, "--ops/--bases")
        if self.n_blocks < 2:
            raise ValueError(f"n_blocks must be ≥ 2 (jackknife), got {self.n_blocks}")
        if self.n_samples < 2 * self.n_blocks:
            raise ValueError(f"--samples must be ≥ 2 per jackknife block (≥ {2 * self.n_blocks}),"
                             f" got {self.n_samples}")
        if any(s < 1 for s in self.sample_counts or ()):
            raise ValueError(f"sample_counts must be positive, got {self.sample_counts}")
        if self.fixed_point_samples < 1:
            raise ValueError(f"--fp-samples must be ≥ 1, got {self.fixed_point_samples}")

    def bases(self) -> list[str]:
        """The bases of the basis study, in order, without repeats."""
        specs = (list(self.basis_specs) if self.basis_specs is not None
                 else ["singles", "pairs:64", self.ops])
        return list(dict.fromkeys(specs))

    def counts(self) -> list[int]:
        """The chain counts of the sample study (sorted, the main run's left out)."""
        counts = (self.sample_counts if self.sample_counts is not None
                  else (max(self.n_samples // 16, 512), max(self.n_samples // 4, 512)))
        return sorted({int(s) for s in counts if s != self.n_samples})


@dataclass(frozen=True)
class DiagnosedInputs:
    """What was diagnosed: the inputs' count and labels, the network's widths and tying."""

    n_inputs: int
    widths: list[int]
    tied: bool
    labels: list[int] | None


#: How a per-input (``--executor``) diagnose run was executed: the same record as the audit's.
DiagnoseExecution = PerInputExecution


@dataclass(frozen=True)
class DiagnoseSource:
    """Where the model and its data came from (recorded by the CLI)."""

    model: str
    data: str
    split_seed: int
    model_dataset: Any


@dataclass
class DiagnoseResult:
    """All studies of one ``rgaudit diagnose`` run.

    Attributes
    ----------
    config : DiagnoseConfig
    inputs : DiagnosedInputs
    spectra : list of SpectrumSummary
        Basis study, sample study and the main run (``study`` tells which).
    depth : list of DepthStep
    fixed_points : FixedPointStudy or None
    notes : list of str
    execution : DiagnoseExecution or None
        Set by the executor path.
    source : DiagnoseSource or None
        Set by the CLI.
    """

    config: DiagnoseConfig
    inputs: DiagnosedInputs
    spectra: list[SpectrumSummary] = field(default_factory=list)
    depth: list[DepthStep] = field(default_factory=list)
    fixed_points: FixedPointStudy | None = None
    notes: list[str] = field(default_factory=list)
    execution: DiagnoseExecution | None = None
    source: DiagnoseSource | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The ``settings`` object of the JSON (config, inputs, execution, source)."""
        c, i = self.config, self.inputs
        out: dict[str, Any] = {
            "ops": c.ops, "n_samples": c.n_samples, "basis_specs": c.bases(),
            "sample_counts": c.counts(), "n_inputs": i.n_inputs, "seed": c.seed,
            "device": str(torch.device(c.device)), "n_blocks": c.n_blocks,
            "widths": list(i.widths), "tied": i.tied, "labels": i.labels}
        if self.execution is not None:
            out.update(self.execution.to_dict())
        if self.source is not None:
            out.update(vars(self.source))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "spectra": [s.to_dict() for s in self.spectra],
                "depth": [d.to_dict() for d in self.depth],
                "fixed_points": None if self.fixed_points is None else
                self.fixed_points.to_dict(), "notes": self.notes}


def run_diagnose(
    net: DeepRBM, x: Tensor, labels: Tensor | None, config: DiagnoseConfig | None = None, *,
    fixed_point_inputs: Tensor | None = None, fixed_point_labels: Tensor | None = None,
    progress: Progress | None = None, **overrides: Any,
) -> DiagnoseResult:
    """Run the convergence studies on inputs ``x``.

    Parameters
    ----------
    net : DeepRBM
    x : Tensor of shape (n_inputs, n_0)
        Inputs whose stability matrices are estimated.
    labels : Tensor of shape (n_inputs,), optional
    config : DiagnoseConfig, optional
        Default: ``DiagnoseConfig()``.
    fixed_point_inputs, fixed_point_labels : Tensor, optional
        Inputs (several per class) for the class fixed-point study (output ≤ 12 units).
    progress : callable, optional
        ``progress(stage, done, total)``.
    **overrides
        Fields of :class:`DiagnoseConfig` (``ops=…, n_samples=…``), applied to ``config``.

    Returns
    -------
    DiagnoseResult
    """
    cfg = replace(config or DiagnoseConfig(), **overrides)
    result = DiagnoseResult(cfg, DiagnosedInputs(
        int(x.shape[0]), list(net.widths), bool(getattr(net, "tied", False)),
        None if labels is None else torch.as_tensor(labels).tolist()))
    _check_diagnose_inputs(net, fixed_point_inputs, fixed_point_labels)
    dev = torch.device(cfg.device)

    def gen(role: str, *sub: str | int) -> torch.Generator:
        return torch_generator(cfg.seed, role, *sub, device=dev)

    _spectra_studies(net, x, cfg, result, gen, progress)
    if fixed_point_inputs is not None and fixed_point_labels is not None:
        _fixed_point_study(net, fixed_point_inputs.to(dev), fixed_point_labels, cfg, result,
                           gen("fixed-points"), progress)
    result.notes += _solve_notes(result.spectra)
    return result


def _check_diagnose_inputs(net: DeepRBM, fixed_point_inputs: Tensor | None,
                           fixed_point_labels: Tensor | None) -> None:
    """Refuse a network without a pair of hidden layers, or half of the fixed-point inputs."""
    if net.depth < 2:
        raise ValueError("diagnose needs at least two RBM layers (one pair of hidden layers)")
    if (fixed_point_inputs is None) != (fixed_point_labels is None):
        raise ValueError("fixed_point_inputs and fixed_point_labels go together: pass both or "
                         "neither")


def _spectra_studies(net: DeepRBM, x: Tensor, cfg: DiagnoseConfig, result: DiagnoseResult,
                     gen: Callable[..., torch.Generator], progress: Progress | None) -> None:
    """The main run (spectra and depth convergence), then the basis and the sample studies."""
    ops, n_samples, n_blocks = cfg.ops, cfg.n_samples, cfg.n_blocks
    dev = torch.device(cfg.device)
    tied = bool(getattr(net, "tied", False))

    def stage(name: str) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(name, done, total)

    main = mcrg_network(net, x, ops, n_samples, generator=gen("mcrg"), device=dev,
                        n_blocks=n_blocks, progress=stage(f"main {ops} S={n_samples}"))
    result.spectra += summarise(main, "main", ops, shared_basis=tied)
    result.depth = depth_convergence(main, shared_basis=tied)
    s_basis = max(n_samples // 4, 2 * n_blocks)
    for spec in cfg.bases():
        res = mcrg_network(net, x, spec, s_basis, generator=gen("mcrg.basis", spec), device=dev,
                           n_blocks=n_blocks, progress=stage(f"basis {spec} S={s_basis}"))
        result.spectra += summarise(res, "basis", spec, shared_basis=tied)
    for s in cfg.counts():
        res = mcrg_network(net, x, ops, s, generator=gen("mcrg.samples", s), device=dev,
                           n_blocks=n_blocks, progress=stage(f"samples {ops} S={s}"))
        result.spectra += summarise(res, "samples", ops, shared_basis=tied)


def _fixed_point_study(net: DeepRBM, inputs: Tensor, labels: Tensor, cfg: DiagnoseConfig,
                       result: DiagnoseResult, generator: torch.Generator,
                       progress: Progress | None) -> None:
    """Class fixed points (output ≤ 12 units; otherwise a note says it was skipped)."""
    if net.widths[-1] > 12:
        result.notes.append(f"fixed-point study skipped: output layer has "
                            f"{net.widths[-1]} > 12 units")
        return
    if progress is not None:
        progress("fixed points", 0, 1)
    result.fixed_points = class_fixed_points(net, inputs, labels, cfg.fixed_point_samples,
                                             generator)
    if progress is not None:
        progress("fixed points", 1, 1)


def _solve_notes(spectra: list[SpectrumSummary]) -> list[str]:
    """Notes on regularised solves, unestimated entries and floored covariances."""
    notes = []
    if any(s.regularised for s in spectra):
        notes.append("some solves were regularised (see max_cond / regularised)")
    if any(s.replicates_regularised for s in spectra):
        notes.append("some jackknife replicates were regularised on their own "
                     "(replicates_regularised): their errors include that regulariser")
    if any(sum(s.unestimated) for s in spectra):
        notes.append("some entries of T are unestimated (operator values never seen with "
                     "some states of the other layer; 'unestimated'): the spectra of those "
                     "pairs rest on them and their errors are too small; use more samples "
                     "or a smaller basis")
    if any(s.floored for s in spectra):
        notes.append("some covariances were singular in the Fisher normalisation: "
                     "C^(-1/2) used an eigenvalue floor (pseudo-inverse) there (floored, "
                     "max_cond_prev)")
    notes.append("truncated operator bases are approximations: compare the basis and "
                 "sample studies before reading a spectrum (DESIGN fact 2)")
    return notes
