"""Reconstruction quality as one report: against a ground truth, or another reconstruction.

:func:`evaluate` scores a reconstruction against the ground-truth object:

1-3. **Region, amplitude scale, phase plane**:
   :func:`~ptychopinn_core.evaluation.aligned_pair.align_to_truth` puts the
   reconstruction on the truth's grid in the scanned region and removes what a
   reconstruction cannot know.
4. **Metrics** (:mod:`~ptychopinn_core.evaluation.metrics`) of the amplitude ``|O|``
   and of the phase. The reconstruction's phase is taken as
   ``angle(O_true) + angle(O_rec * conj(O_true))`` so that no ``2 pi`` wrap is counted
   as an error.

Without a ground truth, :func:`evaluate_against_reference` compares two reconstructions
of one scan (e.g. a PINN and an iterative reconstruction, or two backends): the common
covered region, a sub-pixel registration
(:func:`~ptychopinn_core.evaluation.alignment.register_shift`), then steps 2-4 with the
reference in the place of the truth. Its FRC50 is the resolution at which the two agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ptychopinn_core.evaluation.aligned_pair import AlignedPair, align_to_reference, align_to_truth
from ptychopinn_core.evaluation.metrics import image_metrics
from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.reconstruction import Reconstruction

__all__ = ["evaluate", "evaluate_against_reference", "truth_object"]


def truth_object(scan: Any, source: str) -> np.ndarray:
    """The scan's ground-truth object, or one clear error saying why it has none.

    A scan from ``ptychopinn convert`` carries an ``objectGuess`` of ones that only
    sizes the object frame (``meta["object_role"] == "frame"``): scoring against it
    would report nonsense, so it is refused like a missing object.

    Parameters
    ----------
    scan : ScanData
    source : str
        The file it came from, for the message.
    """
    from ptychopinn_core.data.importers.conventions import META_OBJECT_ROLE, OBJECT_ROLE_FRAME
    from ptychopinn_core.data.keys import OBJECT

    if scan.object is None:
        raise ValueError(
            f"{source}: key '{OBJECT}': missing; a ground-truth object is needed "
            f"(a simulated scan from 'ptychopinn simulate' has it)"
        )
    if scan.meta.get(META_OBJECT_ROLE) == OBJECT_ROLE_FRAME:
        raise ValueError(
            f"{source}: key '{OBJECT}': an object frame of ones written by 'ptychopinn convert', "
            "not a ground truth; compare with another reconstruction instead "
            "('ptychopinn evaluate --reference RECON --scan FILE')"
        )
    return scan.object


def evaluate(
    recon: Reconstruction | np.ndarray,
    truth_object: np.ndarray,
    positions_xy: np.ndarray,
    *,
    window_px: int | None = None,
    recon_frame: ObjectFrame | None = None,
    truth_frame: ObjectFrame | None = None,
) -> dict[str, Any]:
    """Score a reconstruction against the ground-truth object in the scanned region.

    Parameters are those of :func:`~ptychopinn_core.evaluation.aligned_pair.align_to_truth`.

    Returns
    -------
    dict
        ``{"amplitude": {"ssim", "psnr", "mae", "frc50", "data_range", "frc"},
        "phase": {...}, "region": {"rows", "cols", "shape", "window_px"},
        "alignment": {"amplitude_scale", "phase_offset_rad", "phase_ramp_x_rad_per_px",
        "phase_ramp_y_rad_per_px"}}``. ``rows``/``cols`` are ``[start, stop)`` of the
        truth canvas; the phase offset is at the region's first pixel. Use
        :func:`~ptychopinn_core.evaluation.metrics.metrics_to_json` before ``json.dump``.
    """
    pair = align_to_truth(
        recon,
        truth_object,
        positions_xy,
        window_px=window_px,
        recon_frame=recon_frame,
        truth_frame=truth_frame,
    )
    return _scores(pair)


def evaluate_against_reference(
    recon: Reconstruction,
    reference: Reconstruction,
    *,
    positions_xy: np.ndarray | None = None,
    window_px: int | None = None,
    upsample_factor: int = 20,
) -> dict[str, Any]:
    """Compare two reconstructions of one scan without a ground truth.

    The pair is aligned by
    :func:`~ptychopinn_core.evaluation.aligned_pair.align_to_reference` (common region,
    sub-pixel registration, amplitude scale, phase offset and ramp); then the metrics of
    :func:`evaluate` are computed with ``reference`` in the place of the truth. FRC50
    is the one that needs no truth: the resolution at which the two agree. SSIM, PSNR
    and MAE measure agreement with the reference, not accuracy.

    Parameters are those of
    :func:`~ptychopinn_core.evaluation.aligned_pair.align_to_reference`.

    Returns
    -------
    dict
        As :func:`evaluate`, with ``alignment["shift_x_px"]``, ``["shift_y_px"]`` and
        ``"against": "reference"``; ``region`` indexes the reference's canvas.
    """
    pair = align_to_reference(
        recon, reference, positions_xy=positions_xy, window_px=window_px,
        upsample_factor=upsample_factor,
    )
    return {**_scores(pair), "against": "reference"}


def _scores(pair: AlignedPair) -> dict[str, Any]:
    """The metrics of an aligned pair: amplitude and phase, the region and the alignment."""
    return {
        "amplitude": image_metrics(pair.recon_amplitude, pair.truth_amplitude, "amplitude"),
        "phase": image_metrics(pair.recon_phase, pair.truth_phase, "phase"),
        "region": pair.region,
        "alignment": pair.alignment,
    }
