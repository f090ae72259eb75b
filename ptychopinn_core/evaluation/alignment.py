"""Removing what a reconstruction cannot know: its amplitude scale, phase plane and shift.

Each function takes two complex images already on one pixel grid
(:mod:`~ptychopinn_core.evaluation.aligned_pair` puts them there) and estimates one
ambiguity of the first relative to the second:

- **Amplitude scale.** A reconstruction is known up to a global amplitude factor
  (probe / intensity normalisation): scale by the ratio of the means,
  ``k = mean|O_true| / mean|O_rec|`` (:func:`scale_amplitude`).
- **Phase plane.** A reconstruction is known up to a global phase and a linear phase
  ramp (a sub-pixel shift of the far field): fit and remove the plane ``a + b x + c y``
  of the wrapped phase difference ``angle(O_rec * conj(O_true))``, weighted by
  ``|O_true|`` (:func:`fit_phase_plane`, :func:`align_phase`). A coarse estimate from
  circular means (immune to wrapping) comes first, then a weighted least-squares fit of
  the remaining (small) wrapped difference.
- **Shift.** Two reconstructions of one scan may lie a sub-pixel translation apart
  (:func:`register_shift`); against a ground truth on its own frame there is none to
  find.
"""

from __future__ import annotations

import numpy as np

__all__ = ["align_phase", "fit_phase_plane", "register_shift", "scale_amplitude"]


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
