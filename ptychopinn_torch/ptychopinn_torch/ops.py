"""``FrameworkPhysicsOps``: the backend's physics steps with numpy in and numpy out.

Returned by the ``ptychopinn_physics_ops`` hook; the conformance kit and the parity
checks compare every method with the numpy reference of :mod:`ptychopinn_core.physics`.
Each method converts its inputs to CPU tensors (float32 / complex64; shifts and
offsets as given, the layers form coordinates in float64), calls the function of the
same name in :mod:`ptychopinn_torch.layers` and converts back.
"""

from __future__ import annotations

import numpy as np
import torch

from ptychopinn_torch import layers

__all__ = ["FrameworkPhysicsOps"]


def _tensor(values: np.ndarray) -> torch.Tensor:
    """float32 or complex64 CPU tensor of ``values`` (a copy)."""
    values = np.asarray(values)
    dtype = np.complex64 if values.dtype.kind == "c" else np.float32
    return torch.from_numpy(np.array(values, dtype=dtype, copy=True))


def _coordinates(values: np.ndarray) -> torch.Tensor:
    """Shifts/offsets as float64 tensors: the layers cast them to float64 anyway."""
    return torch.from_numpy(np.array(values, dtype=np.float64, copy=True))


def _array(values: torch.Tensor) -> np.ndarray:
    return np.array(values.detach().cpu().numpy(), copy=True)


class FrameworkPhysicsOps:
    """The PyTorch implementation of :class:`~ptychopinn_core.backends.PhysicsOps`."""

    def translate(self, images: np.ndarray, shifts_xy: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_torch.layers.translate`: (..., H, W), (..., 2) -> (..., H, W)."""
        return _array(layers.translate(_tensor(images), _coordinates(shifts_xy)))

    def merge_patches(self, patches: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_torch.layers.merge_patches`: (B, C, N, N), (B, C, 2) -> (B, N, N)."""
        return _array(layers.merge_patches(_tensor(patches), _coordinates(offsets_xy)))

    def enforce_overlap(self, patches: np.ndarray, offsets_xy: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """:func:`ptychopinn_torch.layers.enforce_overlap`: (B, C, N, N), (B, C, 2), (N, N) -> (B, C, N, N)."""
        weights = None if weights is None else _tensor(weights)
        return _array(layers.enforce_overlap(_tensor(patches), _coordinates(offsets_xy), weights))

    def illuminate(self, patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_torch.layers.illuminate`: (..., N, N) * (N, N)."""
        return _array(layers.illuminate(_tensor(patches), _tensor(probe)))

    def far_field(self, psi: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_torch.layers.far_field`: ``fftshift(fft2(psi)) / N``."""
        return _array(layers.far_field(_tensor(psi)))

    def poisson_nll(self, predicted_intensity: np.ndarray, observed_intensity: np.ndarray) -> float:
        """:func:`ptychopinn_torch.layers.poisson_nll` (a float)."""
        return float(layers.poisson_nll(_tensor(predicted_intensity), _tensor(observed_intensity)))

    def amplitude_mae(
        self, predicted_amplitude: np.ndarray, observed_amplitude: np.ndarray, intensity_scale: float
    ) -> float:
        """:func:`ptychopinn_torch.layers.amplitude_mae` (a float)."""
        return float(
            layers.amplitude_mae(_tensor(predicted_amplitude), _tensor(observed_amplitude), float(intensity_scale))
        )
