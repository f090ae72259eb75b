"""docs/cli.md is the commands' own ``--help``, rendered by ptychopinn_core.cli.reference."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from ptychopinn_core.cli import reference
from ptychopinn_core.cli.main import _COMMANDS, main

DOC = Path(__file__).resolve().parents[1] / reference.DEFAULT_OUT


def test_reference_is_up_to_date(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the rendering must not follow the terminal
    assert DOC.exists(), f"{DOC} is missing; generate it: {reference.REGENERATE}"
    rendered, current = reference.render_reference(), DOC.read_text(encoding="utf-8")
    if current != rendered:
        diff = difflib.unified_diff(current.splitlines(), rendered.splitlines(), "docs/cli.md", "rendered", lineterm="")
        pytest.fail(f"docs/cli.md is stale; regenerate it: {reference.REGENERATE}\n" + "\n".join(list(diff)[:60]))


def test_each_section_is_the_command_help(capsys):
    text = reference.render_reference()
    written = [name for name in sorted(_COMMANDS) if name not in reference.unavailable_commands()]
    assert written, "no command module found"
    positions = [text.index(f"\n## ptychopinn {name}\n") for name in written]
    assert positions == sorted(positions), "sections follow the order of `ptychopinn --help`"
    for name in written:
        assert main([name, "--help"]) == 0
        usage = capsys.readouterr().out.splitlines()[0]
        assert f"```text\n{usage}\n" in text, name


def test_a_command_whose_module_is_not_written_is_left_out(monkeypatch):
    monkeypatch.setitem(_COMMANDS, "ghost", "ptychopinn_core.cli.ghost:ghost_command")
    assert "ghost" in reference.unavailable_commands()
    text = reference.render_reference()
    assert "ptychopinn ghost" not in text and "## ptychopinn inspect" in text
    # A command whose module exists but fails to import is an error, not a silent gap.
    monkeypatch.setitem(_COMMANDS, "ghost", "ptychopinn_core.cli.nosuchpackage.sub:command")
    with pytest.raises(ModuleNotFoundError, match="nosuchpackage"):
        reference.render_reference()


def test_check_and_write(tmp_path, capsys):
    out = tmp_path / "cli.md"
    assert reference.main(["--check", "--out", str(out)]) == 1
    assert "regenerate it" in capsys.readouterr().err
    assert reference.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == reference.render_reference()
    assert reference.main(["--check", "--out", str(out)]) == 0
