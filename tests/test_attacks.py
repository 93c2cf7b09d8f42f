"""Attack base class invariants for every method, bisection, fact 6."""

from __future__ import annotations

import pytest
import torch

from rgaudit.attacks.base import Attack, project, unit_step
from rgaudit.attacks.baselines import FGM, PGD, DeepFool, RandomDirection, art_classifier
from rgaudit.attacks.evaluate import StochasticJudge, minimal_eps
from rgaudit.attacks.fim import FIMAttack, IteratedFIMAttack
from rgaudit.fisher.autograd import dense_fim, mean_field_fim
from rgaudit.fisher.eig import abs_cosine
from rgaudit.nets.deep_rbm import DeepRBM


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    net = DeepRBM.random([16, 12, 4], generator=g, scale=4.0)
    x = torch.rand(6, 16, generator=g, dtype=torch.float64)
    x[:, :3] = 0.0          # pixels at the box edge
    x[:, 3:5] = 1.0
    mf = net.mean_field()
    y = mf(x).argmax(-1)
    return net, mf, x, y


def _grad_true(mf):
    def grad(x, y):
        xg = x.clone().requires_grad_(True)
        p = torch.sigmoid(mf(xg)).gather(-1, y.unsqueeze(-1)).sum()
        (gx,) = torch.autograd.grad(p, xg)
        return gx
    return grad


def _methods(net, mf, norm):
    clf = art_classifier(mf, 16, 4)
    def fim_fn(x):
        return mean_field_fim(net, x)
    return [
        FIMAttack(fim_fn=fim_fn, grad_fn=_grad_true(mf), norm=norm),
        FIMAttack(fim_fn=fim_fn, grad_fn=_grad_true(mf), k=3, norm=norm),
        IteratedFIMAttack(fim_fn=fim_fn, grad_fn=_grad_true(mf), steps=2, norm=norm),
        FGM(classifier=clf, norm=norm),
        PGD(classifier=clf, norm=norm, max_iter=3),
        DeepFool(classifier=clf, norm=norm, max_iter=5),
        RandomDirection(generator=torch.Generator().manual_seed(1), norm=norm),
    ]


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_every_method_is_clipped_and_projected(setup, norm):
    net, mf, x, y = setup
    eps = [0.0, 0.05, 0.3, 2.0]
    def judge(z):
        return mf(z).argmax(-1)
    for atk in _methods(net, mf, norm):
        res = atk(x, y, epsilons=eps, judge=judge)
        assert res.clipped.shape == (4, *x.shape), atk.name
        assert res.clipped.min() >= 0 and res.clipped.max() <= 1, atk.name
        d = res.clipped - x
        size = d.flatten(2).norm(dim=-1) if norm == "l2" else d.abs().amax(-1)
        assert (size <= torch.tensor(eps).unsqueeze(-1) + 1e-6).all(), atk.name
        assert not res.success[0].any(), atk.name       # ε = 0 changes nothing
        torch.testing.assert_close(res.clipped[0], x)


def test_project_and_bad_inputs():
    d = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    torch.testing.assert_close(project(d, 1.0, "l2"), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))
    torch.testing.assert_close(project(d, 0.35, "linf"), torch.tensor([[0.35, 0.35],
                                                                       [0.3, 0.35]]))
    with pytest.raises(ValueError):
        RandomDirection(generator=torch.Generator(), norm="l1")
    atk = RandomDirection(generator=torch.Generator())
    with pytest.raises(ValueError):
        atk(torch.full((1, 2), 2.0), torch.zeros(1, dtype=torch.long), epsilons=[0.1],
            judge=lambda z: torch.zeros(1, dtype=torch.long))

    class Bad(Attack):
        def run(self, x, y, *, epsilons):
            return x
    with pytest.raises(RuntimeError):
        Bad()(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), epsilons=[0.1],
              judge=lambda z: torch.zeros(1, dtype=torch.long))


def test_minimal_eps_bisection_stochastic_judge(setup):
    net, mf, x, y = setup
    judge = StochasticJudge(net, n_samples=400, seed=0)
    y0 = judge(x)
    v = FIMAttack(fim_fn=lambda z: mean_field_fim(net, z), grad_fn=_grad_true(mf)).direction(x, y0)
    res = minimal_eps(judge, x, y0, v, eps_max=6.0, steps=8)
    fin = torch.isfinite(res.eps)
    assert fin.any()
    assert (res.eps[fin] - res.lower[fin] <= 6.0 / 2**8 + 1e-12).all()
    step = v / v.norm(dim=-1, keepdim=True)
    above = judge((x + res.eps.clamp(max=6).unsqueeze(-1) * step).clamp(0, 1))
    below = judge((x + res.lower.unsqueeze(-1) * step).clamp(0, 1))
    assert (above[fin] != y0[fin]).all() and (below[fin] == y0[fin]).all()


def test_fact6_scalar_output_fim_attack_is_the_gradient_attack():
    torch.manual_seed(0)  # test-only: module initialisers read the global RNG
    m = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.Tanh(),
                            torch.nn.Linear(8, 1)).double()
    x = torch.rand(3, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.long)

    def grad(z, _y):
        zg = z.clone().requires_grad_(True)
        (gz,) = torch.autograd.grad(torch.sigmoid(m(zg)).sum(), zg)
        return gz
    atk = FIMAttack(fim_fn=lambda z: dense_fim(m, z, "bernoulli"), grad_fn=grad)
    v = atk.direction(x, y)
    g = grad(x, y)
    assert (abs_cosine(v, g) > 1 - 1e-10).all()
    assert ((v * g).sum(-1) < 0).all()          # lowers the scalar output's probability


def test_judge_gap_z_uses_per_chain_differences(setup):
    """gap_z equals (p_top − p_second) / se of the per-chain differences, computed directly."""
    net, _, x, _ = setup
    judge = StochasticJudge(net, n_samples=300, seed=5, chunk=70)
    ver = judge.verdict(x)
    for i in range(x.shape[0]):
        g = torch.Generator().manual_seed(judge.input_seed(i))
        hs = net.sample_up(x[i:i + 1], 300, g, upto=net.depth - 1)
        p = net.layer(net.depth).prob_up(hs[-1])[0].to(torch.float64)      # (S, C)
        a, b = p.mean(0).topk(2).indices
        d = p[:, a] - p[:, b]
        z = d.mean() / (d.std() / 300**0.5)
        assert int(ver.pred[i]) == int(a)
        assert torch.allclose(ver.proba[i], p.mean(0), rtol=0, atol=1e-12)
        assert abs(float(ver.gap_z[i]) - float(z)) < 1e-8 * max(1.0, abs(float(z)))


def test_judge_verdicts_do_not_depend_on_batch_composition(setup):
    net, _, x, _ = setup
    judge = StochasticJudge(net, n_samples=200, seed=3)
    full = judge.for_inputs([10, 11, 12, 13, 14, 15]).verdict(x)
    sub = judge.for_inputs([13, 11]).verdict(x[[3, 1]])
    assert torch.equal(full.pred[[3, 1]], sub.pred)
    assert torch.equal(full.proba[[3, 1]], sub.proba)


def test_minimal_eps_records_the_applied_perturbation(setup):
    net, mf, x, y = setup
    judge = StochasticJudge(net, n_samples=200, seed=0)
    y0 = judge(x)
    v = FIMAttack(fim_fn=lambda z: mean_field_fim(net, z), grad_fn=_grad_true(mf)).direction(x, y0)
    for norm in ("l2", "linf"):
        res = minimal_eps(judge, x, y0, v, norm=norm, eps_max=6.0, steps=6)
        assert res.clean_correct.all()
        fin = torch.isfinite(res.eps)
        assert fin.any()
        d = ((x + res.eps.clamp(max=6).unsqueeze(-1) * unit_step(v, norm)).clamp(0, 1) - x)
        assert torch.allclose(res.actual_l2[fin], d.norm(dim=1)[fin])
        assert torch.allclose(res.actual_linf[fin], d.abs().amax(1)[fin])
        nominal = res.eps[fin]
        actual = res.actual_linf[fin] if norm == "linf" else res.actual_l2[fin]
        assert (actual <= nominal + 1e-12).all()
        assert torch.isinf(res.actual_l2[~fin]).all()
