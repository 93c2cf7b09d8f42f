"""The allowed values of every enumerated option, each defined once.

Each set is a ``typing.Literal`` alias (for type hints) and the tuple of its values, derived from
the alias with ``typing.get_args`` so the two cannot disagree. The tuples are what the CLI hands
to ``click.Choice`` and what the study configs check in ``__post_init__``; the library modules
that own the concept (``attacks.base``, ``defence.budget``, …) re-export them under their old
names.

Light on purpose (``typing`` only): command modules import it at startup.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Attack budget norms (``--norm`` of ``attack``, ``--norms`` of the attack study).
AttackNorm = Literal["l2", "linf"]
ATTACK_NORMS: tuple[str, ...] = get_args(AttackNorm)

#: Output-poisoning budget norms (``--norm`` of ``protect``, ``clone-attack``, ``serve``).
BudgetNorm = Literal["l1", "l2", "kl"]
BUDGET_NORMS: tuple[str, ...] = get_args(BudgetNorm)

#: Answer spaces of the poisoning budget (unit interval per output, or the simplex).
OutputKind = Literal["unit", "simplex"]
OUTPUT_KINDS: tuple[str, ...] = get_args(OutputKind)

#: Output defences (``--defence`` of ``clone-attack`` and ``serve``).
Defence = Literal["none", "rg", "random", "reverse-sigmoid", "mad"]
DEFENCES: tuple[str, ...] = get_args(Defence)

#: Generation-FIM estimators of the RG poisoner (``--estimator`` of ``protect``).
GenerationEstimator = Literal["auto", "exact", "exact-chain", "chain", "mean-field"]
GENERATION_ESTIMATORS: tuple[str, ...] = get_args(GenerationEstimator)

#: Input-FIM estimators of the audit (``--fim`` of ``attack``).
FimEstimator = Literal["direct", "rg-singles", "rg-large", "mean-field"]
FIM_ESTIMATORS: tuple[str, ...] = get_args(FimEstimator)

#: Methods of ``rgaudit attack --method``.
AttackMethod = Literal["fim", "fgm", "pgd", "deepfool", "random", "ddn", "fmn", "cw-l2", "fab",
                       "apgd", "walk"]
ATTACK_METHODS: tuple[str, ...] = get_args(AttackMethod)

#: Cloning attackers (``--attacker`` of ``clone-attack``).
Attacker = Literal["rbm-eq14", "distill-mlp", "label-only", "knockoff-prob", "knockoff-label",
                   "copycat-prob", "copycat-label"]
ATTACKERS: tuple[str, ...] = get_args(Attacker)

#: Blocking kernels of ``rgaudit ising --kernel``.
IsingKernel = Literal["majority", "rbm", "both"]
ISING_KERNELS: tuple[str, ...] = get_args(IsingKernel)

#: Executors of ``--executor`` (per-unit runs; none: one batched run).
ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorName)
