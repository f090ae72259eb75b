"""A reconstruction and what it is compared with, on one grid, in one region, aligned.

:func:`align_to_truth` (the first three steps of
:func:`~ptychopinn_core.evaluation.report.evaluate`):

1. **Region.** Compare only the scanned region
   (:func:`~ptychopinn_core.evaluation.region.scanned_region`, windows of side
   ``window_px``, the stitching crop, on the truth's canvas). The reconstruction is
   brought onto the truth's pixel grid through its
   :class:`~ptychopinn_core.physics.stitching.ObjectFrame` (slicing for integer
   offsets, the forward model's bilinear rule otherwise).
2. **Amplitude scale** and 3. **phase plane** removed
   (:mod:`~ptychopinn_core.evaluation.alignment`).

:func:`align_to_reference` does the same for two reconstructions of one scan: their
common covered region, a sub-pixel registration, then steps 2-3 with the reference in
the place of the truth. The :class:`AlignedPair` is what the metrics score and what
figures of error maps show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptychopinn_core.evaluation.alignment import fit_phase_plane, register_shift, scale_amplitude
from ptychopinn_core.evaluation.metrics import SSIM_WINDOW_PX
from ptychopinn_core.evaluation.region import covered_rectangle, scanned_region, window_coverage
from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.physics.translate import sample_separable, translate
from ptychopinn_core.reconstruction import META_CROP_SIZE_KEY, Reconstruction

__all__ = ["AlignedPair", "align_to_reference", "align_to_truth"]


@dataclass(frozen=True, eq=False)
class AlignedPair:
    """Truth and reconstruction on one grid, after amplitude scaling and phase de-ramping.

    Attributes
    ----------
    truth, recon : ndarray, complex128, shape (h, w)
        The scanned region of the truth, and the aligned reconstruction on it.
    region, alignment : dict
        As in :func:`~ptychopinn_core.evaluation.report.evaluate`.
    """

    truth: np.ndarray
    recon: np.ndarray
    region: dict[str, Any]
    alignment: dict[str, float]

    @property
    def truth_amplitude(self) -> np.ndarray:
        return np.abs(self.truth)

    @property
    def recon_amplitude(self) -> np.ndarray:
        return np.abs(self.recon)

    @property
    def truth_phase(self) -> np.ndarray:
        return np.angle(self.truth)

    @property
    def recon_phase(self) -> np.ndarray:
        """``angle(truth) + angle(recon * conj(truth))``: no ``2 pi`` wrap counts as error."""
        return self.truth_phase + np.angle(self.recon * np.conj(self.truth))


def _on_truth_grid(
    recon: np.ndarray, recon_frame: ObjectFrame, truth_frame: ObjectFrame, rows: slice, cols: slice
) -> np.ndarray:
    """The reconstruction sampled at the truth canvas pixels ``[rows, cols]``."""
    shift_x = truth_frame.origin_x_px - recon_frame.origin_x_px
    shift_y = truth_frame.origin_y_px - recon_frame.origin_y_px
    recon_rows = np.arange(rows.start, rows.stop) + shift_y
    recon_cols = np.arange(cols.start, cols.stop) + shift_x
    outside = (
        recon_rows[0] < 0
        or recon_cols[0] < 0
        or recon_rows[-1] > recon_frame.height_px - 1
        or recon_cols[-1] > recon_frame.width_px - 1
    )
    if outside:
        raise ValueError(
            f"invalid reconstruction frame: {recon_frame.to_json()} does not cover the scanned "
            f"region rows {rows.start}..{rows.stop - 1}, cols {cols.start}..{cols.stop - 1} of "
            f"the truth frame {truth_frame.to_json()}"
        )
    if float(shift_x).is_integer() and float(shift_y).is_integer():
        row0, col0 = int(recon_rows[0]), int(recon_cols[0])
        return recon[row0 : row0 + recon_rows.size, col0 : col0 + recon_cols.size]
    return sample_separable(recon, recon_rows[None, :], recon_cols[None, :])[0]


def _scale_and_deramp(
    candidate: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """Steps 2-3: ``candidate`` scaled and de-ramped onto ``truth``, and what was removed."""
    scaled, amplitude_scale = scale_amplitude(candidate, truth)
    offset, slope_x, slope_y = fit_phase_plane(scaled, truth)
    r_idx, c_idx = np.indices(truth.shape, dtype=np.float64)
    aligned = scaled * np.exp(-1j * (offset + slope_x * c_idx + slope_y * r_idx))
    return aligned, {
        "amplitude_scale": amplitude_scale,
        "phase_offset_rad": offset,
        "phase_ramp_x_rad_per_px": slope_x,
        "phase_ramp_y_rad_per_px": slope_y,
    }


def align_to_truth(
    recon: Reconstruction | np.ndarray,
    truth_object: np.ndarray,
    positions_xy: np.ndarray,
    *,
    window_px: int | None = None,
    recon_frame: ObjectFrame | None = None,
    truth_frame: ObjectFrame | None = None,
) -> AlignedPair:
    """The reconstruction on the truth's grid in the scanned region, scaled and de-ramped.

    Parameters
    ----------
    recon : Reconstruction or ndarray, complex, shape (H', W')
        The reconstruction; an array is taken to be on ``recon_frame`` (default: the
        truth's frame).
    truth_object : ndarray, complex, shape (H, W)
        Ground truth (``objectGuess``).
    positions_xy : ndarray, float, shape (M, 2)
        Scan positions ``(x, y)`` in object pixels.
    window_px : int, optional
        Window side of :func:`~ptychopinn_core.evaluation.region.scanned_region`;
        default: ``meta["crop_size_px"]`` of a Reconstruction. Required otherwise (use
        the stitching crop, ``default_crop_size(N)``).
    recon_frame, truth_frame : ObjectFrame, optional
        Frames of the two arrays; the truth's defaults to ``ObjectFrame.for_object``.

    Returns
    -------
    AlignedPair
        Steps 1-3 of the module docstring applied; what
        :func:`~ptychopinn_core.evaluation.report.evaluate` scores and what figures of
        error maps show.
    """
    if isinstance(recon, Reconstruction):
        if recon_frame is None:
            recon_frame = recon.frame
        if window_px is None:
            window_px = recon.crop_size_px
        recon_array = recon.object
    else:
        recon_array = np.asarray(recon)
    truth_object = np.asarray(truth_object)
    if truth_object.ndim != 2:
        raise ValueError(
            "invalid truth object: expected shape (H, W), "
            f"received truth_object.shape={truth_object.shape}"
        )
    if recon_array.ndim != 2:
        raise ValueError(
            f"invalid reconstruction: expected shape (H, W), received shape {recon_array.shape}"
        )
    if window_px is None:
        raise ValueError(
            "missing window_px: pass the stitching crop size (default_crop_size(N)) or a "
            f"Reconstruction whose meta holds {META_CROP_SIZE_KEY!r}"
        )
    truth_frame = truth_frame or ObjectFrame.for_object(truth_object.shape)
    recon_frame = recon_frame or ObjectFrame.for_object(recon_array.shape)
    if recon_frame.shape != recon_array.shape or truth_frame.shape != truth_object.shape:
        raise ValueError(
            "invalid frames: expected frame shapes equal to the arrays, received reconstruction "
            f"{recon_array.shape} on {recon_frame.shape} and truth {truth_object.shape} "
            f"on {truth_frame.shape}"
        )
    rows, cols = scanned_region(positions_xy, truth_frame, window_px)
    truth = truth_object[rows, cols].astype(np.complex128)
    candidate = _on_truth_grid(recon_array, recon_frame, truth_frame, rows, cols)
    aligned, alignment = _scale_and_deramp(candidate, truth)
    return AlignedPair(
        truth=truth,
        recon=aligned,
        region={
            "rows": [rows.start, rows.stop],
            "cols": [cols.start, cols.stop],
            "shape": list(truth.shape),
            "window_px": int(window_px),
        },
        alignment=alignment,
    )


def _overlap_on_reference(
    recon: np.ndarray, recon_frame: ObjectFrame, reference_frame: ObjectFrame
) -> tuple[slice, slice, np.ndarray]:
    """Reference canvas rows/cols inside the reconstruction's frame, and the recon sampled there."""
    shift_x = reference_frame.origin_x_px - recon_frame.origin_x_px
    shift_y = reference_frame.origin_y_px - recon_frame.origin_y_px
    spans = []
    for shift, size, limit in ((shift_y, recon_frame.height_px, reference_frame.height_px),
                               (shift_x, recon_frame.width_px, reference_frame.width_px)):
        low = max(int(math.ceil(-shift - 1e-9)), 0)
        high = min(int(math.floor(size - 1 - shift + 1e-9)), limit - 1) + 1
        spans.append(slice(low, max(high, low)))
    rows, cols = spans
    if rows.stop <= rows.start or cols.stop <= cols.start:
        raise ValueError(
            f"invalid reconstructions: the frames {recon_frame.to_json()} and "
            f"{reference_frame.to_json()} do not overlap"
        )
    return rows, cols, _on_truth_grid(recon, recon_frame, reference_frame, rows, cols)


def align_to_reference(
    recon: Reconstruction,
    reference: Reconstruction,
    *,
    positions_xy: np.ndarray | None = None,
    window_px: int | None = None,
    upsample_factor: int = 20,
) -> AlignedPair:
    """Two reconstructions on the reference's grid, registered, scaled and de-ramped.

    Neither is a ground truth; ``reference`` only fixes the grid, the amplitude scale
    and the phase plane. Steps:

    1. **Common region**: the reference canvas pixels inside the reconstruction's frame
       where both objects are non-zero (stitched reconstructions are zero where
       nothing was stitched; with a fractional frame offset one edge pixel is
       dropped), and, given ``positions_xy``, also covered by a scan window of side
       ``window_px`` (an iterative reconstruction has values outside the scan);
       then the largest hole-free rectangle of it
       (:func:`~ptychopinn_core.evaluation.region.covered_rectangle`).
    2. **Registration**: the sub-pixel shift of
       :func:`~ptychopinn_core.evaluation.alignment.register_shift`, applied to the
       reconstruction with the forward model's bilinear
       :func:`~ptychopinn_core.physics.translate.translate` (a positive
       transfer function, which FRC does not penalise); the border the shift empties
       (``ceil(max |shift|) + 1`` pixels) is cropped from both.
    3. **Amplitude scale and phase plane** as in
       :func:`~ptychopinn_core.evaluation.report.evaluate` (steps 2-3).

    Parameters
    ----------
    recon, reference : Reconstruction
        Each on its own frame (object pixels).
    positions_xy : ndarray, float, shape (M, 2), optional
        Scan positions ``(x, y)`` on the reference's object pixels.
    window_px : int, optional
        Window side with ``positions_xy``; default: the reconstruction's
        ``meta["crop_size_px"]``.
    upsample_factor : int
        Registration precision, ``1 / upsample_factor`` pixel.

    Returns
    -------
    AlignedPair
        ``truth`` is the reference's region; ``alignment`` adds ``shift_x_px``,
        ``shift_y_px`` (applied to the reconstruction).
    """
    for name, value in (("recon", recon), ("reference", reference)):
        if not isinstance(value, Reconstruction):
            raise TypeError(
                f"invalid {name}: expected a Reconstruction, received {type(value).__name__}"
            )
    rows, cols, candidate = _overlap_on_reference(recon.object, recon.frame, reference.frame)
    reference_part = np.asarray(reference.object[rows, cols], dtype=np.complex128)
    covered = (reference_part != 0) & (candidate != 0)
    fractional = not (
        float(reference.frame.origin_x_px - recon.frame.origin_x_px).is_integer()
        and float(reference.frame.origin_y_px - recon.frame.origin_y_px).is_integer()
    )
    if fractional:
        from scipy.ndimage import binary_erosion

        covered = binary_erosion(covered, border_value=0)
    if positions_xy is not None:
        if window_px is None:
            window_px = recon.crop_size_px
        if window_px is None:
            raise ValueError(
                "missing window_px: pass the stitching crop size with the positions, or a "
                f"reconstruction whose meta holds {META_CROP_SIZE_KEY!r}"
            )
        scanned = window_coverage(positions_xy, reference.frame, window_px) > 0
        covered &= scanned[rows, cols]
    rectangle = covered_rectangle(covered)
    if rectangle is None:
        raise ValueError(
            "invalid reconstructions: no region where both are non-zero"
            + (" inside the scanned area" if positions_xy is not None else "")
        )
    r_sub, c_sub = rectangle
    truth = reference_part[r_sub, c_sub]
    moving = np.asarray(candidate[r_sub, c_sub], dtype=np.complex128)
    shift_x, shift_y = register_shift(truth, moving, upsample_factor)
    border = int(math.ceil(max(abs(shift_x), abs(shift_y)) - 1e-9)) + 1
    if min(truth.shape) - 2 * border < SSIM_WINDOW_PX:
        raise ValueError(
            f"cannot compare: the registration shift ({shift_x:.3g}, {shift_y:.3g}) px leaves "
            f"less than {SSIM_WINDOW_PX} x {SSIM_WINDOW_PX} pixels of the common region "
            f"{truth.shape}; are these reconstructions of the same object?"
        )
    shifted = translate(moving, np.array([shift_x, shift_y]))
    inner = (slice(border, truth.shape[0] - border), slice(border, truth.shape[1] - border))
    truth, shifted = truth[inner], shifted[inner]
    aligned, alignment = _scale_and_deramp(shifted, truth)
    row0 = rows.start + r_sub.start + border
    col0 = cols.start + c_sub.start + border
    return AlignedPair(
        truth=truth,
        recon=aligned,
        region={
            "rows": [row0, row0 + truth.shape[0]],
            "cols": [col0, col0 + truth.shape[1]],
            "shape": list(truth.shape),
            "window_px": None if window_px is None else int(window_px),
        },
        alignment={"shift_x_px": shift_x, "shift_y_px": shift_y, **alignment},
    )
