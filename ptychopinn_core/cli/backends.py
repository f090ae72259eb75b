"""``ptychopinn backends``: list the installed backends, or check that one can be selected.

Listing imports no framework (only the light plugin modules); ``--devices`` does, to ask
each framework which devices it sees.
"""

from __future__ import annotations

import json
import sys
import warnings

import click

from ptychopinn_core.backends.registry import (
    ENTRY_POINT_GROUP,
    KNOWN_BACKENDS,
    Backend,
    BackendEntry,
    BackendRegistry,
    BackendWarning,
    DuplicateBackendWarning,
)

__all__ = ["backends_command"]

#: Table width when stdout is not a terminal.
_PIPED_WIDTH = 120


def _discover(group: str, quiet: bool) -> BackendRegistry:
    """Discover quietly: broken backends are shown in the listing (or the error of
    ``--check``); a duplicate name, which the listing cannot show, is one stderr line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BackendWarning)
        registry = BackendRegistry.discover(group)
    for warning in caught:
        if issubclass(warning.category, DuplicateBackendWarning):
            if not quiet:
                click.echo(f"warning: {warning.message}", err=True)
        elif not issubclass(warning.category, BackendWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return registry


def _reason_notes(entries: list[BackendEntry]) -> tuple[dict[str, str], list[str]]:
    """Status cells with note markers, and the notes: reasons are long one-liners that a
    table column would fold beyond reading, so they are printed whole below the table."""
    cells, notes = {}, []
    for entry in entries:
        if entry.ok:
            cells[entry.name] = "ok"
        else:
            notes.append(f"[{len(notes) + 1}] {entry.name} is {entry.status}: {entry.reason}")
            cells[entry.name] = f"{entry.status} [{len(notes)}]"
    return cells, notes


def _capabilities_text(entry: BackendEntry) -> str:
    if entry.info is None:
        return ""
    capabilities = entry.info.capabilities
    return "\n".join(
        [
            ("modes: " + ", ".join(sorted(capabilities.modes))) if capabilities.training
            else "inference only (runs trained models)",
            "devices: " + ", ".join(sorted(capabilities.devices)),
            "strategies: " + ", ".join(sorted(capabilities.strategies)),
            "precisions: " + ", ".join(sorted(capabilities.precisions)),
            "pattern sizes: " + ", ".join(map(str, capabilities.pattern_sizes)),
            "gridsizes: " + ", ".join(map(str, capabilities.gridsizes)),
        ]
    )


def _framework_text(entry: BackendEntry) -> str:
    if entry.info is None:
        return ""
    return f"{entry.info.framework} {entry.framework_version or '(not installed)'}"


def _devices(registry: BackendRegistry, entry: BackendEntry) -> list[str] | str:
    """The backend's devices, or the one-line reason they cannot be listed."""
    if not entry.ok:
        return "unavailable"
    try:
        return registry.get(entry.name).devices()
    except Exception as error:  # noqa: BLE001 - one backend's failure is shown, not fatal
        return f"error: {' '.join(f'{type(error).__name__}: {error}'.split())}"


def _no_backend_lines() -> list[str]:
    width = max(len(command) for command in KNOWN_BACKENDS.values())
    return ["no PtychoPINN backend is installed; install one with:"] + [
        f"  {command.ljust(width)}  # {name}" for name, command in KNOWN_BACKENDS.items()
    ]


def _print_table(registry: BackendRegistry, entries: list[BackendEntry], devices: dict[str, list[str] | str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PtychoPINN backends (entry points in {registry.group})", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("distribution\nframework", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("capabilities", overflow="fold")
    if devices:
        table.add_column("devices", overflow="fold")
    status_cells, notes = _reason_notes(entries)
    for entry in entries:
        row = [
            entry.name,
            f"{entry.distribution} {entry.distribution_version}\n{_framework_text(entry)}".rstrip(),
            status_cells[entry.name],
            _capabilities_text(entry),
        ]
        if devices:
            value = devices[entry.name]
            row.append(value if isinstance(value, str) else "\n".join(value))
        style = None if entry.ok else ("red" if entry.status == "broken" else "yellow")
        table.add_row(*row, style=style)
    # Piped output (logs, CI) gets a fixed width instead of rich's 80-column default.
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else _PIPED_WIDTH)
    console.print(table)
    for note in notes:
        click.echo(note)
    listed = {entry.name for entry in entries}
    for name, command in KNOWN_BACKENDS.items():
        if name not in listed:
            click.echo(f"not installed: {name} ({command})")


def _check(registry: BackendRegistry, name: str, devices: bool, as_json: bool) -> None:
    backend: Backend = registry.get(name)  # ValueError / ImportError -> one line, exit 1
    found = backend.devices() if devices else None
    if as_json:
        payload = {"name": backend.name, "status": backend.entry.status, "entry": backend.entry.to_dict()}
        if found is not None:
            payload["devices"] = found
        click.echo(json.dumps(payload, indent=2))
        return
    entry = backend.entry
    click.echo(f"{backend.name}: ok ({entry.distribution} {entry.distribution_version}, {_framework_text(entry)})")
    if found is not None:
        click.echo(f"devices: {', '.join(found)}")


@click.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--devices", is_flag=True, help="Also list each backend's devices (imports the frameworks; slower).")
@click.option("--check", "check_name", metavar="NAME",
              help="Select backend NAME (case-insensitive; aliases tf, torch) and exit non-zero if it cannot be used.")
@click.option("--entry-point-group", "group", default=ENTRY_POINT_GROUP, show_default=True, hidden=True,
              help="Entry-point group to discover (for tests).")
@click.pass_context
def backends_command(ctx: click.Context, as_json: bool, devices: bool, check_name: str | None, group: str) -> None:
    """List the installed PtychoPINN backends and their status.

    A backend is a separately installed distribution (ptychopinn-tf, ptychopinn-torch)
    found through the entry-point group ptychodus.reconstructors. Status "broken" gives
    the import error; "incomplete" the pip command that completes the install. The
    exit code is 1 when no backend is usable.

    \b
    Examples:
      ptychopinn backends
      ptychopinn backends --json
      ptychopinn backends --devices
      ptychopinn backends --check torch
    """
    quiet = bool(getattr(ctx.obj, "quiet", False))
    registry = _discover(group, quiet)
    if check_name is not None:
        _check(registry, check_name, devices, as_json)
        return
    entries = registry.entries()
    found = {entry.name: _devices(registry, entry) for entry in entries} if devices else {}
    if as_json:
        payload = {
            "group": registry.group,
            "backends": [
                {**entry.to_dict(), **({"devices": found[entry.name]} if devices else {})} for entry in entries
            ],
            "usable": registry.names(),
            "install": dict(KNOWN_BACKENDS),
        }
        click.echo(json.dumps(payload, indent=2))
    elif entries:
        _print_table(registry, entries, found)
    if not entries:
        if not as_json:
            click.echo("\n".join(_no_backend_lines()), err=True)
        ctx.exit(1)
    if not registry.names():
        if not as_json:
            click.echo("no usable PtychoPINN backend: see the notes below the table", err=True)
        ctx.exit(1)
