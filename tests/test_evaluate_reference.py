"""Comparing two reconstructions without a ground truth (``evaluate --reference``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychopinn_core.cli.main import main
from ptychopinn_core.data import ScanData, write_scan
from ptychopinn_core.evaluation.aligned_pair import align_to_reference
from ptychopinn_core.evaluation.report import evaluate_against_reference
from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.physics.translate import translate
from ptychopinn_core.reconstruction import Reconstruction, write_reconstruction
from ptychopinn_core.simulation.objects import lines_object

SIZE = 128
SHIFT_XY = (2.3, -1.7)  # content of the second copy moved by +2.3 columns, -1.7 rows
RAMP = (0.7, 0.03, -0.02)  # phase offset (rad) and ramps (rad/px) along x and y
NOISE = 0.05


def _noisy(obj: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = NOISE * (rng.normal(size=obj.shape) + 1j * rng.normal(size=obj.shape))
    return (obj + noise).astype(np.complex64)


@pytest.fixture(scope="module")
def pair() -> tuple[Reconstruction, Reconstruction]:
    """A noisy copy of an object, and a shifted, scaled, phase-ramped noisy copy."""
    rng = np.random.default_rng(0)
    obj = lines_object((SIZE, SIZE), seed=1).astype(np.complex128)
    rows, cols = np.indices(obj.shape)
    offset, ramp_x, ramp_y = RAMP
    moved = 1.3 * translate(obj, np.array(SHIFT_XY)) * np.exp(1j * (offset + ramp_x * cols + ramp_y * rows))
    frame = ObjectFrame.for_object(obj.shape)
    return (Reconstruction(_noisy(moved, rng), frame), Reconstruction(_noisy(obj, rng), frame))


def test_same_object_registers_and_agrees(pair):
    recon, reference = pair
    metrics = evaluate_against_reference(recon, reference)
    alignment = metrics["alignment"]
    assert alignment["shift_x_px"] == pytest.approx(-SHIFT_XY[0], abs=0.06)
    assert alignment["shift_y_px"] == pytest.approx(-SHIFT_XY[1], abs=0.06)
    assert alignment["amplitude_scale"] == pytest.approx(1 / 1.3, rel=0.03)
    assert alignment["phase_ramp_x_rad_per_px"] == pytest.approx(RAMP[1], abs=2e-3)
    assert alignment["phase_ramp_y_rad_per_px"] == pytest.approx(RAMP[2], abs=2e-3)
    assert metrics["against"] == "reference"
    for part in ("amplitude", "phase"):
        assert metrics[part]["frc50"] > 0.35
        assert metrics[part]["ssim"] > 0.5


def test_unrelated_objects_disagree(pair):
    _, reference = pair
    rng = np.random.default_rng(1)
    other = Reconstruction(_noisy(lines_object((SIZE, SIZE), seed=2), rng), reference.frame)
    metrics = evaluate_against_reference(other, reference)
    for part in ("amplitude", "phase"):
        assert metrics[part]["frc50"] < 0.2
        assert metrics[part]["ssim"] < 0.3


def test_frames_with_different_origins_and_scan_region(pair):
    recon, reference = pair
    # The same reconstruction, cropped and placed on a frame starting at object pixel (10, 6).
    cropped = Reconstruction(recon.object[6:100, 10:120], ObjectFrame(10.0, 6.0, 94, 110))
    whole = align_to_reference(recon, reference)
    part = align_to_reference(cropped, reference)
    assert part.alignment["shift_x_px"] == pytest.approx(whole.alignment["shift_x_px"], abs=0.06)
    rows, cols = part.region["rows"], part.region["cols"]
    assert rows[0] >= 6 and rows[1] <= 100 and cols[0] >= 10 and cols[1] <= 120
    # Scan positions restrict the compared region to their windows.
    positions = np.array([[50.0, 50.0], [70.0, 60.0]])
    scanned = align_to_reference(recon, reference, positions_xy=positions, window_px=40)
    rows, cols = scanned.region["rows"], scanned.region["cols"]
    assert rows[0] >= 30 and rows[1] <= 80 and cols[0] >= 30 and cols[1] <= 90


def test_uncovered_pixels_are_left_out(pair):
    recon, reference = pair
    holed = recon.object.copy()
    holed[:, 90:] = 0  # a stitched reconstruction is zero where nothing was stitched
    pair_part = align_to_reference(Reconstruction(holed, recon.frame), reference)
    assert pair_part.region["cols"][1] <= 90


def test_cli_reference_mode_writes_json(tmp_path, pair):
    recon, reference = pair
    write_reconstruction(tmp_path / "a.npz", recon)
    write_reconstruction(tmp_path / "b.npz", reference)
    out = tmp_path / "metrics.json"
    code = main(["--quiet", "evaluate", "--recon", str(tmp_path / "a.npz"), "--reference",
                 str(tmp_path / "b.npz"), "--json", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["alignment"]["shift_x_px"] == pytest.approx(-SHIFT_XY[0], abs=0.06)
    assert metrics["files"]["reference"].endswith("b.npz") and metrics["amplitude"]["frc50"] > 0.35


def test_cli_needs_exactly_one_of_truth_and_reference(tmp_path, pair, capsys):
    recon, _ = pair
    write_reconstruction(tmp_path / "a.npz", recon)
    assert main(["evaluate", "--recon", str(tmp_path / "a.npz")]) == 2
    assert main(["evaluate", "--recon", str(tmp_path / "a.npz"), "--truth", str(tmp_path / "a.npz"),
                 "--reference", str(tmp_path / "a.npz")]) == 2
    assert "exactly one of --truth" in capsys.readouterr().err


def test_truth_that_is_only_a_frame_is_refused(tmp_path, pair, capsys):
    recon, _ = pair
    write_reconstruction(tmp_path / "a.npz", recon)
    frame_only = ScanData(
        diffraction=np.ones((1, 16, 16), np.float32), xcoords=np.array([64.0]),
        ycoords=np.array([64.0]), probe=np.ones((16, 16), np.complex64),
        object=np.ones((SIZE, SIZE), np.complex64), meta={"object_role": "frame"},
    )
    write_scan(tmp_path / "converted.npz", frame_only)
    assert main(["evaluate", "--recon", str(tmp_path / "a.npz"), "--truth",
                 str(tmp_path / "converted.npz")]) == 1
    assert "--reference RECON" in capsys.readouterr().err
