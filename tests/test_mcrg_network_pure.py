"""``mcrg_network`` never moves or changes the caller's network (issue 15 item 3).

Deterministic checks, no statistical tolerance (false-failure rate 0).
"""

from __future__ import annotations

import pytest
import torch

from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.rg.mcrg import mcrg_network

F64 = torch.float64


def _net_and_inputs() -> tuple[DeepRBM, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    net = DeepRBM.random([6, 4, 4, 3], generator=g, dtype=F64)
    x = torch.rand(2, 6, generator=g, dtype=F64)
    return net, x


def _snapshot(net: DeepRBM) -> list[tuple[int, int, torch.device, torch.Tensor]]:
    return [(id(p), p.data_ptr(), p.device, p.detach().clone()) for p in net.parameters()]


def _assert_unchanged(net: DeepRBM, before: list) -> None:
    after = list(net.parameters())
    assert len(after) == len(before)
    for p, (pid, ptr, dev, val) in zip(after, before, strict=True):
        assert id(p) == pid and p.data_ptr() == ptr and p.device == dev
        assert torch.equal(p.detach(), val)


def test_other_device_runs_on_a_copy_not_on_the_callers_network(monkeypatch):
    # CPU-only stand-in for "another device": torch.device("cpu", 0) differs from the network's
    # torch.device("cpu"), which sends mcrg_network down its cross-device branch. A spy on the
    # caller's .to (on the class, so a copy of the network is not spied on) shows the network is
    # never moved: the old code called net.to(dev) here.
    net, x = _net_and_inputs()
    other = torch.device("cpu", 0)
    assert net.device != other
    moved: list[tuple] = []
    real_to = DeepRBM.to

    def spy(self, *args, **kwargs):
        if self is net:
            moved.append((args, kwargs))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(DeepRBM, "to", spy)
    before = _snapshot(net)
    res = mcrg_network(net, x, "singles", 64, n_blocks=4, generator=1, device=other)
    assert moved == []
    _assert_unchanged(net, before)
    assert res.layers[1] is not None and res.layers[2] is not None


def test_copy_gives_the_same_estimate_as_the_network_itself():
    # the copy is exact: same seed, same chains, the same T as running on the network's device
    net, x = _net_and_inputs()
    same = mcrg_network(net, x, "singles", 64, n_blocks=4, generator=1)
    other = mcrg_network(net, x, "singles", 64, n_blocks=4, generator=1,
                         device=torch.device("cpu", 0))
    for i in (1, 2):
        assert torch.equal(same.layers[i].T, other.layers[i].T)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_leaves_a_cpu_network_on_the_cpu():
    net, x = _net_and_inputs()
    before = _snapshot(net)
    dev = torch.device("cuda")
    res = mcrg_network(net, x, "singles", 64, n_blocks=4,
                       generator=torch.Generator(device=dev).manual_seed(1), device=dev)
    _assert_unchanged(net, before)
    assert net.device.type == "cpu"
    assert res.layers[1] is not None
