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


def test_info_on_a_missing_model_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["info", str(tmp_path / "nope")])
    assert res.exit_code != 0
    assert "model folder" in res.output or "not" in res.output
