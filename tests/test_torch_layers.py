"""ptychopinn_torch.layers against the numpy reference of ptychopinn_core.physics.

Inputs are float32/complex64 (what the model computes in); the reference runs in
float64/complex128 on the same numbers. Relative errors are norm-wise
(``ptychopinn_core.testing.relative_error``) and must stay at float32 rounding:
<= 1e-6 (the conformance kit's bound for every physics step).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ptychopinn_core import physics  # noqa: E402
from ptychopinn_core.testing import relative_error  # noqa: E402
from ptychopinn_torch import layers  # noqa: E402

#: Float32 rounding of each step, norm-wise (see the conformance kit's TOLERANCES).
TOLERANCE = 1e-6
SIZES = (16, 64)
CHANNELS = (1, 4)


def smooth_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth complex64 images (a few low-frequency plane waves), as objects are."""
    rows, cols = np.meshgrid(np.arange(shape[-2]), np.arange(shape[-1]), indexing="ij")
    result = np.zeros(shape, dtype=np.complex128)
    for _ in range(3):
        k = rng.uniform(-1.0, 1.0, size=shape[:-2] + (2, 1, 1)) * (2 * math.pi / shape[-1])
        weight = rng.normal(size=shape[:-2] + (1, 1)) + 1j * rng.normal(size=shape[:-2] + (1, 1))
        result += weight * np.exp(1j * (k[..., 0, :, :] * rows + k[..., 1, :, :] * cols))
    return result.astype(np.complex64)


def subpixel(rng: np.random.Generator, shape: tuple[int, ...], limit: float) -> np.ndarray:
    """float32 shifts in [-limit, limit] with a fractional part in [0.1, 0.9]."""
    return (np.trunc(rng.uniform(-limit, limit, size=shape)) + rng.uniform(0.1, 0.9, size=shape)).astype(np.float32)


def network_patches(rng: np.random.Generator, batch: int, channels: int, size: int) -> np.ndarray:
    """Content in the central window only, as the network produces."""
    head = smooth_complex(rng, (batch, channels, size // 2, size // 2))
    return physics.pad_to_full(head, size).astype(np.complex64)


def wide(values: np.ndarray) -> np.ndarray:
    return values.astype(np.complex128 if values.dtype.kind == "c" else np.float64)


def t(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(values, copy=True))


@pytest.fixture
def rng(request) -> np.random.Generator:
    return np.random.default_rng([20240611, zlib.crc32(request.node.name.encode())])


# -- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_sample_separable_matches_reference(rng, size: int) -> None:
    images = smooth_complex(rng, (3, size, size))
    rows = rng.uniform(-3, size + 2, size=(3, size // 2))  # some rows fall outside: zero fill
    cols = rng.uniform(-3, size + 2, size=(3, size // 2 + 1))
    expected = physics.sample_separable(wide(images), rows, cols)
    actual = layers.sample_separable(t(images), t(rows), t(cols)).numpy()
    assert actual.dtype == np.complex64
    assert relative_error(actual, expected) <= TOLERANCE
    shared = layers.sample_separable(t(images[0]), t(rows), t(cols)).numpy()  # one image, many grids
    assert relative_error(shared, physics.sample_separable(wide(images[0]), rows, cols)) <= TOLERANCE


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_translate_matches_reference(rng, size: int, dtype) -> None:
    images = smooth_complex(rng, (2, 3, size, size))
    images = images.real.astype(dtype) if dtype == np.float32 else images
    shifts = subpixel(rng, (2, 3, 2), size / 4)
    expected = physics.translate(wide(images), shifts.astype(np.float64))
    actual = layers.translate(t(images), t(shifts)).numpy()
    assert actual.dtype == dtype and actual.shape == images.shape
    assert relative_error(actual, expected) <= TOLERANCE


def test_translate_moves_content_by_plus_shift() -> None:
    # docs/physics.md §2 worked example: a pixel at row 2, column 1 of a 6 x 6 image.
    image = np.zeros((1, 6, 6), dtype=np.float32)
    image[0, 2, 1] = 1
    moved = layers.translate(t(image), t(np.array([[3.0, 1.0]], dtype=np.float32))).numpy()
    assert moved[0, 3, 4] == 1 and moved.sum() == 1
    half = layers.translate(t(image), t(np.array([[0.5, 0.0]], dtype=np.float32))).numpy()
    np.testing.assert_array_equal(half[0, 2, 1:3], [0.5, 0.5])
    gone = layers.translate(t(image), t(np.array([[-2.0, 0.0]], dtype=np.float32))).numpy()
    assert not gone.any()


def test_translate_rejects_mismatched_shifts() -> None:
    with pytest.raises(ValueError, match="invalid shifts shape"):
        layers.translate(torch.zeros(2, 8, 8), torch.zeros(3, 2))


@pytest.mark.parametrize("size", SIZES)
def test_pad_to_full_and_window_match_reference(rng, size: int) -> None:
    head = smooth_complex(rng, (2, 4, size // 2, size // 2))
    np.testing.assert_array_equal(layers.pad_to_full(t(head), size).numpy(), physics.pad_to_full(head, size))
    np.testing.assert_array_equal(
        layers.central_window_mask(size).numpy(), physics.central_window_mask(size, dtype=np.float32)
    )
    with pytest.raises(ValueError, match="invalid head shape"):
        layers.pad_to_full(t(head), size * 2)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_merge_extract_enforce_match_reference(rng, size: int, channels: int) -> None:
    patches = network_patches(rng, 3, channels, size)
    offsets = subpixel(rng, (3, channels, 2), size / 8)
    offsets_wide = offsets.astype(np.float64)
    merged = layers.merge_patches(t(patches), t(offsets)).numpy()
    assert relative_error(merged, physics.merge_patches(wide(patches), offsets_wide)) <= TOLERANCE
    extracted = layers.extract_from_merged(t(merged), t(offsets)).numpy()
    assert relative_error(extracted, physics.extract_from_merged(wide(merged), offsets_wide)) <= TOLERANCE
    enforced = layers.enforce_overlap(t(patches), t(offsets)).numpy()
    assert relative_error(enforced, physics.enforce_overlap(wide(patches), offsets_wide)) <= TOLERANCE
    if channels == 1:
        np.testing.assert_array_equal(enforced, patches)  # C = 1: no overlap step


@pytest.mark.parametrize("size", SIZES)
def test_merge_is_zero_where_no_window_reaches(rng, size: int) -> None:
    patches = network_patches(rng, 1, 4, size)
    offsets = np.zeros((1, 4, 2), dtype=np.float32)
    merged = layers.merge_patches(t(patches), t(offsets)).numpy()
    outside = physics.central_window_mask(size) == 0
    assert np.all(merged[0][outside] == 0)


@pytest.mark.parametrize("size", SIZES)
def test_forward_model_matches_reference(rng, size: int) -> None:
    patches = network_patches(rng, 2, 4, size)
    probe = smooth_complex(rng, (size, size))
    psi = layers.illuminate(t(patches), t(probe)).numpy()
    assert relative_error(psi, physics.illuminate(wide(patches), wide(probe))) <= TOLERANCE
    field = layers.far_field(t(psi)).numpy()
    assert field.dtype == np.complex64
    assert relative_error(field, physics.far_field(wide(psi))) <= TOLERANCE
    # Parseval: the far field is unitary.
    np.testing.assert_allclose(np.sum(np.abs(field) ** 2), np.sum(np.abs(psi) ** 2), rtol=1e-5)


@pytest.mark.parametrize("size", SIZES)
def test_losses_match_reference(rng, size: int) -> None:
    predicted = rng.uniform(0, 3, size=(2, 4, size, size)).astype(np.float32)
    observed = (predicted * rng.uniform(0.8, 1.2, size=predicted.shape)).astype(np.float32)
    predicted[0, 0, :2] = 0  # dark pixels: the eps inside the log
    scale = 1e4 / (size / 2)
    pred_i, obs_i = (scale * predicted) ** 2, (scale * observed) ** 2
    nll = float(layers.poisson_nll(t(pred_i), t(obs_i)))
    assert relative_error(nll, physics.poisson_nll(wide(pred_i), wide(obs_i))) <= TOLERANCE
    mae = float(layers.amplitude_mae(t(predicted), t(observed), scale))
    assert relative_error(mae, physics.amplitude_mae(wide(predicted), wide(observed), scale)) <= TOLERANCE
    truth = smooth_complex(rng, (2, 4, size, size))
    guess = smooth_complex(rng, (2, 4, size, size))
    amplitude, phase = layers.supervised_mae(t(guess), t(truth))
    expected = physics.supervised_mae(wide(guess), wide(truth))
    assert relative_error(float(amplitude), expected[0]) <= TOLERANCE
    assert relative_error(float(phase), expected[1]) <= TOLERANCE


def test_supervised_phase_error_is_zero_where_a_patch_is_zero() -> None:
    # docs/physics.md §8: where either patch is 0 the phase error is angle(0) = 0. (The
    # numpy reference's np.angle gives pi for a product of -0.0 + 0j; see the report.)
    truth = torch.tensor([[-1.5 - 0.5j, 2.0 + 1.0j]], dtype=torch.complex64)
    guess = torch.tensor([[0.0 + 0.0j, 2.0 + 1.0j]], dtype=torch.complex64)
    amplitude, phase = layers.supervised_mae(guess, truth)
    assert float(phase) == 0.0
    np.testing.assert_allclose(float(amplitude), abs(-1.5 - 0.5j) / 2, rtol=1e-6)


def test_complex_combine() -> None:
    amplitude = torch.tensor([0.5, 2.0])
    phase = torch.tensor([math.pi / 2, -math.pi])
    combined = layers.complex_combine(amplitude, phase).numpy()
    np.testing.assert_allclose(combined, [0.5j, -2.0], atol=1e-6)


# -- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", CHANNELS)
def test_overlap_and_forward_gradients_are_finite(rng, channels: int) -> None:
    size = 16
    # Large offsets leave parts of the group frame uncovered (weight 0): the untaken
    # branch of the merge's `where` must not poison the gradient with 0/0.
    offsets = t(np.array([[[-5.5, 3.25], [5.5, -3.25], [0.5, 6.0], [-0.5, -6.0]][:channels]], dtype=np.float32))
    amplitude = torch.rand(1, channels, size // 2, size // 2, requires_grad=True)
    phase = torch.rand(1, channels, size // 2, size // 2, requires_grad=True)
    patches = layers.pad_to_full(layers.complex_combine(amplitude, phase), size)
    enforced = layers.enforce_overlap(patches, offsets)
    field = layers.far_field(layers.illuminate(enforced, t(smooth_complex(rng, (size, size)))))
    predicted = (100 * torch.abs(field)) ** 2
    loss = layers.poisson_nll(predicted, predicted.detach() * 1.1) + layers.amplitude_mae(torch.abs(field), 1.0, 100)
    loss.backward()
    for gradient in (amplitude.grad, phase.grad):
        assert gradient is not None and torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_supervised_gradients_are_finite_at_zero() -> None:
    guess = torch.zeros(1, 1, 4, 4, dtype=torch.complex64, requires_grad=True)
    truth = torch.ones(1, 1, 4, 4, dtype=torch.complex64)
    amplitude, phase = layers.supervised_mae(guess, truth)
    (amplitude + phase).backward()
    assert torch.isfinite(torch.view_as_real(guess.grad)).all()


def test_translate_gradient_is_the_adjoint(rng) -> None:
    # <T x, y> == <x, T^T y>: the gather's backward pass is the transposed sampling.
    size = 16
    image = torch.from_numpy(rng.normal(size=(2, size, size)).astype(np.float64)).requires_grad_(True)
    probe = torch.from_numpy(rng.normal(size=(2, size, size)).astype(np.float64))
    shifts = torch.from_numpy(subpixel(rng, (2, 2), 4).astype(np.float64))
    (layers.translate(image, shifts) * probe).sum().backward()
    forward = (layers.translate(image.detach(), shifts) * probe).sum()
    np.testing.assert_allclose(float((image.grad * image.detach()).sum()), float(forward), rtol=1e-10)
