"""Each backend's layers (``ptychopinn_tf.layers``, ``ptychopinn_torch.layers``) against the
numpy reference of ptychopinn_core.physics.

Every test runs once per installed framework (the ``framework`` fixture). Inputs are
float32/complex64, what the model computes in; the reference runs in float64/complex128
on the same numbers. Relative errors are norm-wise
(``ptychopinn_core.testing.relative_error``) and must stay at float32 rounding of a few
chained steps: ``TOLERANCES["layers"]`` (1e-6). Gradients are checked to exist, to be finite where the merge
has empty regions or a value is zero, and (for the linear translation) to be the
exact adjoint.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptychopinn_core import physics
from ptychopinn_core.parity.tolerances import TOLERANCES
from ptychopinn_core.testing import relative_error

#: Float32 rounding of a few chained operations, norm-wise (the reason is in the table).
TOLERANCE = TOLERANCES["layers"].relative
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
    """float32 shifts in [-limit, limit] whose fractional part is in [0.1, 0.9] (never integers)."""
    return (np.trunc(rng.uniform(-limit, limit, size=shape)) + rng.uniform(0.1, 0.9, size=shape)).astype(np.float32)


def windowed_patches(rng: np.random.Generator, batch: int, channels: int, size: int) -> np.ndarray:
    """Network-like patches: content in the central N/2 window only."""
    return physics.pad_to_full(smooth_complex(rng, (batch, channels, size // 2, size // 2)), size)


def wide(values: np.ndarray) -> np.ndarray:
    return values.astype(np.complex128 if values.dtype.kind == "c" else np.float64)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """Seeded by the test and its parameters other than the framework: both backends get
    the same numbers."""
    params = getattr(request.node, "callspec", None)
    key = request.node.originalname + repr(sorted(
        (name, repr(value)) for name, value in (params.params.items() if params else ()) if name != "framework"
    ))
    return np.random.default_rng([20240611, zlib.crc32(key.encode())])


# -- sampling and translation -------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shared_image", [False, True])
def test_sample_separable_matches_reference(framework, rng, size: int, shared_image: bool) -> None:
    layers = framework.layers
    images = smooth_complex(rng, (size, size) if shared_image else (3, size, size))  # one image, many grids
    # Coordinates partly outside the image: exercises the zero fill and negative floors.
    rows = rng.uniform(-3, size + 2, size=(3, size // 2))
    cols = rng.uniform(-3, size + 2, size=(3, size + 5))
    expected = physics.sample_separable(wide(images), rows, cols)
    actual = framework.numpy(layers.sample_separable(framework.tensor(images), framework.tensor(rows),
                                                     framework.tensor(cols)))
    assert actual.dtype == np.complex64 and actual.shape == expected.shape
    assert relative_error(actual, expected) <= TOLERANCE


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("dtype", [np.complex64, np.float32])
def test_translate_subpixel_matches_reference(framework, rng, size: int, channels: int, dtype) -> None:
    images = smooth_complex(rng, (2, channels, size, size))
    images = images if dtype == np.complex64 else images.real.astype(np.float32)
    shifts = subpixel(rng, (2, channels, 2), size / 4)
    expected = physics.translate(wide(images), shifts.astype(np.float64))
    actual = framework.numpy(framework.layers.translate(framework.tensor(images), framework.tensor(shifts)))
    assert actual.dtype == dtype and actual.shape == images.shape
    assert relative_error(actual, expected) <= TOLERANCE


@settings(max_examples=20, deadline=None)
@given(dx=st.integers(-5, 5), dy=st.integers(-5, 5))
def test_integer_translation_is_a_zero_filled_roll(framework, dx: int, dy: int) -> None:
    image = np.arange(12 * 12, dtype=np.float32).reshape(12, 12) + 1
    expected = np.zeros_like(image)
    expected[max(dy, 0):12 + min(dy, 0), max(dx, 0):12 + min(dx, 0)] = image[
        max(-dy, 0):12 + min(-dy, 0), max(-dx, 0):12 + min(-dx, 0)
    ]
    shifts = np.array([[dx, dy]], dtype=np.float32)
    actual = framework.numpy(framework.layers.translate(framework.tensor(image[None]), framework.tensor(shifts)))[0]
    np.testing.assert_array_equal(actual, expected)


def test_translate_moves_content_by_plus_shift(framework) -> None:
    # docs/physics.md §2 worked example: a pixel at row 2, column 1 of a 6 x 6 image.
    image = np.zeros((1, 6, 6), dtype=np.float32)
    image[0, 2, 1] = 1

    def moved(dx: float, dy: float) -> np.ndarray:
        shifts = np.array([[dx, dy]], dtype=np.float32)
        return framework.numpy(framework.layers.translate(framework.tensor(image), framework.tensor(shifts)))

    assert moved(3.0, 1.0)[0, 3, 4] == 1 and moved(3.0, 1.0).sum() == 1
    np.testing.assert_array_equal(moved(0.5, 0.0)[0, 2, 1:3], [0.5, 0.5])
    assert not moved(-2.0, 0.0).any()


def test_translate_rejects_mismatched_shifts(framework) -> None:
    images = framework.tensor(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="invalid shifts shape"):
        framework.layers.translate(images, framework.tensor(np.zeros((3, 2), np.float32)))


@pytest.mark.parametrize("dtype, bound", [(np.float32, 1e-5), (np.float64, 1e-10)])
def test_translate_gradient_is_the_adjoint(framework, rng, dtype, bound: float) -> None:
    """translate is linear in the image: the gradient of <y, T x> w.r.t. x is T^T y, so
    <T x, y> = <x, grad> (the gather's backward pass is the transposed sampling)."""
    size = 16
    images = rng.normal(size=(3, size, size)).astype(dtype)
    probes = framework.tensor(rng.normal(size=(3, size, size)).astype(dtype))
    shifts = framework.tensor(subpixel(rng, (3, 2), 4).astype(dtype))
    inner, (gradient,) = framework.value_and_gradients(
        lambda x: framework.sum(probes * framework.layers.translate(x, shifts)), images)
    assert np.all(np.isfinite(gradient))
    adjoint_inner = float(np.sum(images.astype(np.float64) * gradient))
    assert abs(adjoint_inner - inner) <= bound * abs(inner)


# -- window, padding, overlap ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_pad_and_window_equal_reference(framework, rng, size: int, dtype) -> None:
    layers = framework.layers
    head = smooth_complex(rng, (2, 3, size // 2, size // 2))
    head = head if dtype == np.complex64 else head.real.astype(np.float32)
    np.testing.assert_array_equal(framework.numpy(layers.pad_to_full(framework.tensor(head), size)),
                                  physics.pad_to_full(head, size))
    np.testing.assert_array_equal(framework.numpy(layers.central_window_mask(size)),
                                  physics.central_window_mask(size, dtype=np.float32))
    with pytest.raises(ValueError, match="invalid head shape"):
        layers.pad_to_full(framework.tensor(head), 2 * size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_merge_and_enforce_overlap_match_reference(framework, rng, size: int, channels: int) -> None:
    layers, tensor, numpy = framework.layers, framework.tensor, framework.numpy
    patches = windowed_patches(rng, 3, channels, size)
    offsets = subpixel(rng, (3, channels, 2), size / 8)
    offsets_wide = offsets.astype(np.float64)
    merged = numpy(layers.merge_patches(tensor(patches), tensor(offsets)))
    assert merged.dtype == np.complex64
    assert relative_error(merged, physics.merge_patches(wide(patches), offsets_wide)) <= TOLERANCE

    relative = numpy(layers.relative_offsets(tensor(offsets)))
    np.testing.assert_array_equal(relative, physics.relative_offsets(offsets))

    enforced = numpy(layers.enforce_overlap(tensor(patches), tensor(offsets)))
    assert relative_error(enforced, physics.enforce_overlap(wide(patches), offsets_wide)) <= TOLERANCE
    if channels == 1:
        np.testing.assert_array_equal(enforced, patches)  # C = 1: no overlap step


@pytest.mark.parametrize("size", SIZES)
def test_probe_weighted_merge_matches_reference_and_stops_gradients(framework, rng, size: int) -> None:
    layers, tensor, numpy = framework.layers, framework.tensor, framework.numpy
    probe = smooth_complex(rng, (size, size))
    weights = numpy(layers.probe_weights(tensor(probe)))
    expected = physics.probe_weights(wide(probe))
    assert relative_error(weights, expected) <= TOLERANCE and weights.max() == pytest.approx(1.0)
    assert np.all(weights[physics.central_window_mask(size) == 0] == 0)
    patches = windowed_patches(rng, 3, 4, size)
    offsets = subpixel(rng, (3, 4, 2), size / 8)
    merged = numpy(layers.merge_patches(tensor(patches), tensor(offsets), tensor(weights)))
    assert relative_error(merged, physics.merge_patches(wide(patches), offsets.astype(np.float64), expected)) <= TOLERANCE
    enforced = numpy(layers.enforce_overlap(tensor(patches), tensor(offsets), tensor(weights)))
    reference = physics.enforce_overlap(wide(patches), offsets.astype(np.float64), expected)
    assert relative_error(enforced, reference) <= TOLERANCE

    # The weights are a constant of the merge: the probe gets no gradient through them.
    def merged_energy(probe_values):
        values = layers.enforce_overlap(tensor(patches), tensor(offsets), layers.probe_weights(probe_values))
        # The second term only connects the probe to the graph (it adds 0 and a 0 gradient).
        return framework.sum(framework.abs(values) ** 2) + 0.0 * framework.sum(framework.abs(probe_values) ** 2)

    _, (gradient,) = framework.value_and_gradients(merged_energy, probe)
    assert np.all(gradient == 0)


@pytest.mark.parametrize("size", SIZES)
def test_merge_is_zero_where_no_window_reaches(framework, rng, size: int) -> None:
    patches = windowed_patches(rng, 1, 4, size)
    offsets = np.zeros((1, 4, 2), dtype=np.float32)
    merged = framework.numpy(framework.layers.merge_patches(framework.tensor(patches), framework.tensor(offsets)))
    outside = physics.central_window_mask(size) == 0
    assert np.all(merged[0][outside] == 0)


def test_merge_with_empty_regions_has_finite_gradients(framework, rng) -> None:
    """Offsets of +-N/8 leave the border of the group frame uncovered: merged is 0 there
    and no NaN/inf reaches the gradient (where(W > t, S / maximum(W, t), 0))."""
    layers = framework.layers
    size, channels = 16, 4
    patches = windowed_patches(rng, 2, channels, size)
    offsets = np.array([[[-2, -2], [2, -2], [-2, 2], [2.5, 2.5]]] * 2, dtype=np.float32)
    merged = framework.numpy(layers.merge_patches(framework.tensor(patches), framework.tensor(offsets)))

    def energy_after_overlap(values):
        return framework.sum(framework.abs(layers.enforce_overlap(values, framework.tensor(offsets))) ** 2)

    _, (gradient,) = framework.value_and_gradients(energy_after_overlap, patches)
    coverage = physics.merge_patches(np.ones((2, channels, size, size)), offsets.astype(np.float64))
    assert np.any(coverage == 0), "the case must have empty regions"
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)
    assert np.all(merged[coverage == 0] == 0)


# -- forward model and losses ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_illuminate_and_far_field_match_reference(framework, rng, size: int, channels: int) -> None:
    layers = framework.layers
    patches = windowed_patches(rng, 2, channels, size)
    probe = smooth_complex(rng, (size, size))
    psi = framework.numpy(layers.illuminate(framework.tensor(patches), framework.tensor(probe)))
    assert relative_error(psi, physics.illuminate(wide(patches), wide(probe))) <= TOLERANCE
    spectrum = framework.numpy(layers.far_field(framework.tensor(psi)))
    assert spectrum.dtype == np.complex64
    assert relative_error(spectrum, physics.far_field(wide(psi))) <= TOLERANCE
    # Parseval: the 1/N makes the transform unitary.
    np.testing.assert_allclose(np.sum(np.abs(spectrum) ** 2), np.sum(np.abs(psi) ** 2), rtol=1e-5)


@pytest.mark.parametrize("size", SIZES)
def test_losses_match_reference(framework, rng, size: int) -> None:
    layers, tensor = framework.layers, framework.tensor
    scale = 1e4 / size
    predicted = np.abs(smooth_complex(rng, (2, 4, size, size))).astype(np.float32)
    predicted[:, :, :2] = 0  # dark pixels: the eps inside the log keeps the loss finite
    observed = (predicted * rng.uniform(0.8, 1.2, size=predicted.shape)).astype(np.float32)
    predicted_intensity = (scale * predicted) ** 2
    observed_intensity = (scale * observed) ** 2
    nll = float(framework.numpy(layers.poisson_nll(tensor(predicted_intensity), tensor(observed_intensity))))
    assert relative_error(nll, physics.poisson_nll(wide(predicted_intensity), wide(observed_intensity))) <= TOLERANCE
    mae = float(framework.numpy(layers.amplitude_mae(tensor(predicted), tensor(observed), scale)))
    assert relative_error(mae, physics.amplitude_mae(wide(predicted), wide(observed), scale)) <= TOLERANCE

    # Supervised: network-like patches (zero outside the central window), and patches
    # with content everywhere.
    for guess, truth in ((windowed_patches(rng, 2, 4, size), windowed_patches(rng, 2, 4, size)),
                         (smooth_complex(rng, (2, 4, size, size)), smooth_complex(rng, (2, 4, size, size)))):
        errors = layers.supervised_mae(tensor(guess), tensor(truth))
        amplitude, phase = (float(framework.numpy(value)) for value in errors)
        expected_amplitude, expected_phase = physics.supervised_mae(wide(guess), wide(truth))
        assert relative_error(amplitude, expected_amplitude) <= TOLERANCE
        assert relative_error(phase, expected_phase) <= TOLERANCE


def test_supervised_phase_error_is_zero_where_a_patch_is_zero(framework) -> None:
    # docs/physics.md §8: where either patch is 0 the phase error is angle(0) = 0. (The
    # numpy reference's np.angle gives pi for a product of -0.0 + 0j.)
    truth = np.array([[-1.5 - 0.5j, 2.0 + 1.0j]], dtype=np.complex64)
    guess = np.array([[0.0 + 0.0j, 2.0 + 1.0j]], dtype=np.complex64)
    amplitude, phase = framework.layers.supervised_mae(framework.tensor(guess), framework.tensor(truth))
    assert float(framework.numpy(phase)) == 0.0
    np.testing.assert_allclose(float(framework.numpy(amplitude)), abs(-1.5 - 0.5j) / 2, rtol=1e-6)


def test_loss_gradients_are_finite_at_zero(framework, rng) -> None:
    """Zero predictions (padding) and zero patches (angle(0)) give finite gradients."""
    layers, tensor = framework.layers, framework.tensor
    observed = tensor(rng.uniform(0, 10, size=(2, 8, 8)).astype(np.float32))
    nll, (nll_gradient,) = framework.value_and_gradients(lambda x: layers.poisson_nll(x, observed),
                                                         np.zeros((2, 8, 8), np.float32))
    assert math.isfinite(nll) and np.all(np.isfinite(nll_gradient))
    zero_patches = np.zeros((2, 8, 8), np.complex64)
    for truth in (tensor(smooth_complex(rng, (2, 8, 8))), tensor(np.ones((2, 8, 8), np.complex64))):
        assert float(framework.numpy(layers.supervised_mae(tensor(zero_patches), truth)[1])) == 0.0
        _, (gradient,) = framework.value_and_gradients(
            lambda x: sum(layers.supervised_mae(x, truth)), zero_patches)  # noqa: B023
        assert np.all(np.isfinite(gradient))


@pytest.mark.parametrize("channels", CHANNELS)
def test_overlap_and_forward_gradients_are_finite(framework, rng, channels: int) -> None:
    """The whole forward model and both pinn losses: finite, non-zero gradients for the heads."""
    layers, tensor = framework.layers, framework.tensor
    size = 16
    # Large offsets leave parts of the group frame uncovered (weight 0): the untaken
    # branch of the merge's `where` must not poison the gradient with 0/0.
    offsets = tensor(np.array([[[-5.5, 3.25], [5.5, -3.25], [0.5, 6.0], [-0.5, -6.0]][:channels]], dtype=np.float32))
    probe = tensor(smooth_complex(rng, (size, size)))
    amplitude = rng.uniform(0, 1, size=(1, channels, size // 2, size // 2)).astype(np.float32)
    phase = rng.uniform(0, 1, size=(1, channels, size // 2, size // 2)).astype(np.float32)

    def loss(amplitude, phase):
        patches = layers.pad_to_full(layers.complex_combine(amplitude, phase), size)
        field = layers.far_field(layers.illuminate(layers.enforce_overlap(patches, offsets), probe))
        predicted = (100 * framework.abs(field)) ** 2
        return (layers.poisson_nll(predicted, framework.stop_gradient(predicted) * 1.1)
                + layers.amplitude_mae(framework.abs(field), 1.0, 100))

    _, gradients = framework.value_and_gradients(loss, amplitude, phase)
    for gradient in gradients:
        assert np.all(np.isfinite(gradient)) and np.abs(gradient).sum() > 0


def test_complex_combine_is_polar(framework, rng) -> None:
    combine = framework.layers.complex_combine
    amplitude = rng.uniform(0, 1, size=(2, 4, 4)).astype(np.float32)
    phase = rng.uniform(-np.pi, np.pi, size=(2, 4, 4)).astype(np.float32)
    actual = framework.numpy(combine(framework.tensor(amplitude), framework.tensor(phase)))
    assert actual.dtype == np.complex64
    assert relative_error(actual, wide(amplitude) * np.exp(1j * wide(phase))) <= TOLERANCE
    quarter_turns = combine(framework.tensor(np.array([0.5, 2.0], np.float32)),
                            framework.tensor(np.array([math.pi / 2, -math.pi], np.float32)))
    np.testing.assert_allclose(framework.numpy(quarter_turns), [0.5j, -2.0], atol=1e-6)
