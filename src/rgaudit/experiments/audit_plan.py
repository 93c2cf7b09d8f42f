"""The audit's cost model: estimated peak memory and wall time, and sizes that fit the machine.

``rgaudit audit`` calls :func:`plan_audit` before anything is sampled. The plan keeps every size
the user gave explicitly, scales down the others (inputs, chains, the large basis, judge chains)
until the estimate fits the memory budget and the time target, says what it chose, and refuses a
configuration that cannot fit — with the estimated memory and time — through
:func:`rgaudit.guards.check_memory`, instead of failing after minutes.

The model (issue 16) counts the float64 arrays the audit holds at its peak and the dominant
floating-point work, per audited input (``I`` inputs, layer widths ``n_0 … n_N``, input dimension
``d = n_0``, MCRG operator counts ``m_j`` per chain position, ``S`` MCRG chains, 16 jackknife
blocks):

* MCRG, per basis and pair ``j → j+1``: block sums ``16 (m_{j+1}² + m_{j+1} m_j + m_j²)``
  (counted in float64, though the audit's binary-product operators are summed in float32: a
  margin, as the model underestimates wide-input audits elsewhere), the stacked replicates as
  much again, ``T`` replicates ``16 m_{j+1} m_j`` (all float64, times ``I``); time
  ``S (Σ_k 2 n_{k-1} n_k + 3·2 m²)`` float32 flops plus ``17`` eigenvalue problems and solves
  of size ``m`` per input;
* FIMs (storage of issue 16): the RG-chain FIMs keep their jackknife replicates as factors
  ``J_bᵀ C_b J_b`` (``17 (m_N d + m_N²)`` float64 per input and basis,
  :mod:`rgaudit.fisher.factored`)
  and only the four all-sample FIMs are dense (``4 d²`` per input); the direct FIM keeps its
  ``17 d²`` per input (``fisher/direct.py``) and, while it is formed, ``80 d²`` per input of a
  batch of ≤ 8 (:data:`DIRECT_TEMP_STACKS`) — the largest array of the audit at d = 784; the
  direct stack and the singles MCRG result are freed before the attacks. Time: one dense
  eigendecomposition per input and estimator (:data:`EIGH_FACTOR` eigenvalue problems each)
  plus 16 eigenvalue problems of size ``d`` for the direct replicates (was ``≈ 35`` per input and
  estimator with dense chain replicates);
* direct FIM, attacks and the judge: sampling ``chains × Σ_k 2 n_{k-1} n_k``.

Rates are those measured on the 2-core development machine (single thread; :data:`RATES`).
They make the model a guide, not a promise: the estimate is printed with the measured wall
time in ``docs/benchmarks.md`` so its error is known (within a factor ~2 there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from rgaudit.experiments.audit import AuditConfig
from rgaudit.guards import check_memory, format_bytes
from rgaudit.guards import memory_limit as memory_limit_now

#: Single-thread rates of the development machine: float32 / float64 GEMM (flop/s), time of one
#: symmetric eigenvalue problem (``c · m³`` s), of one ``m × m`` solve with ``m`` right-hand
#: sides, and of drawing one Bernoulli unit (s).
RATES = {"gemm32": 4.0e10, "gemm64": 2.0e10, "eig": 2.4e-10, "solve": 2.0e-10,
         "unit": 4.0e-9}
N_BLOCKS = 16
#: The direct FIM (``fisher/direct.py``) in batches of ``DIRECT_BATCH`` inputs: forming the
#: replicates holds ``DIRECT_TEMP_STACKS`` stacks of ``16·b`` d × d float64 at once (per-block
#: terms, replicate list, stacked, symmetrised sum and result: 5 × 16 = 80 d² per input of the
#: batch); joining the batches and the entrywise error, ``DIRECT_CAT_STACKS`` d² per input.
DIRECT_BATCH = 8
DIRECT_TEMP_STACKS = 80
DIRECT_CAT_STACKS = 67
#: Cost of one symmetric eigendecomposition with eigenvectors, in eigenvalue-only problems.
EIGH_FACTOR = 2.0
#: Time target of the automatic plan (seconds) and its default memory ceiling (bytes).
TIME_TARGET_S = 240.0
MEMORY_TARGET = int(3.5 * 2**30)
#: Fixed overhead: interpreter, torch, the model, the data and the report (bytes, seconds).
BASE_BYTES = 600 * 2**20
BASE_SECONDS = 15.0
#: Smallest sizes the automatic plan goes down to.
FLOOR = {"n_inputs": 3, "mcrg_samples": 2000, "direct_samples": 4000, "judge_samples": 500,
         "large_pairs": 16}
ADJUSTABLE = ("n_inputs", "mcrg_samples", "direct_samples", "judge_samples", "large_basis")


def basis_size(spec: str, n_units: int) -> int:
    """Number of operators of a basis spec on a layer of ``n_units`` units (no pilot needed)."""
    name, _, arg = spec.strip().lower().partition(":")
    n_pairs = n_units * (n_units - 1) // 2
    if name == "singles":
        return n_units
    if name == "full":
        return 2**n_units - 1 if n_units < 63 else 2**62
    if name == "pairs":
        return n_units + (min(int(arg), n_pairs) if arg else n_pairs)
    if name == "order":
        return sum(math.comb(n_units, k) for k in range(1, min(int(arg), n_units) + 1))
    raise ValueError(f"unknown operator basis {spec!r}; use singles, pairs, pairs:K, order:M "
                     "or full")


@dataclass(frozen=True)
class CostEstimate:
    """Estimated peak memory and wall time of an audit.

    Attributes
    ----------
    memory_bytes : float
        Peak resident memory.
    seconds : float
        Wall time on one thread of the development machine.
    parts : dict
        ``{stage: {"bytes": …, "seconds": …}}``; the peak is the base plus the largest stage
        plus what earlier stages still hold.
    """

    memory_bytes: float
    seconds: float
    parts: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"memory_bytes": float(self.memory_bytes), "memory": format_bytes(
            self.memory_bytes), "seconds": round(float(self.seconds), 1), "parts": self.parts}


#: The depth study (``experiments/depth.py``, run after the audit) holds a direct FIM with its
#: replicates and their spectra for each of its inputs: ≈ 110 float64 ``d × d`` matrices per
#: input (measured: ≈ 5.8 GiB peak with its default 10 inputs at d = 784).
DEPTH_STACKS = 110
DEPTH_INPUTS = 10


def depth_study_bytes(d: int, n_inputs: int) -> float:
    """Peak memory of the depth study for ``n_inputs`` inputs of dimension ``d`` (bytes)."""
    return float(DEPTH_STACKS * n_inputs * d * d * 8)


#: The depth study's networks (``DepthConfig``): depths 2–6, 10 output units (1024 states),
#: 4000 direct-FIM chains; training of all five (fast recipe) ≈ ``DEPTH_TRAIN_S`` at d ≤ 784.
DEPTH_NETS = 5
DEPTH_TRAIN_S = 25.0
DEPTH_FLOOR = 3


def depth_study_seconds(d: int, n_inputs: int) -> float:
    """Time of the depth study for ``n_inputs`` inputs of dimension ``d`` (seconds, 1 thread).

    Per network and input: the direct FIM's ``33`` weighted outer products ``Σ_y g_y g_yᵀ/q_y``
    (``2·1024·d²`` float64 flops each: 16 blocks, 16 replicates, the total), its sampling
    (``4000 × 2·1024·d``), and 16 + 2 eigenproblems of size ``d`` (replicate spectra, top
    eigenpair, attack direction). Measured at d = 784, 5 inputs: ≈ 20 s CPU per network.
    """
    r = RATES
    states = 1024
    per_input = (33 * 2 * states * d * d / r["gemm64"] + 4000 * 2 * states * d / r["gemm64"]
                 + (N_BLOCKS + 2 * EIGH_FACTOR) * r["eig"] * d**3)
    return DEPTH_TRAIN_S + DEPTH_NETS * n_inputs * per_input


def _sampling_flops(widths: tuple[int, ...]) -> float:
    return float(sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=False)))


def estimate_audit(widths: tuple[int, ...] | list[int], cfg: AuditConfig, *,
                   depth_study: bool = False) -> CostEstimate:
    """Cost model of :func:`rgaudit.experiments.audit.run_audit` (see the module docstring).

    Parameters
    ----------
    widths : sequence of int
        ``n_0 … n_N`` of the audited DeepRBM.
    cfg : AuditConfig
    depth_study : bool
        Add the depth study (trains five small networks; roughly constant cost).

    Returns
    -------
    CostEstimate
    """
    w = tuple(int(v) for v in widths)
    d, n_layers, inp = w[0], len(w) - 1, int(cfg.n_inputs)
    r = RATES
    f8 = 8.0
    samp = _sampling_flops(w) / r["gemm32"] + sum(w[1:]) * r["unit"]   # s per chain
    parts: dict[str, dict[str, float]] = {}
    held = 0.0   # bytes of results kept until the end
    peak = 0.0
    for label, spec in (("mcrg singles", "singles"), ("mcrg large", cfg.large_basis)):
        ms = [basis_size(spec, n) for n in w]
        mem = sec = 0.0
        keep = 0.0
        trans = 0.0
        for j in range(1, n_layers):
            mp, mn = ms[j], ms[j + 1]
            # counted in float64 although the audit's binary-product operators are summed in
            # float32 (rg/moments.py): the model underestimates the peak of wide-input audits
            # (d = 784: by 9-17 %, docs/benchmarks.md), so it keeps this margin
            blocks = N_BLOCKS * (mn * mn + mn * mp + mp * mp) * f8 * inp
            reps = N_BLOCKS * (mn * mn + 2 * mn * mp + mp * mp) * f8 * inp
            mem += blocks
            keep += reps
            # solver workspace (one input at a time: kept-block copies, eigenvalues, solution)
            trans = max(trans, 4 * N_BLOCKS * (mn * mn + mn * mp) * f8)
            prod = 2.0 * cfg.mcrg_samples * inp * (0.75 * mn * mn + mn * mp + 0.75 * mp * mp)
            sec += prod / r["gemm32"]
            sec += inp * (N_BLOCKS + 1) * (r["eig"] * mn**3 + r["solve"] * mn**2 * mp)
        sec += cfg.mcrg_samples * inp * samp
        chunk_vals = 64 * 2**20 * 2   # operator values of one chunk (mcrg.CHUNK_BYTES), 2 sets
        parts[label] = {"bytes": mem + keep + trans + chunk_vals, "seconds": sec}
        peak = max(peak, held + mem + keep + trans + chunk_vals)
        if spec == "singles":
            held += keep   # the singles result is kept for the diagnosis; the large one freed
    # FIMs (issue 16 storage, see the module docstring): dense d × d only for the four
    # all-sample FIMs and the direct FIM's own replicate stack; the chain FIMs' replicates are
    # factors (17·m_N·d float64 per input and basis: counted, negligible)
    dd = d * d * f8
    m_out = [basis_size(s, w[-1]) for s in ("singles", cfg.large_basis)]
    factors = sum((N_BLOCKS + 1) * (mo * d + mo * mo) * f8 * inp for mo in m_out)
    b = min(inp, DIRECT_BATCH)
    direct_peak = max(DIRECT_TEMP_STACKS * b + (N_BLOCKS + 1) * (inp - b),
                      DIRECT_CAT_STACKS * inp) * dd
    states = 2 ** min(w[-1], 20)
    # sampling, the score products (t − b)ᵀ s (2·Y·d per chain) and the 33 weighted outer
    # products Σ_y g_y g_yᵀ / q_y of the blocks, replicates and total (2·Y·d² each)
    direct_s = cfg.direct_samples * inp * (2 * samp + 4 * d * w[1] / r["gemm32"]
                                           + 2 * states * d / r["gemm64"]) \
        + inp * (2 * N_BLOCKS + 1) * 2 * states * d * d / r["gemm64"]
    parts["direct fim"] = {"bytes": direct_peak + 2 * inp * dd + factors
                           + 4 * min(states * inp * 1000, 2**22) * f8, "seconds": direct_s}
    peak = max(peak, held + parts["direct fim"]["bytes"])
    # spectra: one dense eigendecomposition per input and estimator (4) plus the direct FIM's
    # 16 replicates (eigenvalues only, one input at a time: 3 stacks of 16·d² temporaries);
    # the chain replicates' spectra are m_N × m_N problems; the chain Jacobians of the
    # replicates (left-first products) are small next to them
    chain_s = 0.0
    for spec in ("singles", cfg.large_basis):
        ms = [basis_size(spec, n) for n in w[1:]]
        flops = sum(2 * ms[-1] * ms[k + 1] * ms[k] for k in range(len(ms) - 2)) \
            + 2 * ms[-1] * ms[0] * d + 2 * d * ms[-1] ** 2
        chain_s += inp * (N_BLOCKS + 1) * flops / r["gemm64"]
    held_fims = (N_BLOCKS + 2 + 4) * inp * dd       # direct fim + stderr + stack; 4 FIMs
    parts["fims"] = {"bytes": held_fims + 3 * N_BLOCKS * dd + factors,
                     "seconds": inp * (N_BLOCKS + 4 * EIGH_FACTOR) * r["eig"] * d**3
                     + chain_s}
    peak = max(peak, held + parts["fims"]["bytes"])
    held = 4 * inp * dd   # the attacks hold the four all-sample FIMs (direct stack freed)
    n_eps = len(cfg.eps_l2) + len(cfg.eps_linf)
    n_methods = 4 + 7   # attacks per norm: a FIM attack per estimator, FGM, PGD, DeepFool, DDN,
    #                     FAB, APGD, random (AUDIT_METHODS; DDN L2 only)
    judgements = n_methods * (n_eps + 2 * cfg.bisect_steps)
    atk_s = judgements * inp * cfg.judge_samples * samp \
        + 2 * inp * cfg.pgd_iter * 4 * _sampling_flops(w) / r["gemm32"]
    parts["attacks"] = {"bytes": inp * cfg.judge_samples * sum(w) * 4.0 * 4,
                        "seconds": atk_s}
    peak = max(peak, held + parts["attacks"]["bytes"])
    seconds = BASE_SECONDS + sum(p["seconds"] for p in parts.values())
    if depth_study:
        parts["depth study"] = {"bytes": depth_study_bytes(d, DEPTH_INPUTS),
                                "seconds": depth_study_seconds(d, DEPTH_INPUTS)}
        seconds += parts["depth study"]["seconds"]
        peak = max(peak, parts["depth study"]["bytes"])
    parts = {k: {"bytes": float(v["bytes"]), "seconds": round(float(v["seconds"]), 2)}
             for k, v in parts.items()}
    return CostEstimate(BASE_BYTES + peak, seconds, parts)


@dataclass(frozen=True)
class AuditPlan:
    """The sizes an audit will run with, why, and what they are estimated to cost.

    Attributes
    ----------
    config : AuditConfig
        The configuration to run.
    estimate : CostEstimate
    changes : list of str
        One line per size the plan changed (``"n_inputs 20 → 8"``), empty when nothing changed.
    memory_limit : int
        The budget the estimate was checked against (bytes).
    time_target : float
        Seconds the automatic sizes aim at.
    fixed : tuple of str
        Sizes the user gave explicitly (never changed).
    depth_inputs : int
        Inputs of the depth study (its default 10, fewer when its FIMs would not fit).
    """

    config: AuditConfig
    estimate: CostEstimate
    changes: list[str]
    memory_limit: int
    time_target: float
    fixed: tuple[str, ...]
    depth_inputs: int = DEPTH_INPUTS

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": {k: getattr(self.config, k) for k in ADJUSTABLE},
                "changes": list(self.changes), "fixed_by_user": list(self.fixed),
                "depth_study_inputs": self.depth_inputs,
                "estimate": self.estimate.to_dict(),
                "memory_limit": format_bytes(self.memory_limit),
                "time_target_s": self.time_target, "rates": dict(RATES)}

    def summary(self) -> str:
        """Console text: the chosen sizes, what changed, the estimate."""
        c = self.config
        head = (f"audit plan: {c.n_inputs} inputs, {c.mcrg_samples} MCRG chains (singles + "
                f"{c.large_basis}), {c.direct_samples} direct-FIM chains, {c.judge_samples} "
                f"judge chains; estimated {format_bytes(self.estimate.memory_bytes)} peak, "
                f"~{self.estimate.seconds:.0f} s (1 thread, development machine)")
        if self.depth_inputs != DEPTH_INPUTS:
            head += f"; depth study on {self.depth_inputs} inputs (not {DEPTH_INPUTS})"
        if not self.changes:
            return head
        return head + "\n  scaled to fit (" + format_bytes(min(
            self.memory_limit, MEMORY_TARGET)) + f", ~{self.time_target:.0f} s): " + "; ".join(
            self.changes)


def _large_pairs(spec: str) -> int | None:
    name, _, arg = spec.strip().lower().partition(":")
    return int(arg) if name == "pairs" and arg else None


def _halve(cfg: AuditConfig, name: str, fixed: tuple[str, ...]) -> AuditConfig | None:
    """``cfg`` with one size halved (inputs: × 0.7; not below :data:`FLOOR`), or None."""
    if name in fixed:
        return None
    if name == "large_basis":
        k = _large_pairs(cfg.large_basis)
        if k is None or k <= FLOOR["large_pairs"]:
            return None
        return replace(cfg, large_basis=f"pairs:{max(FLOOR['large_pairs'], k // 2)}")
    v = getattr(cfg, name)
    if v <= FLOOR[name]:
        return None
    new = max(FLOOR[name], v // 2)
    if name == "n_inputs":   # finer steps: every input is costly, but each one counts
        new = max(FLOOR[name], min(v - 1, int(0.7 * v)))
        return replace(cfg, n_inputs=new, n_diagnose=min(cfg.n_diagnose, new))
    return replace(cfg, **{name: new})


def _shrink(cfg: AuditConfig, e: CostEstimate, fixed: tuple[str, ...], *,
            memory: bool) -> AuditConfig | None:
    """One step down: for memory, fewer inputs (every large array scales with them) then a
    smaller large basis; for time, the knob of the most expensive stage first (for the
    attacks, inputs before judge chains: the judge's chains set the precision of every flip
    verdict the audit reports)."""
    if memory:
        order = ["n_inputs", "large_basis"]
    else:
        knobs = {"fims": ["n_inputs"], "mcrg singles": ["mcrg_samples", "n_inputs"],
                 "mcrg large": ["large_basis", "mcrg_samples"], "direct fim":
                 ["direct_samples"], "attacks": ["n_inputs", "judge_samples"]}
        stages = sorted(knobs, key=lambda k: -e.parts.get(k, {"seconds": 0.0})["seconds"])
        order = [n for st in stages for n in knobs[st]]
    for name in order:
        nxt = _halve(cfg, name, fixed)
        if nxt is not None:
            return nxt
    return None


def plan_audit(widths: tuple[int, ...] | list[int], cfg: AuditConfig, *,
               fixed: tuple[str, ...] | set[str] = (), memory_limit: int | None = None,
               time_target: float = TIME_TARGET_S, depth_study: bool = False) -> AuditPlan:
    """Fit the audit's sizes to the machine, or refuse up front.

    Sizes not in ``fixed`` are halved, down to :data:`FLOOR`, until the estimate is within
    ``min(memory_limit, MEMORY_TARGET)`` and ``time_target``: for memory the number of inputs
    (every large array scales with it), then the large basis; for time first the depth study's
    inputs (down to :data:`DEPTH_FLOOR`), then the knob of the most expensive stage. Then the
    estimate must be within ``memory_limit``.

    Parameters
    ----------
    widths : sequence of int
    cfg : AuditConfig
        The requested configuration (defaults count as adjustable unless named in ``fixed``).
    fixed : iterable of str
        Names of :data:`ADJUSTABLE` fields the user set explicitly.
    memory_limit : int, optional
        Bytes; default :func:`rgaudit.guards.memory_limit` (``--max-memory``,
        ``RGAUDIT_MAX_MEMORY``, else 80 % of the available memory).
    time_target : float
    depth_study : bool

    Returns
    -------
    AuditPlan

    Raises
    ------
    rgaudit.errors.ResourceError
        The configuration (after scaling what may be scaled) needs more memory than the limit;
        the message gives the estimated memory and time.
    """
    fixed_t = tuple(sorted(set(fixed)))
    bad = [f for f in fixed_t if f not in ADJUSTABLE]
    if bad:
        raise ValueError(f"unknown fixed sizes {bad}; use {ADJUSTABLE}")
    limit = memory_limit_now() if memory_limit is None else int(memory_limit)
    target_mem = min(limit, MEMORY_TARGET)
    orig = cfg
    names = {f.name for f in fields(AuditConfig)}
    assert set(ADJUSTABLE) <= names

    d = int(widths[0])
    depth_inputs = DEPTH_INPUTS
    while (depth_study and depth_inputs > 2
           and BASE_BYTES + depth_study_bytes(d, depth_inputs) > target_mem):
        depth_inputs -= 1

    def est(c: AuditConfig) -> CostEstimate:
        e = estimate_audit(widths, c, depth_study=False)
        if not depth_study:
            return e
        dep = {"bytes": depth_study_bytes(d, depth_inputs),
               "seconds": depth_study_seconds(d, depth_inputs)}
        return CostEstimate(max(e.memory_bytes, BASE_BYTES + dep["bytes"]),
                            e.seconds + dep["seconds"], {**e.parts, "depth study": dep})

    e = est(cfg)
    for _ in range(60):
        over_mem = e.memory_bytes > target_mem
        if not over_mem and e.seconds <= time_target:
            break
        if not over_mem and depth_study and depth_inputs > DEPTH_FLOOR:
            depth_inputs -= 1    # for time, the depth study's inputs go first (down to 3)
            e = est(cfg)
            continue
        nxt = _shrink(cfg, e, fixed_t, memory=over_mem)
        if nxt is None and over_mem and e.seconds > time_target:
            nxt = _shrink(cfg, e, fixed_t, memory=False)
        if nxt is None:
            break
        cfg = nxt
        e = est(cfg)
    changes = [f"{n} {getattr(orig, n)} → {getattr(cfg, n)}" for n in ADJUSTABLE
               if getattr(orig, n) != getattr(cfg, n)]
    what = (f"the audit of a {'-'.join(str(v) for v in widths)} network with "
            f"{cfg.n_inputs} inputs, {cfg.mcrg_samples} MCRG chains (singles + "
            f"{cfg.large_basis}), {cfg.direct_samples} direct-FIM chains (estimated wall time "
            f"~{e.seconds:.0f} s)")
    check_memory(e.memory_bytes, what=what, limit=limit, option="--max-memory")
    return AuditPlan(cfg, e, changes, limit, float(time_target), fixed_t, depth_inputs)
