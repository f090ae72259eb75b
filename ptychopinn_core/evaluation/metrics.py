"""Image-quality metrics of a real image against its reference: MAE, PSNR, SSIM, FRC.

Scored separately for the amplitude ``|O|`` and the phase of an aligned pair:

- ``mae``: ``mean |rec - true|``.
- ``psnr``: ``10 log10(R**2 / mean (rec - true)**2)`` with ``R = max(true) - min(true)``,
  the ground truth's data range (not a fixed 255 peak), in dB. Identical images give
  ``math.inf`` (JSON: ``null``, see :func:`metrics_to_json`).
- ``ssim``: :func:`skimage.metrics.structural_similarity` with ``data_range=R``
  (7 x 7 window, the scikit-image default).
- ``frc50``: the Fourier ring correlation
  ``FRC(k) = Re sum_ring Fa conj(Fb) / sqrt(sum_ring |Fa|**2 sum_ring |Fb|**2)``
  (mean-subtracted, Hann-apodised images) drops below 1/2 at ``frc50``, a fraction of
  the Nyquist frequency, linearly interpolated between rings (``FRC(0) = 1``); ``1.0``
  when it never drops. The curve is returned too. Note that FRC is blind to a
  noise-free blur whose transfer function is positive (Gaussian blur): it measures
  correlation, not contrast; SSIM, PSNR and MAE see the blur.

A constant ground truth (data range 0) cannot be scored: a ValueError says so.
MS-SSIM is not computed (no well-kept implementation in our dependencies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "FRC_THRESHOLD",
    "SSIM_WINDOW_PX",
    "fourier_ring_correlation",
    "frc_cutoff",
    "image_metrics",
    "metrics_to_json",
]

FRC_THRESHOLD = 0.5
SSIM_WINDOW_PX = 7  # scikit-image's default window; the region must be at least this big


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
