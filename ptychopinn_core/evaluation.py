"""Reconstruction quality against a ground-truth object (docs/physics.md §9).

Procedure of :func:`evaluate`
-----------------------------
1. **Region.** Compare only the scanned region: the bounding box of the windows of
   side ``window_px`` (the stitching crop) centred on the scan positions, on the
   truth's canvas, trimmed until no pixel in it is left uncovered
   (:func:`scanned_region`). Outside it a stitched reconstruction has no data. The
   reconstruction is brought onto the truth's pixel grid through its
   :class:`~ptychopinn_core.physics.stitching.ObjectFrame` (slicing for integer
   offsets, the forward model's bilinear rule otherwise).
2. **Amplitude scale.** A reconstruction is known up to a global amplitude factor
   (probe / intensity normalisation): scale by the ratio of the means,
   ``k = mean|O_true| / mean|O_rec|`` (:func:`scale_amplitude`).
3. **Phase plane.** A reconstruction is known up to a global phase and a linear
   phase ramp (a sub-pixel shift of the far field): fit and remove the plane
   ``a + b x + c y`` of the wrapped phase difference ``angle(O_rec * conj(O_true))``,
   weighted by ``|O_true|`` (:func:`align_phase`). A coarse estimate from circular
   means (immune to wrapping) comes first, then a weighted least-squares fit of the
   remaining (small) wrapped difference.
4. **Metrics**, for the amplitude ``|O|`` and for the phase. The reconstruction's
   phase is taken as ``angle(O_true) + angle(O_rec * conj(O_true))`` so that no
   ``2 pi`` wrap is counted as an error.

   - ``mae``: ``mean |rec - true|``.
   - ``psnr``: ``10 log10(R**2 / mean (rec - true)**2)`` with ``R = max(true) -
     min(true)``, the ground truth's data range (not a fixed 255 peak), in dB. Identical
     images give ``math.inf`` (JSON: ``null``, see :func:`metrics_to_json`).
   - ``ssim``: :func:`skimage.metrics.structural_similarity` with ``data_range=R``
     (7 x 7 window, the scikit-image default).
   - ``frc50``: the Fourier ring correlation
     ``FRC(k) = Re sum_ring Fa conj(Fb) / sqrt(sum_ring |Fa|**2 sum_ring |Fb|**2)``
     (mean-subtracted, Hann-apodised images) drops below 1/2 at ``frc50``, a fraction
     of the Nyquist frequency, linearly interpolated between rings (``FRC(0) = 1``);
     ``1.0`` when it never drops. The curve is returned too. Note that FRC is blind
     to a noise-free blur whose transfer function is positive (Gaussian blur): it
     measures correlation, not contrast; SSIM, PSNR and MAE see the blur.

A constant ground truth (data range 0) cannot be scored: a ValueError says so.
MS-SSIM is not computed (no well-kept implementation in our dependencies).

Without a ground truth
----------------------
:func:`evaluate_against_reference` compares two reconstructions of one scan (e.g. a
PINN and an iterative reconstruction, or two backends): the common covered region,
a sub-pixel registration (:func:`register_shift`), then steps 2-4 with the reference
in the place of the truth. Its FRC50 is the resolution at which the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.physics.translate import sample_separable, translate
from ptychopinn_core.reconstruction import META_CROP_SIZE_KEY, Reconstruction

__all__ = [
    "AlignedPair",
    "FRC_THRESHOLD",
    "align_to_reference",
    "align_to_truth",
    "covered_rectangle",
    "evaluate_against_reference",
    "register_shift",
    "META_CROP_SIZE_KEY",
    "SSIM_WINDOW_PX",
    "align_phase",
    "evaluate",
    "fit_phase_plane",
    "fourier_ring_correlation",
    "frc_cutoff",
    "image_metrics",
    "metrics_to_json",
    "scale_amplitude",
    "scanned_region",
    "truth_object",
    "window_coverage",
]

FRC_THRESHOLD = 0.5
SSIM_WINDOW_PX = 7  # scikit-image's default window; the region must be at least this big


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


def _check_positions(positions_xy: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or positions.shape[0] == 0:
        raise ValueError(
            "invalid positions: expected (M, 2) with M >= 1, "
            f"received positions_xy.shape={positions.shape}"
        )
    if not np.all(np.isfinite(positions)):
        raise ValueError("invalid positions: non-finite values in positions_xy")
    return positions


def window_coverage(positions_xy: np.ndarray, frame: ObjectFrame, window_px: int) -> np.ndarray:
    """Number of scan windows fully covering each canvas pixel, int64 (H, W).

    A window of side ``w`` at ``(x, y)`` holds object columns ``x - w//2 .. x - w//2 +
    w - 1`` (rows likewise); a canvas pixel counts when it lies inside that span
    (``ceil`` / ``floor`` for sub-pixel positions).
    """
    positions = _check_positions(positions_xy)
    if isinstance(window_px, bool) or not isinstance(window_px, (int, np.integer)) or window_px < 1:
        raise ValueError(
            f"invalid window_px: expected a positive int, received window_px={window_px!r}"
        )
    origin = np.array([frame.origin_x_px, frame.origin_y_px])
    first = positions - window_px // 2 - origin
    # The 1e-9 keeps positions that are integers up to rounding on their integer pixel.
    low = np.ceil(first - 1e-9).astype(np.int64)
    high = np.floor(first + window_px - 1 + 1e-9).astype(np.int64) + 1
    height, width = frame.shape
    col0, row0 = np.clip(low[:, 0], 0, width), np.clip(low[:, 1], 0, height)
    col1, row1 = np.clip(high[:, 0], 0, width), np.clip(high[:, 1], 0, height)
    inside = (col0 < col1) & (row0 < row1)
    # Summed-area trick: +1/-1 at the window corners, then a 2-D cumulative sum.
    corners = np.zeros((height + 1, width + 1), dtype=np.int64)
    for rows, cols, sign in ((row0, col0, 1), (row0, col1, -1), (row1, col0, -1), (row1, col1, 1)):
        np.add.at(corners, (rows[inside], cols[inside]), sign)
    return np.cumsum(np.cumsum(corners, axis=0), axis=1)[:height, :width]


def scanned_region(
    positions_xy: np.ndarray, frame: ObjectFrame, window_px: int
) -> tuple[slice, slice]:
    """Canvas rows and columns covered by the scan: a rectangle with no holes.

    Start from the bounding box of the scan windows (:func:`window_coverage`) on the
    frame, then trim it edge by edge (the edge row or column with the largest
    uncovered fraction first) until every pixel in it is covered by at least one
    window. A full raster gives its bounding box; a raster whose last row is partial
    loses that row; random scans lose their ragged borders.

    Parameters
    ----------
    positions_xy : ndarray, float, shape (M, 2)
        ``(x, y)`` in object pixels.
    frame : ObjectFrame
        The canvas the region indexes.
    window_px : int
        Window side: the stitching crop (what a reconstruction covers) or the patch N.

    Returns
    -------
    (slice, slice)
        ``canvas[rows, cols]`` is the scanned region.

    Raises
    ------
    ValueError
        The scan does not cover any pixel of the frame.
    """
    covered = window_coverage(positions_xy, frame, window_px) > 0
    if not covered.any():
        positions = np.asarray(positions_xy, dtype=np.float64)
        raise ValueError(
            f"invalid scan region: the scan (x {positions[:, 0].min():g}.."
            f"{positions[:, 0].max():g}, y {positions[:, 1].min():g}..{positions[:, 1].max():g}) "
            f"does not cover the frame {frame.to_json()}"
        )
    region = covered_rectangle(covered)
    if region is None:
        raise ValueError(
            "invalid scan region: no hole-free rectangle covered by the scan windows "
            f"on {frame.to_json()}"
        )
    return region


def covered_rectangle(covered: np.ndarray) -> tuple[slice, slice] | None:
    """A rectangle of ``covered`` pixels: the bounding box, trimmed until it has no hole.

    Edges are trimmed one row or column at a time, the edge with the largest uncovered
    fraction first.

    Parameters
    ----------
    covered : ndarray, bool, shape (H, W)

    Returns
    -------
    (slice, slice) or None
        Rows and columns of the rectangle; ``None`` when nothing is covered.
    """
    covered = np.asarray(covered, dtype=bool)
    rows_any = np.flatnonzero(covered.any(axis=1))
    cols_any = np.flatnonzero(covered.any(axis=0))
    if rows_any.size == 0:
        return None
    r0, r1 = int(rows_any[0]), int(rows_any[-1]) + 1
    c0, c1 = int(cols_any[0]), int(cols_any[-1]) + 1
    while r0 < r1 and c0 < c1:
        box = covered[r0:r1, c0:c1]
        if box.all():
            break
        holes = {
            "top": 1 - box[0].mean(),
            "bottom": 1 - box[-1].mean(),
            "left": 1 - box[:, 0].mean(),
            "right": 1 - box[:, -1].mean(),
        }
        edge = max(holes, key=holes.get)
        if edge == "top":
            r0 += 1
        elif edge == "bottom":
            r1 -= 1
        elif edge == "left":
            c0 += 1
        else:
            c1 -= 1
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def scale_amplitude(recon: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale ``recon`` by ``k = mean|truth| / mean|recon|`` (the mean ratio).

    Parameters
    ----------
    recon, truth : ndarray, complex, shape (H, W)

    Returns
    -------
    (ndarray, float)
        ``k * recon`` (complex128) and ``k``.
    """
    recon = np.asarray(recon, dtype=np.complex128)
    mean_recon = float(np.mean(np.abs(recon)))
    if not mean_recon > 0:
        raise ValueError(
            "cannot scale amplitude: the reconstruction is zero in the scanned region"
        )
    factor = float(np.mean(np.abs(truth))) / mean_recon
    return recon * factor, factor


def _weighted_plane_fit(
    values: np.ndarray, weights: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """``(a, b, c)`` minimising ``sum w (values - a - b x - c y)**2``."""
    design = np.stack([np.ones_like(x), x, y], axis=-1)
    root = np.sqrt(weights)
    coefficients, *_ = np.linalg.lstsq(design * root[:, None], values * root, rcond=None)
    return coefficients


def fit_phase_plane(
    recon: np.ndarray, truth: np.ndarray, n_refine: int = 2
) -> tuple[float, float, float]:
    """Phase plane ``a + b x + c y`` of ``angle(recon * conj(truth))``, weighted by ``|truth|``.

    ``x``/``y`` are column/row indices of the arrays. Wrapping is handled by a coarse
    estimate from circular means of neighbour phase differences (the slopes) and of the
    de-ramped difference (the offset), then ``n_refine`` weighted least-squares fits of
    the remaining wrapped difference, which is small.

    Parameters
    ----------
    recon, truth : ndarray, complex, shape (H, W)

    Returns
    -------
    (float, float, float)
        ``(a, b, c)``: offset at pixel (0, 0) in rad, ramps in rad per pixel along x
        (columns) and y (rows).
    """
    recon = np.asarray(recon, dtype=np.complex128)
    truth = np.asarray(truth, dtype=np.complex128)
    if recon.shape != truth.shape or recon.ndim != 2:
        raise ValueError(
            "invalid images: expected two equal (H, W) shapes, "
            f"received {recon.shape} and {truth.shape}"
        )
    product = recon * np.conj(truth)
    weights = np.abs(truth) * (recon != 0)
    if not np.any(weights > 0):
        raise ValueError(
            "cannot fit a phase plane: no pixel where both reconstruction and truth are non-zero"
        )
    rows, cols = np.indices(truth.shape, dtype=np.float64)
    magnitude = np.abs(product)
    unit = np.divide(product, magnitude, out=np.zeros_like(product), where=magnitude > 0)
    # Coarse ramp: the circular mean of neighbour differences is immune to 2 pi wraps.
    slope_x = slope_y = 0.0
    if truth.shape[1] > 1:
        slope_x = float(np.angle(np.sum(weights[:, 1:] * unit[:, 1:] * np.conj(unit[:, :-1]))))
    if truth.shape[0] > 1:
        slope_y = float(np.angle(np.sum(weights[1:, :] * unit[1:, :] * np.conj(unit[:-1, :]))))
    ramp = np.exp(-1j * (slope_x * cols + slope_y * rows))
    offset = float(np.angle(np.sum(weights * unit * ramp)))
    mask = weights > 0
    for _ in range(n_refine):
        plane = offset + slope_x * cols + slope_y * rows
        residual = np.angle(unit * np.exp(-1j * plane))
        da, db, dc = _weighted_plane_fit(residual[mask], weights[mask], cols[mask], rows[mask])
        offset, slope_x, slope_y = offset + da, slope_x + db, slope_y + dc
    offset = float(np.angle(np.exp(1j * offset)))
    return offset, float(slope_x), float(slope_y)


def align_phase(recon: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Remove the phase offset and linear ramp of ``recon`` relative to ``truth``.

    ``recon * exp(-i (a + b x + c y))`` with the plane of :func:`fit_phase_plane`.

    Parameters
    ----------
    recon, truth : ndarray, complex, shape (H, W)

    Returns
    -------
    ndarray, complex128, shape (H, W)
    """
    offset, slope_x, slope_y = fit_phase_plane(recon, truth)
    rows, cols = np.indices(np.shape(truth), dtype=np.float64)
    plane = offset + slope_x * cols + slope_y * rows
    return np.asarray(recon, dtype=np.complex128) * np.exp(-1j * plane)


def fourier_ring_correlation(
    image_a: np.ndarray, image_b: np.ndarray, *, apodize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two real images.

    ::

        FRC(k) = Re sum_{|f| in ring k} Fa(f) conj(Fb(f))
                 / sqrt(sum_{ring k} |Fa|**2 * sum_{ring k} |Fb|**2)

    with ``F = fft2`` of the mean-subtracted image times a 2-D Hann window
    (``apodize``) against edge artefacts. Ring ``k = round(|f| / f_Nyquist * K)``,
    ``K = min(H, W) // 2``, with ``|f|`` normalised per axis so rings are ellipses on
    non-square images. Ring 0 (DC) is left out; a ring with no power in one image has
    correlation 0.

    Parameters
    ----------
    image_a, image_b : ndarray, real, shape (H, W)

    Returns
    -------
    frequencies : ndarray, float64, shape (K,)
        ``k / K``, fraction of Nyquist, ``k = 1..K``.
    curve : ndarray, float64, shape (K,)
    """
    a = np.asarray(image_a, dtype=np.float64)
    b = np.asarray(image_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"invalid FRC input: expected two equal (H, W) images, received {a.shape} and {b.shape}"
        )
    height, width = a.shape
    n_rings = min(height, width) // 2
    if n_rings < 1:
        raise ValueError(
            f"invalid FRC input: expected images of at least 2 x 2 pixels, received {a.shape}"
        )
    a = a - a.mean()
    b = b - b.mean()
    if apodize and min(height, width) > 2:
        from scipy.signal.windows import hann

        window = np.outer(hann(height, sym=False), hann(width, sym=False))
        a, b = a * window, b * window
    spectrum_a, spectrum_b = np.fft.fft2(a), np.fft.fft2(b)
    freq_y = np.fft.fftfreq(height)[:, None] / 0.5
    freq_x = np.fft.fftfreq(width)[None, :] / 0.5
    ring = np.rint(np.sqrt(freq_x**2 + freq_y**2) * n_rings).astype(np.int64).ravel()
    keep = ring <= n_rings
    ring = ring[keep]

    def ring_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(ring, values.ravel()[keep], n_rings + 1)

    cross = ring_sum((spectrum_a * np.conj(spectrum_b)).real)
    denominator = np.sqrt(ring_sum(np.abs(spectrum_a) ** 2) * ring_sum(np.abs(spectrum_b) ** 2))
    curve = np.divide(cross, denominator, out=np.zeros_like(cross), where=denominator > 0)
    return np.arange(1, n_rings + 1) / n_rings, np.clip(curve[1:], -1.0, 1.0)


def frc_cutoff(
    frequencies: np.ndarray, curve: np.ndarray, threshold: float = FRC_THRESHOLD
) -> float:
    """First frequency (fraction of Nyquist) where the FRC drops below ``threshold``.

    Linear interpolation between the last ring at or above the threshold and the first
    below it, with ``FRC(0) = 1``; ``1.0`` when the curve never drops below it.
    """
    below = np.flatnonzero(np.asarray(curve) < threshold)
    if below.size == 0:
        return 1.0
    k = int(below[0])
    f_prev, c_prev = (0.0, 1.0) if k == 0 else (float(frequencies[k - 1]), float(curve[k - 1]))
    f_next, c_next = float(frequencies[k]), float(curve[k])
    return f_prev + (c_prev - threshold) / (c_prev - c_next) * (f_next - f_prev)


def image_metrics(recon: np.ndarray, truth: np.ndarray, name: str = "image") -> dict[str, Any]:
    """MAE, PSNR, SSIM and FRC of a real image against its ground truth.

    Parameters
    ----------
    recon, truth : ndarray, real, shape (H, W)
        H and W at least :data:`SSIM_WINDOW_PX`.
    name : str
        Used in error messages ("amplitude", "phase").

    Returns
    -------
    dict
        ``{"ssim", "psnr", "mae", "frc50", "data_range", "frc": {"frequency_nyquist",
        "correlation"}}``; ``psnr`` is ``math.inf`` for identical images.

    Raises
    ------
    ValueError
        Constant truth (data range 0) or a region smaller than the SSIM window.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    recon = np.asarray(recon, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if recon.shape != truth.shape or truth.ndim != 2:
        raise ValueError(
            f"invalid {name} images: expected two equal (H, W) shapes, "
            f"received {recon.shape} and {truth.shape}"
        )
    if min(truth.shape) < SSIM_WINDOW_PX:
        raise ValueError(
            f"cannot evaluate {name}: the scanned region {truth.shape} is smaller than the "
            f"{SSIM_WINDOW_PX} x {SSIM_WINDOW_PX} SSIM window"
        )
    data_range = float(truth.max() - truth.min())
    if not data_range > 1e-12 * max(1.0, float(np.abs(truth).max())):
        raise ValueError(
            f"cannot evaluate {name}: the ground-truth {name} is constant in the scanned region "
            f"(data range {data_range:g}), so PSNR and SSIM are undefined"
        )
    error = recon - truth
    mse = float(np.mean(error**2))
    psnr = math.inf
    if mse > 0:
        psnr = float(peak_signal_noise_ratio(truth, recon, data_range=data_range))
    ssim = structural_similarity(truth, recon, data_range=data_range, win_size=SSIM_WINDOW_PX)
    frequencies, curve = fourier_ring_correlation(recon, truth)
    return {
        "ssim": float(ssim),
        "psnr": psnr,
        "mae": float(np.mean(np.abs(error))),
        "frc50": frc_cutoff(frequencies, curve),
        "data_range": data_range,
        "frc": {"frequency_nyquist": frequencies.tolist(), "correlation": curve.tolist()},
    }


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


@dataclass(frozen=True, eq=False)
class AlignedPair:
    """Truth and reconstruction on one grid, after amplitude scaling and phase de-ramping.

    Attributes
    ----------
    truth, recon : ndarray, complex128, shape (h, w)
        The scanned region of the truth, and the aligned reconstruction on it.
    region, alignment : dict
        As in :func:`evaluate`.
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
        Window side of :func:`scanned_region`; default: ``meta["crop_size_px"]`` of a
        Reconstruction. Required otherwise (use the stitching crop,
        ``default_crop_size(N)``).
    recon_frame, truth_frame : ObjectFrame, optional
        Frames of the two arrays; the truth's defaults to ``ObjectFrame.for_object``.

    Returns
    -------
    AlignedPair
        Steps 1-3 of the module docstring applied; what :func:`evaluate` scores and
        what figures of error maps show.
    """
    if isinstance(recon, Reconstruction):
        if recon_frame is None:
            recon_frame = recon.frame
        if window_px is None and isinstance(recon.meta.get(META_CROP_SIZE_KEY), int):
            window_px = recon.meta[META_CROP_SIZE_KEY]
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
    scaled, amplitude_scale = scale_amplitude(candidate, truth)
    offset, slope_x, slope_y = fit_phase_plane(scaled, truth)
    r_idx, c_idx = np.indices(truth.shape, dtype=np.float64)
    aligned = scaled * np.exp(-1j * (offset + slope_x * c_idx + slope_y * r_idx))
    return AlignedPair(
        truth=truth,
        recon=aligned,
        region={
            "rows": [rows.start, rows.stop],
            "cols": [cols.start, cols.stop],
            "shape": list(truth.shape),
            "window_px": int(window_px),
        },
        alignment={
            "amplitude_scale": amplitude_scale,
            "phase_offset_rad": offset,
            "phase_ramp_x_rad_per_px": slope_x,
            "phase_ramp_y_rad_per_px": slope_y,
        },
    )


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

    Parameters are those of :func:`align_to_truth`.

    Returns
    -------
    dict
        ``{"amplitude": {"ssim", "psnr", "mae", "frc50", "data_range", "frc"},
        "phase": {...}, "region": {"rows", "cols", "shape", "window_px"},
        "alignment": {"amplitude_scale", "phase_offset_rad", "phase_ramp_x_rad_per_px",
        "phase_ramp_y_rad_per_px"}}``. ``rows``/``cols`` are ``[start, stop)`` of the
        truth canvas; the phase offset is at the region's first pixel. Use
        :func:`metrics_to_json` before ``json.dump``.
    """
    pair = align_to_truth(
        recon,
        truth_object,
        positions_xy,
        window_px=window_px,
        recon_frame=recon_frame,
        truth_frame=truth_frame,
    )
    return {
        "amplitude": image_metrics(pair.recon_amplitude, pair.truth_amplitude, "amplitude"),
        "phase": image_metrics(pair.recon_phase, pair.truth_phase, "phase"),
        "region": pair.region,
        "alignment": pair.alignment,
    }


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


def _remove_own_ramp(image: np.ndarray) -> np.ndarray:
    """``image`` without its own mean phase gradient and offset (circular means).

    Two views of one object whose phases differ by a plane become (nearly) equal, so
    a complex cross-correlation registers them without being confused by the ramp.
    """
    weights = np.abs(image)
    unit = np.divide(image, weights, out=np.zeros_like(image), where=weights > 0)
    rows, cols = np.indices(image.shape, dtype=np.float64)
    slope_x = float(np.angle(np.sum(weights[:, 1:] * unit[:, 1:] * np.conj(unit[:, :-1]))))
    slope_y = float(np.angle(np.sum(weights[1:, :] * unit[1:, :] * np.conj(unit[:-1, :]))))
    flat = image * np.exp(-1j * (slope_x * cols + slope_y * rows))
    return flat * np.exp(-1j * np.angle(np.sum(flat)))


def register_shift(
    reference: np.ndarray, moving: np.ndarray, upsample_factor: int = 20
) -> tuple[float, float]:
    """Sub-pixel shift ``(dx, dy)`` that moves ``moving`` onto ``reference``.

    :func:`skimage.registration.phase_cross_correlation` of the two complex images,
    each first freed of its own phase offset and mean phase gradient
    (:func:`_remove_own_ramp`), to ``1 / upsample_factor`` pixel.
    ``translate(moving, (dx, dy))`` then lines up with ``reference``.
    """
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(
        _remove_own_ramp(np.asarray(reference, dtype=np.complex128)),
        _remove_own_ramp(np.asarray(moving, dtype=np.complex128)),
        upsample_factor=upsample_factor,
        normalization=None,
    )
    return float(shift[1]), float(shift[0])


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
       then the largest hole-free rectangle of it (:func:`covered_rectangle`).
    2. **Registration**: the sub-pixel shift of :func:`register_shift`, applied to the
       reconstruction with the forward model's bilinear :func:`translate` (a positive
       transfer function, which FRC does not penalise); the border the shift empties
       (``ceil(max |shift|) + 1`` pixels) is cropped from both.
    3. **Amplitude scale and phase plane** as in :func:`evaluate` (steps 2-3).

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
        if window_px is None and isinstance(recon.meta.get(META_CROP_SIZE_KEY), int):
            window_px = recon.meta[META_CROP_SIZE_KEY]
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
    scaled, amplitude_scale = scale_amplitude(shifted, truth)
    offset, slope_x, slope_y = fit_phase_plane(scaled, truth)
    r_idx, c_idx = np.indices(truth.shape, dtype=np.float64)
    aligned = scaled * np.exp(-1j * (offset + slope_x * c_idx + slope_y * r_idx))
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
        alignment={
            "shift_x_px": shift_x,
            "shift_y_px": shift_y,
            "amplitude_scale": amplitude_scale,
            "phase_offset_rad": offset,
            "phase_ramp_x_rad_per_px": slope_x,
            "phase_ramp_y_rad_per_px": slope_y,
        },
    )


def evaluate_against_reference(
    recon: Reconstruction,
    reference: Reconstruction,
    *,
    positions_xy: np.ndarray | None = None,
    window_px: int | None = None,
    upsample_factor: int = 20,
) -> dict[str, Any]:
    """Compare two reconstructions of one scan without a ground truth.

    The pair is aligned by :func:`align_to_reference` (common region, sub-pixel
    registration, amplitude scale, phase offset and ramp); then the metrics of
    :func:`evaluate` are computed with ``reference`` in the place of the truth. FRC50
    is the one that needs no truth: the resolution at which the two agree. SSIM, PSNR
    and MAE measure agreement with the reference, not accuracy.

    Parameters are those of :func:`align_to_reference`.

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
    return {
        "amplitude": image_metrics(pair.recon_amplitude, pair.truth_amplitude, "amplitude"),
        "phase": image_metrics(pair.recon_phase, pair.truth_phase, "phase"),
        "region": pair.region,
        "alignment": pair.alignment,
        "against": "reference",
    }


def metrics_to_json(value: Any) -> Any:
    """A copy of a metrics dict that ``json.dump(..., allow_nan=False)`` accepts.

    Non-finite floats (``psnr = inf`` for identical images) become ``None`` (JSON
    ``null``); numpy scalars become Python numbers.
    """
    if isinstance(value, Mapping):
        return {str(k): metrics_to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [metrics_to_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
