"""The output policy (issue 14 items 5-7): no lost files, atomic model swaps, exit statuses.

Each test failed before the fix: a user's ``.NAME.old`` was deleted, ``protect --out
MODEL/config.json`` destroyed the model, run commands wrote into any existing folder, two writers
both "succeeded", a kill between the two renames of a model swap left no model, float64 weights
of 1e300 loaded as inf, integer weights were silently cast, and Ctrl-C exited 130 silently.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rgaudit.errors import ModelFileError, OutputBusyError, OutputExistsError
from rgaudit.nets.deep_rbm import DeepRBM
from rgaudit.nets.io import _sha256, load_model, save_model
from rgaudit.outputs import MARKER, Lock, prepare_out, prepare_out_file

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _net(seed: int = 0) -> DeepRBM:
    return DeepRBM.random([6, 4, 2], generator=torch.Generator().manual_seed(seed), scale=1.0,
                          dtype=torch.float32)


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from rgaudit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return int(exc.value.code or 0), " ".join((out.out + out.err).replace("│", " ").split())


# --- item 5: one output policy -----------------------------------------------------------------

def test_users_dot_old_folder_survives_a_model_save(tmp_path: Path) -> None:
    mine = tmp_path / ".model.old"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    save_model(_net(0), tmp_path / "model")
    save_model(_net(1), tmp_path / "model")  # replaces the model: the old code rmtree'd .model.old
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.old", "model"]


def test_run_folder_refused_unless_rgaudit_made_it_or_force(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "result.json").write_text("user data")
    with pytest.raises(OutputExistsError, match="not written by rgaudit.*--force"):
        prepare_out(user, kind="diagnose")
    assert (user / "result.json").read_text() == "user data"
    assert not (user / MARKER).exists()
    assert prepare_out(user, kind="diagnose", force=True) == user and (user / MARKER).is_file()
    ours = prepare_out(tmp_path / "new", kind="ising")  # created and marked
    assert json.loads((ours / MARKER).read_text())["kind"] == "ising"
    assert prepare_out(ours, kind="ising") == ours  # an rgaudit folder may be reused
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputExistsError, match="existing file"):
        prepare_out(tmp_path / "afile", kind="ising", force=True)


@pytest.mark.parametrize("command", [
    ["diagnose", "MODEL"], ["ising"], ["relu-scaling", "--quick"], ["clone-attack", "MODEL"],
    ["zoo"]])
def test_commands_refuse_a_user_folder_before_the_work(command: list[str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model = save_model(_net(), tmp_path / "m", metadata={"dataset_spec": "bars:4"})
    user = tmp_path / "user"
    user.mkdir()
    (user / "report.md").write_text("mine")
    monkeypatch.setenv("COLUMNS", "250")
    argv = [str(model) if a == "MODEL" else a for a in command] + ["--out", str(user)]
    start = time.perf_counter()
    code, text = _main(argv, capsys)
    assert code == 2 and "not written by rgaudit" in text and "--force" in text, text
    assert time.perf_counter() - start < 30  # refused up front, not after the study
    assert (user / "report.md").read_text() == "mine"


def test_protect_never_replaces_a_model_config(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    model = save_model(_net(), tmp_path / "m")
    before = (model / "config.json").read_bytes()
    code, text = _main(["protect", str(model), "--out", str(model / "config.json"), "--force"],
                       capsys)
    assert code == 2 and "inside the rgaudit model folder" in text, text
    assert (model / "config.json").read_bytes() == before
    load_model(model)  # still a model
    user = tmp_path / "notes.json"
    user.write_text('{"mine": 1}')
    with pytest.raises(OutputExistsError, match="not an rgaudit poisoning-config"):
        prepare_out_file(user, kind="poisoning-config")
    assert user.read_text() == '{"mine": 1}'


def _hold_lock(path: Path) -> subprocess.Popen[str]:
    """Another process that takes rgaudit's lock on ``path`` and sleeps."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {SRC!r})
        from pathlib import Path
        from rgaudit.outputs import lock_path, prepare_out
        target = Path({str(path)!r})
        if target.name == "run":
            prepare_out(target, kind="ising")
        else:
            lock_path(target)
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = _hold_lock(tmp_path / "model")
    try:
        code, text = _main(["train", "--data", "bars:2:40", "--widths", "4,2", "--out",
                            str(tmp_path / "model")], capsys)
        assert code == 3 and f"pid {proc.pid}" in text and "another rgaudit run" in text, text
    finally:
        proc.kill()
        proc.wait()
    # the kernel dropped the dead holder's lock: the stale lock file is simply taken over
    lock = Lock(tmp_path / ".model.rgaudit-lock", "the model")
    lock.release()
    assert not (tmp_path / ".model.rgaudit-lock").exists()
    proc = _hold_lock(tmp_path / "run")
    try:
        with pytest.raises(OutputBusyError, match=f"pid {proc.pid}"):
            prepare_out(tmp_path / "run", kind="ising")
    finally:
        proc.kill()
        proc.wait()


# --- item 6: atomic model swap, weights checked after the cast ---------------------------------

def test_swap_uses_rename_exchange_where_available(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import rgaudit.nets.io as nio

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    if not nio._renameat2_exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert (b / "x").read_text() == "a"
    save_model(_net(0), tmp_path / "model")

    def killed() -> None:
        raise AssertionError("the two-rename fallback ran although the exchange is available")

    monkeypatch.setattr(nio, "_between_renames", killed)
    save_model(_net(1), tmp_path / "model")
    assert torch.equal(load_model(tmp_path / "model")[0].layers[0].W, _net(1).layers[0].W)


def test_kill_between_the_two_renames_is_recovered_on_load(tmp_path: Path) -> None:
    path = tmp_path / "model"
    save_model(_net(0), path)
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {SRC!r})
        import torch
        import rgaudit.nets.io as nio
        from rgaudit.nets.deep_rbm import DeepRBM
        nio._renameat2_exchange = lambda a, b: False  # the two-rename fallback
        nio._between_renames = lambda: os.kill(os.getpid(), 9)  # SIGKILL between the renames
        net = DeepRBM.random([6, 4, 2], generator=torch.Generator().manual_seed(1), scale=1.0)
        nio.save_model(net, {str(path)!r})
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert not path.exists()  # the state the issue describes: no model at the path
    with pytest.warns(UserWarning, match="recovered the previous model"):
        net, _ = load_model(path)
    assert torch.equal(net.layers[0].W, _net(0).layers[0].W)
    save_model(_net(2), path)  # the next save removes the killed run's temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _rewrite_weights(model: Path, **tensors: torch.Tensor) -> None:
    data = {f"layers.{i}.{n}": t for i, layer in enumerate(_net().layers)
            for n, t in (("W", layer.W), ("a", layer.a), ("b", layer.b))}
    data.update(tensors)
    save_file(data, str(model / "weights.safetensors"))
    cfg = json.loads((model / "config.json").read_text())
    cfg["weights_sha256"] = _sha256(model / "weights.safetensors")
    (model / "config.json").write_text(json.dumps(cfg))


def test_weights_overflowing_the_cast_are_refused(tmp_path: Path) -> None:
    model = save_model(_net(), tmp_path / "m")  # dtype float32
    W = _net().layers[0].W.detach().double()
    W[0, 0] = 1e300  # finite in float64, inf in float32
    _rewrite_weights(model, **{"layers.0.W": W})
    with pytest.raises(ModelFileError, match="NaN or inf in torch.float32"):
        load_model(model)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_non_float_weights_are_refused(dtype: torch.dtype, tmp_path: Path) -> None:
    model = save_model(_net(), tmp_path / "m")
    _rewrite_weights(model, **{"layers.0.W": torch.ones(4, 6, dtype=dtype)})
    with pytest.raises(ModelFileError, match="must be floating point"):
        load_model(model)


# --- item 7 and 9: exit statuses, Ctrl-C -------------------------------------------------------

def test_ctrl_c_prints_one_line_and_exits_130(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("rgaudit.data.load_dataset", interrupted)
    code, text = _main(["train", "--out", str(tmp_path / "m")], capsys)
    assert code == 130 and text.startswith("interrupted:"), text
    assert not (tmp_path / ".m.rgaudit-lock").exists()  # the lock was released


def test_sigterm_unwinds_and_exits_143(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    def terminated(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr("rgaudit.data.load_dataset", terminated)
    code, text = _main(["train", "--out", str(tmp_path / "m")], capsys)
    assert code == 143 and text.startswith("terminated (SIGTERM):"), text
    assert not (tmp_path / ".m.rgaudit-lock").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # main() restores the handler


@pytest.mark.slow
def test_sigint_stops_a_long_run_promptly(tmp_path: Path) -> None:
    """A real SIGINT during a long Ising run: exit 130 with the message within seconds."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from rgaudit.cli import main; main()", "ising", "--L", "16",
         "--levels", "2", "--sweeps", "1000000", "--sweeps-per-chunk", "25", "--chains", "4",
         "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a background shell starts children with SIGINT ignored; a terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / MARKER).exists():  # the output is prepared before the work starts
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "Traceback" not in err, err
    assert time.monotonic() - sent < 8  # 0.6 s measured at load average 15 on 2 cores
    assert not (out / "result.json").exists()
