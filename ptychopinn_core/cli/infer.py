"""``ptychopinn infer``: reconstruct a scan with a trained bundle."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.cli.options import is_quiet
from ptychopinn_core.cli.progress import progress_display
from ptychopinn_core.cli.refine import refine_and_report
from ptychopinn_core.config import Config, ConfigError, parse_assignments
from ptychopinn_core.data import read_scan
from ptychopinn_core.model.formats import read_model
from ptychopinn_core.reconstruction import write_reconstruction

__all__ = ["infer_command"]


@click.command("infer")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model bundle written by `ptychopinn train`, or its export (`ptychopinn export`, e.g. model.onnx).")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Scan to reconstruct (canonical NPZ).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Reconstruction NPZ to write (object + frame + provenance).")
@click.option("--backend", "backend_name",
              help="Backend to run with (default: the one that trained the model).")
@click.option("--chunk-size", type=click.IntRange(min=1), help="Patterns per prediction chunk (bounds memory).")
@click.option("--measurement", type=click.Choice(["auto", "amplitude", "counts"]),
              help="Domain of float diffraction data whose file does not declare it.")
@click.option("--refine-iterations", type=click.IntRange(min=0),
              help="refine.iterations after the network (0: the network's object only; default 20).")
@click.option("--refine-probe/--no-refine-probe", "refine_probe", default=None,
              help="refine.probe: refine the probe too (real data, where the probe is a guess).")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one refine.* or inference.* setting (repeatable), e.g. --set refine.step_size=0.01 "
                   "or --set inference.phase_sync=false.")
def infer_command(
    model_path: Path,
    data_path: Path,
    out_path: Path,
    backend_name: str | None,
    chunk_size: int | None,
    measurement: str | None,
    refine_iterations: int | None,
    refine_probe: bool | None,
    assignments: tuple[str, ...],
) -> None:
    """Reconstruct a scan: predict every position in chunks, stitch, then refine.

    The network's stitched object is refined by the same physics (docs/physics.md §10:
    the object, and with --refine-probe the probe, fitted to the patterns) for
    `refine.iterations` passes; `--refine-iterations 0` keeps the network's object.
    The object is written on the scan's objectGuess grid when it has one (same
    shape), else on the smallest frame around the positions; the frame, the probe
    (probeGuess) and the provenance are in the file. A bundle trained by one backend
    runs in any other (`--backend`).

    \b
    Examples:
      ptychopinn infer --model model.zip --data scan.npz --out recon.npz
      ptychopinn infer --model model.zip --data scan.npz --out recon.npz --refine-iterations 0
      ptychopinn infer --model model.zip --data scan.npz --out recon.npz --set inference.phase_sync=false
      ptychopinn infer --model model.zip --data star.npz --out recon.npz --refine-probe
      ptychopinn infer --model model.onnx --data scan.npz --out recon.npz --backend onnx
      ptychopinn evaluate --recon recon.npz --truth scan.npz
    """
    from ptychopinn_core import workflow

    bundle = read_model(model_path)
    registry = BackendRegistry.discover()
    trained_by = str(bundle.manifest["backend"])
    if backend_name is None and trained_by not in registry.names():
        raise ImportError(
            f"{model_path}: trained by backend {trained_by!r}, which is not installed here; "
            f"choose one with --backend (installed: {', '.join(registry.names()) or 'none'})"
        )
    backend = registry.get(backend_name or trained_by)
    scan = read_scan(data_path, measurement=measurement or bundle.config.data.measurement)
    quiet = is_quiet()
    config = _run_config(bundle.config, assignments, refine_iterations, refine_probe)
    bundle = dataclasses.replace(bundle, config=config)
    with progress_display(f"reconstructing ({backend.name})", total=1, quiet=quiet) as show:
        recon = workflow.reconstruct(bundle, scan, backend, chunk_size=chunk_size, progress=show)
    recon = refine_and_report(recon, scan, config, backend, source=str(data_path))
    write_reconstruction(out_path, recon)
    if not quiet:
        height, width = recon.object.shape
        click.echo(f"wrote {out_path} ({width} x {height} px object, {scan.n_positions} positions, {backend.name})")


def _run_config(
    config: Config, assignments: tuple[str, ...], iterations: int | None, probe: bool | None
) -> Config:
    """The bundle's configuration, today's refinement defaults and the command line's.

    Only ``refine.*`` and ``inference.*`` (how a scan is stitched and finished) may
    change: everything else describes the trained model.
    """
    from ptychopinn_core.workflow import with_default_refine

    config = with_default_refine(config)
    overrides: dict[str, object] = dict(parse_assignments(assignments))
    fixed = sorted(key for key in overrides if not key.startswith(("refine.", "inference.")))
    if fixed:
        raise ConfigError(
            f"--set {fixed[0]}: infer changes refine.* and inference.* settings only; the model's other "
            "settings come from its bundle"
        )
    flags = {"refine.iterations": iterations, "refine.probe": probe}
    overrides.update({key: value for key, value in flags.items() if value is not None})
    return config.with_overrides(overrides, source="command line") if overrides else config
