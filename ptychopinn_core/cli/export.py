"""``ptychopinn export``: a trained model in another file format (ONNX)."""

from __future__ import annotations

from pathlib import Path

import click

from ptychopinn_core.cli.options import is_quiet

__all__ = ["export_command"]


@click.command("export")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Model file to export (a bundle written by `ptychopinn train`).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write; its suffix chooses the format (model.onnx: ONNX).")
@click.option("--format", "format_name", help="Format to write whatever the suffix (`onnx`, `bundle`).")
def export_command(model_path: Path, out_path: Path, format_name: str | None) -> None:
    """Write a trained model in another format, e.g. ONNX for ONNX Runtime.

    The ONNX file holds the network and the physics of inference (overlap constraint,
    predicted diffraction) built from the bundle's canonical description, and the whole
    bundle as metadata with its digest: `ptychopinn infer --model model.onnx --backend
    onnx` runs it without TensorFlow or PyTorch, any backend can read it back, and a file
    changed after the export is refused. Formats come from installed distributions
    (ONNX: pip install "ptychopinn-core[onnx]").

    \b
    Examples:
      ptychopinn export --model model.zip --out model.onnx
      ptychopinn infer --model model.onnx --data scan.npz --out recon.npz --backend onnx
    """
    from ptychopinn_core.model.bundle import bundle_digest
    from ptychopinn_core.model.formats import BUNDLE_FORMAT_NAME, format_for_path, read_model, write_model

    name = format_name or format_for_path(out_path)
    if format_name is None and name == BUNDLE_FORMAT_NAME and out_path.suffix.lower() not in (".zip", ".ptychopinn"):
        raise click.UsageError(
            f"--out {out_path}: the suffix names no model format; use model.onnx, model.zip or --format"
        )
    bundle = read_model(model_path)
    written = write_model(out_path, bundle, name)
    if not is_quiet():
        size = written.stat().st_size / 2**20
        click.echo(f"wrote {written} ({name}, {size:.1f} MiB, model digest {bundle_digest(bundle)[:12]})")
