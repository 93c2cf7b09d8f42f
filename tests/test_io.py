"""Model save/load: exact round trip, and every kind of damage raises ModelFileError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rgaudit.errors import ModelFileError
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import CONFIG, WEIGHTS, load_model, save_model


@pytest.fixture
def saved(tmp_path: Path) -> tuple[DeepRBM, Path]:
    net = DeepRBM.random([6, 5, 4, 3], dtype=torch.float32,
                         generator=torch.Generator().manual_seed(0))
    path = save_model(net, tmp_path / "model", metadata={"seed": 0, "dataset": "test",
                                                         "accuracy": {"x": 1.0}})
    return net, path


def test_round_trip_gives_identical_predictions(saved: tuple[DeepRBM, Path]) -> None:
    net, path = saved
    loaded, cfg = load_model(path)
    assert cfg["widths"] == [6, 5, 4, 3] and cfg["tied"] is False
    assert cfg["seed"] == 0 and cfg["dataset"] == "test" and "rgaudit_version" in cfg
    assert loaded.dtype == net.dtype
    for (n1, p1), (n2, p2) in zip(net.state_dict().items(), loaded.state_dict().items(),
                                  strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    x = torch.rand(7, 6, generator=torch.Generator().manual_seed(1))
    a = net.predict_proba(x, 200, torch.Generator().manual_seed(2))
    b = loaded.predict_proba(x, 200, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert torch.equal(net.mean_field_logits(x), loaded.mean_field_logits(x))


def test_tied_round_trip(tmp_path: Path) -> None:
    net = DeepRBM.random([4, 4, 4], tied=True, generator=torch.Generator().manual_seed(3))
    loaded, cfg = load_model(save_model(net, tmp_path / "tied"))
    assert cfg["tied"] is True and len(loaded.layers) == 1
    assert loaded.layer(1) is loaded.layer(2)
    assert torch.equal(loaded.layer(1).W, net.layer(1).W)


def test_truncated_weights(saved: tuple[DeepRBM, Path]) -> None:
    _, path = saved
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="does not match the hash"):
        load_model(path)


def test_altered_weights_same_length(saved: tuple[DeepRBM, Path]) -> None:
    _, path = saved
    data = bytearray((path / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="truncated, corrupted or from another model"):
        load_model(path)


def test_altered_hash(saved: tuple[DeepRBM, Path]) -> None:
    _, path = saved
    cfg = json.loads((path / CONFIG).read_text())
    cfg["weights_sha256"] = "0" * 64
    (path / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="does not match the hash"):
        load_model(path)


def test_corrupted_json(saved: tuple[DeepRBM, Path]) -> None:
    _, path = saved
    text = (path / CONFIG).read_text()
    (path / CONFIG).write_text(text[: len(text) // 2])
    with pytest.raises(ModelFileError, match="is not valid JSON"):
        load_model(path)


def test_wrong_format_tag(saved: tuple[DeepRBM, Path]) -> None:
    _, path = saved
    cfg = json.loads((path / CONFIG).read_text())
    cfg["format"] = "something-else"
    (path / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="not an rgaudit DeepRBM config"):
        load_model(path)


@pytest.mark.parametrize("name", [WEIGHTS, CONFIG])
def test_missing_file(saved: tuple[DeepRBM, Path], name: str) -> None:
    _, path = saved
    (path / name).unlink()
    with pytest.raises(ModelFileError, match="is missing: the model folder is incomplete"):
        load_model(path)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="is not a model folder"):
        load_model(tmp_path / "nowhere")


def test_mismatched_shapes(saved: tuple[DeepRBM, Path]) -> None:
    _, path = saved
    cfg = json.loads((path / CONFIG).read_text())
    cfg["widths"] = [6, 7, 4, 3]  # same tensor names, other shapes
    (path / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=r"tensor layers\.0\.W has shape \(5, 6\)"):
        load_model(path)


def test_mismatched_depth(saved: tuple[DeepRBM, Path]) -> None:
    _, path = saved
    cfg = json.loads((path / CONFIG).read_text())
    cfg["widths"] = [6, 5, 3]
    (path / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="does not match widths"):
        load_model(path)


def test_weights_from_another_model(saved: tuple[DeepRBM, Path], tmp_path: Path) -> None:
    _, path = saved
    other = save_model(DeepRBM.random([6, 5, 4, 3], generator=torch.Generator().manual_seed(9)),
                       tmp_path / "other")
    shutil.copy(other / WEIGHTS, path / WEIGHTS)
    with pytest.raises(ModelFileError, match="does not match the hash"):
        load_model(path)


def test_save_is_atomic_and_overwrites(saved: tuple[DeepRBM, Path]) -> None:
    net, path = saved
    save_model(net, path, metadata={"seed": 1})
    assert load_model(path)[1]["seed"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]  # no temporary leftovers
    with pytest.raises(FileExistsError):
        save_model(net, path, overwrite=False)
    with pytest.raises(ValueError, match="reserved"):
        save_model(net, path, metadata={"widths": [1]})


def test_model_out_inside_another_model_is_refused(saved: tuple[DeepRBM, Path]) -> None:
    from rgaudit.errors import OutputExistsError
    from rgaudit.nets.io import check_model_out

    _, path = saved
    with pytest.raises(OutputExistsError, match="lies inside the rgaudit model folder"):
        check_model_out(path / "inner")
    assert check_model_out(path) == path          # the model itself is replaced, not refused
