"""The conventions every importer decides explicitly: FFT order, measurement, object frame.

A foreign scan differs from the canonical NPZ (docs/data-contract.md) in a few
conventions. Each importer settles them with the helpers here, in the same way, and
records every choice in ``meta["import"]`` (:class:`ImportRecord`):

- **FFT order.** ``"corner"``: zero frequency at pixel ``(0, 0)`` (numpy FFT order, what
  tike writes); ``"centered"``: at ``(N//2, N//2)`` (the contract, Ptychodus).
  Corner-order patterns are moved with ``numpy.fft.fftshift`` over the last two axes.
  A format that does not state its order is decided from the data
  (:func:`detect_fft_order`): far-field patterns hold most of their photons near zero
  frequency, so the mean pattern's energy in the central ``N/2 x N/2`` window is
  compared with that in the same window after ``fftshift`` (the four corners). A ratio
  of at least :data:`FFT_ORDER_MIN_RATIO` either way decides; anything less is an error
  naming ``--fft-order``.
- **Measurement.** Counts (``sqrt`` applied, in float64, rounded once to float32) or
  amplitudes (used as is).
- **Object frame.** Positions are moved into the smallest frame that holds every
  ``N x N`` probe window (:meth:`ObjectFrame.around_positions`, which also keeps the
  bilinear neighbour of a fractional position) plus ``margin_px`` pixels on every side
  (default :data:`DEFAULT_MARGIN_PX`), with an integer shift so that fractional parts
  are kept. The frame is written as ``objectGuess`` = ones: an object frame and flat
  initial guess, not a ground truth (``meta["object_role"] = "frame"``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptychopinn_core.data.errors import DataContractError
from ptychopinn_core.physics.stitching import ObjectFrame

__all__ = [
    "DEFAULT_MARGIN_PX",
    "FFT_ORDERS",
    "FFT_ORDER_MIN_RATIO",
    "META_IMPORT",
    "META_OBJECT_ROLE",
    "OBJECT_ROLE_FRAME",
    "FFT_ORDER_HINT",
    "ImportRecord",
    "centre_to_corner_energy_ratio",
    "detect_fft_order",
    "amplitudes_from_counts",
    "place_in_frame",
    "resolve_fft_order",
    "to_centered",
]

logger = logging.getLogger(__name__)

FFT_ORDERS: tuple[str, ...] = ("corner", "centered")
#: Energy ratio (central window vs corners of the mean pattern) that decides the order.
FFT_ORDER_MIN_RATIO = 10.0
#: Pixels added on every side of the smallest frame holding every probe window.
DEFAULT_MARGIN_PX = 8
#: ``meta`` key of the import record (:class:`ImportRecord`).
META_IMPORT = "import"
#: ``meta`` key saying what ``objectGuess`` is; ``"frame"``: ones, not a ground truth.
META_OBJECT_ROLE = "object_role"
OBJECT_ROLE_FRAME = "frame"

FFT_ORDER_HINT = (
    "pass --fft-order corner (zero frequency at pixel (0, 0), numpy FFT order: fftshift "
    "is applied) or --fft-order centered (zero frequency at pixel (N//2, N//2): used as is)"
)

_PATTERNS_PER_CHUNK = 64


@dataclass
class ImportRecord:
    """Every convention choice of one import; stored as ``meta["import"]``.

    Attributes
    ----------
    format : str
        ``"tike"``, ``"ptychodus"`` or ``"ptychopinn-legacy"``.
    files : list of str
        Names of the files read.
    fft_order, fft_order_from : str
        The order of the source patterns, and who said so: ``"--fft-order"``,
        ``"format"`` or ``"detected"``.
    fftshift_applied : bool
    measurement, measurement_from : str
        ``"counts"`` or ``"amplitude"`` in the source, and who said so.
    position_convention : str
        How the source gives positions and what was done to them.
    position_shift_px : list of float
        ``[dx, dy]`` added to the source positions (after the convention change).
    probe : str
        Which probe mode was taken.
    object_frame : dict
        ``kind`` (``"sized"``, ``"ptychodus product"``, ``"objectGuess"``), ``height_px``,
        ``width_px`` and, for a sized frame, ``margin_px``.
    details : dict
        Anything else worth keeping (the detection ratio, ...).
    """

    format: str
    files: list[str]
    fft_order: str = "centered"
    fft_order_from: str = "format"
    fftshift_applied: bool = False
    measurement: str = "counts"
    measurement_from: str = "format"
    position_convention: str = ""
    position_shift_px: list[float] = field(default_factory=lambda: [0.0, 0.0])
    probe: str = "the only mode"
    object_frame: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _mean_intensity(patterns: np.ndarray, amplitude: bool) -> np.ndarray:
    """Mean of (M, N, N) intensities in float64 (amplitudes squared), a chunk at a time."""
    total = np.zeros(patterns.shape[-2:], dtype=np.float64)
    for start in range(0, patterns.shape[0], _PATTERNS_PER_CHUNK):
        chunk = np.asarray(patterns[start : start + _PATTERNS_PER_CHUNK], dtype=np.float64)
        total += (np.square(chunk) if amplitude else chunk).sum(axis=0)
    return total / patterns.shape[0]


def centre_to_corner_energy_ratio(patterns: np.ndarray, *, amplitude: bool = False) -> float:
    """Energy of the mean pattern in its central ``N/2`` window over that at its corners.

    The corners are the central window of ``fftshift(mean)``. ``patterns`` are
    intensities (counts), or amplitudes (squared here) when ``amplitude``. ``inf``
    when the corners are empty, ``nan`` when both are.
    """
    mean = _mean_intensity(patterns, amplitude)
    height, width = mean.shape
    rows = slice(height // 2 - height // 4, height // 2 - height // 4 + max(height // 2, 1))
    cols = slice(width // 2 - width // 4, width // 2 - width // 4 + max(width // 2, 1))
    centre = float(mean[rows, cols].sum())
    corners = float(np.fft.fftshift(mean)[rows, cols].sum())
    if corners == 0.0:
        return float("nan") if centre == 0.0 else float("inf")
    return centre / corners


def detect_fft_order(patterns: np.ndarray, *, amplitude: bool = False) -> tuple[str | None, float]:
    """The FFT order the data show, or ``None`` when they do not tell (module docstring).

    Parameters
    ----------
    patterns : ndarray, shape (M, N, N)
        Counts, or amplitudes when ``amplitude``.
    amplitude : bool
        Square the values before averaging.

    Returns
    -------
    (str or None, float)
        ``"centered"``, ``"corner"`` or ``None``, and the centre-to-corner energy ratio.
    """
    ratio = centre_to_corner_energy_ratio(patterns, amplitude=amplitude)
    if ratio >= FFT_ORDER_MIN_RATIO:
        return "centered", ratio
    if ratio <= 1.0 / FFT_ORDER_MIN_RATIO:
        return "corner", ratio
    return None, ratio


def resolve_fft_order(
    patterns: np.ndarray,
    flag: str | None,
    format_order: str | None,
    record: ImportRecord,
    *,
    file: str,
    key: str,
    amplitude: bool = False,
) -> str:
    """Decide the FFT order: the flag, else the format's stated order, else the data.

    A flag or a format order that the data contradict clearly is obeyed with a
    warning (logged and kept in ``record.details["warning"]``). Raises a
    :class:`DataContractError` naming ``--fft-order`` when nothing decides.

    Parameters
    ----------
    patterns : ndarray, shape (M, N, N)
        Counts, or amplitudes when ``amplitude``.
    flag : str or None
        ``--fft-order``.
    format_order : str or None
        The order the format states (``None``: it does not).
    record : ImportRecord
        Receives the decision.
    file, key : str
        Named in errors.
    """
    if flag is not None and flag not in FFT_ORDERS:
        raise ValueError(
            f"invalid fft order: expected one of {', '.join(FFT_ORDERS)}, received {flag!r}"
        )
    detected, ratio = detect_fft_order(patterns, amplitude=amplitude)
    record.details["centre_to_corner_energy_ratio"] = _json_number(ratio)
    record.details["fft_order_detected"] = detected
    if flag is not None or format_order is not None:
        order, source = (flag, "--fft-order") if flag is not None else (format_order, "format")
        if detected is not None and detected != order:
            said = f"--fft-order {flag}" if flag is not None else f"the {record.format} format ({order})"
            message = (
                f"{said} overrides the data, whose mean pattern looks {detected} "
                f"(centre/corner energy ratio {ratio:.3g})"
            )
            logger.warning("%s: %s", file, message)
            record.details["warning"] = message
    elif detected is not None:
        order, source = detected, "detected"
    else:
        raise DataContractError(
            f"cannot tell the FFT order of the patterns: the mean pattern's energy is not "
            f"concentrated at the centre or at the corners (centre/corner energy ratio "
            f"{ratio:.3g}, needs >= {FFT_ORDER_MIN_RATIO:g} or <= {1 / FFT_ORDER_MIN_RATIO:g}); "
            + FFT_ORDER_HINT,
            key=key,
            file=file,
        )
    record.fft_order, record.fft_order_from = order, source
    record.fftshift_applied = order == "corner"
    return order


def to_centered(patterns: np.ndarray, order: str) -> np.ndarray:
    """Patterns with zero frequency at ``(N//2, N//2)``: ``fftshift`` for corner order."""
    if order == "corner":
        return np.fft.fftshift(patterns, axes=(-2, -1))
    return patterns


def amplitudes_from_counts(counts: np.ndarray, *, file: str, key: str) -> np.ndarray:
    """``sqrt(counts)`` computed in float64 and rounded once to float32.

    Raises a :class:`DataContractError` for negative or non-finite counts.
    """
    amplitudes = np.empty(counts.shape, dtype=np.float32)
    for start in range(0, counts.shape[0], _PATTERNS_PER_CHUNK):
        chunk = np.asarray(counts[start : start + _PATTERNS_PER_CHUNK], dtype=np.float64)
        if not np.all(np.isfinite(chunk)):
            raise DataContractError("expected finite photon counts, received NaN or inf",
                                    key=key, file=file)
        if np.any(chunk < 0):
            raise DataContractError(
                f"expected photon counts >= 0, received {int(np.count_nonzero(chunk < 0))} "
                f"negative values in patterns {start}..{start + len(chunk) - 1} (minimum "
                f"{float(chunk.min()):g}); clip background-subtracted data at 0 before "
                "converting",
                key=key,
                file=file,
            )
        amplitudes[start : start + _PATTERNS_PER_CHUNK] = np.sqrt(chunk)
    return amplitudes


def place_in_frame(
    positions_xy: np.ndarray, size: int, margin_px: int = DEFAULT_MARGIN_PX
) -> tuple[np.ndarray, ObjectFrame, np.ndarray]:
    """Move positions into the smallest frame holding every probe window, plus a margin.

    Parameters
    ----------
    positions_xy : ndarray, float, shape (M, 2)
        Contract positions ``(x, y)`` (probe centre pixel ``N//2``) in any frame.
    size : int
        Pattern side N (the probe window).
    margin_px : int
        Pixels added on every side.

    Returns
    -------
    positions : ndarray, float64, shape (M, 2)
        ``positions_xy + shift``, in the new frame (origin 0).
    frame : ObjectFrame
        Origin ``(0, 0)``, the object's ``(H, W)``.
    shift : ndarray, float64, shape (2,)
        ``(dx, dy)``, whole pixels.
    """
    if isinstance(margin_px, bool) or not isinstance(margin_px, (int, np.integer)) or margin_px < 0:
        raise ValueError(f"invalid margin: expected an int >= 0, received margin_px={margin_px!r}")
    positions = np.asarray(positions_xy, dtype=np.float64)
    around = ObjectFrame.around_positions(positions, size, int(margin_px))
    shift = -np.array([around.origin_x_px, around.origin_y_px])
    return positions + shift, ObjectFrame.for_object(around.shape), shift


def _json_number(value: float) -> float | str:
    """JSON has no inf/nan: write them as text."""
    return value if np.isfinite(value) else str(value)
