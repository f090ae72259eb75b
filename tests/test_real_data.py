"""The real APS Siemens-star scan (N = 128) through every installed backend.

Convert the star (tike layout), keep the 32 positions nearest the scan's centre, train
one epoch with a small network (self-supervised, on the scan being reconstructed) and
reconstruct onto the converted scan's object frame. A smoke check of N = 128 end to
end on experimental data, not of quality (see docs/real-data.md for the bench run).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from ptychopinn_core import workflow
from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.cli.main import main
from ptychopinn_core.config import Config
from ptychopinn_core.data import read_scan
from ptychopinn_core.evaluation.report import evaluate_against_reference
from ptychopinn_core.physics.stitching import ObjectFrame, default_crop_size

STAR = Path(__file__).resolve().parents[1] / "data" / "siemens-star" / "siemens-star-small.npz.bz2"
N_SUBSET = 32
CONFIG = Config().with_overrides({
    "model.n_filters_scale": 1,
    "training.epochs": 1,
    "training.batch_size": 8,
})
#: The backends that train (the star is trained on here).
BACKENDS = [entry.name for entry in BackendRegistry.discover().entries()
            if entry.ok and entry.info.capabilities.training]


@pytest.fixture(scope="module")
def star_subset(tmp_path_factory):
    """The converted star, cut to the N_SUBSET positions nearest its centre (same frame)."""
    out = tmp_path_factory.mktemp("real") / "star.npz"
    assert main(["--quiet", "convert", str(STAR), "--out", str(out)]) == 0
    scan = read_scan(out)
    _, nearest = cKDTree(scan.positions_px).query(scan.positions_px.mean(axis=0), k=N_SUBSET)
    keep = np.sort(nearest)
    return dataclasses.replace(
        scan,
        diffraction=scan.diffraction[keep],
        xcoords=scan.xcoords[keep],
        ycoords=scan.ycoords[keep],
    )


@pytest.fixture(scope="module")
def reconstructions(star_subset):
    """Backend name -> (bundle, reconstruction), computed on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            backend = BackendRegistry.discover().get(name)
            bundle = workflow.train(star_subset, CONFIG, backend)
            cache[name] = (bundle, workflow.reconstruct(bundle, star_subset, backend))
        return cache[name]

    return get


@pytest.mark.skipif(not BACKENDS, reason="no backend installed")
@pytest.mark.parametrize("name", BACKENDS)
def test_star_trains_and_reconstructs_on_its_frame(name, star_subset, reconstructions):
    bundle, recon = reconstructions(name)
    assert bundle.config.model.pattern_size == 128
    assert len(bundle.history.epochs) == 1 and np.isfinite(bundle.history.epochs[0].train_loss)
    # On the converted scan's object frame, pixel for pixel.
    assert recon.frame == ObjectFrame.for_object(star_subset.object.shape)
    assert recon.object.shape == star_subset.object.shape
    assert np.all(np.isfinite(recon.object))
    # Covered exactly around the scanned positions: every position's pixel is reconstructed,
    # nothing outside the stitched windows is.
    crop = default_crop_size(128)
    x = np.rint(star_subset.xcoords).astype(int)
    y = np.rint(star_subset.ycoords).astype(int)
    assert np.all(np.abs(recon.object[y, x]) > 0)
    rows, cols = np.nonzero(recon.object)
    half = crop // 2 + 1
    assert rows.min() >= star_subset.ycoords.min() - half and rows.max() <= star_subset.ycoords.max() + half
    assert cols.min() >= star_subset.xcoords.min() - half and cols.max() <= star_subset.xcoords.max() + half


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends")
def test_two_backends_compare_without_ground_truth(star_subset, reconstructions):
    first, second = (reconstructions(name)[1] for name in BACKENDS[:2])
    metrics = evaluate_against_reference(first, second, positions_xy=star_subset.positions_px)
    for part in ("amplitude", "phase"):
        assert 0.0 < metrics[part]["frc50"] <= 1.0
    assert np.isfinite(metrics["alignment"]["shift_x_px"])
