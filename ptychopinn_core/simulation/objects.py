"""Synthetic complex objects for demos, tests and benchmarks (docs/physics.md §10).

Two kinds:

- ``lines``: random straight strokes, each smoothed at several scales
  (:func:`scipy.ndimage.gaussian_filter`), summed and normalised. The multi-scale sum
  gives content from the pixel scale up to the stroke length, which is what a
  resolution test (FRC) needs. Amplitude and phase come from two independent stroke
  images, so a reconstruction that leaks amplitude into phase is visible.
- ``image``: amplitude from one scikit-image sample picture and phase from another.
  Only pictures that ship inside scikit-image are used (no download at run time).

Value ranges (defaults, documented because the network relies on them):

- amplitude in ``[0.3, 1.0]``: strictly inside ``(0, 1]`` because the network's
  amplitude head is a sigmoid, and never zero so that the phase stays defined;
- phase in ``[0, pi/2]`` radians: inside ``±pi/2`` so that the phase head
  (``pi * tanh``) never has to reach its saturated ends and the phase never wraps.

Both builders return ``complex64`` arrays of shape ``(H, W)``:
``O = A * exp(i * phi)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_AMPLITUDE_RANGE",
    "DEFAULT_PHASE_RANGE_RAD",
    "LINES_SMOOTHING_SIGMAS_PX",
    "OBJECT_KINDS",
    "SAMPLE_IMAGES",
    "image_object",
    "lines_object",
]

OBJECT_KINDS = ("lines", "image")
DEFAULT_AMPLITUDE_RANGE = (0.3, 1.0)
DEFAULT_PHASE_RANGE_RAD = (0.0, math.pi / 2)
# Smoothing scales of the 'lines' object: 1 px keeps detail near Nyquist, 4 px makes
# the broad low-frequency body of each stroke.
LINES_SMOOTHING_SIGMAS_PX = (1.0, 2.0, 4.0)
# Strokes per object pixel: about 16 strokes in a 64 x 64 window (a textured object,
# not a saturated one), independent of the object size.
_LINES_PER_PIXEL = 1.0 / 256.0
_STROKE_LENGTH_PX = (8.0, 48.0)
# Percentile used as the "white" level of the summed strokes: crossings of many
# strokes would otherwise set the scale and leave the rest of the object dark.
_WHITE_PERCENTILE = 99.5
# scikit-image sample pictures that ship with the package (no pooch / network needed).
SAMPLE_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)


def _shape_2d(size_px: int | Sequence[int], name: str = "size_px") -> tuple[int, int]:
    """``(H, W)`` from an int side or a pair, validated (positive ints)."""
    if isinstance(size_px, (int, np.integer)) and not isinstance(size_px, bool):
        shape = (int(size_px), int(size_px))
    else:
        try:
            shape = tuple(int(s) for s in size_px)  # type: ignore[union-attr]
        except TypeError:
            raise TypeError(
                f"invalid {name}: expected an int or a (height, width) pair, "
                f"received {name}={size_px!r}"
            ) from None
        if len(shape) != 2:
            raise ValueError(
                f"invalid {name}: expected (height, width), received {name}={size_px!r}"
            )
    if min(shape) < 1:
        raise ValueError(f"invalid {name}: expected positive sides, received {name}={size_px!r}")
    return shape  # type: ignore[return-value]


def _check_range(
    value_range: Sequence[float], name: str, low: float, high: float
) -> tuple[float, float]:
    lo, hi = (float(v) for v in value_range)
    if not (low <= lo <= hi <= high) or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(
            f"invalid {name}: expected {low} <= min <= max <= {high}, "
            f"received {name}={tuple(value_range)}"
        )
    return lo, hi


def _compose(
    amplitude_unit: np.ndarray,
    phase_unit: np.ndarray,
    amplitude_range: tuple[float, float],
    phase_range_rad: tuple[float, float],
) -> np.ndarray:
    """``A * exp(i phi)`` from two images in ``[0, 1]`` mapped linearly onto the ranges."""
    amplitude = amplitude_range[0] + (amplitude_range[1] - amplitude_range[0]) * amplitude_unit
    phase = phase_range_rad[0] + (phase_range_rad[1] - phase_range_rad[0]) * phase_unit
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def _stroke_texture(shape: tuple[int, int], rng: np.random.Generator, n_lines: int) -> np.ndarray:
    """Random strokes smoothed at several scales, normalised to ``[0, 1]``, float64 (H, W)."""
    from skimage.draw import line_aa

    height, width = shape
    # Draw on a padded canvas so that strokes near the border are neither clipped
    # into border-hugging lines nor darkened by the filter's boundary rule.
    pad = int(math.ceil(_STROKE_LENGTH_PX[1] / 2 + 4 * max(LINES_SMOOTHING_SIGMAS_PX)))
    canvas = np.zeros((height + 2 * pad, width + 2 * pad))
    centres_y = rng.uniform(pad, pad + height, n_lines)
    centres_x = rng.uniform(pad, pad + width, n_lines)
    angles = rng.uniform(0.0, math.pi, n_lines)
    half_lengths = rng.uniform(*_STROKE_LENGTH_PX, n_lines) / 2
    strengths = rng.uniform(0.5, 1.0, n_lines)
    for y, x, angle, half, strength in zip(centres_y, centres_x, angles, half_lengths, strengths):
        dy, dx = half * math.sin(angle), half * math.cos(angle)
        rows, cols, values = line_aa(
            int(round(y - dy)), int(round(x - dx)), int(round(y + dy)), int(round(x + dx))
        )
        np.add.at(canvas, (rows, cols), strength * values)
    texture = sum(ndimage.gaussian_filter(canvas, sigma) for sigma in LINES_SMOOTHING_SIGMAS_PX)
    texture = texture[pad : pad + height, pad : pad + width]
    white = np.percentile(texture, _WHITE_PERCENTILE)
    if white <= 0:  # no stroke reached this (tiny) object
        return np.zeros(shape)
    return np.clip(texture / white, 0.0, 1.0)


def lines_object(
    size_px: int | Sequence[int],
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
    *,
    n_lines: int | None = None,
    amplitude_range: Sequence[float] = DEFAULT_AMPLITUDE_RANGE,
    phase_range_rad: Sequence[float] = DEFAULT_PHASE_RANGE_RAD,
) -> np.ndarray:
    """The synthetic 'lines' object: smoothed random strokes in amplitude and phase.

    Each of amplitude and phase is built from its own set of ``n_lines`` strokes
    (random centre, orientation, length 8..48 px, strength 0.5..1), anti-aliased
    (:func:`skimage.draw.line_aa`), smoothed with Gaussians of sigma
    ``LINES_SMOOTHING_SIGMAS_PX`` = (1, 2, 4) px and summed::

        t     = clip(sum_s G_s * strokes / white, 0, 1)   white = 99.5th percentile
        A     = a_min + (a_max - a_min) * t_amplitude
        phi   = p_min + (p_max - p_min) * t_phase
        O     = A * exp(i * phi)

    Parameters
    ----------
    size_px : int or (int, int)
        Object side, or ``(H, W)``, in pixels.
    seed : int, SeedSequence or Generator
        Seed of :func:`numpy.random.default_rng`; same seed, same object.
    n_lines : int, optional
        Strokes per component; default ``H * W / 256`` (at least 1), so that the
        texture density does not depend on the object size.
    amplitude_range : (float, float)
        ``(a_min, a_max)`` inside ``[0, 1]``; default ``(0.3, 1.0)``.
    phase_range_rad : (float, float)
        ``(p_min, p_max)`` inside ``[-pi, pi]``; default ``(0, pi/2)``.

    Returns
    -------
    ndarray, complex64, shape (H, W)
        ``|O|`` in ``amplitude_range``, ``angle(O)`` in ``phase_range_rad``.
    """
    shape = _shape_2d(size_px)
    amplitude_range = _check_range(amplitude_range, "amplitude_range", 0.0, 1.0)
    phase_range_rad = _check_range(phase_range_rad, "phase_range_rad", -math.pi, math.pi)
    if n_lines is None:
        n_lines = max(1, round(shape[0] * shape[1] * _LINES_PER_PIXEL))
    if n_lines < 1:
        raise ValueError(f"invalid n_lines: expected n_lines >= 1, received n_lines={n_lines}")
    rng = np.random.default_rng(seed)
    amplitude_unit = _stroke_texture(shape, rng, n_lines)
    phase_unit = _stroke_texture(shape, rng, n_lines)
    return _compose(amplitude_unit, phase_unit, amplitude_range, phase_range_rad)


def _sample_image(image: str | np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """A grey picture centre-cropped to the aspect of ``shape``, resized, scaled to ``[0, 1]``."""
    from skimage import color, data, transform

    if isinstance(image, str):
        if image not in SAMPLE_IMAGES:
            raise ValueError(
                f"invalid {name}: expected one of {', '.join(SAMPLE_IMAGES)}, "
                f"received {name}={image!r}"
            )
        picture = np.asarray(getattr(data, image)())
    else:
        picture = np.asarray(image)
    if picture.ndim == 3 and picture.shape[-1] in (3, 4):
        picture = color.rgb2gray(picture[..., :3])
    if picture.ndim != 2 or min(picture.shape) < 2:
        raise ValueError(
            f"invalid {name}: expected a 2-D grey or RGB picture, received shape {picture.shape}"
        )
    picture = picture.astype(np.float64)
    # Centre-crop to the target aspect ratio so the picture is not stretched.
    rows, cols = picture.shape
    target_aspect = shape[0] / shape[1]
    if rows / cols > target_aspect:
        keep = max(1, round(cols * target_aspect))
        start = (rows - keep) // 2
        picture = picture[start : start + keep, :]
    else:
        keep = max(1, round(rows / target_aspect))
        start = (cols - keep) // 2
        picture = picture[:, start : start + keep]
    resized = transform.resize(picture, shape, anti_aliasing=True, preserve_range=True)
    low, high = float(resized.min()), float(resized.max())
    if not high > low:
        raise ValueError(f"invalid {name}: the picture is constant after resizing to {shape}")
    return (resized - low) / (high - low)


def image_object(
    size_px: int | Sequence[int],
    amplitude_image: str | np.ndarray = "camera",
    phase_image: str | np.ndarray = "astronaut",
    *,
    amplitude_range: Sequence[float] = DEFAULT_AMPLITUDE_RANGE,
    phase_range_rad: Sequence[float] = DEFAULT_PHASE_RANGE_RAD,
) -> np.ndarray:
    """An object whose amplitude is one picture and whose phase is another.

    Each picture is converted to grey, centre-cropped to the aspect ratio of the
    object, resized with :func:`skimage.transform.resize` (anti-aliased), scaled to
    ``[0, 1]`` (``t``) and mapped linearly onto its range::

        O = (a_min + (a_max - a_min) * t_amp) * exp(i * (p_min + (p_max - p_min) * t_phase))

    Parameters
    ----------
    size_px : int or (int, int)
        Object side, or ``(H, W)``, in pixels.
    amplitude_image, phase_image : str or ndarray
        A name from :data:`SAMPLE_IMAGES` (pictures shipped with scikit-image) or a
        2-D grey / ``(H, W, 3|4)`` colour array.
    amplitude_range, phase_range_rad : (float, float)
        As in :func:`lines_object`.

    Returns
    -------
    ndarray, complex64, shape (H, W)
    """
    shape = _shape_2d(size_px)
    amplitude_range = _check_range(amplitude_range, "amplitude_range", 0.0, 1.0)
    phase_range_rad = _check_range(phase_range_rad, "phase_range_rad", -math.pi, math.pi)
    amplitude_unit = _sample_image(amplitude_image, shape, "amplitude_image")
    phase_unit = _sample_image(phase_image, shape, "phase_image")
    return _compose(amplitude_unit, phase_unit, amplitude_range, phase_range_rad)
