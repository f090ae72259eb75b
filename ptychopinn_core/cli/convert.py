"""``ptychopinn convert``: import a foreign scan (tike, Ptychodus, legacy) as a canonical NPZ."""

from __future__ import annotations

from pathlib import Path

import click

from ptychopinn_core.cli.options import is_quiet

__all__ = ["convert_command"]

# Kept here (not imported from the importers) so that `--help` stays light.
_FORMATS = ("tike", "ptychodus", "ptychopinn-legacy")
_FFT_ORDERS = ("corner", "centered")
_MEASUREMENTS = ("counts", "amplitude")


@click.command("convert")
@click.argument("in_path", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Canonical NPZ to write (data contract v1).",
)
@click.option(
    "--from", "source_format", type=click.Choice(_FORMATS), default=None,
    help="Format of IN [default: detected from the content when unambiguous].",
)
@click.option(
    "--diffraction", "diffraction_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Ptychodus only: the diffraction HDF5 file [default: diffraction.h5 beside the product].",
)
@click.option(
    "--fft-order", type=click.Choice(_FFT_ORDERS), default=None,
    help="Where the source patterns hold zero frequency: 'corner' (numpy FFT order, pixel "
    "(0, 0): fftshift is applied) or 'centered' (pixel (N//2, N//2)) [default: what the "
    "format states (Ptychodus, PtychoPINN: centered), else detected from the data].",
)
@click.option(
    "--measurement", type=click.Choice(_MEASUREMENTS), default=None,
    help="What the source patterns hold: 'counts' (sqrt is applied) or 'amplitude' [default: "
    "what the format states: tike and Ptychodus hold counts; PtychoPINN files follow the "
    "rules of `ptychopinn inspect`].",
)
@click.option(
    "--margin-px", type=click.IntRange(min=0), default=None,
    help="Pixels added around the smallest object frame holding every probe window "
    "(tike, and PtychoPINN files without objectGuess) [default: 8].",
)
@click.option("--compress", is_flag=True, help="Write a compressed NPZ (smaller, slower).")
def convert_command(
    in_path: Path,
    out_path: Path,
    source_format: str | None,
    diffraction_path: Path | None,
    fft_order: str | None,
    measurement: str | None,
    margin_px: int | None,
    compress: bool,
) -> None:
    """Convert the scan IN into a canonical NPZ, recording every convention in meta.

    IN is a tike NPZ (data, scan, probe; plain or .npz.bz2), a Ptychodus product
    HDF5 file (its diffraction file beside it as diffraction.h5, or named with
    --diffraction), a folder holding product.h5 and diffraction.h5 (Ptychodus'
    batch layout), or a PtychoPINN NPZ (canonical or legacy). Patterns become
    centred float32 amplitudes, positions probe-centre object pixels inside an
    object frame (objectGuess: the Ptychodus product's object, or ones sized to
    hold every probe window), the probe its first mode. meta["import"] records the
    format, the FFT order and who decided it, the measurement, the position shift,
    the probe mode and the frame. When the data cannot tell a convention, the
    error names the flag to set.

    \b
    Examples:
      ptychopinn convert data/siemens-star/siemens-star-small.npz.bz2 --out star.npz
      ptychopinn convert scan.npz --from tike --fft-order corner --out scan-canonical.npz
      ptychopinn convert run/product.h5 --diffraction run/diffraction.h5 --out scan.npz
      ptychopinn convert old_counts.npz --from ptychopinn-legacy --measurement counts --out new.npz
    """
    from ptychopinn_core.data import write_scan
    from ptychopinn_core.data.importers import import_scan

    scan = import_scan(
        in_path,
        source_format=source_format,
        diffraction_path=diffraction_path,
        fft_order=fft_order,
        measurement=measurement,
        margin_px=margin_px,
    )
    write_scan(out_path, scan, compress=compress)
    if not is_quiet():
        record = scan.meta["import"]
        height, width = scan.object.shape
        shift = record["position_shift_px"]
        click.echo(
            f"wrote {out_path}: {scan.n_positions} patterns of {scan.pattern_size}x"
            f"{scan.pattern_size} from {record['format']} ({record['measurement']}, fft order "
            f"{record['fft_order']} [{record['fft_order_from']}]"
            f"{', fftshift applied' if record['fftshift_applied'] else ''}), object frame "
            f"{height}x{width} ({record['object_frame']['kind']}), positions shifted by "
            f"({shift[0]:g}, {shift[1]:g}) px, probe {record['probe']}"
        )
