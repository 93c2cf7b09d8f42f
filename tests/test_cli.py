"""The assembled command line: every command is wired and has help."""

import pytest
from typer.testing import CliRunner

from rgaudit import __version__
from rgaudit.cli import app

COMMANDS = ["train", "info", "diagnose", "audit", "attack", "protect", "clone-attack",
            "relu-scaling", "ising", "version"]


def test_top_level_help_lists_every_command():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0, res.output
    for name in COMMANDS:
        assert name in res.output


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(name):
    res = CliRunner().invoke(app, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "--help" in res.output


def test_version():
    res = CliRunner().invoke(app, ["version"])
    assert res.exit_code == 0 and res.output.strip() == __version__


def test_info_on_a_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich's error box would wrap the message otherwise
    res = CliRunner().invoke(app, ["info", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert "is not a model folder" in " ".join(res.output.split())


def test_main_turns_input_errors_into_one_message(monkeypatch, capsys):
    import rgaudit.cli as cli

    def boom(**kwargs: object) -> None:  # main() calls app(args=..., standalone_mode=False)
        raise ValueError("inputs have 16 features, the chain starts with 64 units")

    monkeypatch.setattr(cli, "app", boom)
    monkeypatch.delenv("RGAUDIT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "error (ValueError): inputs have 16 features" in err and "Traceback" not in err
    monkeypatch.setenv("RGAUDIT_DEBUG", "1")
    with pytest.raises(ValueError):
        cli.main()


def test_unknown_device_is_a_clear_error():
    from rgaudit.device import resolve_device

    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
