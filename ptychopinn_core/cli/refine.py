"""``ptychopinn refine``: fit any reconstruction's object (and probe) to a scan's patterns."""

from __future__ import annotations

from pathlib import Path

import click

from ptychopinn_core.backends import Backend, BackendRegistry
from ptychopinn_core.cli.options import config_options, is_quiet, resolve_config
from ptychopinn_core.cli.progress import progress_display
from ptychopinn_core.config import Config
from ptychopinn_core.data import ScanData, read_scan
from ptychopinn_core.reconstruction import Reconstruction, read_reconstruction, write_reconstruction

__all__ = ["refine_command", "refine_and_report"]

#: ``--recon`` value that starts from a flat object instead of a file.
FLAT = "flat"


@click.command("refine")
@click.option("--recon", "recon_source", required=True, metavar="FILE|flat",
              help="Reconstruction NPZ to start from (any code's, on the scan's frame), or 'flat'.")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Scan whose patterns the object is fitted to (canonical NPZ).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Reconstruction NPZ to write (refined object, probe in probeGuess).")
@click.option("--iterations", type=click.IntRange(min=0), help="refine.iterations: passes over all positions.")
@click.option("--refine-probe/--no-refine-probe", "refine_probe", default=None,
              help="refine.probe: refine the probe too (after refine.probe_delay iterations).")
@click.option("--backend", "backend_name",
              help="Backend to run with (default: the first installed one; every backend can refine).")
@click.option("--measurement", type=click.Choice(["auto", "amplitude", "counts"]),
              help="Domain of float diffraction data whose file does not declare it.")
@config_options
def refine_command(
    recon_source: str,
    data_path: Path,
    out_path: Path,
    iterations: int | None,
    refine_probe: bool | None,
    backend_name: str | None,
    measurement: str | None,
    config_path: Path | None,
    assignments: tuple[str, ...],
) -> None:
    """Refine a reconstruction: fit its object (and probe) to the scan by the forward model.

    The start is any reconstruction file on the scan's object frame (from `ptychopinn
    infer`, or another code's), or `flat` (a constant object: the iterative baseline).
    The probe starts from the file's probeGuess when it has one, else from the scan's.
    docs/physics.md §10 defines what is computed; `--set refine.KEY=VALUE` tunes it.

    \b
    Examples:
      ptychopinn refine --recon recon.npz --data scan.npz --out refined.npz
      ptychopinn refine --recon flat --data scan.npz --out flat.npz --iterations 20
      ptychopinn refine --recon recon.npz --data star.npz --out r.npz --refine-probe
    """
    config = resolve_config(
        config_path, assignments, {"refine.iterations": iterations, "refine.probe": refine_probe}
    )
    scan = read_scan(data_path, measurement=measurement or config.data.measurement)
    registry = BackendRegistry.discover()
    backend = registry.get(backend_name) if backend_name else _first_backend(registry)
    from ptychopinn_core.workflow import flat_reconstruction

    start = flat_reconstruction(scan, config) if recon_source == FLAT else read_reconstruction(recon_source)
    source = "a flat object" if recon_source == FLAT else recon_source
    refined = refine_and_report(start, scan, config, backend, source=source)
    write_reconstruction(out_path, refined)
    if not is_quiet():
        click.echo(f"wrote {out_path}")


def refine_and_report(
    start: Reconstruction, scan: ScanData, config: Config, backend: Backend, *, source: str
) -> Reconstruction:
    """``workflow.refine`` with a progress bar and a one-line summary (shared with ``infer``)."""
    from ptychopinn_core import workflow

    quiet = is_quiet()
    settings = config.refine
    try:
        workflow.refine_problem(start, scan, config)  # one clear error before any bar is drawn
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    with progress_display(f"refining ({backend.name})", total=settings.iterations, quiet=quiet) as show:
        refined = workflow.refine(start, scan, config, backend, progress=show)
    if not quiet and settings.iterations:
        info = refined.meta["refine"]
        probe = ", probe refined" if settings.probe else ""
        click.echo(
            f"refined {settings.iterations} iterations{probe} in {info['seconds']:.1f} s "
            f"({backend.name}): loss {info['first_loss']:.4g} -> {info['final_loss']:.4g}"
        )
    return refined


def _first_backend(registry: BackendRegistry) -> Backend:
    for entry in registry.entries():
        if entry.ok:
            return registry.get(entry.name)
    raise ImportError(
        'no backend is installed: pip install "ptychopinn-core[torch]" or "ptychopinn-core[tf]" '
        "(refinement needs one of them)"
    )
