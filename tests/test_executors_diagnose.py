"""``diagnose`` per input on an executor: merged rows are the single-input runs, stacked."""

import torch

from rgaudit.executors import make_executor, unit_seed_sequence
from rgaudit.executors.diagnose_units import diagnose_with_executor
from rgaudit.experiments.diagnose import run_diagnose
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.random import child_seed


def test_diagnose_units_stack_the_single_input_runs():
    net = DeepRBM.random([10, 6, 5, 3], generator=torch.Generator().manual_seed(0),
                         dtype=torch.float32)
    x = torch.rand(3, 10, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2])
    kw = {"ops": "singles", "n_samples": 256, "basis_specs": ["singles"],
          "sample_counts": [128], "n_blocks": 4}
    res = diagnose_with_executor(net, x, y, make_executor("local"), seed=4, **kw)
    assert res.settings["n_inputs"] == 3 and res.settings["labels"] == [0, 1, 2]
    unit_seed = child_seed(unit_seed_sequence(4, "input-1"), "unit.diagnose", bits=62)
    one = run_diagnose(net, x[1:2], y[1:2], seed=unit_seed, **kw)
    assert len(res.spectra) == len(one.spectra)
    for merged, single in zip(res.spectra, one.spectra, strict=True):
        assert merged.fisher.shape[0] == 3
        k = merged.fisher.shape[1]
        torch.testing.assert_close(merged.fisher[1], single.fisher[0, :k], rtol=0, atol=0)
        assert merged.counts["fisher~1"][1] == single.counts["fisher~1"][0]
        assert merged.max_cond >= single.max_cond
