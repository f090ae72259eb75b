"""Evaluation metrics against a ground truth (docs/physics.md, "Evaluation")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ptychopinn_core.evaluation.alignment import align_phase, fit_phase_plane, scale_amplitude
from ptychopinn_core.evaluation.metrics import (
    fourier_ring_correlation,
    frc_cutoff,
    image_metrics,
    metrics_to_json,
)
from ptychopinn_core.evaluation.region import scanned_region, window_coverage
from ptychopinn_core.evaluation.report import evaluate
from ptychopinn_core.physics.stitching import ObjectFrame, default_crop_size
from ptychopinn_core.reconstruction import Reconstruction
from ptychopinn_core.simulation import lines_object, make_demo_scan, raster_positions

WINDOW = 20
METRICS = ("ssim", "psnr", "mae", "frc50")


@pytest.fixture(scope="module")
def truth_and_positions():
    truth = lines_object(112, seed=8)
    positions = raster_positions(196, truth.shape, 64, step_px=3.5)
    return truth, positions


def _score(recon, truth, positions):
    return evaluate(recon, truth, positions, window_px=WINDOW)


# --------------------------------------------------------------------------- identities


def test_truth_against_itself_is_perfect(truth_and_positions):
    truth, positions = truth_and_positions
    metrics = _score(truth, truth, positions)
    for part in ("amplitude", "phase"):
        assert metrics[part]["ssim"] == pytest.approx(1.0, abs=1e-12)
        assert metrics[part]["mae"] == 0.0
        assert metrics[part]["psnr"] == math.inf
        assert metrics[part]["frc50"] == 1.0
        np.testing.assert_allclose(metrics[part]["frc"]["correlation"], 1.0, atol=1e-12)
    as_json = json.loads(json.dumps(metrics_to_json(metrics), allow_nan=False))
    assert as_json["amplitude"]["psnr"] is None  # inf is stored as null
    assert as_json["amplitude"]["ssim"] == pytest.approx(1.0)


def test_phase_offset_and_ramp_are_removed(truth_and_positions):
    truth, positions = truth_and_positions
    rows, cols = np.indices(truth.shape)
    # A steep ramp: the phase difference wraps many times over the region.
    plane = 2.0 + 0.45 * cols - 0.3 * rows
    metrics = _score(truth * np.exp(1j * plane), truth, positions)
    for part in ("amplitude", "phase"):
        assert metrics[part]["ssim"] > 0.99999
        assert metrics[part]["mae"] < 1e-5
        assert metrics[part]["frc50"] == 1.0
    alignment = metrics["alignment"]
    assert alignment["phase_ramp_x_rad_per_px"] == pytest.approx(0.45, abs=1e-6)
    assert alignment["phase_ramp_y_rad_per_px"] == pytest.approx(-0.3, abs=1e-6)


def test_amplitude_scale_is_undone(truth_and_positions):
    truth, positions = truth_and_positions
    metrics = _score(2.5 * truth, truth, positions)
    assert metrics["alignment"]["amplitude_scale"] == pytest.approx(0.4, rel=1e-6)
    assert metrics["amplitude"]["ssim"] > 0.99999 and metrics["amplitude"]["mae"] < 1e-6
    assert metrics["phase"]["mae"] < 1e-6


@settings(max_examples=25, deadline=None)
@given(
    offset=st.floats(-3.0, 3.0),
    slope_x=st.floats(-0.6, 0.6),
    slope_y=st.floats(-0.6, 0.6),
)
def test_fit_phase_plane_recovers_any_plane(offset, slope_x, slope_y):
    truth = lines_object(40, seed=1).astype(np.complex128)
    rows, cols = np.indices(truth.shape)
    recon = truth * np.exp(1j * (offset + slope_x * cols + slope_y * rows))
    fitted = fit_phase_plane(recon, truth)
    assert np.angle(np.exp(1j * (fitted[0] - offset))) == pytest.approx(0.0, abs=1e-6)
    assert fitted[1] == pytest.approx(slope_x, abs=1e-6)
    assert fitted[2] == pytest.approx(slope_y, abs=1e-6)
    np.testing.assert_allclose(align_phase(recon, truth), truth, atol=1e-5)


def test_scale_amplitude_uses_the_ratio_of_means():
    truth = np.full((8, 8), 0.5 + 0j)
    recon = np.full((8, 8), 2.0 + 0j)
    scaled, factor = scale_amplitude(recon, truth)
    assert factor == pytest.approx(0.25)
    np.testing.assert_allclose(scaled, truth)
    with pytest.raises(ValueError, match="zero"):
        scale_amplitude(np.zeros((8, 8)), truth)


# --------------------------------------------------------------------------- degradations


def _noisy(truth, level, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape)
    return truth + level * noise


def _blurred(truth, sigma):
    real = ndimage.gaussian_filter(truth.real, sigma)
    return real + 1j * ndimage.gaussian_filter(truth.imag, sigma)


def _assert_monotonic(scores, metrics=METRICS, strict_frc=True):
    """Each metric gets worse from one degradation level to the next."""
    for part in ("amplitude", "phase"):
        for better, worse in zip(scores, scores[1:]):
            assert worse[part]["ssim"] < better[part]["ssim"]
            assert worse[part]["psnr"] < better[part]["psnr"]
            assert worse[part]["mae"] > better[part]["mae"]
            if "frc50" in metrics:
                if strict_frc:
                    assert worse[part]["frc50"] < better[part]["frc50"]
                else:
                    assert worse[part]["frc50"] <= better[part]["frc50"]


def test_more_noise_gives_worse_metrics(truth_and_positions):
    truth, positions = truth_and_positions
    perfect = _score(truth, truth, positions)
    noisy = [_score(_noisy(truth, level), truth, positions) for level in (0.01, 0.03, 0.1)]
    scores = [perfect, *noisy]
    _assert_monotonic(scores[1:])
    for part in ("amplitude", "phase"):
        assert scores[1][part]["ssim"] < 1 and scores[1][part]["psnr"] < math.inf
        assert scores[-1][part]["frc50"] < 0.9


def test_more_blur_gives_worse_metrics(truth_and_positions):
    truth, positions = truth_and_positions
    scores = [_score(_blurred(truth, sigma), truth, positions) for sigma in (0.5, 1.0, 2.0)]
    # FRC is blind to a noise-free Gaussian blur (positive transfer function): documented.
    _assert_monotonic(scores, metrics=("ssim", "psnr", "mae"))
    blurred_noisy = [
        _score(_noisy(_blurred(truth, s), 0.02), truth, positions) for s in (0.5, 1.5, 3.0)
    ]
    _assert_monotonic(blurred_noisy)


# --------------------------------------------------------------------------- FRC


def test_frc_of_independent_noise_is_small_and_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(128, 128)), rng.normal(size=(128, 128))
    frequencies, curve = fourier_ring_correlation(a, b)
    assert frequencies[0] == pytest.approx(1 / 64) and frequencies[-1] == 1.0
    # Unbiased; a ring of n pixels scatters by about 1/sqrt(n) (more with apodisation).
    assert np.abs(curve[8:]).max() < 0.5 and abs(curve.mean()) < 0.05
    np.testing.assert_allclose(fourier_ring_correlation(b, a)[1], curve)
    assert frc_cutoff(frequencies, curve) < 0.1


def test_frc_cutoff_interpolates_the_half_crossing():
    frequencies = np.array([0.25, 0.5, 0.75, 1.0])
    assert frc_cutoff(frequencies, np.array([0.9, 0.7, 0.3, 0.1])) == pytest.approx(0.625)
    assert frc_cutoff(frequencies, np.array([0.9, 0.8, 0.7, 0.6])) == 1.0
    assert frc_cutoff(frequencies, np.array([0.0, 0.0, 0.0, 0.0])) == pytest.approx(0.125)


def test_frc_halves_where_snr_drops():
    """White noise added to a low-pass image: FRC50 falls where signal power meets noise."""
    rng = np.random.default_rng(2)
    signal = ndimage.gaussian_filter(rng.normal(size=(128, 128)), 2.0)
    noisy = signal + rng.normal(size=signal.shape) * signal.std() * 0.3
    f50 = frc_cutoff(*fourier_ring_correlation(noisy, signal))
    assert 0.05 < f50 < 0.9


# --------------------------------------------------------------------------- region and frames


def test_scanned_region_of_a_full_raster_is_its_bounding_box():
    frame = ObjectFrame.for_object((100, 100))
    positions = raster_positions(25, frame.shape, 32, step_px=4)
    rows, cols = scanned_region(positions, frame, 10)
    x, y = positions[:, 0], positions[:, 1]
    assert (cols.start, cols.stop) == (int(x.min()) - 5, int(x.max()) - 5 + 10)
    assert (rows.start, rows.stop) == (int(y.min()) - 5, int(y.max()) - 5 + 10)
    assert np.all(window_coverage(positions, frame, 10)[rows, cols] > 0)


def test_scanned_region_drops_a_partial_last_row_and_holes():
    frame = ObjectFrame.for_object((100, 100))
    positions = raster_positions(22, frame.shape, 32, step_px=4)  # 5 x 5 grid, last row 2 points
    rows, cols = scanned_region(positions, frame, 6)
    coverage = window_coverage(positions, frame, 6)
    assert np.all(coverage[rows, cols] > 0)
    last_full_row_y = positions[:, 1].max() - 4
    assert rows.stop == last_full_row_y - 3 + 6  # the partial row's windows are not inside
    assert cols.stop - cols.start == 4 * 4 + 6  # full width kept
    with pytest.raises(ValueError, match="does not cover"):
        scanned_region(np.array([[500.0, 500.0]]), frame, 6)


def test_reconstruction_on_a_shifted_frame_scores_like_the_same_pixels(truth_and_positions):
    truth, positions = truth_and_positions
    noisy = _noisy(truth, 0.05, seed=3).astype(np.complex64)
    frame = ObjectFrame.around_positions(positions, WINDOW, margin=1)
    x0, y0 = int(frame.origin_x_px), int(frame.origin_y_px)
    local = noisy[y0 : y0 + frame.height_px, x0 : x0 + frame.width_px]
    recon = Reconstruction(local, frame, {"crop_size_px": WINDOW})
    on_frame = evaluate(recon, truth, positions)  # window from the reconstruction's meta
    direct = _score(noisy, truth, positions)
    for part in ("amplitude", "phase"):
        for key in METRICS:
            assert on_frame[part][key] == pytest.approx(direct[part][key], rel=1e-9)


def test_subpixel_frame_offset_is_resampled(truth_and_positions):
    truth, positions = truth_and_positions
    frame = ObjectFrame(0.5, 0.0, truth.shape[0], truth.shape[1] - 1)
    # The truth sampled half a pixel to the right, on a frame whose origin is x = 0.5.
    shifted = 0.5 * (truth[:, :-1] + truth[:, 1:])
    metrics = evaluate(Reconstruction(shifted, frame), truth, positions, window_px=WINDOW)
    wrong = ObjectFrame(-0.5, 0.0, truth.shape[0], truth.shape[1] - 1)
    misplaced = evaluate(Reconstruction(shifted, wrong), truth, positions, window_px=WINDOW)
    for part in ("amplitude", "phase"):
        # Two half-pixel interpolations blur a little; a wrong origin shifts by a pixel.
        assert metrics[part]["ssim"] > 0.99
        assert misplaced[part]["ssim"] < metrics[part]["ssim"] - 0.01


# --------------------------------------------------------------------------- errors


def test_constant_truth_is_a_clear_error():
    positions = raster_positions(16, (60, 60), 32, step_px=4)
    flat_phase = np.full((60, 60), 0.5 + 0j)
    with pytest.raises(ValueError, match=r"amplitude.*constant.*data range 0"):
        evaluate(flat_phase, flat_phase, positions, window_px=10)
    with pytest.raises(ValueError, match="constant"):
        image_metrics(np.ones((10, 10)), np.ones((10, 10)), "phase")


def test_region_smaller_than_ssim_window_and_missing_window_are_errors():
    truth = lines_object(40, seed=0)
    with pytest.raises(ValueError, match="smaller than the 7 x 7 SSIM window"):
        evaluate(truth, truth, np.array([[20.0, 20.0]]), window_px=4)
    with pytest.raises(ValueError, match="window_px"):
        evaluate(truth, truth, np.array([[20.0, 20.0]]))


def test_simulated_scan_stitched_truth_scores_near_perfect():
    """End to end on simulated data: stitching Y and scoring it against objectGuess."""
    from ptychopinn_core.physics.stitching import stitch

    scan = make_demo_scan(150, size=32, nphotons=1e6, seed=9)
    frame = ObjectFrame.for_object(scan.object.shape)
    crop = default_crop_size(32)
    stitched = stitch(scan.patches, scan.positions_px, frame)
    recon = Reconstruction(stitched, frame, {"crop_size_px": crop})
    metrics = evaluate(recon, scan.object, scan.positions_px)
    for part in ("amplitude", "phase"):
        assert metrics[part]["ssim"] > 0.99
        assert metrics[part]["frc50"] > 0.8
