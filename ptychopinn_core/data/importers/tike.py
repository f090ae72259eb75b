"""Import a tike-style NPZ scan (``data``, ``scan``, ``probe``), plain or bz2-compressed.

The layout is that of tike's (AdvancedPhotonSource/tike) test data and simulator:

- ``data``: ``(1, M, N, N)`` or ``(M, N, N)`` detector **intensities** (photon counts):
  tike's ``data`` is ``|farplane|**2``, so counts are the format's measurement
  (``--measurement amplitude`` overrides). The FFT order is not stored: tike's own
  propagator uses unshifted FFTs (corner order), but a file in this layout may come
  from elsewhere, so the order is taken from the data (conventions.detect_fft_order)
  unless ``--fft-order`` says it.
- ``scan``: ``(1, M, 2)`` or ``(M, 2)`` positions in object pixels, ``scan[..., 0]``
  along the rows (y) and ``scan[..., 1]`` along the columns (x), each the **minimum
  corner** of the probe window in tike's object coordinates. The contract's position is
  the probe centre pixel ``N//2``: ``x = scan[..., 1] + N//2``, ``y = scan[..., 0] +
  N//2``, then shifted by whole pixels into the sized object frame.
- ``probe``: ``(..., N, N)`` complex (tike: ``(1, 1, 1, SHARED, N, N)``); the first mode
  is taken.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptychopinn_core.data import keys
from ptychopinn_core.data.errors import DataContractError, DataContractTypeError
from ptychopinn_core.data.importers.archive import load_array, open_npz
from ptychopinn_core.data.importers.conventions import (
    DEFAULT_MARGIN_PX,
    META_IMPORT,
    META_OBJECT_ROLE,
    OBJECT_ROLE_FRAME,
    ImportRecord,
    amplitudes_from_counts,
    place_in_frame,
    resolve_fft_order,
    to_centered,
)
from ptychopinn_core.data.scan import ScanData

__all__ = ["DATA", "FORMAT_TIKE", "PROBE", "SCAN", "TIKE_KEYS", "read_tike"]

FORMAT_TIKE = "tike"
DATA, SCAN, PROBE = "data", "scan", "probe"
TIKE_KEYS: tuple[str, ...] = (DATA, SCAN, PROBE)


def read_tike(
    path: str | os.PathLike[str],
    *,
    fft_order: str | None = None,
    measurement: str | None = None,
    margin_px: int = DEFAULT_MARGIN_PX,
) -> ScanData:
    """Read a tike-style NPZ (or ``.npz.bz2``) scan into the canonical conventions.

    Parameters
    ----------
    path : path-like
        The archive.
    fft_order : {"corner", "centered"}, optional
        Order of the patterns; default: detected from the data (an error when the data
        do not tell).
    measurement : {"counts", "amplitude"}, optional
        What ``data`` holds; default counts (tike stores intensities).
    margin_px : int
        Pixels around the smallest frame holding every probe window.

    Returns
    -------
    ScanData
        ``diffraction`` float32 (M, N, N) centred amplitudes, positions in the sized
        frame, ``probeGuess`` the first probe mode, ``objectGuess`` ones (H, W) (the
        frame, not a ground truth), and ``meta["import"]`` recording every choice.

    Raises
    ------
    DataContractError
        A missing key, a wrong shape or dtype, negative counts, an undecidable FFT
        order; one line naming the file, the key and the flag to set.
    """
    file = os.fspath(path)
    with open_npz(file) as archive:
        data = load_array(archive, DATA, file)
        scan = load_array(archive, SCAN, file)
        probe = load_array(archive, PROBE, file)
    data = _patterns(data, file)
    n_positions, size = data.shape[0], data.shape[-1]
    scan = _positions(scan, n_positions, file)
    probe, n_modes = _first_mode(probe, size, file)

    record = ImportRecord(format=FORMAT_TIKE, files=[Path(file).name])
    record.measurement, record.measurement_from = (
        (measurement, "--measurement") if measurement is not None else ("counts", "format")
    )
    is_amplitude = record.measurement == keys.MEASUREMENT_AMPLITUDE
    order = resolve_fft_order(data, fft_order, None, record, file=file, key=DATA,
                              amplitude=is_amplitude)
    if is_amplitude:
        amplitudes = data.astype(np.float32)
    else:
        amplitudes = amplitudes_from_counts(data, file=file, key=DATA)
    diffraction = np.ascontiguousarray(to_centered(amplitudes, order))

    centre = np.stack([scan[:, 1], scan[:, 0]], axis=-1).astype(np.float64) + size // 2
    positions, frame, shift = place_in_frame(centre, size, margin_px)
    record.position_convention = (
        "tike scan[..., 1] = x (columns), scan[..., 0] = y (rows), minimum corner of the "
        f"probe window; + N//2 = {size // 2} px to the probe centre, then + shift into the "
        "sized object frame"
    )
    record.position_shift_px = [float(size // 2 + shift[0]), float(size // 2 + shift[1])]
    record.probe = f"mode 0 of {n_modes}"
    record.object_frame = {"kind": "sized", "margin_px": int(margin_px),
                           "height_px": frame.height_px, "width_px": frame.width_px}

    conversions = [
        f"tike '{DATA}' {data.dtype} {_shape(data.shape)}: "
        + ("used as amplitude" if is_amplitude else "counts -> sqrt -> float32 amplitude"),
        f"fft order {order} ({record.fft_order_from})"
        + (": fftshift applied" if order == "corner" else ": used as is"),
        f"positions: x = scan[..., 1], y = scan[..., 0], shifted by "
        f"({record.position_shift_px[0]:g}, {record.position_shift_px[1]:g}) px",
        f"probe: {record.probe}",
        f"objectGuess: ones {frame.height_px} x {frame.width_px} (object frame with a "
        f"{margin_px} px margin, not a ground truth)",
    ]
    meta = {
        keys.META_SOURCE: FORMAT_TIKE,
        keys.META_SOURCE_FILE: Path(file).name,
        keys.META_CONVERSIONS: conversions,
        META_OBJECT_ROLE: OBJECT_ROLE_FRAME,
        META_IMPORT: record.to_json(),
    }
    try:
        return ScanData(
            diffraction=diffraction,
            xcoords=np.ascontiguousarray(positions[:, 0]),
            ycoords=np.ascontiguousarray(positions[:, 1]),
            probe=probe,
            object=np.ones(frame.shape, dtype=np.complex64),
            meta=meta,
        )
    except DataContractError as error:  # e.g. negative values declared as amplitudes
        raise error.with_file(file) from None


def _patterns(data: np.ndarray, file: str) -> np.ndarray:
    if data.dtype.kind not in "fiu":
        raise DataContractTypeError(
            f"expected real intensities (float or integer), received dtype {data.dtype}",
            key=DATA, file=file,
        )
    received = data.shape
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 3 or data.shape[1] != data.shape[2] or data.shape[0] < 1:
        raise DataContractError(
            f"expected (1, M, N, N) or (M, N, N) square patterns, received shape "
            f"{_shape(received)}" + (" (one tike angle at a time: several angles are not "
                                      "supported)" if len(received) == 4 else ""),
            key=DATA, file=file,
        )
    return data


def _positions(scan: np.ndarray, n_positions: int, file: str) -> np.ndarray:
    if scan.dtype.kind not in "fiu":
        raise DataContractTypeError(
            f"expected real positions (object pixels), received dtype {scan.dtype}",
            key=SCAN, file=file,
        )
    received = scan.shape
    if scan.ndim == 3 and scan.shape[0] == 1:
        scan = scan[0]
    if scan.shape != (n_positions, 2):
        raise DataContractError(
            f"expected (1, M, 2) or (M, 2) positions with M = {n_positions} (one per pattern "
            f"of '{DATA}'), received shape {_shape(received)}",
            key=SCAN, file=file,
        )
    if not np.all(np.isfinite(scan)):
        raise DataContractError("expected finite positions, received NaN or inf", key=SCAN,
                                file=file)
    return scan


def _first_mode(probe: np.ndarray, size: int, file: str) -> tuple[np.ndarray, int]:
    if probe.dtype.kind not in "fciu":
        raise DataContractTypeError(f"expected a complex probe, received dtype {probe.dtype}",
                                    key=PROBE, file=file)
    if probe.ndim < 2 or probe.shape[-2:] != (size, size):
        raise DataContractError(
            f"expected (..., N, N) with N = {size} (the pattern size), received shape "
            f"{_shape(probe.shape)}",
            key=PROBE, file=file,
        )
    modes = probe.reshape((-1, size, size))
    first = modes[0].astype(np.complex64)
    if not np.all(np.isfinite(first)):
        raise DataContractError("expected a finite probe, received NaN or inf", key=PROBE,
                                file=file)
    return first, int(modes.shape[0])


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"
