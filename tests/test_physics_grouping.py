"""Grouping of scan positions into neighbour sets (docs/physics.md, "Grouping")."""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn_core.physics.grouping import Groups, group_positions


def raster_with_jitter(n_side: int, step_px: float = 5.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n_side, 0:n_side] * step_px
    positions = np.stack([x.ravel(), y.ravel()], axis=1).astype(float)
    return positions + rng.uniform(-1, 1, size=positions.shape)


def brute_force_neighbours(positions: np.ndarray, seed_index: int, k: int) -> set[int]:
    """Indices of the k nearest other positions (ties do not occur with jittered positions)."""
    distance = np.hypot(*(positions - positions[seed_index]).T)
    distance[seed_index] = np.inf
    return set(np.argsort(distance)[:k].tolist())


@pytest.mark.parametrize("gridsize, n_neighbors", [(2, 3), (2, 4), (2, 7), (3, 8), (3, 12)])
def test_groups_are_seed_plus_distinct_nearest_neighbours(gridsize, n_neighbors):
    positions = raster_with_jitter(12)
    groups = group_positions(positions, gridsize, n_neighbors=n_neighbors, seed=3)
    group_size = gridsize**2
    assert groups.n_groups == len(positions) and groups.group_size == group_size
    assert groups.indices.dtype == np.int64
    np.testing.assert_array_equal(groups.indices[:, 0], np.arange(len(positions)))
    for members in groups.indices:
        assert len(set(members.tolist())) == group_size
        assert set(members[1:].tolist()) <= brute_force_neighbours(positions, members[0], n_neighbors)


def test_geometry_centre_is_mean_and_offsets_sum_to_zero():
    positions = raster_with_jitter(10, seed=1)
    groups = group_positions(positions, 2, seed=0)
    members = positions[groups.indices]
    np.testing.assert_allclose(groups.centers_xy, members.mean(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(groups.offsets_xy, members - groups.centers_xy[:, None], rtol=0, atol=1e-12)
    np.testing.assert_allclose(groups.offsets_xy.sum(axis=1), 0.0, atol=1e-10)
    # Neighbours on a 5 px raster: offsets are a few pixels, never the scan's extent.
    assert np.abs(groups.offsets_xy).max() < 10


def test_same_seed_reproduces_and_other_seed_differs():
    positions = raster_with_jitter(15, seed=2)
    first = group_positions(positions, 2, n_neighbors=6, seed=11)
    again = group_positions(positions, 2, n_neighbors=6, seed=11)
    other = group_positions(positions, 2, n_neighbors=6, seed=12)
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.offsets_xy, again.offsets_xy)
    assert not np.array_equal(first.indices, other.indices)


def test_neighbour_draw_uses_every_candidate():
    # Drawn without replacement from the K candidates: over many groups each candidate
    # rank is picked, about (C - 1) / K of the time.
    positions = raster_with_jitter(40, seed=3)
    n_neighbors = 8
    groups = group_positions(positions, 2, n_neighbors=n_neighbors, seed=5)
    rank_counts = np.zeros(n_neighbors)
    for members in groups.indices[:400]:
        distance = np.hypot(*(positions - positions[members[0]]).T)
        order = np.argsort(distance)[1 : n_neighbors + 1].tolist()
        for member in members[1:]:
            rank_counts[order.index(member)] += 1
    expected = 400 * 3 / n_neighbors
    assert np.all(np.abs(rank_counts - expected) < 0.35 * expected)


def test_gridsize_one_makes_every_position_its_own_group():
    positions = raster_with_jitter(5)
    groups = group_positions(positions, 1)
    np.testing.assert_array_equal(groups.indices, np.arange(25)[:, None])
    np.testing.assert_array_equal(groups.centers_xy, positions)
    assert np.all(groups.offsets_xy == 0)
    # Works with a single position, too (no neighbours needed).
    assert group_positions(positions[:1], 1).n_groups == 1


@pytest.mark.parametrize("gridsize", [1, 2])
def test_n_groups_subsamples_distinct_seeds(gridsize):
    positions = raster_with_jitter(10)
    groups = group_positions(positions, gridsize, n_groups=30, seed=4)
    seeds = groups.indices[:, 0]
    assert groups.n_groups == 30 and len(np.unique(seeds)) == 30
    assert np.all(np.diff(seeds) > 0)  # scan order kept
    np.testing.assert_array_equal(seeds, group_positions(positions, gridsize, n_groups=30, seed=4).indices[:, 0])
    assert not np.array_equal(seeds, group_positions(positions, gridsize, n_groups=30, seed=5).indices[:, 0])


def test_duplicate_positions_still_give_distinct_members():
    # Three copies of each point: the KD-tree may rank a duplicate before the seed.
    positions = np.repeat(raster_with_jitter(4), 3, axis=0)
    groups = group_positions(positions, 2, n_neighbors=4, seed=0)
    for members in groups.indices:
        assert len(set(members.tolist())) == 4


def test_ten_thousand_positions_are_grouped_vectorised():
    # Timings live in bench/grouping.py; this checks the large case end to end.
    rng = np.random.default_rng(6)
    positions = rng.uniform(0, 2000, size=(10_000, 2))
    groups = group_positions(positions, 2, n_neighbors=5, seed=0)
    assert groups.n_groups == 10_000
    assert np.all(np.sort(groups.indices, axis=1)[:, 1:] != np.sort(groups.indices, axis=1)[:, :-1])
    # Every member lies within the seed's 5-NN radius (checked for a sample by brute force).
    for row in rng.choice(10_000, size=50, replace=False):
        members = groups.indices[row]
        assert set(members[1:].tolist()) <= brute_force_neighbours(positions, members[0], 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gridsize=2, n_neighbors=2), "n_neighbors >= C - 1 = 3"),
        (dict(gridsize=3, n_neighbors=4), "n_neighbors >= C - 1 = 8"),
        (dict(gridsize=2, n_groups=26), "at most 25"),
        (dict(gridsize=0), "gridsize >= 1"),
        (dict(gridsize=2, n_groups=0), "n_groups >= 1"),
    ],
)
def test_invalid_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_positions(raster_with_jitter(5), **kwargs)


def test_too_few_positions_for_k_neighbours():
    with pytest.raises(ValueError, match=r"M >= n_neighbors \+ 1 = 5, received M=4"):
        group_positions(raster_with_jitter(2), 2, n_neighbors=4)


def test_invalid_positions_and_types():
    with pytest.raises(ValueError, match=r"positions_xy.shape=\(10, 3\)"):
        group_positions(np.zeros((10, 3)), 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        group_positions(np.full((10, 2), np.nan), 2)
    with pytest.raises(TypeError, match="gridsize=2.0"):
        group_positions(raster_with_jitter(3), 2.0)


def test_groups_validates_its_shapes():
    with pytest.raises(ValueError, match=r"offsets_xy.shape=\(3, 2, 2\)"):
        Groups(indices=np.zeros((3, 4), dtype=np.int64), centers_xy=np.zeros((3, 2)), offsets_xy=np.zeros((3, 2, 2)))
