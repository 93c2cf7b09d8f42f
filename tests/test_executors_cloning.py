"""The clone-attack grid on an executor gives the plain loop's rows, and resumes."""

import json
from dataclasses import asdict

import pytest
import torch

from rgaudit.data.registry import load_dataset
from rgaudit.executors import UnitStore, make_executor
from rgaudit.experiments.cloning import CloningSettings, run_cloning
from rgaudit.nets.deep_rbm import DeepRBM


@pytest.mark.slow
def test_cloning_grid_on_executor_equals_plain_loop_and_resumes(tmp_path):
    ds = load_dataset("digits")
    net = DeepRBM.random([64, 12, 10], scale=0.3, generator=torch.Generator().manual_seed(0))
    s = CloningSettings(defences=("none", "random"), eps=(0.1, 0.3), n_queries=(30,),
                        attackers=("distill-mlp",), mlp_epochs=3, transfer_methods=("fgm",))
    plain = run_cloning(net, ds, s)
    store = UnitStore(tmp_path, {"s": 1})
    units = run_cloning(net, ds, s, executor=make_executor("local"), store=store)

    def rows(r):
        return json.dumps([asdict(x) for x in r.rows], sort_keys=True)

    assert rows(units) == rows(plain)
    assert units.settings["execution"]["computed"] == 3
    again = run_cloning(net, ds, s, executor=make_executor("local"),
                        store=UnitStore(tmp_path, {"s": 1}))
    assert again.settings["execution"]["cached"] == 3 and rows(again) == rows(plain)
