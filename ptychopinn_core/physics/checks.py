"""Physics checks shared by the conformance kit and the parity report: inputs and references.

For each physics step of :class:`~ptychopinn_core.backends.PhysicsOps`, a reproducible
input (float32/complex64, shaped like what the network produces) and the numpy
reference result computed in float64 (:func:`physics_case`), the tolerance a backend is
held to and why (:data:`TOLERANCES`), and the one error measure (:func:`relative_error`).
Kept free of pytest so that ``ptychopinn parity`` runs in a user install.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from ptychopinn_core.physics.forward import far_field, illuminate
from ptychopinn_core.physics.losses import amplitude_mae, poisson_nll
from ptychopinn_core.physics.overlap import extract_from_merged, merge_patches, pad_to_full
from ptychopinn_core.physics.translate import translate
from ptychopinn_core.simulation.probe import default_probe

__all__ = ["CONFORMANCE_SEED", "PHYSICS_OPS", "TOLERANCES", "Tolerance", "physics_case", "relative_error"]

#: Seed of every random input the kit makes.
CONFORMANCE_SEED = 20240611

@dataclass(frozen=True)
class Tolerance:
    """A relative-error bound (None: reported, not held) and why it is that value."""

    relative: float | None
    reason: str


#: Every tolerance of the kit, in one place (style.md §4). Relative errors are
#: norm-wise: ``||actual - expected|| / ||expected||`` (:func:`relative_error`), with
#: the expected value computed in float64 from the same float32 inputs.
TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {
        "translate": Tolerance(
            1e-6,
            "bilinear weights from float32 coordinates: a few float32 roundings (eps 6e-8) per "
            "output; inputs are smooth, as images are, so coordinate rounding is not amplified",
        ),
        "merge_patches": Tolerance(
            1e-6,
            "two translations, a channel sum and one division in float32; the division is "
            "only taken where the window weight exceeds MERGE_MASK_THRESHOLD, never amplified",
        ),
        "extract_from_merged": Tolerance(1e-6, "one translation in float32, as 'translate'"),
        "illuminate": Tolerance(1e-6, "one complex64 product per pixel: a single rounding"),
        "far_field": Tolerance(
            1e-6, "float32 FFT: error grows like eps * log2(N) ~ 3e-7 for N <= 64, norm-wise"
        ),
        "poisson_nll": Tolerance(
            1e-6, "float32 log and a mean over all pixels; tree reductions keep it near eps"
        ),
        "amplitude_mae": Tolerance(1e-6, "float32 absolute difference and a mean, as 'poisson_nll'"),
        "forward_amplitude": Tolerance(
            1e-5,
            "the backend's whole forward model in float32 (illumination, FFT, modulus) against "
            "numpy in float64 on the backend's own patches: a few 1e-7 steps chained (design.md §7)",
        ),
        "refine_gradient": Tolerance(
            1e-5,
            "one refinement gradient in float32 (sampling, FFT, modulus, adjoints) against the "
            "hand-written numpy gradient: a few 1e-7 steps chained, measured ~5e-7 (amplitude loss)",
        ),
        "refine_gradient_poisson": Tolerance(
            1e-3,
            "the Poisson gradient 2 s^2 A (1 - y / (I + eps)) cancels where the prediction fits: "
            "float32 keeps ~7 digits of each term, so the difference keeps fewer; measured ~7e-5",
        ),
        "refine_gradient_64": Tolerance(1e-10, "the same gradient in float64: measured ~1e-15 (amplitude), ~1e-13 (Poisson)"),
        "refine_run": Tolerance(
            1e-4,
            "the refined object after a few iterations in float32 (amplitude loss, probe refined): "
            "Adam divides by sqrt(v), so rounding is carried into every step; measured ~3e-7 after 3",
        ),
        "refine_run_64": Tolerance(1e-8, "the same in float64: measured ~5e-16"),
        "prediction_repeat": Tolerance(
            1e-6,
            "the same weights and inputs run twice, or in batches of another size: frameworks may "
            "pick other kernels for other batch sizes, which reorders float32 sums",
        ),
    }
)

#: The physics steps a backend implements (:class:`~ptychopinn_core.backends.PhysicsOps`).
PHYSICS_OPS = (
    "translate",
    "merge_patches",
    "extract_from_merged",
    "illuminate",
    "far_field",
    "poisson_nll",
    "amplitude_mae",
)

_PHYSICS_BATCH = 3
_PHYSICS_CHANNELS = 4


def relative_error(actual: Any, expected: Any) -> float:
    """Norm-wise relative error ``||actual - expected||_2 / ||expected||_2``.

    Parameters
    ----------
    actual, expected : array-like or float, same shape
        Compared in complex128/float64.

    Returns
    -------
    float
        The absolute error norm when ``expected`` is all zeros.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise ValueError(
            f"cannot compare: expected shape {expected.shape}, received actual.shape={actual.shape}"
        )
    dtype = np.complex128 if (actual.dtype.kind == "c" or expected.dtype.kind == "c") else np.float64
    difference = np.linalg.norm((actual.astype(dtype) - expected.astype(dtype)).ravel())
    scale = np.linalg.norm(expected.astype(dtype).ravel())
    return float(difference / scale) if scale > 0 else float(difference)



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
    if op == "extract_from_merged":
        merged = _smooth_complex(rng, (batch, size, size))
        offsets = _subpixel_offsets(rng, (batch, channels, 2), size / 8)
        return (merged, offsets), extract_from_merged(merged.astype(wide), offsets.astype(np.float64))
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
