"""digits28: the embedded digits upscaled to 28×28 (issue 16)."""

import numpy as np
import torch

from rgaudit.data import load_dataset
from rgaudit.data.digits28 import upscale


def test_digits28_is_deterministic_with_documented_shape_and_range():
    a = load_dataset("digits28")
    b = load_dataset("digits28")
    assert a.name == "digits28" and a.shape == (28, 28) and a.n_classes == 10
    assert a.X_train.shape == (1347, 784) and a.X_test.shape == (450, 784)
    assert a.X_train.dtype == torch.float32
    for X in (a.X_train, a.X_test):
        assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    # same split as the 8×8 set; corner pixels are kept by the interpolation
    small = load_dataset("digits")
    assert torch.equal(a.y_train, small.y_train)
    big, little = a.X_test.reshape(-1, 28, 28), small.X_test.reshape(-1, 8, 8)
    torch.testing.assert_close(big[:, 0, 0], little[:, 0, 0])
    torch.testing.assert_close(big[:, -1, -1], little[:, -1, -1])


def test_upscale_is_bilinear():
    # a linear ramp is reproduced exactly by linear interpolation
    ramp = np.linspace(0.0, 1.0, 8)[None, None, :].repeat(8, axis=1)
    out = upscale(ramp)
    assert out.shape == (1, 28, 28)
    np.testing.assert_allclose(out[0, 5], np.linspace(0.0, 1.0, 28), atol=1e-6)


def test_train_defaults_to_784_500_500_10_on_digits28(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from rgaudit.cli import app

    seen = {}

    def fake(dataset, config, progress=None):
        seen["widths"] = config.widths
        raise ValueError("stop after the configuration")

    monkeypatch.setattr("rgaudit.train.pipeline.train_default", fake)
    res = CliRunner().invoke(app, ["train", "--data", "digits28", "--out",
                                   str(tmp_path / "m")])
    assert res.exit_code == 1 and seen["widths"] == (784, 500, 500, 10)
    CliRunner().invoke(app, ["train", "--data", "digits", "--out", str(tmp_path / "m")])
    assert seen["widths"] == (64, 100, 100, 10)
