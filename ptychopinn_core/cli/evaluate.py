"""``ptychopinn evaluate``: score a reconstruction against a scan's ground-truth object."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from ptychopinn_core.cli.options import is_quiet

__all__ = ["evaluate_command", "print_metrics"]


def _format(value: float, digits: int = 4) -> str:
    if math.isinf(value):
        return "inf (identical)"
    return f"{value:.{digits}g}"


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    """Print the metrics of :func:`ptychopinn_core.evaluation.evaluate` as a table."""
    from rich.console import Console
    from rich.table import Table

    region = metrics["region"]
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("amplitude", justify="right")
    table.add_column("phase", justify="right")
    rows = (("ssim", "SSIM"), ("psnr", "PSNR (dB)"), ("mae", "MAE"), ("frc50", "FRC50 (x Nyquist)"))
    for key, label in rows:
        table.add_row(label, _format(metrics["amplitude"][key]), _format(metrics["phase"][key]))
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"region: rows {region['rows'][0]}:{region['rows'][1]}, "
        f"cols {region['cols'][0]}:{region['cols'][1]} (window {region['window_px']} px); "
        f"amplitude scaled x{metrics['alignment']['amplitude_scale']:.4g}; "
        "phase offset and ramp removed",
        soft_wrap=True,
    )


_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("evaluate")
@click.option(
    "--recon", "recon_path", required=True, type=_EXISTING_FILE,
    help="Reconstruction NPZ written by 'ptychopinn infer' (object + frame).",
)
@click.option(
    "--truth", "truth_path", required=True, type=_EXISTING_FILE,
    help="Scan NPZ holding the ground-truth object (objectGuess) and the positions.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Also write the metrics (with FRC curves) as JSON to this file; PSNR of identical "
    "images is null.",
)
@click.option(
    "--window-px", type=click.IntRange(min=1), default=None,
    help="Side of the window around each position that defines the scanned region "
    "[default: the reconstruction's crop size, else 5N/16].",
)
def evaluate_command(
    recon_path: Path, truth_path: Path, json_path: Path | None, window_px: int | None
) -> None:
    """Compare a reconstruction with the ground truth: SSIM, PSNR, MAE, FRC50.

    Crops to the scanned region, scales the amplitude by the mean ratio and removes
    the phase offset and linear ramp, then scores amplitude and phase.

    \b
    Examples:
      ptychopinn evaluate --recon recon.npz --truth scan.npz
      ptychopinn evaluate --recon recon.npz --truth scan.npz --json metrics.json
    """
    from ptychopinn_core.atomic import atomic_write
    from ptychopinn_core.data import read_scan
    from ptychopinn_core.data.keys import OBJECT
    from ptychopinn_core.evaluation import META_CROP_SIZE_KEY, evaluate, metrics_to_json
    from ptychopinn_core.physics.stitching import default_crop_size
    from ptychopinn_core.reconstruction import read_reconstruction

    recon = read_reconstruction(recon_path)
    scan = read_scan(truth_path)
    if scan.object is None:
        raise ValueError(
            f"{truth_path}: key '{OBJECT}': missing; evaluate needs the ground-truth object "
            f"(a simulated scan from 'ptychopinn simulate' has it)"
        )
    if window_px is None:
        stored = recon.meta.get(META_CROP_SIZE_KEY)
        window_px = stored if isinstance(stored, int) else default_crop_size(scan.pattern_size)
    metrics = evaluate(recon, scan.object, scan.positions_px, window_px=window_px)
    metrics["files"] = {"recon": str(recon_path), "truth": str(truth_path)}
    print_metrics(metrics, f"{recon_path.name} vs {truth_path.name}")
    if json_path is not None:
        text = json.dumps(metrics_to_json(metrics), indent=2, allow_nan=False)
        with atomic_write(json_path, "w") as handle:
            handle.write(text + "\n")
        if not is_quiet():
            click.echo(f"wrote {json_path}")
