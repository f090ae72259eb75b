"""Stitching patches onto an object frame (physics.md §8)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import structural_similarity

from ptychopinn_core.evaluation.region import scanned_region
from ptychopinn_core.physics.stitching import ObjectFrame, Stitcher, default_crop_size, stitch
from ptychopinn_core.physics.translate import extract_patches
from ptychopinn_core.simulation import lines_object, make_demo_scan, raster_positions


@pytest.fixture(scope="module")
def jittered_scan():
    return make_demo_scan(400, size=64, nphotons=1e6, seed=4)


@pytest.fixture(scope="module")
def integer_scan():
    return make_demo_scan(400, size=64, nphotons=1e6, seed=5, jitter_px=0.0)


def test_default_crop_size_scales_with_patch_size():
    assert default_crop_size(64) == 20
    assert default_crop_size(128) == 40
    assert default_crop_size(256) == 80
    assert default_crop_size(32) == 10


# --------------------------------------------------------------------------- frames


def test_frame_json_round_trip_and_validation():
    frame = ObjectFrame(-3.0, 7.5, 40, 50)
    assert ObjectFrame.from_json(frame.to_json()) == frame
    assert frame.shape == (40, 50)
    assert ObjectFrame.for_object((12, 13)) == ObjectFrame(0, 0, 12, 13)
    with pytest.raises(ValueError, match="missing.*height_px"):
        ObjectFrame.from_json({"origin_x_px": 0, "origin_y_px": 0, "width_px": 3})
    with pytest.raises(ValueError, match="unknown.*extra"):
        ObjectFrame.from_json({**frame.to_json(), "extra": 1})
    with pytest.raises(ValueError, match="height_px"):
        ObjectFrame(0, 0, 0, 4)
    with pytest.raises(ValueError, match="origin_x_px"):
        ObjectFrame(float("nan"), 0, 4, 4)


def test_frame_around_positions_holds_every_window():
    positions = np.array([[10.3, 20.0], [35.0, 12.7], [22.5, 30.2]])
    frame = ObjectFrame.around_positions(positions, 8, margin=2)
    assert float(frame.origin_x_px).is_integer() and float(frame.origin_y_px).is_integer()
    for x, y in positions:
        last_x = frame.origin_x_px + frame.width_px - 1
        last_y = frame.origin_y_px + frame.height_px - 1
        assert frame.origin_x_px <= x - 4 - 2 and x - 4 + 7 + 2 <= last_x
        assert frame.origin_y_px <= y - 4 - 2 and y - 4 + 7 + 2 <= last_y
    assert frame.origin_x_px == np.floor(10.3 - 4) - 2


# --------------------------------------------------------------------------- stitching the truth


def test_integer_positions_reproduce_the_object_to_rounding(integer_scan):
    scan = integer_scan
    positions = scan.positions_px
    np.testing.assert_array_equal(positions, np.round(positions))
    frame = ObjectFrame.for_object(scan.object.shape)
    result = stitch(scan.patches, positions, frame)
    assert result.dtype == np.complex64 and result.shape == scan.object.shape
    rows, cols = scanned_region(positions, frame, default_crop_size(64))
    np.testing.assert_allclose(result[rows, cols], scan.object[rows, cols], rtol=0, atol=1e-6)


def test_jittered_positions_reproduce_the_object_with_high_ssim(jittered_scan):
    scan = jittered_scan
    positions = scan.positions_px
    assert not np.array_equal(positions, np.round(positions))
    frame = ObjectFrame.for_object(scan.object.shape)
    result = stitch(scan.patches, positions, frame)
    rows, cols = scanned_region(positions, frame, default_crop_size(64))
    truth, got = scan.object[rows, cols], result[rows, cols]
    for part in (np.abs, np.angle):
        reference, image = part(truth).astype(np.float64), part(got).astype(np.float64)
        ssim = structural_similarity(reference, image, data_range=np.ptp(reference))
        assert ssim > 0.99, (part.__name__, ssim)


def test_subpixel_placement_follows_the_translation_sign():
    """A linear object is reproduced exactly inside one window: bilinear is exact on planes.

    A sign error in the sub-pixel placement would shift the result by twice the
    fraction and break the equality.
    """
    rows, cols = np.indices((80, 90), dtype=np.float64)
    obj = (0.3 + 0.01 * cols + 0.02 * rows) + 1j * (0.5 - 0.004 * cols + 0.007 * rows)
    position = np.array([[41.3, 37.8]])
    patch = extract_patches(obj, position, 32)
    frame = ObjectFrame.for_object(obj.shape)
    result, weight = stitch(patch, position, frame, crop_size=12, return_weight=True)
    interior = weight > 1 - 1e-9
    assert interior.sum() >= 11 * 11
    np.testing.assert_allclose(result[interior], obj[interior], rtol=0, atol=1e-5)


def test_weight_map_counts_overlapping_windows():
    obj = lines_object(120, seed=1)
    positions = raster_positions(100, obj.shape, 32, step_px=5)
    patches = extract_patches(obj, positions, 32)
    stitcher = Stitcher(ObjectFrame.for_object(obj.shape), crop_size=10, patch_size=32)
    stitcher.add(patches, positions)
    weight = stitcher.weight
    # Integer raster, crop 10, step 5: each interior pixel lies in (10 / 5)**2 windows.
    rows, cols = scanned_region(positions, stitcher.frame, 10)
    inner = weight[rows, cols][5:-5, 5:-5]
    np.testing.assert_array_equal(inner, 4.0)
    assert weight.sum() == pytest.approx(100 * 10 * 10)
    # Uncovered pixels stay zero, covered ones are filled.
    result = stitcher.result()
    assert np.all(result[weight == 0] == 0)
    assert np.all(result[weight > 0] != 0)


def test_streamed_chunks_equal_one_shot_and_any_chunk_size(jittered_scan):
    scan = jittered_scan
    positions, patches = scan.positions_px, scan.patches
    frame = ObjectFrame.for_object(scan.object.shape)
    one_shot = stitch(patches, positions, frame, chunk_size=10_000)
    small_chunks = stitch(patches, positions, frame, chunk_size=37)
    stream = ((patches[i : i + 50], positions[i : i + 50]) for i in range(0, len(positions), 50))
    streamed = stitch(stream, frame=frame)
    np.testing.assert_allclose(small_chunks, one_shot, atol=1e-6)
    np.testing.assert_allclose(streamed, one_shot, atol=1e-6)


def test_frame_with_origin_matches_the_object_frame(jittered_scan):
    scan = jittered_scan
    positions = scan.positions_px
    full = stitch(scan.patches, positions, ObjectFrame.for_object(scan.object.shape))
    frame = ObjectFrame.around_positions(positions, default_crop_size(64), margin=3)
    local = stitch(scan.patches, positions, frame)
    x0, y0 = int(frame.origin_x_px), int(frame.origin_y_px)
    expected = full[y0 : y0 + frame.height_px, x0 : x0 + frame.width_px]
    np.testing.assert_allclose(local, expected, atol=1e-6)


def test_windows_leaving_the_frame_are_clipped():
    obj = lines_object(64, seed=0)
    positions = raster_positions(16, obj.shape, 16, step_px=10)
    patches = extract_patches(obj, positions, 16)
    small = ObjectFrame(20.0, 20.0, 16, 16)  # cuts through several windows
    result = stitch(patches, positions, small, crop_size=8)
    full = stitch(patches, positions, ObjectFrame.for_object(obj.shape), crop_size=8)
    np.testing.assert_allclose(result, full[20:36, 20:36], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    crop=st.integers(2, 16),
    n_positions=st.integers(1, 12),
)
def test_integer_positions_are_exact_for_any_crop(seed, crop, n_positions):
    rng = np.random.default_rng(seed)
    obj = rng.uniform(0.1, 1, (48, 48)) * np.exp(1j * rng.uniform(-1, 1, (48, 48)))
    obj = obj.astype(np.complex64)
    positions = rng.integers(8, 40, (n_positions, 2)).astype(np.float64)
    patches = extract_patches(obj, positions, 16)
    frame = ObjectFrame.for_object(obj.shape)
    result, weight = stitch(patches, positions, frame, crop_size=crop, return_weight=True)
    covered = weight > 0
    np.testing.assert_allclose(result[covered], obj[covered], atol=1e-6)


def test_memory_is_bounded_by_canvas_and_chunk_not_by_positions():
    size, crop, n_chunks, chunk = 32, 10, 40, 128
    frame = ObjectFrame(0.0, 0.0, 200, 200)
    stitcher = Stitcher(frame, crop, size)
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        for _ in range(n_chunks):
            patches = np.ones((chunk, size, size), np.complex64)
            positions = rng.uniform(20, 180, (chunk, 2))
            stitcher.add(patches, positions)
            del patches
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total_patch_bytes = n_chunks * chunk * size * size * 8  # 42 MB if all were kept
    assert stitcher.n_added == n_chunks * chunk
    assert peak < total_patch_bytes / 4
    assert peak < 8 * chunk * size * size * 8 + 200 * 200 * 24  # a few chunks + canvas


def test_stitcher_errors():
    frame = ObjectFrame(0, 0, 32, 32)
    with pytest.raises(ValueError, match="crop_size"):
        Stitcher(frame, crop_size=40, patch_size=32)
    stitcher = Stitcher(frame, patch_size=16)
    with pytest.raises(ValueError, match=r"expected \(B, 16, 16\)"):
        stitcher.add(np.zeros((2, 8, 8)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="one position per patch"):
        stitcher.add(np.zeros((2, 16, 16)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        stitcher.add(np.zeros((1, 16, 16)), np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="frame is required"):
        stitch(iter([(np.zeros((1, 16, 16)), np.zeros((1, 2)))]))
    with pytest.raises(ValueError, match="positions_xy is required"):
        stitch(np.zeros((1, 16, 16)))
    with pytest.raises(TypeError, match="ObjectFrame"):
        Stitcher((32, 32), patch_size=16)  # type: ignore[arg-type]
