"""Grouping of scan positions into overlapping neighbour sets (docs/physics.md, "Grouping").

A group is a seed position plus ``C - 1`` positions drawn without replacement from
the seed's ``K`` nearest neighbours. The network predicts the ``C`` patches of a group
together, and :mod:`ptychopinn_core.physics.overlap` makes them agree.

Reproducibility: one ``numpy.random.default_rng(seed)`` per call, used in a fixed order
(first the seed subsample when ``n_groups`` is given, then the neighbour draw), so the
same positions and arguments always give the same groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["Groups", "check_positions", "group_positions"]


@dataclass(frozen=True, eq=False)
class Groups:
    """Groups of scan positions and their geometry.

    Attributes
    ----------
    indices : ndarray, int64, shape (G, C)
        Position indices of each group; channel 0 is the seed position, channels
        ``1..C-1`` its drawn neighbours in draw order.
    centers_xy : ndarray, float64, shape (G, 2)
        Group centre ``mean_c position_c``, ``(x, y)`` object pixels.
    offsets_xy : ndarray, float64, shape (G, C, 2)
        ``offset_c = position_c - centre``, ``(x, y)`` pixels; sums to zero per group.
    """

    indices: np.ndarray
    centers_xy: np.ndarray
    offsets_xy: np.ndarray

    def __post_init__(self) -> None:
        if np.ndim(self.indices) != 2:
            raise ValueError(
                f"invalid group indices: expected shape (G, C), received indices.shape={np.shape(self.indices)}"
            )
        n_groups, group_size = np.shape(self.indices)
        if np.shape(self.centers_xy) != (n_groups, 2):
            raise ValueError(
                f"invalid group centres: expected shape {(n_groups, 2)}, "
                f"received centers_xy.shape={np.shape(self.centers_xy)}"
            )
        if np.shape(self.offsets_xy) != (n_groups, group_size, 2):
            raise ValueError(
                f"invalid group offsets: expected shape {(n_groups, group_size, 2)}, "
                f"received offsets_xy.shape={np.shape(self.offsets_xy)}"
            )

    @property
    def n_groups(self) -> int:
        """Number of groups ``G``."""
        return int(self.indices.shape[0])

    @property
    def group_size(self) -> int:
        """Positions per group ``C = gridsize**2``."""
        return int(self.indices.shape[1])


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"invalid {name}: expected an int, received {name}={value!r}")
    if value < minimum:
        raise ValueError(f"invalid {name}: expected {name} >= {minimum}, received {name}={value}")
    return int(value)


def group_positions(
    positions_xy: np.ndarray,
    gridsize: int,
    n_neighbors: int = 4,
    n_groups: int | None = None,
    seed: int = 0,
) -> Groups:
    """Group scan positions: each seed with ``C - 1`` of its ``K`` nearest neighbours.

    Parameters
    ----------
    positions_xy : ndarray, float, shape (M, 2)
        Scan positions ``(x, y)`` in object pixels.
    gridsize : int
        ``g``; the group size is ``C = g * g``.
    n_neighbors : int, optional
        ``K`` nearest neighbours to draw from (default 4, ``K >= C - 1``).
    n_groups : int, optional
        Number of groups (seeds subsampled, ``<= M``); default one per position.
    seed : int, optional
        Seed of ``numpy.random.default_rng`` (default 0).

    Returns
    -------
    Groups

    Notes
    -----
    1. Seeds: all positions in order, or, with ``n_groups``, ``n_groups`` of them drawn
       without replacement (``rng.choice``) and sorted (scan order kept).
    2. ``C == 1``: each seed is its own group, offsets zero.
    3. Otherwise a KD-tree (``scipy.spatial.cKDTree``) finds the ``K + 1`` nearest
       positions of each seed; the seed itself is removed (for exact duplicates of the
       seed, the farthest of the ``K + 1`` is removed instead), leaving ``K`` candidates.
    4. ``C - 1`` candidates are drawn without replacement per group: the candidates
       sorted by a key ``rng.random((G, K))`` (a uniform random permutation per row),
       first ``C - 1`` kept, in that order.
    5. ``centre = mean_c position_c``; ``offset_c = position_c - centre``.
    """
    positions = check_positions(positions_xy)
    gridsize = _check_int(gridsize, "gridsize", 1)
    n_neighbors = _check_int(n_neighbors, "n_neighbors", 1)
    n_positions = positions.shape[0]
    group_size = gridsize * gridsize
    rng = np.random.default_rng(seed)

    if n_groups is None:
        seeds = np.arange(n_positions, dtype=np.int64)
    else:
        n_groups = _check_int(n_groups, "n_groups", 1)
        if n_groups > n_positions:
            raise ValueError(
                f"invalid n_groups: expected at most {n_positions} (one group per position), "
                f"received n_groups={n_groups}"
            )
        seeds = np.sort(rng.choice(n_positions, size=n_groups, replace=False)).astype(np.int64)

    if group_size == 1:
        indices = seeds[:, None]
    else:
        if n_neighbors < group_size - 1:
            raise ValueError(
                f"invalid n_neighbors: expected n_neighbors >= C - 1 = {group_size - 1} for "
                f"gridsize={gridsize}, received n_neighbors={n_neighbors}"
            )
        if n_positions < n_neighbors + 1:
            raise ValueError(
                f"too few positions for grouping: expected M >= n_neighbors + 1 = "
                f"{n_neighbors + 1}, received M={n_positions}"
            )
        _, nearest = cKDTree(positions).query(positions[seeds], k=n_neighbors + 1)
        nearest = nearest.astype(np.int64)
        is_self = nearest == seeds[:, None]
        # A duplicate of the seed can outrank it in the tie; then drop the farthest.
        is_self[~is_self.any(axis=1), -1] = True
        candidates = nearest[~is_self].reshape(len(seeds), n_neighbors)
        draw = np.argsort(rng.random(candidates.shape), axis=1)[:, : group_size - 1]
        neighbours = np.take_along_axis(candidates, draw, axis=1)
        indices = np.concatenate([seeds[:, None], neighbours], axis=1)

    members = positions[indices]
    centers = members.mean(axis=1)
    offsets = members - centers[:, None, :]
    return Groups(indices=indices, centers_xy=centers, offsets_xy=offsets)


def check_positions(positions_xy: np.ndarray) -> np.ndarray:
    """``(M, 2)`` finite ``(x, y)`` positions, M >= 1, as float64; one ValueError otherwise."""
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or positions.shape[0] == 0:
        raise ValueError(
            "invalid positions: expected shape (M, 2) with M >= 1, "
            f"received positions_xy.shape={np.shape(positions_xy)}"
        )
    if not np.all(np.isfinite(positions)):
        raise ValueError("invalid positions: expected finite (x, y) values, received NaN or inf in positions_xy")
    return positions
