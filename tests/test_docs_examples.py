"""The examples in the README and the newcomer docs run as written.

Every fenced ```bash block of README.md and docs/quickstart.md, and every ```python
block of README.md and docs/python-api.md, is run in a fresh temporary folder, in the
order of the document: bash commands one by one through ``bash -c`` (with the current
interpreter's bin folder first on PATH, as in an activated virtual environment), python
blocks with ``exec`` in one namespace per document. A document's blocks share the
folder, so a later block sees the files an earlier one wrote.

Not run: lines containing ``pip install`` (CI's own setup runs the README's install
commands) and lines marked ``# doc-test: skip`` — only for what cannot run in CI (a
GUI); keep them rare. Keep the examples small so this file stays under two minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Documents whose examples run, and the languages run in each.
DOCUMENTS = {
    "README.md": ("bash", "python"),
    "docs/quickstart.md": ("bash",),
    "docs/python-api.md": ("python",),
}
SKIP_MARKER = "# doc-test: skip"
NOT_RUN = ("pip install", SKIP_MARKER)
#: A hung command fails the test instead of stalling CI.
COMMAND_TIMEOUT_S = 300

_FENCE = re.compile(r"^```(?P<language>[\w+-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, its text and the line of its first code line."""

    language: str
    code: str
    line: int


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, in order."""
    return [
        Block(match["language"], match["code"], text.count("\n", 0, match.start("code")) + 1)
        for match in _FENCE.finditer(text)
    ]


def bash_commands(block: Block) -> list[tuple[int, str]]:
    """``(line, command)`` for each command of a bash block that is to run.

    A line ending in a backslash continues on the next; comment-only lines are dropped.
    """
    commands: list[tuple[int, str]] = []
    pending: list[str] = []
    start = block.line
    for offset, line in enumerate(block.code.splitlines()):
        if not pending:
            start = block.line + offset
        pending.append(line)
        if line.rstrip().endswith("\\"):
            continue
        command = "\n".join(pending).strip()
        pending = []
        if command and not command.startswith("#") and not any(mark in command for mark in NOT_RUN):
            commands.append((start, command))
    return commands


def runnable_blocks(document: str) -> list[Block]:
    languages = DOCUMENTS[document]
    return [block for block in code_blocks((ROOT / document).read_text(encoding="utf-8"))
            if block.language in languages]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run_bash(document: str, block: Block, folder: Path) -> None:
    for line, command in bash_commands(block):
        result = subprocess.run(["bash", "-c", command], cwd=folder, env=_environment(), capture_output=True,
                                text=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, (
            f"{document}:{line}: `{command}` exited {result.returncode}\n"
            f"stdout (end):\n{result.stdout[-2000:]}\nstderr (end):\n{result.stderr[-2000:]}"
        )


def _run_python(document: str, block: Block, namespace: dict) -> None:
    code = compile(block.code, f"{document}:{block.line}", "exec")
    exec(code, namespace)  # noqa: S102 - running the documented example is the point


@pytest.mark.parametrize("document", sorted(DOCUMENTS))
def test_examples_run_as_written(document, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "doc_example"}
    for block in runnable_blocks(document):
        if block.language == "bash":
            _run_bash(document, block, tmp_path)
        else:
            _run_python(document, block, namespace)


def test_every_document_has_examples_that_run():
    """A renamed fence (```sh) or a blanket skip would silently test nothing."""
    for document, languages in DOCUMENTS.items():
        blocks = runnable_blocks(document)
        for language in languages:
            runnable = [block for block in blocks if block.language == language
                        and (language != "bash" or bash_commands(block))]
            assert runnable, f"{document} has no runnable ```{language} block"
    readme_commands = [command for block in runnable_blocks("README.md") for _, command in bash_commands(block)]
    assert any(command.startswith("ptychopinn train") for command in readme_commands)
    assert not any("pip install" in command for command in readme_commands), "install lines are CI's own job"


def test_bash_extraction_joins_continuations_and_drops_what_is_not_run():
    text = (
        "intro\n\n```bash\n"
        "pip install ptychopinn-core\n"
        "# a comment\n"
        "ptychopinn train --backend torch \\\n    --epochs 1\n"
        "ptychopinn-ptychodus  # doc-test: skip\n"
        "ptychopinn inspect scan.npz\n"
        "```\n\n```python\nprint(1)\n```\n"
    )
    bash, python = code_blocks(text)
    assert (bash.language, python.language, python.code) == ("bash", "python", "print(1)\n")
    assert bash_commands(bash) == [
        (6, "ptychopinn train --backend torch \\\n    --epochs 1"),
        (9, "ptychopinn inspect scan.npz"),
    ]
