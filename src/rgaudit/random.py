"""Named random streams: one user seed, one independent stream per role.

Every random number rgaudit draws comes from a stream named by the user's seed and a *role*
(``"judge"``, ``"mcrg"``, ``"attack.random"``, ...), optionally refined by a path of sub-keys
(``seed_sequence(seed, "attack.subspace", k)``)::

    SeedSequence(entropy=seed, spawn_key=words(role) + words(sub_1) + ...)

where ``words(part)`` are the two 32-bit halves of an 8-byte BLAKE2b digest of the part (strings
and integers tagged apart, so ``"3"`` and ``3`` differ). BLAKE2b is stable across processes,
machines and Python versions (Python's ``hash`` is salted per process), so a stream is a pure
function of ``(seed, role, sub-keys)``: a Ray worker and the local process draw the same numbers.

Why not ``seed + 1`` or ``seed + 7``: with offsets, user seed 1's main stream *is* user seed 0's
judge stream, so two runs with nearby seeds are silently correlated. Here that cannot happen:
numpy pads the entropy of a ``SeedSequence`` that has a spawn key to four 32-bit words before
appending the key, so ``(seed, role path)`` → assembled entropy is injective for seeds below
2**128 (and up to 64-bit digest collisions between role names, checked for the roles in use by
``tests/test_random_streams.py``); the 128-bit pool is then hashed, so streams of distinct
``(seed, role path)`` are independent for every practical purpose.

The roles in use are listed in ``docs/design.md`` ("Random streams").
"""

from __future__ import annotations

import hashlib
import operator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["ROLES", "child_seed", "numpy_rng", "role_words", "seed_sequence", "torch_generator"]

SubKey = str | int

#: The roles rgaudit draws from, and what each drives (sub-keys in brackets). A typo in a role
#: silently opens a new stream: ``tests/test_random_streams.py`` checks that every role named in
#: the source is listed here and in ``docs/design.md``.
ROLES: dict[str, str] = {
    "fim": "Monte Carlo chains of the FIM estimators (RG chain / MCRG and direct): audit, "
           "attack --method fim, depth study, attack study",
    "judge": "chains of the stochastic judge, one generator per input [input key]",
    "attack.random": "Gaussian random-direction baseline (audit, attack, attack study, any-model)",
    "attack.subspace": "random k-dimensional subspace of the restricted DDN [k]",
    "attack.apgd": "APGD's random first iterate (audit, attack, attack study)",
    "walk": "RG-chain FIM re-estimated along the Fisher walk",
    "fraction": "random orthonormal basis of the eigenspace-fraction reference",
    "lanczos": "Lanczos start vectors of the matrix-free FIM [input index]",
    "mcrg": "MCRG chains: diagnose main run, any-model MCRG diagnosis",
    "mcrg.basis": "MCRG chains of the diagnose basis study [basis spec]",
    "mcrg.samples": "MCRG chains of the diagnose sample study [chain count]",
    "fixed-points": "chains of the class fixed-point study (diagnose)",
    "diagnose.inputs": "which test inputs rgaudit diagnose picks",
    "poison": "the poisoner's generator: cloning study, served model, ProtectedClassifier",
    "poison.answer": "chains of the chain generation FIM of one served answer, below the "
                     "initial seed of the 'poison' generator [SHA-256 of the answer]",
    "serve.measure": "random inputs (and poisoner draws) of the server's start-up timing",
    "clone": "clone training in the cloning study (the same for every defence)",
    "clone.damage": "chains of the generation FIM at the honest answers on which the cloning "
                    "study scores every defence's Fisher damage",
    "mad.surrogate": "random surrogate network of the MAD defence",
    "ising.chains": "Swendsen-Wang chains of the Ising MCRG study",
    "ising.tie-break": "random tie-break of the majority rule",
    "ising.kernel-data": "Ising configurations the local RBM kernel is trained on",
    "ising.kernel-fit": "initialisation of the local RBM kernel fit",
    "zoo.bootstrap": "bootstrap resamples of the zoo's rank correlations",
    "unit": "root stream of one executor unit [unit key]; the unit names its streams below it",
    "unit.attacks": "integer seed of an audit unit's attacks (executor path of rgaudit audit)",
    "unit.diagnose": "integer seed of a diagnose unit's run (executor path of rgaudit diagnose)",
    "unit.judge": "integer judge seed of a unit's stochastic judge (zoo, executor workload)",
    "zoo.train": "training of one zoo network (RBM training seed, or the MLP/CNN generator)",
    "zoo.clever": "seed of the global generators CLEVER samples from (zoo, scoped)",
    "relu.scaling": "random ReLU networks and inputs of one scaling cell [profile index, cell]",
    "relu.cell-bootstrap": "bootstrap of one scaling cell's medians [profile index, cell]",
    "relu.slope-bootstrap": "bootstrap of the scaling slopes",
    "relu.near-linearity": "networks, inputs and directions of the near-linearity scan [dim]",
    "relu.angles": "networks of the ReLU angle recursion",
    "relu.collapse": "networks and inputs of the ReLU collapse-with-depth study",
    "relu.trained": "initialisation and random directions of the trained digits MLP (ReLU)",
}


def role_words(part: SubKey) -> tuple[int, int]:
    """The two 32-bit words a role or sub-key contributes to a spawn key.

    Parameters
    ----------
    part : str or int
        A role name (non-empty) or an integer sub-key (e.g. an input's index).

    Returns
    -------
    tuple of two int
        Low and high halves of the 8-byte BLAKE2b digest of the tagged part.
    """
    if isinstance(part, bool) or not isinstance(part, (str, int, np.integer)):
        raise TypeError(f"a stream role or sub-key must be a str or int, got {part!r}")
    if isinstance(part, str):
        if not part:
            raise ValueError("a stream role must be a non-empty string")
        tagged = b"s:" + part.encode("utf-8")
    else:
        tagged = b"i:" + str(operator.index(part)).encode("ascii")
    h = int.from_bytes(hashlib.blake2b(tagged, digest_size=8).digest(), "little")
    return h & 0xFFFFFFFF, h >> 32


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    s = int(seed)
    if s < 0:
        raise ValueError(f"seed must be a non-negative integer, got {s} (use e.g. --seed 0)")
    return s


def seed_sequence(seed: int | np.random.SeedSequence, role: str, *sub: SubKey
                  ) -> np.random.SeedSequence:
    """The :class:`numpy.random.SeedSequence` of stream ``role`` (refined by ``sub``).

    Parameters
    ----------
    seed : int or numpy.random.SeedSequence
        The user's seed (non-negative), or a sequence to derive from (its entropy and spawn key
        are kept and the role's words appended: a unit of an executor names its own streams).
    role : str
        What the stream drives (see ``docs/design.md``, "Random streams").
    *sub : str or int
        Optional sub-keys (an input index, a repeat number, ...).

    Returns
    -------
    numpy.random.SeedSequence
    """
    words = tuple(w for part in (role, *sub) for w in role_words(part))
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(entropy=seed.entropy, spawn_key=(*seed.spawn_key, *words),
                                      pool_size=seed.pool_size)
    return np.random.SeedSequence(entropy=_check_seed(seed), spawn_key=words)


def child_seed(seed: int | np.random.SeedSequence, role: str, *sub: SubKey,
               bits: int = 63) -> int:
    """A ``bits``-bit integer seed of stream ``role``, for APIs that take an int.

    Parameters
    ----------
    seed, role, *sub
        As in :func:`seed_sequence`.
    bits : int, default 63
        Width of the result, 1 to 64: 63 for ``torch.Generator.manual_seed``, 31 or 32 for
        libraries that take a 32-bit ``random_state``.

    Returns
    -------
    int
        In ``[0, 2**bits)``.
    """
    if not 1 <= int(bits) <= 64:
        raise ValueError(f"bits must be in 1..64, got {bits}")
    state = int(seed_sequence(seed, role, *sub).generate_state(1, dtype=np.uint64)[0])
    return state >> (64 - int(bits))


def numpy_rng(seed: int | np.random.SeedSequence, role: str, *sub: SubKey
              ) -> np.random.Generator:
    """A :class:`numpy.random.Generator` (PCG64) on stream ``role``."""
    return np.random.default_rng(seed_sequence(seed, role, *sub))


def torch_generator(seed: int | np.random.SeedSequence, role: str, *sub: SubKey,
                    device: torch.device | str | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default CPU) seeded from stream ``role``."""
    import torch

    return torch.Generator(device=device or "cpu").manual_seed(child_seed(seed, role, *sub))
