"""``ptychopinn inspect``: validate an NPZ scan file and summarise it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ptychopinn_core.data.keys import MEASUREMENT_CHOICES

__all__ = ["inspect_command"]


@click.command(
    "inspect",
    short_help="Validate and summarise an NPZ scan file.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option(
    "--measurement",
    type=click.Choice(MEASUREMENT_CHOICES),
    default="auto",
    show_default=True,
    help="What the diffraction data hold: 'counts' applies sqrt, 'amplitude' uses them as "
    "is, 'auto' follows the file's meta or the dtype (integers are counts) and refuses "
    "ambiguous float data.",
)
def inspect_command(file: Path, as_json: bool, measurement: str) -> None:
    """Validate FILE against the data contract and print a summary.

    The summary gives the number of positions M, the pattern size N, the
    position ranges and the mean step to the nearest neighbour, the dose (mean
    counts per pattern), the probe power, which optional arrays are present,
    the metadata and warnings (positions off the object, very low dose, ...).
    Legacy conversions (diff3d, (N, N, M) layout, integer counts) are noted on
    stderr. A malformed file ends with one error line naming the file, the key
    and the problem, and exit code 1.

    \b
    Examples:
      ptychopinn inspect scan.npz
      ptychopinn inspect scan.npz --json > summary.json
      ptychopinn inspect legacy_counts.npz --measurement counts
    """
    from ptychopinn_core.data import read_scan, summarize_scan

    scan = read_scan(file, measurement=measurement)
    summary = {"file": str(file), **summarize_scan(scan)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    # The path on a line of its own, never wrapped: a table title would fold a long one.
    console.print(str(summary["file"]), soft_wrap=True, markup=False)
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")

    diffraction = summary["diffraction"]
    positions = summary["positions"]
    dose = summary["dose"]
    probe = summary["probe"]
    table.add_row("positions M", str(summary["n_positions"]))
    table.add_row("pattern size N", str(summary["pattern_size"]))
    table.add_row("diffraction", f"{diffraction['dtype']} {_shape(diffraction['shape'])} amplitude, "
                  f"max {diffraction['max_amplitude']:.4g}")
    table.add_row("x range (px)", _range(positions["x_range_px"]))
    table.add_row("y range (px)", _range(positions["y_range_px"]))
    table.add_row("mean step to nearest (px)", _number(positions["mean_step_px"]))
    table.add_row("dose (mean counts/pattern)",
                  f"{dose['mean_counts_per_pattern']:.4g} (min {dose['min_counts_per_pattern']:.4g}, "
                  f"max {dose['max_counts_per_pattern']:.4g})")
    if dose["nphotons_declared"] is not None:
        table.add_row("nphotons (meta)", _number(dose["nphotons_declared"]))
    table.add_row("probe", f"{_shape(probe['shape'])}, power {probe['power']:.4g}, "
                  f"max |P| {probe['max_amplitude']:.4g}")
    for name in ("object", "patches"):
        part = summary[name]
        table.add_row(f"{part['key']}", _shape(part["shape"]) if part["present"] else "absent")
    scan_index = summary["scan_index"]
    table.add_row("scan_index", f"{scan_index['n_scans']} scan(s)" if scan_index["present"]
                  else "absent")
    console.print(table)
    meta = summary["meta"]
    if meta:
        console.print("meta:", json.dumps(meta, ensure_ascii=False), soft_wrap=True, markup=False)
    if summary["warnings"]:
        for warning in summary["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {_escape(warning)}", soft_wrap=True)
    else:
        console.print("[green]valid[/green]: no warnings")


def _shape(shape: list[int] | None) -> str:
    return "absent" if shape is None else " x ".join(map(str, shape))


def _range(bounds: list[float]) -> str:
    return f"{bounds[0]:.4g} .. {bounds[1]:.4g}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
