"""The command-line reference, docs/cli.md, rendered from the commands' own ``--help``.

Written by hand, a reference drifts from the code; rendered, it cannot. A test compares
docs/cli.md with :func:`render_reference`, and this module regenerates it::

    python -m ptychopinn_core.cli.reference --out docs/cli.md    # regenerate
    python -m ptychopinn_core.cli.reference --check              # exit 1 when stale

The text is rendered at a fixed width (:data:`WIDTH`), so it does not depend on the
terminal it is made in.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import click

from ptychopinn_core.atomic import atomic_write
from ptychopinn_core.cli.main import _COMMANDS, LazyGroup, cli

__all__ = ["WIDTH", "DEFAULT_OUT", "REGENERATE", "render_reference", "unavailable_commands", "main"]

#: Columns of the rendered help text: what click prints in an 80-column terminal.
WIDTH = 78
#: Where the reference lives, relative to the repository root.
DEFAULT_OUT = Path("docs") / "cli.md"
#: The command that regenerates the reference (quoted in stale-file messages).
REGENERATE = f"python -m ptychopinn_core.cli.reference --out {DEFAULT_OUT.as_posix()}"

_INTRO = f"""\
# Command-line reference

<!-- Generated from the commands' --help by `{REGENERATE}`.
     Do not edit by hand: tests/test_docs_cli.py fails when this file is stale. -->

The `--help` text of `ptychopinn` and of every command, in the order of
`ptychopinn --help`. The options of `ptychopinn` itself (`--quiet`, `--debug`) go
before the command: `ptychopinn --quiet train ...`. Step by step:
[quickstart.md](quickstart.md); every configuration key: [configuration.md](configuration.md).
"""


class _WrittenCommands(LazyGroup):
    """The ``ptychopinn`` group, leaving out a command whose module does not exist yet.

    A command is listed in ``_COMMANDS`` before its module is written (by another
    change); the reference then simply lacks it, and the stale-file test asks for a
    regeneration once the module lands. Any other import error still raises.
    """

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        try:
            return super().get_command(ctx, name)
        except ModuleNotFoundError as error:
            if error.name != _COMMANDS[name].partition(":")[0]:
                raise
            return None


def _written_group() -> _WrittenCommands:
    group = copy.copy(cli)
    group.__class__ = _WrittenCommands
    return group


def _context(command: click.Command, name: str, width: int, parent: click.Context | None = None) -> click.Context:
    """The context click would make for ``command`` (its context settings, e.g. ``-h``),
    at a fixed width."""
    settings = {**command.context_settings, "terminal_width": width, "max_content_width": width}
    return click.Context(command, info_name=name, parent=parent, **settings)


def unavailable_commands() -> list[str]:
    """Commands listed by ``ptychopinn --help`` whose module cannot be found."""
    group = _written_group()
    ctx = _context(group, "ptychopinn", WIDTH)
    return [name for name in group.list_commands(ctx) if group.get_command(ctx, name) is None]


def _section(title: str, help_text: str) -> list[str]:
    return [f"## {title}", "", "```text", help_text.rstrip(), "```", ""]


def render_reference(width: int = WIDTH) -> str:
    """The markdown of docs/cli.md: the top-level help, then each command's, in order.

    Parameters
    ----------
    width : int
        Columns of the help text (click wraps to it).
    """
    group = _written_group()
    root = _context(group, "ptychopinn", width)
    commands = [(name, group.get_command(root, name)) for name in group.list_commands(root)]
    commands = [(name, command) for name, command in commands if command is not None]
    lines = [_INTRO, "- [ptychopinn](#ptychopinn)"]
    lines += [f"- [ptychopinn {name}](#ptychopinn-{name})" for name, _ in commands]
    lines += [""]
    lines += _section("ptychopinn", group.get_help(root))
    for name, command in commands:
        lines += _section(f"ptychopinn {name}", command.get_help(_context(command, name, width, root)))
    return "\n".join(lines)


@click.command("reference", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_path", default=DEFAULT_OUT, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Markdown file to write (or check).")
@click.option("--check", is_flag=True, help="Do not write: exit 1 if the file differs from the rendered text.")
def _reference_command(out_path: Path, check: bool) -> None:
    """Render the CLI reference (docs/cli.md) from the commands' --help.

    \b
    Examples:
      python -m ptychopinn_core.cli.reference --out docs/cli.md
      python -m ptychopinn_core.cli.reference --check
    """
    text = render_reference()
    missing = unavailable_commands()
    if missing:
        click.echo(f"note: left out {', '.join(missing)}: command module not found", err=True)
    if check:
        current = out_path.read_text(encoding="utf-8") if out_path.exists() else None
        if current != text:
            raise click.ClickException(f"{out_path} is stale; regenerate it: {REGENERATE}")
        click.echo(f"{out_path} is up to date")
        return
    with atomic_write(out_path) as handle:
        handle.write(text.encode("utf-8"))
    click.echo(f"wrote {out_path}")


def main(argv: list[str] | None = None) -> int:
    """Run the generator; return its exit code."""
    try:
        _reference_command.main(args=argv, prog_name="python -m ptychopinn_core.cli.reference",
                                standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
