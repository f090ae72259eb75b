"""Bilinear translation and patch extraction: the one sampling rule (docs/physics.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ptychopinn_core.physics.translate import extract_patches, sample_separable, translate


def shift_with_zero_fill(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """np.roll by (dy, dx) with the wrapped-around rows/columns set to zero."""
    out = np.roll(image, (dy, dx), axis=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


def complex_image(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


@pytest.mark.parametrize("dx, dy", [(0, 0), (3, 0), (0, -5), (2, 7), (-4, -1), (15, -15), (16, 0), (-20, 3)])
def test_integer_shift_is_a_zero_filled_roll(dx, dy):
    image = complex_image(np.random.default_rng(0), (3, 16, 16))
    moved = translate(image, np.tile([dx, dy], (3, 1)).astype(float))
    np.testing.assert_array_equal(moved, shift_with_zero_fill(image, dx, dy))


def test_sign_convention_worked_example():
    # A single bright pixel at (row 2, col 1) moved by (dx, dy) = (+3, +1) lands at (3, 4).
    image = np.zeros((6, 6))
    image[2, 1] = 1.0
    moved = translate(image, np.array([3.0, 1.0]))
    assert moved[3, 4] == 1.0 and moved.sum() == 1.0
    # Half a pixel to the right splits it between columns 1 and 2.
    half = translate(image, np.array([0.5, 0.0]))
    np.testing.assert_allclose(half[2, 1:3], [0.5, 0.5])
    assert half.sum() == pytest.approx(1.0)


def test_each_image_gets_its_own_shift():
    image = complex_image(np.random.default_rng(1), (2, 3, 12, 12))
    shifts = np.array([[[1, 0], [0, 2], [-3, -1]], [[0, 0], [5, 5], [-1, 4]]], dtype=float)
    moved = translate(image, shifts)
    for b in range(2):
        for c in range(3):
            dx, dy = shifts[b, c].astype(int)
            np.testing.assert_array_equal(moved[b, c], shift_with_zero_fill(image[b, c], dx, dy))


@pytest.mark.parametrize("dx, dy", [(0.3, 0.0), (0.0, -0.7), (1.25, -2.5), (-3.6, 0.45)])
def test_subpixel_shift_of_linear_ramp_is_exact_in_interior(dx, dy):
    # Bilinear interpolation reproduces linear functions exactly wherever all four
    # corners lie inside the image, i.e. more than ceil(|shift|) pixels from the edges.
    rows, cols = np.mgrid[0:24, 0:24].astype(float)
    ramp = 0.7 * cols - 1.3 * rows + 2.0
    moved = translate(ramp, np.array([dx, dy]))
    expected = 0.7 * (cols - dx) - 1.3 * (rows - dy) + 2.0
    margin = int(np.ceil(max(abs(dx), abs(dy))))
    interior = (slice(margin, 24 - margin),) * 2
    np.testing.assert_allclose(moved[interior], expected[interior], rtol=0, atol=1e-12)


@pytest.mark.parametrize("shift", [(2.0, -3.0), (0.5, 0.5), (0.25, -1.75), (-2.3, 1.6)])
def test_translate_forth_and_back_on_a_plane_wave(shift):
    # In 1-D, shifting by f in (0, 1) then by -f applies the kernel
    # [a, 1 - 2a, a] with a = f (1 - f): identity plus a * (second difference).
    # A plane wave exp(i k.x) is an eigenfunction: it comes back scaled by
    # (1 - 2 a_x (1 - cos kx)) (1 - 2 a_y (1 - cos ky)), exactly, in the interior.
    kx, ky = 0.4, -0.25
    rows, cols = np.mgrid[0:32, 0:32].astype(float)
    wave = np.exp(1j * (kx * cols + ky * rows))
    shift = np.array(shift)
    back = translate(translate(wave, shift), -shift)
    frac = shift - np.floor(shift)
    a_x, a_y = frac * (1 - frac)
    eigenvalue = (1 - 2 * a_x * (1 - np.cos(kx))) * (1 - 2 * a_y * (1 - np.cos(ky)))
    interior = (slice(6, 26),) * 2
    np.testing.assert_allclose(back[interior], eigenvalue * wave[interior], rtol=0, atol=1e-12)
    if np.all(frac == 0):
        np.testing.assert_allclose(back[interior], wave[interior], rtol=0, atol=0)


def test_translate_forth_and_back_on_a_smooth_image_within_curvature_bound():
    # For a smooth image the round trip differs from the original by
    # a_x D2x + a_y D2y + a_x a_y D2x D2y (D2 = second difference), so
    # |error| <= a_x max|D2x| + a_y max|D2y| + a_x a_y max|D2x D2y| on the interior.
    rng = np.random.default_rng(2)
    image = ndimage.gaussian_filter(rng.normal(size=(48, 48)), sigma=4.0)
    shift = np.array([0.4, -1.3])
    back = translate(translate(image, shift), -shift)
    frac = shift - np.floor(shift)
    a_x, a_y = frac * (1 - frac)
    d2x = np.diff(image, 2, axis=1)[1:-1, :]
    d2y = np.diff(image, 2, axis=0)[:, 1:-1]
    d2xy = np.diff(np.diff(image, 2, axis=1), 2, axis=0)
    bound = a_x * np.abs(d2x).max() + a_y * np.abs(d2y).max() + a_x * a_y * np.abs(d2xy).max()
    interior = (slice(6, 42),) * 2
    error = np.abs(back - image)[interior]
    assert error.max() <= bound + 1e-12
    # The bound is tight enough to be meaningful: well below the image's own scale.
    assert bound < 0.1 * np.abs(image).max()


def test_subpixel_shift_conserves_total_away_from_edges():
    rng = np.random.default_rng(3)
    image = np.zeros((32, 32), dtype=np.complex128)
    image[8:24, 8:24] = complex_image(rng, (16, 16))
    moved = translate(image, np.array([2.37, -4.81]))
    np.testing.assert_allclose(moved.sum(), image.sum(), rtol=1e-12)


def test_translate_is_linear_and_keeps_dtype():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(2, 10, 10)).astype(np.float32)
    imag = rng.normal(size=(2, 10, 10)).astype(np.float32)
    shifts = np.array([[0.3, -1.2], [2.5, 0.75]])
    combined = translate((real + 1j * imag).astype(np.complex64), shifts)
    assert combined.dtype == np.complex64
    assert translate(real, shifts).dtype == np.float32
    np.testing.assert_allclose(
        combined, translate(real, shifts) + 1j * translate(imag, shifts), rtol=0, atol=1e-6
    )


def test_translate_rejects_mismatched_shifts():
    with pytest.raises(ValueError, match=r"shifts_xy.shape=\(3, 2\)"):
        translate(np.zeros((2, 8, 8)), np.zeros((3, 2)))


@settings(max_examples=40, deadline=None)
@given(
    shift_a=st.tuples(st.integers(-4, 4), st.integers(-4, 4)),
    shift_b=st.tuples(st.integers(-4, 4), st.integers(-4, 4)),
    data_seed=st.integers(0, 2**16),
)
def test_integer_translations_compose(shift_a, shift_b, data_seed):
    # Content 8 pixels from every edge never leaves the frame for |a|, |b|, |a + b| <= 8,
    # so the composition is exact everywhere.
    image = np.zeros((24, 24), dtype=np.complex128)
    image[8:16, 8:16] = complex_image(np.random.default_rng(data_seed), (8, 8))
    a = np.array(shift_a, dtype=float)
    b = np.array(shift_b, dtype=float)
    np.testing.assert_array_equal(translate(translate(image, a), b), translate(image, a + b))


@settings(max_examples=25, deadline=None)
@given(
    shift=st.tuples(st.floats(-3, 3), st.floats(-3, 3)),
    data_seed=st.integers(0, 2**16),
)
def test_subpixel_translation_never_amplifies(shift, data_seed):
    # Bilinear weights are non-negative and sum to at most 1.
    image = complex_image(np.random.default_rng(data_seed), (12, 12))
    moved = translate(image, np.array(shift))
    assert np.abs(moved).max() <= np.abs(image).max() * (1 + 1e-12)


def test_extract_patches_integer_positions_are_slices():
    rng = np.random.default_rng(5)
    obj = complex_image(rng, (40, 50))
    size = 8
    positions = np.array([[10, 12], [30, 20], [4, 4], [45.0, 35.0]])
    patches = extract_patches(obj, positions, size)
    for patch, (x, y) in zip(patches, positions.astype(int)):
        top, left = y - size // 2, x - size // 2
        expected = np.zeros((size, size), dtype=obj.dtype)
        rows = slice(max(top, 0), min(top + size, obj.shape[0]))
        cols = slice(max(left, 0), min(left + size, obj.shape[1]))
        expected[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = obj[rows, cols]
        np.testing.assert_array_equal(patch, expected)
        # The probe centre pixel N//2 sees obj[y, x].
        assert patch[size // 2, size // 2] == obj[y, x]


def test_extract_patches_agrees_with_translate():
    # Cutting at a sub-pixel position == translating the object so that the position
    # lands on the patch centre, then slicing.
    rng = np.random.default_rng(6)
    obj = complex_image(rng, (32, 32))
    position = np.array([15.3, 17.8])
    size = 8
    patch = extract_patches(obj, position[None], size)[0]
    centred = translate(obj, np.array([16.0, 16.0]) - position)
    np.testing.assert_allclose(patch, centred[12:20, 12:20], rtol=0, atol=1e-12)


def test_sample_separable_shared_image_matches_batched():
    rng = np.random.default_rng(7)
    image = complex_image(rng, (9, 11))
    rows = rng.uniform(-1, 10, size=(3, 5))
    cols = rng.uniform(-1, 12, size=(3, 4))
    shared = sample_separable(image, rows, cols)
    batched = sample_separable(np.broadcast_to(image, (3, 9, 11)), rows, cols)
    np.testing.assert_array_equal(shared, batched)
