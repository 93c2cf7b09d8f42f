"""Definitions shared instead of repeated (issue 15, `duplicates`): the served model's fields,
the thread setting of the study configs, the bisection of the minimal-ε searches."""

from __future__ import annotations

import dataclasses

import pytest
import torch


def test_served_model_fields_are_defined_once():
    from rgaudit.experiments.cloning import ServedAPI
    from rgaudit.models.served_info import SERVED_INFO_FIELDS, ServedModelInfo
    from rgaudit.serve.schemas import ModelInfo

    assert list(ModelInfo.model_fields) == list(SERVED_INFO_FIELDS)
    schema = ModelInfo.model_json_schema()
    assert schema["title"] == "ModelInfo" and schema["required"] == list(SERVED_INFO_FIELDS)
    assert schema["description"] == ServedModelInfo.__doc__
    assert schema["properties"]["input_shape"] == {"items": {"type": "integer"},
                                                   "title": "Input Shape", "type": "array"}
    assert issubclass(ServedAPI, ServedModelInfo)
    own = [f.name for f in dataclasses.fields(ServedAPI)]
    assert own == [*SERVED_INFO_FIELDS, "url", "other"]
    info = {"kind": "rbm", "input_shape": [8, 8], "n_features": 64, "n_classes": 10,
            "classes": list(range(10)), "bounds": [0.0, 1.0], "defence": {"defence": "none"},
            "limits": {"max_batch": 8}, "new_field": 1}
    api = ServedAPI.from_info("http://h:1", info)
    assert list(api.to_dict()) == ["url", *SERVED_INFO_FIELDS, "new_field"]
    # the server validates its answer with the same fields
    assert ModelInfo(**info).model_dump() == {k: info[k] for k in SERVED_INFO_FIELDS}


@pytest.mark.parametrize("make", ["audit", "depth", "attack_study"])
def test_study_configs_check_threads_the_same_way(make):
    from rgaudit.experiments.attack_study import AttackStudyConfig
    from rgaudit.experiments.audit import AuditConfig
    from rgaudit.experiments.depth import DepthConfig

    cls = {"audit": AuditConfig, "depth": DepthConfig, "attack_study": AttackStudyConfig}[make]
    with pytest.raises(ValueError, match="--threads must be ≥ 1, got 0"):
        cls(threads=0)
    assert cls(threads=None).threads is None and cls(threads=2).threads == 2


def test_bisection_brackets_the_first_flipping_budget():
    """A threshold judge flips input i from budget t_i on: the bracket (lo, hi] holds t_i and
    is eps_max / 2^steps wide; inputs with t_i > eps_max stay unflipped with [0, eps_max]."""
    from rgaudit.attacks.evaluate import bisect_flips

    t = torch.tensor([0.3, 1.7, 3.99, 5.0], dtype=torch.float64)
    lo, hi, ok = bisect_flips(lambda e: e >= t, 4, 4.0, 10)
    assert ok.tolist() == [True, True, True, False]
    assert torch.all((lo[:3] < t[:3]) & (t[:3] <= hi[:3]))
    assert torch.allclose(hi[:3] - lo[:3], torch.full((3,), 4.0 / 2 ** 10, dtype=torch.float64))
    assert lo[3] == 0 and hi[3] == 4.0
