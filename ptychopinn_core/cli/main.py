"""Entry point of the ``ptychopinn`` command: global options, lazy commands, one-line errors.

Each command lives in its own module of this package and is imported only when it is
invoked (or listed in ``--help``), so ``ptychopinn backends`` never pays for the
commands that train or plot.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sys
from dataclasses import dataclass

import click

from ptychopinn_core import __version__

__all__ = ["main", "cli", "CliState"]

# command name -> "module:attribute" of its click.Command
_COMMANDS: dict[str, str] = {
    "backends": "ptychopinn_core.cli.backends:backends_command",
    "config": "ptychopinn_core.cli.config:config_command",
    "inspect": "ptychopinn_core.cli.inspect:inspect_command",
    "simulate": "ptychopinn_core.cli.simulate:simulate_command",
    "evaluate": "ptychopinn_core.cli.evaluate:evaluate_command",
    "train": "ptychopinn_core.cli.train:train_command",
    "infer": "ptychopinn_core.cli.infer:infer_command",
    "export": "ptychopinn_core.cli.export:export_command",
    "refine": "ptychopinn_core.cli.refine:refine_command",
    "demo": "ptychopinn_core.cli.demo:demo_command",
    "plot": "ptychopinn_core.cli.plot:plot_command",
    "parity": "ptychopinn_core.cli.parity:parity_command",
    "convert": "ptychopinn_core.cli.convert:convert_command",
}


@dataclass(frozen=True)
class CliState:
    """Options of the top-level command that every subcommand may read."""

    debug: bool = False
    quiet: bool = False


def _flag_after_the_command(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``ptychopinn train ... --quiet`` means ``ptychopinn --quiet train ...``: users put flags last."""
    if not value:
        return
    root = ctx.find_root()
    root.obj = dataclasses.replace(root.obj or CliState(), **{param.name: True})
    if param.name == "quiet":
        logging.getLogger().setLevel(logging.WARNING)


#: The top-level flags, accepted after a command's name too (every command gets them).
_GLOBAL_FLAGS = (
    click.Option(["--quiet", "-q"], is_flag=True, expose_value=False, callback=_flag_after_the_command,
                 help="Silence progress bars and notes (as `ptychopinn --quiet`)."),
    click.Option(["--debug"], is_flag=True, expose_value=False, callback=_flag_after_the_command,
                 help="Show full tracebacks on errors (as `ptychopinn --debug`)."),
)


class LazyGroup(click.Group):
    """A click group whose subcommands are imported when first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        present = {parameter.name for parameter in command.params}
        command.params.extend(flag for flag in _GLOBAL_FLAGS if flag.name not in present)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ptychopinn")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--quiet", "-q", is_flag=True, help="Silence progress bars and notes.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """PtychoPINN: physics-informed neural-network ptychography.

    \b
    Examples:
      ptychopinn simulate --out scan.npz --n-positions 500
      ptychopinn inspect scan.npz
    """
    ctx.obj = CliState(debug=debug, quiet=quiet)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; errors become one line on stderr and a non-zero exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    # TensorFlow's C++ start-up chatter (INFO/WARNING) on stderr would bury our one-line
    # errors; its own errors still show. A user's explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # OpenMP threads (torch on CPU) spin while they wait for each other; on a CPU shared
    # with other work they wait for descheduled siblings, and training ran 2-4x slower
    # (docs/benchmarks.md). Sleeping instead costs microseconds per parallel region.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        result = cli.main(args=args, prog_name="ptychopinn", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except Exception as error:  # noqa: BLE001 - the CLI boundary: one line, or the trace
        if debug:
            raise
        click.echo(f"error: {_one_line(error)}", err=True)
        return 1
    # --help and --version end the run through click's Exit, returned as its code
    return result if isinstance(result, int) else 0


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if not isinstance(error, (ValueError, TypeError, ImportError, OSError, KeyError)):
        text = f"{type(error).__name__}: {text} (internal error; rerun with --debug and report it)"
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
