"""``ptychopinn infer``: reconstruct a scan with a trained bundle."""

from __future__ import annotations

from pathlib import Path

import click

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.cli.options import is_quiet
from ptychopinn_core.cli.progress import progress_display
from ptychopinn_core.data import read_scan
from ptychopinn_core.model.bundle import read_bundle
from ptychopinn_core.reconstruction import write_reconstruction

__all__ = ["infer_command"]


@click.command("infer")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model bundle written by `ptychopinn train`.")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Scan to reconstruct (canonical NPZ).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Reconstruction NPZ to write (object + frame + provenance).")
@click.option("--backend", "backend_name",
              help="Backend to run with (default: the one that trained the model).")
@click.option("--chunk-size", type=click.IntRange(min=1), help="Patterns per prediction chunk (bounds memory).")
@click.option("--measurement", type=click.Choice(["auto", "amplitude", "counts"]),
              help="Domain of float diffraction data whose file does not declare it.")
def infer_command(
    model_path: Path,
    data_path: Path,
    out_path: Path,
    backend_name: str | None,
    chunk_size: int | None,
    measurement: str | None,
) -> None:
    """Reconstruct a scan: predict every position in chunks and stitch the object.

    The object is written on the scan's objectGuess grid when it has one (same
    shape), else on the smallest frame around the positions; the frame and the
    provenance are in the file's meta. A bundle trained by one backend runs in any
    other (`--backend`).

    \b
    Examples:
      ptychopinn infer --model model.zip --data scan.npz --out recon.npz
      ptychopinn infer --model model.zip --data scan.npz --out recon.npz --backend tf
      ptychopinn evaluate --recon recon.npz --truth scan.npz
    """
    from ptychopinn_core import workflow

    bundle = read_bundle(model_path)
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
    with progress_display(f"reconstructing ({backend.name})", quiet=quiet) as show:
        recon = workflow.reconstruct(bundle, scan, backend, chunk_size=chunk_size, progress=show)
    write_reconstruction(out_path, recon)
    if not quiet:
        height, width = recon.object.shape
        click.echo(f"wrote {out_path} ({width} x {height} px object, {scan.n_positions} positions, {backend.name})")
