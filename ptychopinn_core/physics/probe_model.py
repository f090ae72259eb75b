"""What the model does to the probe: the optional circular mask and the energy rule.

See ``docs/physics.md`` ("Probe"). The model's probe is
``normalise_probe(circular_probe_mask(N) * P)`` when the mask is enabled and
``normalise_probe(P)`` otherwise: normalise the probe that is actually used.
"""

from __future__ import annotations

import numpy as np

__all__ = ["circular_probe_mask", "normalise_probe"]


def circular_probe_mask(size: int, dtype=np.float64) -> np.ndarray:
    """Disk of radius ``N/4`` around the probe centre pixel ``(N//2, N//2)``.

    Parameters
    ----------
    size : int
        Probe side ``N`` (positive).
    dtype : numpy dtype, optional
        Real dtype of the mask (default float64).

    Returns
    -------
    ndarray, shape (N, N)
        ``1`` where ``sqrt((r - N//2)**2 + (c - N//2)**2) <= N/4``, else ``0``.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"invalid probe size: expected an int, received size={size!r}")
    if size < 1:
        raise ValueError(f"invalid probe size: expected size >= 1, received size={size}")
    offsets = np.arange(size) - size // 2
    # Compare squared distances: exact integers, so pixels exactly at N/4 are inside.
    distance_sq = offsets[:, None] ** 2 + offsets[None, :] ** 2
    return (4 * 4 * distance_sq <= size * size).astype(dtype)


def normalise_probe(probe: np.ndarray) -> np.ndarray:
    """Scale the probe so that its total energy is ``sum |P|**2 == N**2``.

    Why ``N**2``: after the amplitude normalisation of docs/physics.md §2 every
    measured pattern has mean total energy ``(N/2)**2``. The far field is unitary, so a
    uniform object of amplitude ``1/2`` under this probe predicts exactly that energy
    (``(1/2)**2 * N**2``). The sigmoid amplitude head then starts mid-range instead of
    saturated.

    Parameters
    ----------
    probe : ndarray, shape (N, N), complex or real

    Returns
    -------
    ndarray, shape (N, N), complex (complex64 for complex64/float32 input, else complex128)
        ``P * N / sqrt(sum |P|**2)``.
    """
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"invalid probe shape: expected (N, N), received probe.shape={probe.shape}")
    if probe.dtype.kind not in "fciu":
        raise TypeError(f"invalid probe dtype: expected a numeric array, received probe.dtype={probe.dtype}")
    complex_dtype = np.result_type(probe.dtype, np.complex64)
    if complex_dtype not in (np.complex64, np.complex128):
        complex_dtype = np.dtype(np.complex128)
    energy = float(np.sum(np.abs(probe.astype(np.complex128)) ** 2))
    if not np.isfinite(energy) or energy <= 0:
        raise ValueError(
            "invalid probe: expected finite, non-zero total energy sum |P|^2, "
            f"received sum |P|^2={energy}"
        )
    size = probe.shape[-1]
    return (probe * (size / np.sqrt(energy))).astype(complex_dtype)
