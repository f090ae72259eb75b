"""The overlap constraint: merge a group's patches, re-extract them (docs/physics.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptychopinn_core.physics.overlap import (
    MERGE_MASK_THRESHOLD,
    central_window_mask,
    enforce_overlap,
    relative_offsets,
    merge_patches,
    pad_to_full,
)
from ptychopinn_core.physics.translate import extract_patches, translate

SIZE = 32


def complex_image(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def group_of(positions_xy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions (C, 2), centre (2,), offsets (C, 2)) of one group."""
    positions = np.asarray(positions_xy, dtype=float)
    centre = positions.mean(axis=0)
    return positions, centre, positions - centre


def shifted_window_support(offsets_xy: np.ndarray, size: int) -> np.ndarray:
    """Where translate(window, +offset) is non-zero, from the window's bounds alone.

    The window spans pixels [N/4, 3N/4 - 1]; bilinear weight at q is positive iff
    q - offset is less than one pixel from a window pixel: q - offset in (N/4 - 1, 3N/4).
    Returns (C, N, N) booleans.
    """
    q = np.arange(size)
    low, high = size // 4 - 1, size // 4 + size // 2
    inside_x = (q[None, :] - offsets_xy[:, 0:1] > low) & (q[None, :] - offsets_xy[:, 0:1] < high)
    inside_y = (q[None, :] - offsets_xy[:, 1:2] > low) & (q[None, :] - offsets_xy[:, 1:2] < high)
    return inside_y[:, :, None] & inside_x[:, None, :]


# --- window and padding ----------------------------------------------------------


@pytest.mark.parametrize("size", [4, 8, 32, 64])
def test_central_window_mask_bounds(size):
    mask = central_window_mask(size)
    rows, cols = np.nonzero(mask)
    assert rows.min() == cols.min() == size // 4
    assert rows.max() == cols.max() == size // 4 + size // 2 - 1
    assert mask.sum() == (size // 2) ** 2


def test_pad_to_full_places_head_in_the_window():
    rng = np.random.default_rng(0)
    head = complex_image(rng, (2, 3, SIZE // 2, SIZE // 2)).astype(np.complex64)
    full = pad_to_full(head, SIZE)
    assert full.shape == (2, 3, SIZE, SIZE) and full.dtype == np.complex64
    window = central_window_mask(SIZE)
    np.testing.assert_array_equal(full * window, full)
    q = SIZE // 4
    np.testing.assert_array_equal(full[..., q : q + SIZE // 2, q : q + SIZE // 2], head)


@pytest.mark.parametrize("size", [30, 6, 0])
def test_window_size_must_be_multiple_of_four(size):
    with pytest.raises(ValueError, match=f"size={size}"):
        central_window_mask(size)


def test_pad_to_full_rejects_wrong_head_shape():
    with pytest.raises(ValueError, match=r"head.shape=\(2, 8, 8\)"):
        pad_to_full(np.zeros((2, 8, 8)), SIZE)


# --- merge / extract ------------------------------------------------------------


def test_merge_sign_worked_example():
    # Channel 0 at x = 10, channel 1 at x = 14: centre x = 12, offsets -2 and +2.
    # A feature at object x = 13 sits at patch column 13 - 10 + N//2 = 19 for channel 0
    # and at group-frame column 13 - 12 + N//2 = 17: merging moves it by offset_0 = -2.
    size = 16
    positions, centre, offsets = group_of([[10, 8], [14, 8]])
    obj = np.zeros((24, 32))
    obj[8, 13] = 1.0
    patches = extract_patches(obj, positions, size)
    assert patches[0, 8, 11] == 1.0 and patches[1, 8, 7] == 1.0
    merged = merge_patches(patches[None], offsets[None])[0]
    assert merged[8, 9] == pytest.approx(1.0) and np.abs(merged).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(merged, extract_patches(obj, centre[None], size)[0] * (merged != 0))


@pytest.mark.parametrize(
    "positions_xy",
    [
        [[60, 60], [64, 60], [60, 63], [64, 65]],  # 2 x 2 group, integer offsets
        [[50, 52], [55, 49], [48, 55]],  # three channels, offsets up to 4 px
        [[40, 40], [52, 40]],  # 12 px apart: 16 px windows overlap by 4 columns
    ],
)
def test_merge_extract_returns_patches_of_one_object_on_the_covered_region(positions_xy):
    # Patches cut from ONE object, windowed as the network predicts them. With integer
    # offsets every translation is exact, so:
    #   merged[q] = O[centre - N//2 + q]  wherever some translated window covers q,
    #   out_c[p]  = merged[p + offset_c] = O[position_c - N//2 + p] = full patch_c[p]
    # for p in the covered region seen from channel c: p + offset_c inside the frame
    # and inside the union of the translated windows; out_c is zero everywhere else.
    rng = np.random.default_rng(1)
    obj = complex_image(rng, (128, 128))
    positions, centre, offsets = group_of(positions_xy)
    assert np.all(offsets == np.round(offsets))
    full_patches = extract_patches(obj, positions, SIZE)
    window = central_window_mask(SIZE)
    patches = (full_patches * window)[None]

    merged = merge_patches(patches, offsets[None])[0]
    covered = shifted_window_support(offsets, SIZE).any(axis=0)
    np.testing.assert_allclose(merged[covered], extract_patches(obj, centre[None], SIZE)[0][covered], atol=1e-12)
    assert np.all(merged[~covered] == 0)

    out = enforce_overlap(patches, offsets[None])[0]
    for c in range(len(positions)):
        region = translate(covered.astype(float), -offsets[c]) == 1
        # The own window is always part of it.
        assert np.all(region[window == 1])
        np.testing.assert_allclose(out[c][region], full_patches[c][region], atol=1e-12)
        assert np.all(out[c][~region] == 0)
        # Neighbours fill in beyond the own window where they overlap it.
        if len(positions) > 1:
            assert region.sum() > window.sum()


def test_merge_ignores_content_outside_the_window():
    rng = np.random.default_rng(2)
    obj = complex_image(rng, (96, 96))
    positions, _, offsets = group_of([[40, 40], [44, 42], [42, 46], [46, 44]])
    full_patches = extract_patches(obj, positions, SIZE)[None]
    windowed = full_patches * central_window_mask(SIZE)
    np.testing.assert_array_equal(merge_patches(full_patches, offsets[None]), merge_patches(windowed, offsets[None]))


def test_merge_of_identical_patches_with_zero_offsets_is_the_content():
    rng = np.random.default_rng(3)
    content = pad_to_full(complex_image(rng, (SIZE // 2, SIZE // 2)), SIZE)
    patches = np.broadcast_to(content, (2, 4, SIZE, SIZE))
    merged = merge_patches(patches, np.zeros((2, 4, 2)))
    np.testing.assert_allclose(merged, np.broadcast_to(content, (2, SIZE, SIZE)), rtol=1e-12, atol=0)
    # Full patches (content outside the window too): only the window's content survives.
    full = complex_image(rng, (SIZE, SIZE))
    merged_full = merge_patches(np.broadcast_to(full, (1, 3, SIZE, SIZE)), np.zeros((1, 3, 2)))[0]
    np.testing.assert_allclose(merged_full, full * central_window_mask(SIZE), rtol=1e-12, atol=0)


def test_enforce_overlap_is_idempotent_for_integer_offsets():
    rng = np.random.default_rng(4)
    patches = pad_to_full(complex_image(rng, (3, 4, SIZE // 2, SIZE // 2)), SIZE)
    offsets = rng.integers(-5, 6, size=(3, 4, 2)).astype(float)
    once = enforce_overlap(patches, offsets)
    twice = enforce_overlap(once, offsets)
    np.testing.assert_allclose(twice, once, atol=1e-12)


def test_subpixel_merge_and_overlap_of_linear_object_are_exact_where_windows_are_clean():
    # Bilinear sampling reproduces a linear object exactly, but at a window edge shifted
    # by a fraction of a pixel a channel contributes a weighted average of fewer than
    # four corners, which is not the object value there. So merged[q] is exact where
    # every channel's translated window weight is 0 or 1 ("clean") and some is 1, and
    # out_c[p] is exact where the windows moved into channel c's own frame are clean.
    rows, cols = np.mgrid[0:128, 0:128].astype(float)
    obj = 0.02 * cols - 0.015 * rows + 1.0 + 1j * (0.01 * cols + 0.03 * rows)
    positions, centre, offsets = group_of([[60.3, 61.7], [64.9, 60.2], [59.4, 64.45], [65.1, 66.0]])
    full_patches = extract_patches(obj, positions, SIZE)
    patches = (full_patches * central_window_mask(SIZE))[None]

    merged = merge_patches(patches, offsets[None])[0]
    weights = translate(np.broadcast_to(central_window_mask(SIZE), (4, SIZE, SIZE)), offsets)
    clean = np.all((np.abs(weights) < 1e-12) | (np.abs(weights - 1) < 1e-12), axis=0) & np.any(
        np.abs(weights - 1) < 1e-12, axis=0
    )
    np.testing.assert_allclose(merged[clean], extract_patches(obj, centre[None], SIZE)[0][clean], atol=1e-12)
    # The clean region is most of the union of windows, not a token few pixels.
    assert clean.sum() > 0.5 * (SIZE // 2) ** 2

    out = enforce_overlap(patches, offsets[None])[0]
    for c in range(4):
        own_frame = translate(np.broadcast_to(central_window_mask(SIZE), (4, SIZE, SIZE)), offsets - offsets[c])
        region = np.all((np.abs(own_frame) < 1e-12) | (np.abs(own_frame - 1) < 1e-12), axis=0) & np.any(
            np.abs(own_frame - 1) < 1e-12, axis=0
        )
        assert region.sum() > 0.25 * (SIZE // 2) ** 2
        np.testing.assert_allclose(out[c][region], full_patches[c][region], atol=1e-12)
        # Elsewhere inside the own window each value is a convex combination of object
        # values less than one pixel away along each axis: |error| <= |dO/dx| + |dO/dy|
        # per real/imag part (plus up to MERGE_MASK_THRESHOLD * max|O| from a fringe
        # zeroed by the threshold).
        window = central_window_mask(SIZE) == 1
        bound = np.hypot(0.02 + 0.015, 0.01 + 0.03) + MERGE_MASK_THRESHOLD * np.abs(full_patches).max()
        assert np.abs(out[c][window] - full_patches[c][window]).max() <= bound


@settings(max_examples=30, deadline=None)
@given(
    offsets=st.lists(st.tuples(st.floats(-12, 12), st.floats(-12, 12)), min_size=2, max_size=4),
    data_seed=st.integers(0, 2**16),
)
def test_merge_never_amplifies_and_is_zero_where_no_window_covers(offsets, data_seed):
    offsets = np.asarray(offsets)
    rng = np.random.default_rng(data_seed)
    patches = complex_image(rng, (1, len(offsets), SIZE, SIZE))  # content outside the window too
    with np.errstate(divide="raise", invalid="raise", over="raise"):  # no x/0 or 0/0, even untaken
        merged = merge_patches(patches, offsets[None])[0]
    windowed_max = np.abs(patches * central_window_mask(SIZE)).max()
    assert np.abs(merged).max() <= windowed_max * (1 + 1e-12)
    uncovered = ~shifted_window_support(offsets, SIZE).any(axis=0)
    assert np.all(merged[uncovered] == 0)


def test_merge_threshold_zeroes_faint_window_fringe():
    # A window shifted by 1/2000 px leaves a fringe of weight 5e-4 < MERGE_MASK_THRESHOLD
    # just outside its edge: that fringe is zero, not content / 5e-4.
    shift = 0.5 * MERGE_MASK_THRESHOLD
    patches = np.ones((1, 2, SIZE, SIZE), dtype=complex)
    offsets = np.array([[[shift, 0.0], [shift, 0.0]]])
    merged = merge_patches(patches, offsets)[0]
    fringe_col = SIZE // 4 + SIZE // 2  # first column right of the window
    assert np.all(merged[:, fringe_col] == 0)
    np.testing.assert_allclose(merged[SIZE // 4 : 3 * SIZE // 4, fringe_col - 1], 1.0)


def test_merge_keeps_float32_and_matches_float64():
    rng = np.random.default_rng(5)
    patches = complex_image(rng, (2, 4, SIZE, SIZE))
    offsets = rng.uniform(-4, 4, size=(2, 4, 2))
    merged64 = merge_patches(patches, offsets)
    merged32 = merge_patches(patches.astype(np.complex64), offsets)
    assert merged32.dtype == np.complex64
    np.testing.assert_allclose(merged32, merged64, rtol=0, atol=1e-5)
    out32 = enforce_overlap(patches.astype(np.complex64), offsets)
    assert out32.dtype == np.complex64 and out32.shape == (2, 4, SIZE, SIZE)
    np.testing.assert_allclose(out32, enforce_overlap(patches, offsets), rtol=0, atol=1e-5)


def test_enforce_overlap_single_channel_is_identity():
    rng = np.random.default_rng(6)
    patches = complex_image(rng, (3, 1, SIZE, SIZE))  # content outside the window kept too
    np.testing.assert_array_equal(enforce_overlap(patches, np.zeros((3, 1, 2))), patches)


def test_enforce_overlap_is_each_channels_merge_in_its_own_frame():
    rng = np.random.default_rng(7)
    patches = pad_to_full(complex_image(rng, (2, 3, SIZE // 2, SIZE // 2)), SIZE)
    offsets = rng.uniform(-4, 4, size=(2, 3, 2))
    relative = relative_offsets(offsets)
    assert relative.shape == (2, 3, 3, 2)
    np.testing.assert_array_equal(relative[:, 1, 2], offsets[:, 2] - offsets[:, 1])
    assert np.all(relative[:, [0, 1, 2], [0, 1, 2]] == 0)  # a channel sees itself unshifted
    out = enforce_overlap(patches, offsets)
    for c in range(3):
        np.testing.assert_array_equal(out[:, c], merge_patches(patches, offsets - offsets[:, c : c + 1]))
    # Only position differences count: moving the common reference (the group centre) by a
    # fraction of a pixel changes nothing, as it would if channels were moved to the centre
    # and back.
    np.testing.assert_allclose(enforce_overlap(patches, offsets + np.array([0.37, -0.61])), out, atol=1e-12)


def test_a_lone_channel_keeps_its_own_window_unblurred_at_sub_pixel_offsets():
    # Neighbours without content or windows in reach: every window weight but the own one is
    # zero near the own window's centre, so the own prediction passes exactly, not twice
    # interpolated as a merge at the (fractional) group centre would.
    rng = np.random.default_rng(8)
    patches = pad_to_full(complex_image(rng, (1, 2, SIZE // 2, SIZE // 2)), SIZE)
    offsets = np.array([[[-15.3, 0.4], [15.3, -0.4]]])  # 30.6 px apart: windows (16 px) never meet
    out = enforce_overlap(patches, offsets)
    np.testing.assert_allclose(out, patches, atol=1e-12)


def test_group_arrays_are_validated():
    with pytest.raises(ValueError, match=r"offsets_xy.shape=\(2, 3, 2\)"):
        merge_patches(np.zeros((2, 4, SIZE, SIZE)), np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match=r"patches.shape=\(4, 8, 8\)"):
        enforce_overlap(np.zeros((4, 8, 8)), np.zeros((4, 1, 2)))
    with pytest.raises(ValueError, match=r"offsets_xy.shape=\(3, 4, 2\)"):
        enforce_overlap(np.zeros((2, 4, SIZE, SIZE)), np.zeros((3, 4, 2)))


def test_probe_weights_follow_the_beam_with_a_floor_inside_the_window():
    from ptychopinn_core.physics import PROBE_WEIGHT_FLOOR, probe_weights
    from ptychopinn_core.simulation import focused_probe

    probe = focused_probe(SIZE, defocus_waves=0.3)
    weights = probe_weights(probe)
    window = central_window_mask(SIZE) == 1
    assert weights.max() == pytest.approx(1.0) and np.all(weights[~window] == 0)
    assert weights[window].min() == pytest.approx(PROBE_WEIGHT_FLOOR)
    bright = np.abs(probe) * window >= PROBE_WEIGHT_FLOOR * (np.abs(probe) * window).max()
    np.testing.assert_allclose(weights[bright], (np.abs(probe) / (np.abs(probe) * window).max())[bright], rtol=1e-6)
    with pytest.raises(ValueError, match="zero or non-finite"):
        probe_weights(np.zeros((SIZE, SIZE), dtype=complex))


def test_a_probe_weighted_merge_trusts_the_channel_under_its_beam():
    # Two channels at the same position disagree; channel 0's beam is bright where channel
    # 1's weights are at their floor: the merge keeps channel 0's value there (a weighted
    # average, weights 1 : floor), where the window merge would take the plain mean.
    weights = np.zeros((SIZE, SIZE))
    weights[SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4] = 0.01
    weights[SIZE // 2, SIZE // 2] = 1.0
    patches = np.zeros((1, 2, SIZE, SIZE), dtype=complex)
    patches[0, 0], patches[0, 1] = 1.0, 3.0
    merged = merge_patches(patches, np.zeros((1, 2, 2)), weights)[0]
    assert merged[SIZE // 2, SIZE // 2] == pytest.approx(2.0)  # same weights: the mean
    shifted = merge_patches(patches, np.array([[[0.0, 0.0], [5.0, 0.0]]]), weights)[0]
    # Channel 1 moved 5 px right: at the centre channel 0 has weight 1, channel 1 the floor.
    assert shifted[SIZE // 2, SIZE // 2] == pytest.approx((1.0 * 1 + 3.0 * 0.01) / 1.01)
