"""The stored iterative reference of the Siemens star (``bench/star_reference.py``, pty-chi).

It is what real-data reconstructions are judged against (docs/real-data.md): it must
read as a reconstruction file, lie on the converted star's object frame, say how it
was made, and go through ``ptychopinn evaluate --reference`` (against itself: FRC 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptychopinn_core.cli.main import main
from ptychopinn_core.data import read_scan
from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.reconstruction import read_reconstruction

STAR_DIR = Path(__file__).resolve().parents[1] / "data" / "siemens-star"
STAR = STAR_DIR / "siemens-star-small.npz.bz2"
REFERENCE = STAR_DIR / "reference-ptychi.npz"


@pytest.fixture(scope="module")
def converted_star(tmp_path_factory):
    out = tmp_path_factory.mktemp("star") / "star.npz"
    assert main(["--quiet", "convert", str(STAR), "--out", str(out)]) == 0
    return out


def test_reference_is_a_finite_reconstruction_on_the_star_frame(converted_star):
    reference = read_reconstruction(REFERENCE)
    scan = read_scan(converted_star)
    assert reference.object.dtype == np.complex64
    assert reference.frame == ObjectFrame.for_object(scan.object.shape)
    assert np.all(np.isfinite(reference.object))
    # Not the flat initial guess: the star's structure is in the scanned region.
    x = np.rint(scan.xcoords).astype(int)
    y = np.rint(scan.ycoords).astype(int)
    scanned = reference.object[y.min():y.max() + 1, x.min():x.max() + 1]
    assert np.std(np.abs(scanned)) > 0.05 * np.mean(np.abs(scanned))
    made = reference.meta
    assert made["package"].startswith("ptychi ")
    assert made["settings"]["algorithm"] == "LSQML"
    assert made["settings"]["epochs"] >= 100
    assert made["reconstruction_s"] > 0


def test_evaluate_reference_against_itself(converted_star, tmp_path):
    report = tmp_path / "self.json"
    assert main([
        "--quiet", "evaluate", "--recon", str(REFERENCE), "--reference", str(REFERENCE),
        "--scan", str(converted_star), "--json", str(report),
    ]) == 0
    metrics = json.loads(report.read_text())
    for part in ("amplitude", "phase"):
        assert metrics[part]["frc50"] == pytest.approx(1.0)
        assert metrics[part]["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert abs(metrics["alignment"]["shift_x_px"]) < 0.05
    assert abs(metrics["alignment"]["shift_y_px"]) < 0.05
    # Restricted to the scanned windows: well inside the 477 x 474 frame.
    rows, cols = metrics["region"]["rows"], metrics["region"]["cols"]
    assert 0 < rows[0] < rows[1] < 477 and 0 < cols[0] < cols[1] < 474
