"""Framework-neutral training/inference inputs: normalisation, groups, split, batch order."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptychopinn_core.config import Config
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.physics.forward import predicted_amplitude
from ptychopinn_core.physics.probe_model import circular_probe_mask
from ptychopinn_core.physics.translate import extract_patches
from ptychopinn_core.inference_chunks import prepare_inference_inputs
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.training.data import prepare_training_data, split_groups, validation_count

SIZE = 16


def simulated_scan(n_side: int = 8, seed: int = 0, photons_scale: float = 30.0, with_truth: bool = True) -> ScanData:
    """A small far-field scan: random complex object, Gaussian probe, jittered raster."""
    rng = np.random.default_rng(seed)
    obj = (rng.uniform(0.5, 1.0, (64, 64)) * np.exp(1j * rng.uniform(-1, 1, (64, 64)))).astype(np.complex64)
    grid = np.arange(n_side) * 4.0 + 18
    xs, ys = np.meshgrid(grid, grid)
    positions = np.stack([xs.ravel(), ys.ravel()], axis=1) + rng.uniform(-0.5, 0.5, (n_side * n_side, 2))
    coords = np.arange(SIZE) - SIZE // 2
    probe = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / 18.0).astype(np.complex64)
    patches = extract_patches(obj, positions, SIZE).astype(np.complex64)
    diffraction = (photons_scale * predicted_amplitude(patches, probe)).astype(np.float32)
    return ScanData(
        diffraction=diffraction,
        xcoords=positions[:, 0].copy(),
        ycoords=positions[:, 1].copy(),
        probe=probe,
        patches=patches if with_truth else None,
    )


def make_config(**sections) -> Config:
    values = {"model": {"pattern_size": SIZE, "n_filters_scale": 1}, "training": {"batch_size": 5, "seed": 3}}
    for section, fields in sections.items():
        values[section] = values.get(section, {}) | fields
    return Config.from_dict(values)


@pytest.fixture(scope="module")
def scan() -> ScanData:
    return simulated_scan()


# -- split ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n_groups=st.integers(1, 300),
    fraction=st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.5, 0.9]),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_deterministic_disjoint_and_complete(n_groups, fraction, seed):
    train, validation = split_groups(n_groups, fraction, seed)
    again_train, again_validation = split_groups(n_groups, fraction, seed)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(validation, again_validation)
    assert np.intersect1d(train, validation).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, validation])), np.arange(n_groups))
    assert validation.size == validation_count(n_groups, fraction)
    if fraction > 0 and n_groups >= 2:
        assert 1 <= validation.size <= n_groups - 1
        # The fraction is honoured to the nearest group, within [1, G - 1].
        assert abs(validation.size - np.clip(fraction * n_groups, 1, n_groups - 1)) <= 0.5
    else:
        assert validation.size == 0


@pytest.mark.parametrize(
    "n_groups, fraction, expected", [(100, 0.05, 5), (64, 0.05, 3), (10, 0.05, 1), (1, 0.5, 0), (2, 0.9, 1), (7, 0, 0)]
)
def test_validation_count(n_groups, fraction, expected):
    assert validation_count(n_groups, fraction) == expected


def test_split_depends_on_the_seed():
    assert not np.array_equal(split_groups(200, 0.2, 0)[1], split_groups(200, 0.2, 1)[1])


def test_training_data_split(scan):
    data = prepare_training_data(scan, make_config(training={"validation_fraction": 0.25}))
    assert data.groups.n_groups == scan.n_positions == 64
    assert data.n_validation == 16 and data.n_train == 48
    np.testing.assert_array_equal(np.union1d(data.train_groups, data.validation_groups), np.arange(64))
    repeat = prepare_training_data(scan, make_config(training={"validation_fraction": 0.25}))
    np.testing.assert_array_equal(repeat.validation_groups, data.validation_groups)


# -- batch order ----------------------------------------------------------------------------


def test_epoch_batches_are_seeded_permutations(scan):
    data = prepare_training_data(scan, make_config(training={"validation_fraction": 0.1}))
    batches = data.epoch_batches(0)
    assert data.steps_per_epoch == len(batches) == -(-data.n_train // 5)
    assert all(len(batch) == 5 for batch in batches[:-1]) and 1 <= len(batches[-1]) <= 5
    order = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(order), data.train_groups)  # a permutation of the train groups
    assert not np.array_equal(order, data.train_groups)
    for batch in batches:
        assert batch.dtype == np.int64
    # Same seed and epoch -> same order, whatever was asked before; other epoch -> other order.
    data.epoch_batches(5)
    np.testing.assert_array_equal(np.concatenate(data.epoch_batches(0)), order)
    rebuilt = prepare_training_data(scan, make_config(training={"validation_fraction": 0.1}))
    np.testing.assert_array_equal(np.concatenate(rebuilt.epoch_batches(0)), order)
    orders = [np.concatenate(data.epoch_batches(epoch)) for epoch in range(4)]
    for first in range(4):
        np.testing.assert_array_equal(np.sort(orders[first]), data.train_groups)
        for second in range(first + 1, 4):
            assert not np.array_equal(orders[first], orders[second])
    other_seed = prepare_training_data(scan, make_config(training={"validation_fraction": 0.1, "seed": 4}))
    assert not np.array_equal(np.concatenate(other_seed.epoch_batches(0)), order)


def test_epoch_batches_reproducible_with_plain_numpy(scan):
    data = prepare_training_data(scan, make_config(training={"batch_size": 7}))
    expected = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(1, 2))).permutation(data.train_groups)
    np.testing.assert_array_equal(np.concatenate(data.epoch_batches(2)), expected)
    permutation = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(0,))).permutation(64)
    n_validation = validation_count(64, 0.05)
    np.testing.assert_array_equal(data.validation_groups, np.sort(permutation[:n_validation]))


def test_validation_batches_cover_the_validation_groups(scan):
    data = prepare_training_data(scan, make_config(training={"validation_fraction": 0.3, "batch_size": 4}))
    np.testing.assert_array_equal(np.concatenate(data.validation_batches()), data.validation_groups)


# -- gather and normalisation ---------------------------------------------------------------


@pytest.mark.parametrize("gridsize", [1, 2])
def test_gather_matches_direct_indexing(scan, gridsize):
    data = prepare_training_data(scan, make_config(model={"gridsize": gridsize}))
    channels = gridsize**2
    group_ids = data.epoch_batches(1)[0]
    diffraction, offsets = data.gather(group_ids)
    assert diffraction.shape == (len(group_ids), channels, SIZE, SIZE) and diffraction.dtype == np.float32
    assert offsets.shape == (len(group_ids), channels, 2) and offsets.dtype == np.float32
    a = data.amplitude_normalisation
    for row, group in enumerate(group_ids):
        for channel in range(channels):
            position = data.groups.indices[group, channel]
            expected = (scan.diffraction[position].astype(np.float64) * a).astype(np.float32)
            np.testing.assert_array_equal(diffraction[row, channel], expected)
            np.testing.assert_allclose(
                offsets[row, channel], scan.positions_px[position] - data.groups.centers_xy[group], atol=1e-5
            )
    np.testing.assert_allclose(offsets.sum(axis=1), 0, atol=1e-5)  # offsets are about the centre


def test_normalisation_gives_mean_energy_quarter_n_squared(scan):
    data = prepare_training_data(scan, make_config())
    energy = np.sum(data.diffraction.astype(np.float64) ** 2, axis=(1, 2))
    assert energy.mean() == pytest.approx((SIZE / 2) ** 2, rel=1e-5)
    # The measured scale does not matter: 7x brighter data normalises to the same numbers.
    brighter = dataclasses.replace(scan, diffraction=(scan.diffraction * 7).astype(np.float32))
    np.testing.assert_allclose(prepare_training_data(brighter, make_config()).diffraction, data.diffraction, rtol=1e-5)
    assert data.intensity_scale == pytest.approx(np.sqrt(1e9) / (SIZE / 2))


def test_pinn_and_supervised_ground_truth(scan):
    pinn = prepare_training_data(scan, make_config())
    assert pinn.patches is None
    with pytest.raises(ValueError, match="'Y'"):
        pinn.gather_truth(np.arange(3))
    supervised = prepare_training_data(scan, make_config(training={"mode": "supervised"}, model={"gridsize": 2}))
    group_ids = np.array([0, 5, 9])
    expected = scan.patches[supervised.groups.indices[group_ids]]
    np.testing.assert_array_equal(supervised.gather_truth(group_ids), expected)
    no_truth = simulated_scan(with_truth=False)
    with pytest.raises(ValueError, match=r"training\.mode='supervised'.*key 'Y'"):
        prepare_training_data(no_truth, make_config(training={"mode": "supervised"}))


def test_pattern_size_mismatch(scan):
    config = Config.from_dict({"model": {"pattern_size": 32}})
    with pytest.raises(ValueError, match=r"model.pattern_size=32.*16 x 16"):
        prepare_training_data(scan, config)


@pytest.mark.parametrize("mask", [False, True])
def test_model_state(scan, mask):
    state = prepare_model_state(scan, make_config(model={"probe_mask": mask}))
    assert state.probe.dtype == np.complex64 and state.probe_mask is mask
    assert np.sum(np.abs(state.probe.astype(np.complex128)) ** 2) == pytest.approx(SIZE**2, rel=1e-5)
    assert state.intensity_scale == pytest.approx(np.sqrt(1e9) / (SIZE / 2))
    assert state.amplitude_normalisation == prepare_training_data(scan, make_config()).amplitude_normalisation
    outside = circular_probe_mask(SIZE) == 0
    assert np.all(state.probe[outside] == 0) == mask


# -- streamed inference ---------------------------------------------------------------------


@pytest.mark.parametrize("gridsize, chunk_size", [(1, 10), (1, 64), (1, 1000), (2, 10), (2, 3), (2, 64)])
def test_inference_chunks_cover_every_position_once(scan, gridsize, chunk_size):
    # n_groups is ignored for inference: every position must be predicted.
    config = make_config(model={"gridsize": gridsize}, data={"n_groups": 7})
    state = prepare_model_state(scan, config)
    chunks = prepare_inference_inputs(scan, config, state, chunk_size)
    assert inspect.isgenerator(chunks)  # produced lazily, one chunk at a time
    channels = gridsize**2
    seen, groups = [], []
    limit = max(1, chunk_size // channels)
    for chunk in chunks:
        batch = len(chunk.group_ids)
        assert 1 <= batch <= limit
        assert chunk.diffraction.shape == (batch, channels, SIZE, SIZE) and chunk.diffraction.dtype == np.float32
        assert chunk.offsets_xy.shape == (batch, channels, 2) and chunk.offsets_xy.dtype == np.float32
        assert chunk.centers_xy.shape == (batch, 2) and chunk.positions_xy.shape == (batch, channels, 2)
        np.testing.assert_allclose(chunk.positions_xy, scan.positions_px[chunk.position_indices])
        np.testing.assert_allclose(
            chunk.offsets_xy, chunk.positions_xy - chunk.centers_xy[:, None, :], atol=1e-5
        )
        expected = (scan.diffraction[chunk.position_indices].astype(np.float64) * chunk.amplitude_normalisation)
        np.testing.assert_array_equal(chunk.diffraction, expected.astype(np.float32))
        seen.append(chunk.seed_indices)
        groups.append(chunk.group_ids)
    np.testing.assert_array_equal(np.concatenate(seen), np.arange(scan.n_positions))
    np.testing.assert_array_equal(np.concatenate(groups), np.arange(scan.n_positions))


def test_inference_uses_its_own_normalisation(scan):
    config = make_config()
    state = prepare_model_state(scan, config)
    dimmer = dataclasses.replace(scan, diffraction=(scan.diffraction * 0.25).astype(np.float32))
    chunks = list(prepare_inference_inputs(dimmer, config, state, 16))
    a_inf = chunks[0].amplitude_normalisation
    assert a_inf == pytest.approx(4 * state.amplitude_normalisation, rel=1e-6)
    stacked = np.concatenate([chunk.diffraction[:, 0] for chunk in chunks]).astype(np.float64)
    assert np.sum(stacked**2, axis=(1, 2)).mean() == pytest.approx((SIZE / 2) ** 2, rel=1e-5)


def test_inference_argument_errors(scan):
    config = make_config()
    state = prepare_model_state(scan, config)
    with pytest.raises(ValueError, match="chunk_size"):
        prepare_inference_inputs(scan, config, state, 0)  # raised at the call, not at the first chunk
    other = prepare_model_state(simulated_scan(), make_config())
    small_probe = dataclasses.replace(other, probe=np.ones((8, 8), np.complex64))
    with pytest.raises(ValueError, match="model probe is 8 x 8"):
        prepare_inference_inputs(scan, config, small_probe, 10)
    default = list(prepare_inference_inputs(scan, config.with_overrides({"inference.chunk_size": 25}), state))
    assert [len(chunk.group_ids) for chunk in default] == [25, 25, 14]
