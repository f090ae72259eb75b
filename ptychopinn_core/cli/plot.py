"""``ptychopinn plot``: a quick look at a reconstruction, optionally against the truth."""

from __future__ import annotations

from pathlib import Path

import click

from ptychopinn_core.cli.options import is_quiet

__all__ = ["plot_command"]

_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("plot")
@click.argument("recon_path", metavar="RECON", type=_EXISTING_FILE)
@click.option("--truth", "truth_path", type=_EXISTING_FILE,
              help="Scan NPZ with objectGuess: show truth, aligned reconstruction and error maps.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file to write.")
def plot_command(recon_path: Path, truth_path: Path | None, out_path: Path) -> None:
    """Draw the amplitude and phase of a reconstruction as a PNG.

    With --truth, the reconstruction is aligned to the truth in the scanned region
    (amplitude scale, phase offset and ramp removed, as `ptychopinn evaluate` does) and
    shown beside it with error maps.

    \b
    Examples:
      ptychopinn plot recon.npz --out recon.png
      ptychopinn plot recon.npz --truth test.npz --out compare.png
    """
    from ptychopinn_core.figures import comparison_figure, object_figure, save_png
    from ptychopinn_core.reconstruction import read_reconstruction

    recon = read_reconstruction(recon_path)
    if truth_path is None:
        figure = object_figure(recon.object, recon_path.name)
    else:
        from ptychopinn_core.data import read_scan
        from ptychopinn_core.evaluation.aligned_pair import align_to_truth
        from ptychopinn_core.evaluation.report import truth_object

        truth = read_scan(truth_path)
        pair = align_to_truth(recon, truth_object(truth, str(truth_path)), truth.positions_px)
        figure = comparison_figure({recon_path.stem: pair}, f"{recon_path.name} vs {truth_path.name}")
    save_png(figure, out_path)
    if not is_quiet():
        click.echo(f"wrote {out_path}")
