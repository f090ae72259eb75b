"""The true object is the minimiser of the grouped training loss (issue 18).

If it were not, training would pull the network away from the truth however long it ran:
the published code lost its amplitude contrast to such a merge normalisation. Here the
whole training path of the numpy reference is run on NOISELESS data: the scan is
normalised and grouped as for training (``prepare_training_data``, ``prepare_model_state``),
the network's heads are set to the truth (the central window of ``kappa * Y``, ``kappa`` the
global amplitude factor that the data normalisation fixes, docs/physics.md §7), the
overlap constraint merges each group, and the loss is compared with its floor (the loss
of a prediction equal to the data) for every merge and normalisation path: gridsize 1, 2
and 3, Poisson NLL and amplitude MAE, with and without the probe mask, a disk and a
focused probe, window and probe merge weights.

Exactness needs what the model can represent: a probe inside the central window (the
network predicts nothing outside it; a real probe's tail there is a modelling error we
measure, docs/physics.md §3) and, for groups, integer position differences. Sub-pixel
differences cost what bilinear interpolation blurs; that bound is held separately.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ptychopinn_core.config import Config
from ptychopinn_core.model.inputs import overlap_weights, prepare_model_state
from ptychopinn_core.physics import (
    central_window_mask,
    circular_probe_mask,
    enforce_overlap,
    far_field,
    pad_to_full,
    pinn_loss,
    predicted_amplitude,
)
from ptychopinn_core.simulation import make_demo_scan, make_probe
from ptychopinn_core.training.data import prepare_training_data

SIZE = 64
HALF = SIZE // 4


def _noiseless_scan(probe_kind: str, jitter_px: float, inside_mask: bool):
    """A scan whose diffraction is the exact far field, with a probe the model can represent."""
    probe, _ = make_probe(probe_kind, SIZE)
    probe = probe * central_window_mask(SIZE)
    if inside_mask:
        probe = probe * circular_probe_mask(SIZE)
    scan = make_demo_scan(60, SIZE, seed=4, probe=probe, jitter_px=jitter_px, step_px=6.0)
    exact = scan.meta["intensity_scale"] * np.abs(far_field(scan.patches.astype(np.complex128) * probe))
    return dataclasses.replace(scan, diffraction=exact.astype(np.float32))


def _grouped_loss(scan, config: Config, heads: np.ndarray | None = None):
    """Loss of the truth (or of ``heads``, complex (G, C, N/2, N/2)), its floor and the data."""
    data = prepare_training_data(scan, config)
    state = prepare_model_state(scan, config)
    groups = np.arange(data.groups.n_groups)
    diffraction, offsets = data.gather(groups)
    kappa = state.amplitude_normalisation * scan.meta["intensity_scale"] * np.linalg.norm(scan.probe) / SIZE
    truth = kappa * scan.patches.astype(np.complex128)[data.groups.indices][..., HALF:-HALF, HALF:-HALF]
    heads = truth if heads is None else heads

    weights = overlap_weights(config.model, state.probe.astype(np.complex128))

    def loss(values: np.ndarray) -> float:
        patches = enforce_overlap(pad_to_full(values, SIZE), offsets.astype(np.float64), weights)
        amplitude = predicted_amplitude(patches, state.probe.astype(np.complex128))
        return pinn_loss(amplitude, diffraction.astype(np.float64), state.intensity_scale,
                         config.training.nll_weight, config.training.mae_weight)

    floor = pinn_loss(diffraction.astype(np.float64), diffraction.astype(np.float64), state.intensity_scale,
                      config.training.nll_weight, config.training.mae_weight)
    return loss, truth, floor


PATHS = [
    pytest.param(gridsize, probe_kind, mask, loss, merge,
                 id=f"g{gridsize}-{probe_kind}-{'mask' if mask else 'nomask'}-{loss}-{merge}")
    for gridsize in (1, 2, 3)
    for probe_kind, mask in (("disk", False), ("focused", False), ("focused", True))
    for loss in ("nll", "mae")
    for merge in ("probe", "window")
    if not (gridsize == 1 and merge == "window")  # gridsize 1 merges nothing
    if not (gridsize == 3 and ((probe_kind, mask) != ("focused", False) or loss == "mae"))
]


def _config(gridsize: int, mask: bool, loss: str, merge: str = "probe") -> Config:
    weights = {"nll": (1.0, 0.0), "mae": (0.0, 1.0)}[loss]
    return Config().with_overrides({
        "model.pattern_size": SIZE, "model.gridsize": gridsize, "model.probe_mask": mask,
        "model.overlap_weights": merge,
        "data.n_neighbors": max(4, gridsize * gridsize), "data.n_groups": 12,
        "training.validation_fraction": 0.0,
        "training.nll_weight": weights[0], "training.mae_weight": weights[1],
    })


@pytest.mark.parametrize(("gridsize", "probe_kind", "mask", "loss", "merge"), PATHS)
def test_the_truth_reaches_the_loss_floor_and_is_stationary(gridsize, probe_kind, mask, loss, merge):
    scan = _noiseless_scan(probe_kind, jitter_px=0.0, inside_mask=mask)
    assert np.all(scan.positions_px == np.round(scan.positions_px))  # integer differences
    loss_at, truth, floor = _grouped_loss(scan, _config(gridsize, mask, loss, merge))
    at_truth = loss_at(truth)
    # What 1 % of amplitude contrast costs: the truth must sit far below it (float32 data
    # rounding, ~1e-7 relative, is all that separates it from the floor; the NLL grows with
    # the square of a misfit, the MAE linearly).
    scaled = loss_at(1.01 * truth)
    assert scaled - floor > 0
    assert at_truth - floor <= (1e-6 if loss == "nll" else 1e-4) * (scaled - floor)
    # Stationary: along random directions the first-order change (central difference)
    # is negligible against the second-order one.
    rng = np.random.default_rng(0)
    for _ in range(2):
        direction = rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape)
        direction *= 1e-3 * np.abs(truth).mean() / np.abs(direction).mean()
        plus, minus = loss_at(truth + direction), loss_at(truth - direction)
        first, second = abs(plus - minus) / 2, (plus + minus) / 2 - at_truth
        assert second > 0
        assert first <= 1e-2 * second if loss == "nll" else first <= 0.2 * second


@pytest.mark.parametrize("gridsize", [2, 3])
def test_sub_pixel_groups_miss_the_floor_only_by_the_bilinear_blur(gridsize):
    """Jittered positions: neighbours are moved by fractions of a pixel (bilinear)."""
    scan = _noiseless_scan("focused", jitter_px=0.6, inside_mask=False)
    config = _config(gridsize, False, "nll")
    loss_at, truth, floor = _grouped_loss(scan, config)
    data = prepare_training_data(scan, config)
    offsets = data.gather(np.arange(data.groups.n_groups))[1].astype(np.float64)
    weights = overlap_weights(config.model, prepare_model_state(scan, config).probe.astype(np.complex128))
    merged = enforce_overlap(pad_to_full(truth, SIZE), offsets, weights)[..., HALF:-HALF, HALF:-HALF]
    # Each channel's own prediction enters unshifted; only its neighbours', moved by
    # sub-pixel position differences, are blurred: measured 1.1 % (the group-centre
    # merge blurred every channel twice: 2.5 %).
    assert np.linalg.norm(merged - truth) / np.linalg.norm(truth) < 0.015
    assert 0 < loss_at(truth) - floor < loss_at(1.02 * truth) - floor
