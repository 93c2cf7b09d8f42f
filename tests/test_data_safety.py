"""rgaudit never destroys data it did not write, and rejects hand-edited model configs."""

import json
import os

import pytest
import torch

from rgaudit.errors import ModelFileError
from rgaudit.experiments.train_default import ensure_default_model
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import load_model, read_config, save_model


def _net(seed: int = 0) -> DeepRBM:
    return DeepRBM.random([4, 3, 2], generator=torch.Generator().manual_seed(seed))


def test_save_refuses_a_folder_that_is_not_a_model(tmp_path):
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not an rgaudit model folder"):
        save_model(_net(), target)
    assert (target / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]  # no temporary left


def test_save_refuses_a_file(tmp_path):
    f = tmp_path / "afile.txt"
    f.write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        save_model(_net(), f)
    assert f.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt"]


def test_save_replaces_its_own_model_with_ordinary_permissions(tmp_path):
    target = tmp_path / "m"
    save_model(_net(0), target)
    save_model(_net(1), target)
    net, _ = load_model(target)
    torch.testing.assert_close(net.layer(1).W, _net(1).layer(1).W)
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o777 & ~umask
    assert ((target / "weights.safetensors").stat().st_mode & 0o777) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_default_model_never_overwrites_user_data(tmp_path):
    folder = tmp_path / "default"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    with pytest.raises(ModelFileError, match="does not overwrite"):
        ensure_default_model(folder)
    assert (folder / "notes.txt").read_text() == "precious"


def test_default_model_never_overwrites_a_model_it_did_not_train(tmp_path):
    folder = tmp_path / "default"
    save_model(_net(), folder, metadata={"dataset_spec": "bars"})  # e.g. from `rgaudit train`
    before = (folder / "weights.safetensors").read_bytes()
    with pytest.raises(ModelFileError, match="--model"):
        ensure_default_model(folder)
    assert (folder / "weights.safetensors").read_bytes() == before


@pytest.mark.parametrize("key, value, match", [
    ("widths", "abc", "widths"), ("widths", 64, "widths"), ("widths", [4, -3, 2], "widths"),
    ("widths", [4, True, 2], "widths"), ("tied", "yes", "tied"), ("tied", True, "equal widths"),
    ("dtype", "manual_seed", "dtype"), ("dtype", "int8", "dtype"),
])
def test_hand_edited_config_is_a_model_file_error(tmp_path, key, value, match):
    folder = save_model(_net(), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=match):
        read_config(folder)
    with pytest.raises(ModelFileError):
        load_model(folder)
