"""Data normalisation and intensity scale (docs/physics.md, "Normalisation").

Equations::

    a   = sqrt((N/2)**2 / mean_m(sum_hw X**2))    amplitude normalisation
    X_n = a * X                                   what the network sees
    s   = sqrt(nphotons) / (N/2)                  intensity scale
    y   = (s * X_n)**2                            observed intensity in the loss

After normalisation every pattern has, on average, total energy ``(N/2)**2``; ``s``
then brings the mean total of ``y`` to ``nphotons``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["amplitude_normalisation", "intensity_scale", "normalise_amplitudes"]


# Elements squared at once in float64 (a temporary of ~32 MiB).
_BLOCK_ELEMENTS = 1 << 22


def amplitude_normalisation(diffraction: np.ndarray) -> float:
    """Amplitude factor ``a`` that gives the patterns mean total energy ``(N/2)**2``.

    Equation: ``a = sqrt((N/2)**2 / mean_m(sum_{h,w} X[m, h, w]**2))``.

    Parameters
    ----------
    diffraction : ndarray, float, shape (M, N, N)
        Diffraction amplitudes ``X = sqrt(counts)`` (any positive scale).

    Returns
    -------
    float
        ``a``, dimensionless; multiply the amplitudes by it (``X_n = a * X``).
    """
    diffraction = np.asarray(diffraction)
    if diffraction.ndim != 3 or diffraction.shape[1] != diffraction.shape[2]:
        raise ValueError(
            "invalid diffraction shape: expected (M, N, N), "
            f"received diffraction.shape={diffraction.shape}"
        )
    if diffraction.shape[0] == 0 or diffraction.shape[1] == 0:
        raise ValueError(
            "invalid diffraction: expected at least one non-empty pattern, "
            f"received diffraction.shape={diffraction.shape}"
        )
    if diffraction.dtype.kind not in "fiu":
        raise TypeError(
            f"invalid diffraction dtype: expected real amplitudes, received diffraction.dtype={diffraction.dtype}"
        )
    # Accumulate in float64: a float32 sum over 1e5 patterns x 64 x 64 pixels drifts. A block
    # of patterns at a time: the whole scan in float64 would double the memory of a large one.
    per_block = max(1, _BLOCK_ELEMENTS // (diffraction.shape[1] * diffraction.shape[2]))
    energy_per_pattern = np.concatenate([
        np.sum(np.square(diffraction[start : start + per_block], dtype=np.float64), axis=(1, 2))
        for start in range(0, diffraction.shape[0], per_block)
    ])
    mean_energy = float(np.mean(energy_per_pattern))
    if not math.isfinite(mean_energy) or mean_energy <= 0:
        raise ValueError(
            "invalid diffraction: expected finite, non-zero mean total energy "
            f"mean_m(sum X^2), received {mean_energy}"
        )
    half = diffraction.shape[-1] / 2
    return math.sqrt(half * half / mean_energy)


def intensity_scale(nphotons: float, size: int) -> float:
    """Intensity scale ``s = sqrt(nphotons) / (N/2)``.

    With normalised amplitudes of mean total energy ``(N/2)**2``, ``(s * X_n)**2``
    has mean total ``nphotons`` per pattern: the loss works in photon units.

    Parameters
    ----------
    nphotons : float
        Expected photons per pattern (> 0).
    size : int
        Pattern side ``N`` (> 0).

    Returns
    -------
    float
        ``s``, in sqrt(photons) per normalised amplitude unit.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"invalid size: expected an int, received size={size!r}")
    if size < 1:
        raise ValueError(f"invalid size: expected size >= 1, received size={size}")
    try:
        photons = float(nphotons)
    except (TypeError, ValueError):
        raise TypeError(f"invalid nphotons: expected a number, received nphotons={nphotons!r}") from None
    if not math.isfinite(photons) or photons <= 0:
        raise ValueError(f"invalid nphotons: expected a finite number > 0, received nphotons={nphotons!r}")
    return math.sqrt(photons) / (size / 2)


def normalise_amplitudes(diffraction: np.ndarray, amplitude_normalisation: float) -> np.ndarray:
    """Normalised amplitudes ``X_n = a * X``, float32.

    The product is taken in float64 and rounded once, so normalising a whole dataset
    or one chunk of it gives bit-identical numbers.

    Parameters
    ----------
    diffraction : ndarray, float, shape (..., N, N)
        Amplitudes ``X``.
    amplitude_normalisation : float
        ``a`` (physics.md §2).

    Returns
    -------
    ndarray, float32, same shape
    """
    diffraction = np.asarray(diffraction)
    factor = float(amplitude_normalisation)
    normalised = np.empty(diffraction.shape, dtype=np.float32)
    if diffraction.ndim < 3:
        normalised[...] = diffraction.astype(np.float64) * factor
        return normalised
    # Work through the float64 product a block of patterns at a time: a whole 10^5-pattern
    # scan in float64 would double the memory of the result.
    per_block = max(1, _BLOCK_ELEMENTS // max(1, math.prod(diffraction.shape[1:])))
    for start in range(0, diffraction.shape[0], per_block):
        block = slice(start, start + per_block)
        normalised[block] = diffraction[block].astype(np.float64) * factor
    return normalised
