"""Probes for simulation: the default disk-like probe and probes loaded from files.

The default probe is a *smoothed thresholded Gaussian*: the disk where a Gaussian
exceeds ``exp(-1/2)`` (its 1-sigma contour, radius ``R = 7 N / 32``), blurred by a
Gaussian of sigma ``N / 64`` so the edge is soft (no ringing in the far field), with a
weak quadratic phase (a slightly defocused beam). With ``R + 2 sigma = N / 4`` the
illuminated area fills the central ``N/2 x N/2`` window of the patch, which is where
the network predicts content (docs/physics.md §4), and the optional probe mask of
radius ``N / 4`` (physics §5) cuts only the last few percent of the edge.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_PROBE_CURVATURE_RAD",
    "PROBE_NPZ_KEYS",
    "default_probe",
    "default_probe_radius_px",
    "load_probe",
]

# Phase at the disk edge of the default probe's quadratic phase, radians: enough to
# make the probe not purely real (breaks the twin-image ambiguity), small enough that
# the far field stays compact.
DEFAULT_PROBE_CURVATURE_RAD = 0.5
# NPZ keys searched, in order, by load_probe.
PROBE_NPZ_KEYS = ("probeGuess", "probe")


def default_probe_radius_px(size: int) -> float:
    """Radius ``R = 7 N / 32`` of the default probe's disk, in pixels (14 px for N = 64)."""
    return 7.0 * size / 32.0


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"invalid probe size: expected an int, received size={size!r}")
    if size < 4:
        raise ValueError(f"invalid probe size: expected size >= 4, received size={size}")
    return int(size)


def default_probe(size: int, *, curvature_rad: float = DEFAULT_PROBE_CURVATURE_RAD) -> np.ndarray:
    """The default disk-like probe, centred on pixel ``(N//2, N//2)``.

    ::

        r      = sqrt((row - N//2)**2 + (col - N//2)**2)
        disk   = [exp(-r**2 / (2 R**2)) >= exp(-1/2)] = [r <= R],   R = 7 N / 32
        |P|    = G_{N/64} * disk, scaled to a peak of 1
        arg P  = curvature_rad * (r / R)**2

    Parameters
    ----------
    size : int
        Probe side N in pixels (>= 4).
    curvature_rad : float
        Phase at the disk edge, radians (default 0.5).

    Returns
    -------
    ndarray, complex64, shape (N, N)
        Peak amplitude 1; practically zero outside radius ``N / 4``.
    """
    size = _check_size(size)
    radius_px = default_probe_radius_px(size)
    offsets = np.arange(size) - size // 2
    radius_sq = offsets[:, None] ** 2 + offsets[None, :] ** 2
    gaussian = np.exp(-radius_sq / (2.0 * radius_px**2))
    disk = (gaussian >= np.exp(-0.5)).astype(np.float64)
    amplitude = ndimage.gaussian_filter(disk, sigma=size / 64.0, mode="constant")
    amplitude /= amplitude.max()
    phase = curvature_rad * radius_sq / radius_px**2
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def load_probe(path: str | os.PathLike[str], size: int | None = None) -> np.ndarray:
    """Read a probe from ``.npy`` or ``.npz`` (key ``probeGuess`` or ``probe``).

    Parameters
    ----------
    path : path-like
        A ``.npy`` file holding one (N, N) array, or an ``.npz`` with key
        ``probeGuess`` (preferred) or ``probe``. Never unpickled.
    size : int, optional
        Expected side N; a probe of another size is an error (resampling a probe
        would change the pixel size, i.e. the physics).

    Returns
    -------
    ndarray, complex64, shape (N, N)

    Raises
    ------
    OSError
        The file does not exist.
    ValueError
        Not a numpy file, no probe key, pickled data, wrong shape, non-finite or
        all-zero values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probe file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(
            f"cannot read probe from {path}: expected a .npy or .npz file without pickled "
            f"data ({error})"
        ) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            key = next((k for k in PROBE_NPZ_KEYS if k in loaded.files), None)
            if key is None:
                raise ValueError(
                    f"no probe in {path}: expected key {' or '.join(PROBE_NPZ_KEYS)}, "
                    f"found keys {sorted(loaded.files)}"
                )
            try:
                probe = np.asarray(loaded[key])
            except ValueError as error:
                raise ValueError(f"cannot read key {key!r} of {path}: {error}") from None
        where = f"{path}[{key!r}]"
    else:
        probe = np.asarray(loaded)
        where = str(path)
    if probe.dtype.kind not in "fci" or probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(
            f"invalid probe: expected a numeric (N, N) array, received shape {probe.shape} "
            f"dtype {probe.dtype} in {where}"
        )
    if size is not None and probe.shape != (size, size):
        raise ValueError(
            f"invalid probe shape: expected ({size}, {size}), received {probe.shape} in {where}"
        )
    if not np.all(np.isfinite(probe)):
        raise ValueError(f"invalid probe: non-finite values in {where}")
    if not np.any(probe):
        raise ValueError(f"invalid probe: all values are zero in {where}")
    return probe.astype(np.complex64)
