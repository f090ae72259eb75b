"""The command line as a whole: every command documented, errors one line, --debug traces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_core import __version__
from ptychopinn_core.cli.main import _COMMANDS, cli, main

CLI = Path(sys.executable).with_name("ptychopinn")


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_command_has_help_with_examples(name, capsys):
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples:" in text and f"ptychopinn {name}" in text


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in _COMMANDS)
    assert cli.name == "cli"


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_usage_error_exits_2(capsys):
    assert main(["inspect"]) == 2
    assert "Missing argument" in capsys.readouterr().err


def test_errors_are_one_line_and_debug_shows_the_trace(tmp_path):
    missing = tmp_path / "missing.npz"
    quiet = subprocess.run([CLI, "inspect", str(missing)], capture_output=True, text=True)
    assert quiet.returncode == 1
    assert quiet.stderr.strip().count("\n") == 0 and "missing.npz" in quiet.stderr
    loud = subprocess.run([CLI, "--debug", "inspect", str(missing)], capture_output=True, text=True)
    assert loud.returncode == 1 and "Traceback" in loud.stderr
