"""The physics cases a backend is checked on: reproducible inputs and numpy references.

For each physics step of :class:`~ptychopinn_core.backends.PhysicsOps`, an input
(float32/complex64, shaped like what the network produces) and the numpy reference
result computed in float64 (:func:`physics_case`). The conformance kit and the parity
report both run these, so a backend is held to the same cases wherever it is checked;
the bounds are in :mod:`ptychopinn_core.parity.tolerances`. Kept free of pytest so that
``ptychopinn parity`` runs in a user install.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ptychopinn_core.physics.forward import far_field, illuminate
from ptychopinn_core.physics.losses import amplitude_mae, poisson_nll
from ptychopinn_core.physics.overlap import enforce_overlap, merge_patches, pad_to_full, probe_weights
from ptychopinn_core.physics.translate import translate
from ptychopinn_core.simulation.probe import default_probe

__all__ = ["CONFORMANCE_SEED", "PHYSICS_OPS", "physics_case"]

#: Seed of every random input the kit makes.
CONFORMANCE_SEED = 20240611

#: The physics steps a backend implements (:class:`~ptychopinn_core.backends.PhysicsOps`).
PHYSICS_OPS = (
    "translate",
    "merge_patches",
    "enforce_overlap",
    "illuminate",
    "far_field",
    "poisson_nll",
    "amplitude_mae",
)

_PHYSICS_BATCH = 3
_PHYSICS_CHANNELS = 4


def _smooth_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth complex64 images (a few low-frequency waves), as real objects are."""
    rows, cols = np.meshgrid(np.arange(shape[-2]), np.arange(shape[-1]), indexing="ij")
    lead = shape[:-2]
    result = np.zeros(shape, dtype=np.complex128)
    for _ in range(4):
        frequency = rng.uniform(-1.5, 1.5, size=lead + (2, 1, 1)) * (2 * math.pi / shape[-1])
        phase = rng.uniform(0, 2 * math.pi, size=lead + (1, 1))
        weight = rng.normal(size=lead + (1, 1)) + 1j * rng.normal(size=lead + (1, 1))
        result += weight * np.exp(1j * (frequency[..., 0, :, :] * rows + frequency[..., 1, :, :] * cols + phase))
    return result.astype(np.complex64)


def _subpixel_offsets(rng: np.random.Generator, shape: tuple[int, ...], limit: float) -> np.ndarray:
    """float32 ``(x, y)`` shifts in ``[-limit, limit]``, none of them integer."""
    return (np.trunc(rng.uniform(-limit, limit, size=shape)) + rng.uniform(0.1, 0.9, size=shape)).astype(np.float32)


def physics_case(op: str, size: int, intensity_scale: float, seed: int = CONFORMANCE_SEED) -> tuple[tuple, Any]:
    """Inputs (float32/complex64) of a physics op and the float64 numpy reference result.

    Parameters
    ----------
    op : str
        One of :data:`PHYSICS_OPS`.
    size : int
        Pattern side N.
    intensity_scale : float
        ``s`` for the loss cases (photon units, as in training).
    seed : int

    Returns
    -------
    (tuple, ndarray or float)
        ``(arguments, expected)``: call ``getattr(ops, op)(*arguments)``.
    """
    rng = np.random.default_rng([seed, PHYSICS_OPS.index(op)])
    batch, channels = _PHYSICS_BATCH, _PHYSICS_CHANNELS
    wide = np.complex128

    def patches() -> np.ndarray:  # network-like: content in the central window only
        return pad_to_full(_smooth_complex(rng, (batch, channels, size // 2, size // 2)), size)

    def amplitudes() -> tuple[np.ndarray, np.ndarray]:
        probe = default_probe(size)
        predicted = np.abs(far_field(illuminate(patches().astype(wide), probe))).astype(np.float32)
        noise = rng.uniform(0.8, 1.2, size=predicted.shape)
        return predicted, (predicted * noise).astype(np.float32)

    if op == "translate":
        images = _smooth_complex(rng, (batch, size, size))
        shifts = _subpixel_offsets(rng, (batch, 2), size / 4)
        return (images, shifts), translate(images.astype(wide), shifts.astype(np.float64))
    if op == "merge_patches":
        values, offsets = patches(), _subpixel_offsets(rng, (batch, channels, 2), size / 8)
        return (values, offsets), merge_patches(values.astype(wide), offsets.astype(np.float64))
    if op == "enforce_overlap":  # with the default merge weights: the probe's (physics.md §4)
        values, offsets = patches(), _subpixel_offsets(rng, (batch, channels, 2), size / 8)
        weights = probe_weights(default_probe(size)).astype(np.float32)
        return (values, offsets, weights), enforce_overlap(values.astype(wide), offsets.astype(np.float64), weights)
    if op == "illuminate":
        values, probe = patches(), default_probe(size).astype(np.complex64)
        return (values, probe), illuminate(values.astype(wide), probe.astype(wide))
    if op == "far_field":
        psi = patches() * default_probe(size).astype(np.complex64)
        return (psi,), far_field(psi.astype(wide))
    if op == "poisson_nll":
        predicted, observed = amplitudes()
        predicted_intensity = ((intensity_scale * predicted.astype(np.float64)) ** 2).astype(np.float32)
        observed_intensity = ((intensity_scale * observed.astype(np.float64)) ** 2).astype(np.float32)
        expected = poisson_nll(predicted_intensity.astype(np.float64), observed_intensity.astype(np.float64))
        return (predicted_intensity, observed_intensity), expected
    if op == "amplitude_mae":
        predicted, observed = amplitudes()
        expected = amplitude_mae(predicted.astype(np.float64), observed.astype(np.float64), intensity_scale)
        return (predicted, observed, intensity_scale), expected
    raise ValueError(f"unknown physics op: expected one of {PHYSICS_OPS}, received op={op!r}")
