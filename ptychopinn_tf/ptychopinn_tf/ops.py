"""``FrameworkPhysicsOps``: the TensorFlow physics behind the core's PhysicsOps protocol.

Numpy in, :mod:`ptychopinn_tf.layers` in TensorFlow, numpy out: complex inputs are
converted to complex64 and real ones to float32 (the precision the model trains in),
arrays come back as complex64/float32 and losses as Python floats. The conformance
kit and the parity checks compare these with the numpy reference.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ptychopinn_tf import layers

__all__ = ["FrameworkPhysicsOps"]


def _tensor(values: np.ndarray) -> tf.Tensor:
    """complex64 or float32 tensor of ``values``."""
    values = np.asarray(values)
    return tf.constant(values.astype(np.complex64 if values.dtype.kind == "c" else np.float32, copy=False))


class FrameworkPhysicsOps:
    """Each physics step of :mod:`ptychopinn_core.physics`, computed by TensorFlow."""

    def translate(self, images: np.ndarray, shifts_xy: np.ndarray) -> np.ndarray:
        return layers.translate(_tensor(images), _tensor(shifts_xy)).numpy()

    def merge_patches(self, patches: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        return layers.merge_patches(_tensor(patches), _tensor(offsets_xy)).numpy()

    def enforce_overlap(self, patches: np.ndarray, offsets_xy: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        weights = None if weights is None else _tensor(weights)
        return layers.enforce_overlap(_tensor(patches), _tensor(offsets_xy), weights).numpy()

    def illuminate(self, patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
        return layers.illuminate(_tensor(patches), _tensor(probe)).numpy()

    def far_field(self, psi: np.ndarray) -> np.ndarray:
        return layers.far_field(_tensor(psi)).numpy()

    def poisson_nll(self, predicted_intensity: np.ndarray, observed_intensity: np.ndarray) -> float:
        return float(layers.poisson_nll(_tensor(predicted_intensity), _tensor(observed_intensity)).numpy())

    def amplitude_mae(
        self, predicted_amplitude: np.ndarray, observed_amplitude: np.ndarray, intensity_scale: float
    ) -> float:
        scale = np.float32(intensity_scale)
        return float(layers.amplitude_mae(_tensor(predicted_amplitude), _tensor(observed_amplitude), scale).numpy())
