"""A JSON-ready summary of a scan: sizes, positions, dose, probe, and what looks wrong."""

from __future__ import annotations

from typing import Any

import numpy as np

from ptychopinn_core.data import keys
from ptychopinn_core.data.scan import ScanData

__all__ = ["summarize_scan", "LOW_DOSE_COUNTS"]

#: Mean total counts per pattern below which the summary warns of a very low dose
#: (a few photons per pixel region; reconstructions from fewer are mostly noise).
LOW_DOSE_COUNTS = 100.0

# Patterns summed per step when computing counts, to bound the float64 scratch memory.
_PATTERNS_PER_CHUNK = 1024


def summarize_scan(scan: ScanData) -> dict[str, Any]:
    """Summarise a scan for ``ptychopinn inspect`` (plain Python types, JSON-ready).

    Parameters
    ----------
    scan : ScanData
        A valid scan.

    Returns
    -------
    dict
        ``n_positions`` (M), ``pattern_size`` (N), ``diffraction`` (dtype, shape,
        maximum amplitude), ``positions`` (x and y ranges in object pixels, mean and
        minimum nearest-neighbour step in pixels, via a KD-tree), ``dose`` (counts per
        pattern ``c_m = sum_hw X_m^2`` — mean, min, max, total — meaningful when the
        amplitudes are ``sqrt(photon counts)``), ``probe`` (shape, power
        ``sum |P|^2``, maximum amplitude), ``object`` and ``patches`` (presence and
        shape), ``scan_index`` (presence, number of distinct scans), ``meta`` and
        ``warnings`` (list of one-line strings).
    """
    n_positions, pattern_size = scan.n_positions, scan.pattern_size
    warnings: list[str] = []

    counts = _counts_per_pattern(scan.diffraction)
    mean_counts = float(counts.mean())
    empty_patterns = int(np.count_nonzero(counts == 0))
    if empty_patterns:
        warnings.append(f"{empty_patterns} of {n_positions} patterns are all zero")
    if mean_counts < LOW_DOSE_COUNTS:
        warnings.append(
            f"very low dose: {mean_counts:.3g} counts per pattern on average "
            f"(< {LOW_DOSE_COUNTS:g}; assumes amplitudes are sqrt(photon counts))"
        )

    positions = _position_summary(scan, warnings)

    probe_power = float(np.sum(np.abs(scan.probe.astype(np.complex128)) ** 2))
    if probe_power == 0:
        warnings.append("the probe is zero everywhere")

    obj = scan.object
    if obj is not None:
        _object_frame_warnings(scan, warnings)

    return {
        "n_positions": n_positions,
        "pattern_size": pattern_size,
        "diffraction": {
            "key": keys.DIFFRACTION,
            "dtype": str(scan.diffraction.dtype),
            "shape": list(scan.diffraction.shape),
            "max_amplitude": float(scan.diffraction.max()),
        },
        "positions": positions,
        "dose": {
            "mean_counts_per_pattern": mean_counts,
            "min_counts_per_pattern": float(counts.min()),
            "max_counts_per_pattern": float(counts.max()),
            "total_counts": float(counts.sum()),
            "nphotons_declared": scan.meta.get(keys.META_NPHOTONS),
        },
        "probe": {
            "key": keys.PROBE,
            "shape": list(scan.probe.shape),
            "power": probe_power,
            "max_amplitude": float(np.abs(scan.probe).max()),
        },
        "object": {
            "key": keys.OBJECT,
            "present": obj is not None,
            "shape": None if obj is None else list(obj.shape),
        },
        "patches": {
            "key": keys.PATCHES,
            "present": scan.patches is not None,
            "shape": None if scan.patches is None else list(scan.patches.shape),
        },
        "scan_index": {
            "key": keys.SCAN_INDEX,
            "present": scan.scan_index is not None,
            "n_scans": None if scan.scan_index is None else int(np.unique(scan.scan_index).size),
        },
        "meta": dict(scan.meta),
        "warnings": warnings,
    }


def _counts_per_pattern(diffraction: np.ndarray) -> np.ndarray:
    """``sum_hw X^2`` per pattern in float64, a chunk of patterns at a time."""
    counts = np.empty(diffraction.shape[0], dtype=np.float64)
    for start in range(0, diffraction.shape[0], _PATTERNS_PER_CHUNK):
        chunk = diffraction[start : start + _PATTERNS_PER_CHUNK].astype(np.float64)
        counts[start : start + _PATTERNS_PER_CHUNK] = np.einsum("mhw,mhw->m", chunk, chunk)
    return counts


def _position_summary(scan: ScanData, warnings: list[str]) -> dict[str, Any]:
    x, y = scan.xcoords, scan.ycoords
    summary: dict[str, Any] = {
        "x_range_px": [float(x.min()), float(x.max())],
        "y_range_px": [float(y.min()), float(y.max())],
        "mean_step_px": None,
        "min_step_px": None,
    }
    if scan.n_positions < 2:
        return summary
    from scipy.spatial import cKDTree  # only inspect needs scipy: keep `import data` light

    distances, _ = cKDTree(scan.positions_px).query(scan.positions_px, k=2)
    nearest = distances[:, 1]
    summary["mean_step_px"] = float(nearest.mean())
    summary["min_step_px"] = float(nearest.min())
    duplicates = int(np.count_nonzero(nearest == 0))
    if duplicates:
        warnings.append(f"{duplicates} positions coincide with another position")
    if summary["mean_step_px"] >= scan.pattern_size:
        warnings.append(
            f"mean step to the nearest neighbour {summary['mean_step_px']:.3g} px is at "
            f"least the pattern size N = {scan.pattern_size}: neighbouring views do not overlap"
        )
    return summary


def _object_frame_warnings(scan: ScanData, warnings: list[str]) -> None:
    """Warn about positions off the object frame, or windows that reach past its edge.

    The window seen at ``(x, y)`` covers columns ``x - N//2 .. x - N//2 + N - 1`` (plus
    one more for the bilinear neighbour of a fractional position), and rows alike.
    """
    height, width = scan.object.shape
    n = scan.pattern_size
    x, y = scan.xcoords, scan.ycoords
    centre_outside = (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)
    if centre_outside.any():
        warnings.append(
            f"{int(centre_outside.sum())} of {scan.n_positions} positions lie outside the "
            f"objectGuess frame ({height} x {width} px)"
        )
    first_x, first_y = x - n // 2, y - n // 2
    last_x, last_y = np.ceil(first_x + n - 1), np.ceil(first_y + n - 1)
    window_outside = (first_x < 0) | (last_x > width - 1) | (first_y < 0) | (last_y > height - 1)
    window_outside &= ~centre_outside
    if window_outside.any():
        warnings.append(
            f"{int(window_outside.sum())} of {scan.n_positions} probe windows ({n} x {n}) "
            f"extend past the objectGuess edge (zero-filled there)"
        )
