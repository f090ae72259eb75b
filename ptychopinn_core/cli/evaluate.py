"""``ptychopinn evaluate``: score a reconstruction against a ground truth, or compare two."""

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
    """Print the metrics of :func:`ptychopinn_core.evaluation.report.evaluate` as a table."""
    from rich.console import Console
    from rich.table import Table

    region = metrics["region"]
    alignment = metrics["alignment"]
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("amplitude", justify="right")
    table.add_column("phase", justify="right")
    rows = (("ssim", "SSIM"), ("psnr", "PSNR (dB)"), ("mae", "MAE"), ("frc50", "FRC50 (x Nyquist)"))
    for key, label in rows:
        table.add_row(label, _format(metrics["amplitude"][key]), _format(metrics["phase"][key]))
    console = Console(highlight=False)
    console.print(table)
    window = "" if region.get("window_px") is None else f" (window {region['window_px']} px)"
    shift = ""
    if "shift_x_px" in alignment:
        shift = f"registered by ({alignment['shift_x_px']:.3g}, {alignment['shift_y_px']:.3g}) px; "
    console.print(
        f"region: rows {region['rows'][0]}:{region['rows'][1]}, "
        f"cols {region['cols'][0]}:{region['cols'][1]}{window}; {shift}"
        f"amplitude scaled x{alignment['amplitude_scale']:.4g}; "
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
    "--truth", "truth_path", type=_EXISTING_FILE, default=None,
    help="Scan NPZ holding the ground-truth object (objectGuess) and the positions.",
)
@click.option(
    "--reference", "reference_path", type=_EXISTING_FILE, default=None,
    help="Another reconstruction NPZ of the same scan (no ground truth): register the two "
    "and report how far they agree (FRC50). Exclusive with --truth.",
)
@click.option(
    "--scan", "scan_path", type=_EXISTING_FILE, default=None,
    help="With --reference: the scan NPZ on the reference's object frame; its positions "
    "restrict the comparison to the scanned region.",
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
    recon_path: Path,
    truth_path: Path | None,
    reference_path: Path | None,
    scan_path: Path | None,
    json_path: Path | None,
    window_px: int | None,
) -> None:
    """Score a reconstruction: against the ground truth, or against another reconstruction.

    With --truth: crops to the scanned region, scales the amplitude by the mean
    ratio and removes the phase offset and linear ramp, then scores amplitude and
    phase (SSIM, PSNR, MAE, FRC50).

    With --reference (real data, no ground truth): takes the region both cover,
    registers the reconstruction onto the reference to a twentieth of a pixel,
    scales and de-ramps it, and reports the same metrics with the reference in
    place of the truth; FRC50 is the resolution at which the two agree.

    \b
    Examples:
      ptychopinn evaluate --recon recon.npz --truth scan.npz
      ptychopinn evaluate --recon recon.npz --truth scan.npz --json metrics.json
      ptychopinn evaluate --recon pinn.npz --reference iterative.npz --scan star.npz
    """
    from ptychopinn_core.reconstruction import read_reconstruction

    if (truth_path is None) == (reference_path is None):
        raise click.UsageError("give exactly one of --truth FILE and --reference RECON")
    if scan_path is not None and reference_path is None:
        raise click.UsageError("--scan is only used with --reference (--truth holds the positions)")
    recon = read_reconstruction(recon_path)
    if truth_path is not None:
        metrics = _against_truth(recon, truth_path, window_px)
        files = {"recon": str(recon_path), "truth": str(truth_path)}
        title = f"{recon_path.name} vs {truth_path.name}"
    else:
        metrics = _against_reference(recon, reference_path, scan_path, window_px)
        files = {"recon": str(recon_path), "reference": str(reference_path)}
        if scan_path is not None:
            files["scan"] = str(scan_path)
        title = f"{recon_path.name} vs reference {reference_path.name}"
    metrics["files"] = files
    print_metrics(metrics, title)
    if json_path is not None:
        from ptychopinn_core.atomic import atomic_write
        from ptychopinn_core.evaluation.metrics import metrics_to_json

        text = json.dumps(metrics_to_json(metrics), indent=2, allow_nan=False)
        with atomic_write(json_path, "w") as handle:
            handle.write(text + "\n")
        if not is_quiet():
            click.echo(f"wrote {json_path}")


def _against_truth(recon: Any, truth_path: Path, window_px: int | None) -> dict[str, Any]:
    from ptychopinn_core.data import read_scan
    from ptychopinn_core.evaluation.report import evaluate, truth_object
    from ptychopinn_core.physics.stitching import default_crop_size

    scan = read_scan(truth_path)
    truth = truth_object(scan, str(truth_path))
    if window_px is None:
        window_px = recon.crop_size_px or default_crop_size(scan.pattern_size)
    return evaluate(recon, truth, scan.positions_px, window_px=window_px)


def _against_reference(
    recon: Any, reference_path: Path, scan_path: Path | None, window_px: int | None
) -> dict[str, Any]:
    from ptychopinn_core.data import read_scan
    from ptychopinn_core.evaluation.report import evaluate_against_reference
    from ptychopinn_core.physics.stitching import default_crop_size
    from ptychopinn_core.reconstruction import read_reconstruction

    reference = read_reconstruction(reference_path)
    positions = None
    if scan_path is not None:
        scan = read_scan(scan_path)
        positions = scan.positions_px
        if window_px is None and recon.crop_size_px is None:
            window_px = default_crop_size(scan.pattern_size)
    return evaluate_against_reference(recon, reference, positions_xy=positions, window_px=window_px)
