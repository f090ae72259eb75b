"""``ptychopinn config``: print the resolved configuration as TOML."""

from __future__ import annotations

from pathlib import Path

import click

from ptychopinn_core.cli.options import config_options, resolve_config
from ptychopinn_core.config import to_toml

__all__ = ["config_command"]


@click.command("config")
@config_options
def config_command(config_path: Path | None, assignments: tuple[str, ...]) -> None:
    """Print the configuration that a command would use, as TOML.

    Start a configuration file from the defaults, or check what a file plus
    overrides resolve to. Unknown keys and invalid values are errors naming the key.

    \b
    Examples:
      ptychopinn config > my-run.toml
      ptychopinn config --config my-run.toml --set training.epochs=5
    """
    click.echo(to_toml(resolve_config(config_path, assignments)), nl=False)
