"""Model adapters behind load_classifier: round trips, the exact sklearn conversion, refusals of
files crafted to execute code (nothing executed)."""

from __future__ import annotations

import io
import json
import pickle
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch

from rgaudit.errors import ModelFileError
from rgaudit.models import load_classifier


def _mlp(d=16, k=3, seed=0):
    torch.manual_seed(seed)  # test-only: module initialisers read the global RNG
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, 12), torch.nn.Tanh(),
                               torch.nn.Linear(12, k)).eval()


def _export(model, path, shape=(1, 4, 4), dynamic=True):
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    dyn = {"input": {0: torch.export.Dim("batch")}} if dynamic else None
    ep = torch.export.export(model, (x,), dynamic_shapes=dyn)
    torch.export.save(ep, str(path))
    return path


# -- torch.export ---------------------------------------------------------------------------
@pytest.mark.parametrize("dynamic", [True, False])
def test_pt2_round_trip(tmp_path, dynamic):
    m = _mlp()
    path = _export(m, tmp_path / "m.pt2", dynamic=dynamic)
    clf, cfg = load_classifier(path)
    assert (clf.kind, clf.input_shape, clf.n_classes, clf.n_features) == (
        "torch-export", (1, 4, 4), 3, 16)
    assert cfg["batch"] == ("dynamic" if dynamic else 2)
    x = torch.rand(5, 16, generator=torch.Generator().manual_seed(1))
    ref = torch.log_softmax(m(x.reshape(5, 1, 4, 4)), -1)
    torch.testing.assert_close(clf.log_proba(x), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(clf.answer(x), ref.exp().double(), atol=1e-6, rtol=0)


def _rewrite(src, dst, edit):
    """Copy a zip archive, passing each member's (name, bytes) through ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info.filename)))
    return dst


class _Exec:
    """Pickles to ``exec(code)``: what a hostile pickle does on loading."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _hostile_pt2(tmp_path, how, sentinel):
    good = _export(_mlp(), tmp_path / "good.pt2")
    code = f"open({str(sentinel)!r}, 'w').write('pwned')"

    def edit(name, data):
        if how == "sample-inputs" and "/sample_inputs/" in name:
            return pickle.dumps(_Exec(code))
        if how in ("target", "sympy", "from-file") and name.endswith(".json") and \
                "/models/" in name:
            tree = json.loads(data)
            text = json.dumps(tree)
            if how == "target":
                text = text.replace("torch.ops.aten.tanh.default", "torch.hub.load")
            elif how == "from-file":       # reads any file into a tensor: no code, still refused
                text = text.replace("torch.ops.aten.tanh.default",
                                    "torch.ops.aten.from_file.default")
            else:
                text = text.replace('"expr_str": "Symbol(',
                                    '"expr_str": "__import__(\'os\').getpid() + Symbol(', 1)
            assert text != json.dumps(tree), "the edit must change the program"
            return text.encode()
        return data

    return _rewrite(good, tmp_path / f"hostile-{how}.pt2", edit)


@pytest.mark.parametrize("how", ["sample-inputs", "target", "sympy", "from-file"])
def test_hostile_pt2_is_refused_and_nothing_runs(tmp_path, how):
    sentinel = tmp_path / "pwned.txt"
    path = _hostile_pt2(tmp_path, how, sentinel)
    with pytest.raises(ModelFileError, match="refused"):
        load_classifier(path)
    assert not sentinel.exists()


def test_the_sample_inputs_pickle_is_a_real_threat(tmp_path):
    """Without rgaudit's check, torch.export.load falls back to full unpickling of the sample
    inputs: the hostile file of the test above does execute (so the refusal is needed)."""
    sentinel = tmp_path / "pwned.txt"
    path = _hostile_pt2(tmp_path, "sample-inputs", sentinel)
    try:
        torch.export.load(str(path))
    except Exception:  # noqa: BLE001 - only whether the payload ran matters
        pass
    if not sentinel.exists():
        pytest.skip("this torch no longer unpickles sample inputs unsafely")


def test_not_a_zip_pt2(tmp_path):
    p = tmp_path / "x.pt2"
    p.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a .pt2 archive"):
        load_classifier(p)


# -- safetensors + factory -------------------------------------------------------------------
FACTORY_SRC = textwrap.dedent("""
    import torch

    def build():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12),
                                   torch.nn.Tanh(), torch.nn.Linear(12, 3))

    def wrong():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
""")


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(FACTORY_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userpkg.nets"
    for name in ("userpkg.nets", "userpkg"):
        sys.modules.pop(name, None)


def test_safetensors_factory_round_trip(tmp_path, factory_module):
    from safetensors.torch import save_file

    m = _mlp()
    path = tmp_path / "w.safetensors"
    save_file(m.state_dict(), str(path))
    clf, cfg = load_classifier(path, factory=f"{factory_module}:build", input_shape=(1, 4, 4))
    assert (clf.kind, clf.n_classes, cfg["factory"]) == ("torch", 3, f"{factory_module}:build")
    x = torch.rand(4, 16, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(clf.log_proba(x), torch.log_softmax(m(x), -1), atol=1e-6, rtol=0)
    with pytest.raises(ModelFileError, match="does not match"):
        load_classifier(path, factory=f"{factory_module}:wrong", input_shape=(1, 4, 4))
    with pytest.raises(ModelFileError, match="--factory"):
        load_classifier(path, input_shape=(1, 4, 4))
    with pytest.raises(ModelFileError, match="package.module:function"):
        load_classifier(path, factory="os.system('x')", input_shape=(1, 4, 4))


# -- scikit-learn RBM pipelines via skops ----------------------------------------------------
def _pipeline(n_classes=3, seed=0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import BernoulliRBM
    from sklearn.pipeline import Pipeline

    rng = np.random.default_rng(seed)
    X = rng.random((120, 16))
    y = rng.integers(0, n_classes, 120)
    y[:n_classes] = np.arange(n_classes)
    pipe = Pipeline([("rbm1", BernoulliRBM(n_components=10, n_iter=3, random_state=0)),
                     ("rbm2", BernoulliRBM(n_components=6, n_iter=3, random_state=1)),
                     ("logistic", LogisticRegression(max_iter=500))]).fit(X, y)
    return pipe, X


@pytest.mark.parametrize("n_classes", [3, 2])
def test_sklearn_conversion_is_exact(n_classes):
    from rgaudit.models.sklearn_rbm import SklearnRBMClassifier, deep_rbm_from_sklearn

    pipe, X = _pipeline(n_classes)
    net = deep_rbm_from_sklearn(pipe)
    assert net.widths == [16, 10, 6, n_classes]
    x = torch.as_tensor(X[:30])
    h = x
    v = X[:30]
    for k, (_, rbm) in enumerate(pipe.steps[:-1], start=1):
        v = rbm.transform(v)                               # sklearn's P(h = 1 | v)
        h = net.layer(k).prob_up(h)
        np.testing.assert_allclose(h.detach().numpy(), v, atol=1e-6, rtol=0)
    clf = SklearnRBMClassifier(net, (4, 4))
    np.testing.assert_allclose(clf.answer(x).numpy(), pipe.predict_proba(X[:30]), atol=1e-6,
                               rtol=0)
    np.testing.assert_allclose(clf.log_proba(x).exp().detach().numpy(),
                               pipe.predict_proba(X[:30]), atol=1e-6, rtol=0)


def test_skops_round_trip(tmp_path):
    import skops.io as sio

    pipe, X = _pipeline()
    path = tmp_path / "pipe.skops"
    sio.dump(pipe, path)
    clf, cfg = load_classifier(path)
    assert (clf.kind, clf.n_classes, clf.input_shape, cfg["classes"]) == (
        "sklearn-rbm", 3, (4, 4), [0, 1, 2])
    assert clf.rbm is not None
    np.testing.assert_allclose(clf.answer(torch.as_tensor(X)).numpy(), pipe.predict_proba(X),
                               atol=1e-6, rtol=0)


class Evil:
    """A type whose restoration runs code (its ``__setstate__`` writes a file)."""

    sentinel = ""

    def __setstate__(self, state):
        open(state["path"], "w").write("pwned")


def test_hostile_skops_is_refused_and_nothing_runs(tmp_path):
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    pipe, _ = _pipeline()
    sentinel = tmp_path / "pwned.txt"
    evil = Evil()
    evil.path = str(sentinel)
    hostile = Pipeline(pipe.steps[:-1] + [("evil", evil), pipe.steps[-1]])
    path = tmp_path / "hostile.skops"
    sio.dump(hostile, path)
    assert not sentinel.exists()
    with pytest.raises(ModelFileError, match="trusted list"):
        load_classifier(path)
    assert not sentinel.exists()


def test_skops_of_another_estimator_is_refused(tmp_path):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "lr.skops"
    sio.dump(LogisticRegression().fit(np.eye(4), [0, 1, 0, 1]), path)
    with pytest.raises(ModelFileError, match="Pipeline of BernoulliRBM"):
        load_classifier(path)


# -- ONNX and unknown files ------------------------------------------------------------------
def test_onnx_is_refused_unparsed(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"\x08\x07" + b"crafted" * 10)
    with pytest.raises(ModelFileError, match="ONNX models are not supported"):
        load_classifier(p)


def test_unknown_file_lists_formats(tmp_path):
    p = tmp_path / "m.bin"
    p.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="supported"):
        load_classifier(p)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_classifier(tmp_path / "nope.pt2")


def test_pt2_bytes_are_checked_not_reread(tmp_path, monkeypatch):
    """load_pt2 hands the checked bytes themselves to torch.export.load (no second read)."""
    from rgaudit.models import pt2

    path = _export(_mlp(), tmp_path / "m.pt2")
    seen = {}
    real = torch.export.load

    def spy(f, **kw):
        seen["arg"] = f
        return real(f, **kw)

    monkeypatch.setattr(torch.export, "load", spy)
    pt2.load_pt2(str(path))
    assert isinstance(seen["arg"], io.BytesIO)
