"""ptychopinn_tf.layers against the numpy reference (ptychopinn_core.physics).

Inputs are float32/complex64, the reference runs in float64 on the same numbers, and
the bound is the float32 rounding of a few chained steps (relative error <= 1e-6,
norm-wise). Gradients are checked to exist, to be finite where the merge has empty
regions, and (for the linear translation) to be the exact adjoint.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  # numerics hygiene: torch before tensorflow in one process

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
layers = pytest.importorskip("ptychopinn_tf.layers")

from ptychopinn_core import physics  # noqa: E402
from ptychopinn_core.testing import relative_error  # noqa: E402

#: float32 rounding of a few chained operations, norm-wise (conformance kit's value).
TOLERANCE = 1e-6
SIZES = (16, 64)
CHANNELS = (1, 4)


def smooth_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """complex64 sums of a few low-frequency plane waves (image-like, smooth)."""
    rows, cols = np.meshgrid(np.arange(shape[-2]), np.arange(shape[-1]), indexing="ij")
    result = np.zeros(shape, dtype=np.complex128)
    for _ in range(3):
        kx, ky = rng.uniform(-1.5, 1.5, size=2) * 2 * np.pi / shape[-1]
        weight = rng.normal(size=shape[:-2] + (1, 1)) + 1j * rng.normal(size=shape[:-2] + (1, 1))
        result += weight * np.exp(1j * (kx * cols + ky * rows + rng.uniform(0, 2 * np.pi)))
    return result.astype(np.complex64)


def subpixel(rng: np.random.Generator, shape: tuple[int, ...], limit: float) -> np.ndarray:
    """float32 shifts in [-limit, limit] that are never integers."""
    return (np.trunc(rng.uniform(-limit, limit, size=shape)) + rng.uniform(0.1, 0.9, size=shape)).astype(np.float32)


def windowed_patches(rng: np.random.Generator, batch: int, channels: int, size: int) -> np.ndarray:
    """Network-like patches: content in the central N/2 window only."""
    return physics.pad_to_full(smooth_complex(rng, (batch, channels, size // 2, size // 2)), size)


def wide(values: np.ndarray) -> np.ndarray:
    return values.astype(np.complex128 if values.dtype.kind == "c" else np.float64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


# -- sampling and translation ---------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shared_image", [False, True])
def test_sample_separable_matches_reference(rng, size: int, shared_image: bool) -> None:
    images = smooth_complex(rng, (size, size) if shared_image else (3, size, size))
    # Coordinates partly outside the image: exercises the zero fill and negative floors.
    rows = rng.uniform(-3, size + 2, size=(3, size // 2))
    cols = rng.uniform(-3, size + 2, size=(3, size + 5))
    expected = physics.sample_separable(wide(images), rows, cols)
    actual = layers.sample_separable(tf.constant(images), tf.constant(rows), tf.constant(cols)).numpy()
    assert actual.dtype == np.complex64 and actual.shape == expected.shape
    assert relative_error(actual, expected) <= TOLERANCE


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("dtype", [np.complex64, np.float32])
def test_translate_subpixel_matches_reference(rng, size: int, channels: int, dtype) -> None:
    images = smooth_complex(rng, (2, channels, size, size))
    images = images if dtype == np.complex64 else images.real.astype(np.float32)
    shifts = subpixel(rng, (2, channels, 2), size / 4)
    expected = physics.translate(wide(images), shifts.astype(np.float64))
    actual = layers.translate(tf.constant(images), tf.constant(shifts)).numpy()
    assert actual.dtype == dtype
    assert relative_error(actual, expected) <= TOLERANCE


@settings(max_examples=20, deadline=None)
@given(dx=st.integers(-5, 5), dy=st.integers(-5, 5))
def test_integer_translation_is_a_zero_filled_roll(dx: int, dy: int) -> None:
    image = np.arange(12 * 12, dtype=np.float32).reshape(12, 12) + 1
    expected = np.zeros_like(image)
    expected[max(dy, 0):12 + min(dy, 0), max(dx, 0):12 + min(dx, 0)] = image[
        max(-dy, 0):12 + min(-dy, 0), max(-dx, 0):12 + min(-dx, 0)
    ]
    actual = layers.translate(tf.constant(image[None]), tf.constant([[dx, dy]], dtype=tf.float32)).numpy()[0]
    np.testing.assert_array_equal(actual, expected)


def test_translate_gradient_is_the_adjoint(rng) -> None:
    """translate is linear in the image: grad of <y, T x> w.r.t. x is T^T y, so <T x, y> = <x, grad>."""
    size = 16
    images = tf.constant(rng.normal(size=(3, size, size)).astype(np.float32))
    probes = tf.constant(rng.normal(size=(3, size, size)).astype(np.float32))
    shifts = tf.constant(subpixel(rng, (3, 2), 4))
    with tf.GradientTape() as tape:
        tape.watch(images)
        inner = tf.reduce_sum(probes * layers.translate(images, shifts))
    gradient = tape.gradient(inner, images)
    assert np.all(np.isfinite(gradient.numpy()))
    adjoint_inner = float(tf.reduce_sum(images * gradient))
    assert abs(adjoint_inner - float(inner)) <= 1e-5 * abs(float(inner))


# -- window, padding, overlap ------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_pad_and_window_equal_reference(rng, size: int) -> None:
    head = rng.normal(size=(2, 3, size // 2, size // 2)).astype(np.float32)
    np.testing.assert_array_equal(layers.pad_to_full(tf.constant(head), size).numpy(), physics.pad_to_full(head, size))
    np.testing.assert_array_equal(
        layers.central_window_mask(size).numpy(), physics.central_window_mask(size, dtype=np.float32)
    )
    with pytest.raises(ValueError, match="head"):
        layers.pad_to_full(tf.constant(head), 2 * size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_merge_extract_enforce_match_reference(rng, size: int, channels: int) -> None:
    patches = windowed_patches(rng, 3, channels, size)
    offsets = subpixel(rng, (3, channels, 2), size / 8)
    merged_expected = physics.merge_patches(wide(patches), offsets.astype(np.float64))
    merged = layers.merge_patches(tf.constant(patches), tf.constant(offsets)).numpy()
    assert merged.dtype == np.complex64
    assert relative_error(merged, merged_expected) <= TOLERANCE

    objects = smooth_complex(rng, (3, size, size))
    extracted_expected = physics.extract_from_merged(wide(objects), offsets.astype(np.float64))
    extracted = layers.extract_from_merged(tf.constant(objects), tf.constant(offsets)).numpy()
    assert relative_error(extracted, extracted_expected) <= TOLERANCE

    enforced_expected = physics.enforce_overlap(wide(patches), offsets.astype(np.float64))
    enforced = layers.enforce_overlap(tf.constant(patches), tf.constant(offsets)).numpy()
    assert relative_error(enforced, enforced_expected) <= TOLERANCE
    if channels == 1:
        np.testing.assert_array_equal(enforced, patches)


def test_merge_with_empty_regions_has_finite_gradients(rng) -> None:
    """Offsets of +-N/8 leave the border of the group frame uncovered: merged is 0 there
    and no NaN/inf reaches the gradient (where(W > t, S / maximum(W, t), 0))."""
    size, channels = 16, 4
    patches = tf.constant(windowed_patches(rng, 2, channels, size))
    offsets = tf.constant(np.array([[[-2, -2], [2, -2], [-2, 2], [2.5, 2.5]]] * 2, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(patches)
        merged = layers.merge_patches(patches, offsets)
        loss = tf.reduce_sum(tf.abs(layers.extract_from_merged(merged, offsets)) ** 2)
    gradient = tape.gradient(loss, patches).numpy()
    coverage = physics.merge_patches(np.ones((2, channels, size, size)), offsets.numpy().astype(np.float64))
    assert np.any(coverage == 0), "the case must have empty regions"
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)
    assert np.all(merged.numpy()[coverage == 0] == 0)


# -- forward model and losses ------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_illuminate_and_far_field_match_reference(rng, size: int, channels: int) -> None:
    patches = windowed_patches(rng, 2, channels, size)
    probe = smooth_complex(rng, (size, size))
    psi = layers.illuminate(tf.constant(patches), tf.constant(probe))
    assert relative_error(psi.numpy(), physics.illuminate(wide(patches), wide(probe))) <= TOLERANCE
    spectrum = layers.far_field(psi).numpy()
    assert spectrum.dtype == np.complex64
    expected = physics.far_field(wide(psi.numpy()))
    assert relative_error(spectrum, expected) <= TOLERANCE
    # Parseval: the 1/N makes the transform unitary.
    np.testing.assert_allclose(np.sum(np.abs(spectrum) ** 2), np.sum(np.abs(psi.numpy()) ** 2), rtol=1e-5)


@pytest.mark.parametrize("size", SIZES)
def test_losses_match_reference(rng, size: int) -> None:
    scale = 1e4 / size
    predicted = np.abs(smooth_complex(rng, (2, 4, size, size))).astype(np.float32)
    predicted[:, :, :2] = 0  # dark pixels: the eps inside the log keeps the loss finite
    observed = (predicted * rng.uniform(0.8, 1.2, size=predicted.shape)).astype(np.float32)
    predicted_intensity = (scale * predicted) ** 2
    observed_intensity = (scale * observed) ** 2
    nll = float(layers.poisson_nll(tf.constant(predicted_intensity), tf.constant(observed_intensity)))
    nll_expected = physics.poisson_nll(wide(predicted_intensity), wide(observed_intensity))
    assert abs(nll - nll_expected) <= TOLERANCE * abs(nll_expected)
    mae = float(layers.amplitude_mae(tf.constant(predicted), tf.constant(observed), scale))
    mae_expected = physics.amplitude_mae(wide(predicted), wide(observed), scale)
    assert abs(mae - mae_expected) <= TOLERANCE * abs(mae_expected)

    pred_patches = windowed_patches(rng, 2, 4, size)
    true_patches = windowed_patches(rng, 2, 4, size)
    actual = [float(value) for value in layers.supervised_mae(tf.constant(pred_patches), tf.constant(true_patches))]
    expected = physics.supervised_mae(wide(pred_patches), wide(true_patches))
    np.testing.assert_allclose(actual, expected, rtol=TOLERANCE)


def test_loss_gradients_are_finite_at_zero(rng) -> None:
    """Zero predictions (padding) and zero patches (angle(0)) give finite gradients."""
    predicted = tf.constant(np.zeros((2, 8, 8), np.float32))
    observed = tf.constant(rng.uniform(0, 10, size=(2, 8, 8)).astype(np.float32))
    patches = tf.constant(np.zeros((2, 8, 8), np.complex64))
    truth = tf.constant(smooth_complex(rng, (2, 8, 8)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([predicted, patches])
        nll = layers.poisson_nll(predicted, observed)
        amplitude_error, phase_error = layers.supervised_mae(patches, truth)
        supervised = amplitude_error + phase_error
    assert np.isfinite(float(nll)) and float(phase_error) == 0.0
    assert np.all(np.isfinite(tape.gradient(nll, predicted).numpy()))
    assert np.all(np.isfinite(tape.gradient(supervised, patches).numpy()))


def test_complex_combine_is_polar(rng) -> None:
    amplitude = rng.uniform(0, 1, size=(2, 4, 4)).astype(np.float32)
    phase = rng.uniform(-np.pi, np.pi, size=(2, 4, 4)).astype(np.float32)
    actual = layers.complex_combine(tf.constant(amplitude), tf.constant(phase)).numpy()
    assert actual.dtype == np.complex64
    assert relative_error(actual, wide(amplitude) * np.exp(1j * wide(phase))) <= TOLERANCE
