"""``ptychopinn parity``: every installed backend side by side, level by level, in numbers."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import click

from ptychopinn_core.cli.options import config_options, is_quiet, resolve_config
from ptychopinn_core.config import ModelConfig

__all__ = ["parity_command"]

#: The values of ``model.architecture``, read off the config field: a new one is offered
#: (and compared by default) without editing this command.
_ARCHITECTURES = typing.get_args(ModelConfig.model_fields["architecture"].annotation)
#: The values of ``model.group_network``, likewise.
_GROUP_NETWORKS = typing.get_args(ModelConfig.model_fields["group_network"].annotation)


@click.command("parity")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Scan to compare on (canonical NPZ); default: a simulated 'lines' scan.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full report (every check, curves, timings) as JSON.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write difference maps and the loss curves as PNGs into this folder.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(min=1),
              help="Training steps compared from the same initial weights.")
@click.option("--backends", "backend_names", metavar="A,B",
              help="Backends to compare, the first as reference (default: every installed one).")
@click.option("--gridsize", "gridsizes", multiple=True, type=click.IntRange(min=1),
              help="Gridsize to compare (repeatable; default 1 and 2).")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["pinn", "supervised"]),
              help="Training mode to compare (repeatable; default both).")
@click.option("--architecture", "architectures", multiple=True, type=click.Choice(_ARCHITECTURES),
              help="model.architecture to compare (repeatable; default every one).")
@click.option("--group-network", "group_networks", multiple=True, type=click.Choice(_GROUP_NETWORKS),
              help="model.group_network to compare at gridsize > 1 (repeatable; default every one).")
@click.option("--float64-training", is_flag=True,
              help="Also compare the training steps in float64 (slow on CPUs).")
@click.option("--bf16-training", is_flag=True,
              help="Also compare the training steps in bf16-mixed precision (the network in bfloat16).")
@click.option("--no-reconstruction", is_flag=True, help="Skip the bundle -> reconstruction level.")
@click.option("--refine-iterations", default=10, show_default=True, type=click.IntRange(min=0),
              help="Refinement iterations compared from the same flat start (0 skips the level).")
@config_options
def parity_command(data_path, json_path, plots_dir, steps, backend_names, gridsizes, modes, architectures,
                   group_networks, float64_training, bf16_training, no_reconstruction, refine_iterations, config_path, assignments) -> None:
    """Run the installed backends side by side from the same weights and data and
    print how far apart they are at every level: physics steps against numpy, forward
    pass, loss and gradients (float32 and float64), refinement from the same start, the
    first training steps, and a bundle trained by one backend reconstructed by every
    other one; for every network architecture and group network unless
    --architecture or --group-network narrows them.
    Exits with status
    1 when a check exceeds its tolerance (docs/parity.md explains each one).

    \b
    Examples:
      ptychopinn parity
      ptychopinn parity --data scan.npz --json parity.json --plots parity-plots
      ptychopinn parity --gridsize 1 --mode pinn --steps 5 --set model.n_filters_scale=1
      ptychopinn parity --architecture unet --gridsize 2 --steps 5 --no-reconstruction
    """
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.data import read_scan
    from ptychopinn_core.parity import parity_cases, run_parity

    config = resolve_config(config_path, assignments)
    registry = BackendRegistry.discover()
    names = _backend_names(registry, backend_names)
    backends = {name: registry.get(name) for name in names}
    if data_path is not None:
        scan = read_scan(data_path, measurement=config.data.measurement)
    else:
        from ptychopinn_core.simulation.scan import make_demo_scan

        scan = make_demo_scan(steps * config.training.batch_size + 16, size=config.model.pattern_size,
                              seed=config.training.seed + 1)
    cases = parity_cases(gridsizes or (1, 2), modes or ("pinn", "supervised"), architectures or _ARCHITECTURES,
                         group_networks or _GROUP_NETWORKS)
    quiet = is_quiet()
    say = (lambda text: None) if quiet else (lambda text: click.echo(f"parity: {text}", err=True))
    report = run_parity(
        scan, backends, config, steps=steps, cases=cases,
        training_precisions=("32", *(("64",) if float64_training else ()), *(("bf16-mixed",) if bf16_training else ())),
        reconstruction=not no_reconstruction, refine_iterations=refine_iterations, progress=say,
    )
    _print_table(report)
    if json_path is not None:
        from ptychopinn_core.atomic import atomic_write

        with atomic_write(json_path, "w") as handle:
            handle.write(json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n")
        click.echo(f"report: {json_path}")
    if plots_dir is not None:
        from ptychopinn_core.figures import parity_figures

        for path in parity_figures(report, plots_dir):
            click.echo(f"figure: {path}")
    if not report.passed:
        failures = report.failures
        raise click.ClickException(
            f"{len(failures)} parity check(s) over tolerance, e.g. {failures[0].level} {failures[0].quantity} "
            f"({failures[0].case}, {failures[0].compared}): {failures[0].error:.2e} > {failures[0].tolerance:.0e}"
        )


def _backend_names(registry, requested: str | None) -> list[str]:
    if requested:
        return [name.strip() for name in requested.split(",") if name.strip()]
    names = [entry.name for entry in registry.entries() if entry.ok]
    if not names:
        raise click.ClickException("no backend installed: see `ptychopinn backends` for the pip commands")
    return names


def _print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Parity: {', '.join(report.backends)}", title_justify="left")
    for column in ("level", "quantity", "case", "compared", "error", "tolerance", ""):
        table.add_column(column, justify="right" if column in ("error", "tolerance") else "left")
    marks = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[dim]info[/dim]"}
    for check in report.checks:
        tolerance = "-" if check.tolerance is None else f"{check.tolerance:.0e}"
        table.add_row(check.level, check.quantity, check.case, check.compared, f"{check.error:.2e}",
                      tolerance, marks[check.passed])
    console = Console(width=160)
    console.print(table)
    timings = Table(title="Seconds per backend", title_justify="left")
    levels = sorted({level for per_backend in report.timings.values() for level in per_backend})
    timings.add_column("backend")
    for level in levels:
        timings.add_column(level, justify="right")
    for name, per_backend in report.timings.items():
        timings.add_row(name, *(f"{per_backend.get(level, 0.0):.2f}" for level in levels))
    console.print(timings)
    for note in report.notes:
        console.print(f"note: {note}")
    verdict = "every held check passed" if report.passed else f"{len(report.failures)} check(s) FAILED"
    console.print(f"parity: {verdict}")
