"""The last draws moved onto named streams of the run seed (docs/design.md, "Random streams"):
APGD's random start (``attack.apgd``), the RG poison's per-answer chains (``poison.answer``
below the deployment's ``poison`` generator), and the basis check's pilot (no randomness).

Every test here is exact (same seed: bit-identical; different seeds: different numbers);
none is statistical, so the file's false-failure rate is 0 up to 64-bit hash collisions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.random import child_seed, torch_generator

# ----------------------------------------------------------------------------------- APGD


def _tiny_net() -> DeepRBM:
    return DeepRBM.random([6, 5, 3], generator=torch.Generator().manual_seed(7), scale=2.0)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(8)
    x = torch.rand(4, 6, generator=g, dtype=torch.float64)
    return x, torch.zeros(4, dtype=torch.long)


def _apgd_at(seed: int, eps: float = 2.0) -> torch.Tensor:
    from rgaudit.experiments.attack_study import AttackStudyConfig, make_attack

    x, y = _inputs()
    atk = make_attack("apgd", _tiny_net(), "l2", x, seed=seed,
                      cfg=AttackStudyConfig(apgd_iter=3))
    assert atk.seed == child_seed(seed, "attack.apgd")
    return atk.attack_at(x, y, torch.full((len(x),), eps, dtype=torch.float64))


def test_apgd_start_follows_the_run_seed() -> None:
    """Run seeds 0 and 1 start APGD at different points (so its adversarials differ: with a
    budget this large the random start itself flips the surrogate); the same seed repeats
    bit for bit, and the global generator is untouched."""
    before = torch.random.get_rng_state()
    a0, a0_again, a1 = _apgd_at(0), _apgd_at(0), _apgd_at(1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a0, a0_again)
    x, _ = _inputs()
    assert not torch.equal(a0, x) and not torch.equal(a1, x)      # the attack found points
    assert not torch.allclose(a0, a1, rtol=0, atol=1e-6)


def test_audit_apgd_is_seeded_from_its_stream() -> None:
    """``rgaudit audit``'s attack factory gives APGD stream ``attack.apgd`` of the run seed (the
    executor path passes the unit's ``unit.attacks`` seed through the same factory)."""
    from rgaudit.attacks.minimal_norm import APGD
    from rgaudit.experiments.audit import make_attacks

    x, _ = _inputs()
    net = _tiny_net()
    seeds = []
    for s in (0, 1, 0):
        (atk,) = make_attacks(net, x, "l2", fims={}, grad_true=torch.zeros_like(x), seed=s,
                              methods=("apgd",))
        assert isinstance(atk, APGD)
        seeds.append(atk.seed)
    assert seeds == [child_seed(0, "attack.apgd"), child_seed(1, "attack.apgd"),
                     child_seed(0, "attack.apgd")]
    assert seeds[0] != seeds[1]


def test_attack_study_passes_its_seed() -> None:
    """The attack study builds APGD with its own ``seed`` (it used to fall back to 0)."""
    import inspect

    from rgaudit.experiments import attack_study

    src = inspect.getsource(attack_study)
    assert "make_attack(method, st.model, norm, st.x, seed=cfg.seed, cfg=cfg)" in src


# ----------------------------------------------------------------------------- RG poison


def _poison_setup() -> tuple[object, torch.Tensor]:
    from rgaudit.defence.baselines import make_poisoner

    g = torch.Generator().manual_seed(3)
    net = DeepRBM.random([8, 6, 5], generator=g, scale=2.0)
    y = torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64) * 3, -1)
    rg = make_poisoner("rg", eps=0.2, norm="l2", kind="simplex", net=net, estimator="chain",
                       fim_kwargs={"n_samples": 256})
    return rg, y


def test_poison_follows_the_deployment_seed() -> None:
    """Deployment seeds 0 and 1 (their ``poison`` generators) give different generation FIMs
    and different poisoned answers; the same seed gives the same poison, whatever the
    generator's state (how many batches it served) and whatever the batch."""
    rg, y = _poison_setup()
    f0 = rg.fims(y, torch_generator(0, "poison"))                      # type: ignore[attr-defined]
    f1 = rg.fims(y, torch_generator(1, "poison"))                      # type: ignore[attr-defined]
    assert not torch.allclose(f0, f1, rtol=1e-6, atol=0)
    p0 = rg(y, None, torch_generator(0, "poison")).y_poisoned           # type: ignore[operator]
    p1 = rg(y, None, torch_generator(1, "poison")).y_poisoned           # type: ignore[operator]
    assert not torch.allclose(p0, p1, rtol=0, atol=1e-9)
    used = torch_generator(0, "poison")
    torch.rand(100, generator=used)                                     # advance its state
    again = rg(y, None, used).y_poisoned                                # type: ignore[operator]
    alone = torch.cat([rg(y[i:i + 1], None, torch_generator(0, "poison")).y_poisoned  # type: ignore[operator]
                       for i in range(len(y))])
    assert torch.equal(p0, again)
    assert torch.allclose(p0, alone, rtol=0, atol=1e-12)


def test_poison_without_a_generator_uses_the_library_default() -> None:
    """A library call without a generator keys the answers by ``DEFAULT_CHAIN_SEED``."""
    from rgaudit.defence.generation_fim import DEFAULT_CHAIN_SEED
    from rgaudit.defence.poison import _answer_seed

    rg, y = _poison_setup()
    default = torch.Generator().manual_seed(DEFAULT_CHAIN_SEED)
    assert torch.equal(rg(y).y_poisoned, rg(y, None, default).y_poisoned)  # type: ignore[operator]
    assert _answer_seed(y[0]) == _answer_seed(y[0], DEFAULT_CHAIN_SEED)
    assert _answer_seed(y[0], 5) != _answer_seed(y[0], 6)
    assert _answer_seed(y[0], 5) != _answer_seed(y[1], 5)


def test_protected_classifier_and_server_follow_their_seed() -> None:
    """``protect(random_state=s)`` and ``DefendedModel(seed=s)`` (``rgaudit serve --seed``)
    answer with the poison of seed ``s``."""
    from rgaudit.api import protect
    from rgaudit.models.base import RBMClassifier
    from rgaudit.serve.defended import DefendedModel, build_poisoner

    g = torch.Generator().manual_seed(3)
    net = DeepRBM.random([8, 6, 5], generator=g, scale=2.0)
    clf = RBMClassifier(net, (8,))
    x = torch.rand(5, 8, generator=g, dtype=torch.float64).numpy()
    kw = {"estimator": "chain", "fim_kwargs": {"n_samples": 256}}
    a = [protect(clf, "rg", eps=0.2, norm="l2", random_state=s, **kw).answer(x)
         for s in (0, 1, 0)]
    assert np.array_equal(a[0], a[2]) and not np.allclose(a[0], a[1], rtol=0, atol=1e-9)
    served = [DefendedModel(clf, build_poisoner(clf, "rg", eps=0.2, norm="l2", extra=kw),
                            seed=s).predict(x)[0] for s in (0, 1, 0)]
    assert np.array_equal(served[0], served[2])
    assert not np.allclose(served[0], served[1], rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------- basis pilot


def test_basis_check_pilot_is_a_fixed_design() -> None:
    """The pilot is the full 2⁴ binary design (every unit both ways, no randomness), the check
    draws nothing from the global generator, and it gives the same answer every time."""
    from rgaudit.experiments.basis_check import check_basis_spec, pilot_design

    p = pilot_design()
    assert p.shape == (16, 4) and torch.equal(p, pilot_design())
    assert {tuple(r) for r in p.int().tolist()} == {
        tuple((r >> k) & 1 for k in range(4)) for r in range(16)}
    assert torch.equal(p.mean(0), torch.full((4,), 0.5))
    before = torch.random.get_rng_state()
    assert [check_basis_spec(s, "--basis") for s in ("pairs:3", " singles", "order:2")] == \
        ["pairs:3", "singles", "order:2"]
    assert torch.equal(torch.random.get_rng_state(), before)
    for bad in ("pairs:0", "pairs:x", "nonsense"):
        with pytest.raises(ValueError, match="--basis"):
            check_basis_spec(bad, "--basis")


# ------------------------------------------------------------------------ attack study MLP


def test_attack_study_mlp_seed_is_a_validated_recorded_field() -> None:
    from rgaudit.experiments.attack_study import AttackStudyConfig

    assert AttackStudyConfig().mlp_seed == 0
    assert AttackStudyConfig(mlp_seed=3).to_dict()["mlp_seed"] == 3
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="--mlp-seed"):
            AttackStudyConfig(mlp_seed=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--seed"):
        AttackStudyConfig(seed=-2)


# ------------------------------------------------------------------- cloning damage FIM


def test_cloning_damage_fim_follows_the_study_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generation FIM at the honest answers (what every defence's Fisher damage is scored
    on) gets stream ``clone.damage`` of the study's seed (it used the library default)."""
    from types import SimpleNamespace

    import rgaudit.defence.generation_fim as gf
    from rgaudit.experiments.cloning import CloningConfig, run_cloning

    seen: list[int] = []

    class Stop(Exception):
        pass

    def spy(net: object, y: torch.Tensor, estimator: str = "auto", **kw: object) -> None:
        g = kw["generator"]
        assert isinstance(g, torch.Generator)
        seen.append(g.initial_seed())
        raise Stop

    monkeypatch.setattr(gf, "generation_fim", spy)
    g = torch.Generator().manual_seed(0)
    net = DeepRBM.random([6, 5, 3], generator=g)
    ds = SimpleNamespace(X_test=torch.rand(20, 6, generator=g, dtype=torch.float64),
                         y_test=torch.randint(0, 3, (20,), generator=g))
    for s in (0, 1):
        with pytest.raises(Stop):
            run_cloning(net, ds, CloningConfig(n_queries=(5,), seed=s))  # type: ignore[arg-type]
    assert seen == [child_seed(0, "clone.damage"), child_seed(1, "clone.damage")]
