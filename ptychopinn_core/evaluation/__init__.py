"""Reconstruction quality, against a ground truth or against another reconstruction.

Modules, each importing only those above it:

- :mod:`.region`: the scanned region, a hole-free rectangle of the canvas;
- :mod:`.metrics`: MAE, PSNR, SSIM and FRC of one real image against another;
- :mod:`.alignment`: amplitude scale, phase plane and shift, estimated and removed;
- :mod:`.aligned_pair`: a reconstruction and its truth (or reference) on one grid,
  in one region, aligned;
- :mod:`.report`: :func:`evaluate` and :func:`evaluate_against_reference`, the
  metrics of an aligned pair as one JSON-ready report.

This package re-exports their public names for users
(``from ptychopinn_core.evaluation import evaluate``, docs/python-api.md); code inside
the repository imports from the module that defines a name.
"""

from ptychopinn_core.evaluation.aligned_pair import AlignedPair, align_to_reference, align_to_truth
from ptychopinn_core.evaluation.alignment import (
    align_phase,
    fit_phase_plane,
    register_shift,
    scale_amplitude,
)
from ptychopinn_core.evaluation.metrics import (
    FRC_THRESHOLD,
    SSIM_WINDOW_PX,
    fourier_ring_correlation,
    frc_cutoff,
    image_metrics,
    metrics_to_json,
)
from ptychopinn_core.evaluation.region import covered_rectangle, scanned_region, window_coverage
from ptychopinn_core.evaluation.report import evaluate, evaluate_against_reference, truth_object
from ptychopinn_core.reconstruction import META_CROP_SIZE_KEY  # where it lived before

__all__ = [
    "AlignedPair",
    "FRC_THRESHOLD",
    "META_CROP_SIZE_KEY",
    "SSIM_WINDOW_PX",
    "align_phase",
    "align_to_reference",
    "align_to_truth",
    "covered_rectangle",
    "evaluate",
    "evaluate_against_reference",
    "fit_phase_plane",
    "fourier_ring_correlation",
    "frc_cutoff",
    "image_metrics",
    "metrics_to_json",
    "register_shift",
    "scale_amplitude",
    "scanned_region",
    "truth_object",
    "window_coverage",
]
