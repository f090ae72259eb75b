"""Illumination and far-field propagation: object patches to predicted diffraction.

Equations (docs/physics.md, "Forward model")::

    psi   = O * P                          illumination
    F     = fftshift(fft2(psi)) / N        far field, unitary for an N x N array
    A_hat = |F|                            predicted amplitude
    I_hat = (s * A_hat) ** 2               predicted intensity in scaled units
"""

from __future__ import annotations

import numpy as np

__all__ = ["illuminate", "far_field", "predicted_amplitude", "predicted_intensity"]


def illuminate(patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Exit waves ``psi = O * P``.

    Parameters
    ----------
    patches : ndarray, complex, shape (..., N, N)
        Object patches ``O``.
    probe : ndarray, complex, shape (N, N)
        Probe ``P``, broadcast over the leading axes.
    """
    return np.asarray(patches) * np.asarray(probe)


def far_field(psi: np.ndarray) -> np.ndarray:
    """Far-field wave ``F = fftshift(fft2(psi)) / N``, zero frequency at pixel ``N // 2``.

    The ``1 / N`` makes the transform unitary (Parseval:
    ``sum |F|**2 == sum |psi|**2``).

    Parameters
    ----------
    psi : ndarray, complex, shape (..., N, N)
    """
    psi = np.asarray(psi)
    size = psi.shape[-1]
    return np.fft.fftshift(np.fft.fft2(psi, axes=(-2, -1)), axes=(-2, -1)) / size


def predicted_amplitude(patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Predicted diffraction amplitude ``A_hat = |F(O * P)|``, shape (..., N, N)."""
    return np.abs(far_field(illuminate(patches, probe)))


def predicted_intensity(amplitude: np.ndarray, intensity_scale: float) -> np.ndarray:
    """Predicted intensity in scaled (photon) units, ``I_hat = (s * A_hat) ** 2``."""
    return (intensity_scale * np.asarray(amplitude)) ** 2
