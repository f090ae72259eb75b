"""Options shared by the commands that take a configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ptychopinn_core.config import Config, parse_assignments

__all__ = ["config_options", "resolve_config", "is_quiet"]


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--config FILE.toml`` and repeatable ``--set section.key=value``."""
    command = click.option(
        "--set",
        "assignments",
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="Override one configuration value (repeatable), e.g. --set training.epochs=5.",
    )(command)
    command = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="TOML configuration file (see `ptychopinn config`).",
    )(command)
    return command


def resolve_config(
    config_path: Path | None,
    assignments: tuple[str, ...],
    explicit: dict[str, Any] | None = None,
) -> Config:
    """Defaults, then the TOML file, then ``--set`` values, then explicit flags.

    Explicit flags (``--epochs 5``) win over ``--set`` because they are the more
    specific way of saying the same thing; ``None`` flags were not given.
    """
    config = Config.from_toml(config_path) if config_path else Config()
    if assignments:
        config = config.with_overrides(parse_assignments(assignments))
    flags = {key: value for key, value in (explicit or {}).items() if value is not None}
    if flags:
        config = config.with_overrides(flags, source="command-line flags")
    return config


def is_quiet() -> bool:
    """Whether the top-level ``--quiet`` flag was given."""
    context = click.get_current_context(silent=True)
    state = context.find_root().obj if context else None
    return bool(getattr(state, "quiet", False))
