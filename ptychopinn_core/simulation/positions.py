"""Scan positions for simulation: a jittered raster and uniform random positions.

Positions are ``(x, y)`` probe-centre coordinates in object pixels (x = column,
y = row), float64, shape ``(M, 2)``. A position ``(x, y)`` sees the patch
``O[y - N//2 + j, x - N//2 + i]``, so the full N x N patch lies on an ``(H, W)`` object
exactly when::

    N // 2 <= x <= W - N + N // 2      and      N // 2 <= y <= H - N + N // 2

(:func:`valid_position_range`). Every generator here returns positions in that range.

Default raster step (:func:`default_step_px`): ``3 N / 32`` pixels (6 px for N = 64),
about 0.43 times the default probe radius ``7 N / 32``: strong overlap (~80 % linear
overlap of the illuminated disks), as in typical ptychography, and well below the
stitching crop ``5 N / 16`` so that stitched reconstructions have no gaps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "POSITION_KINDS",
    "default_step_px",
    "object_shape_for_scan",
    "random_positions",
    "raster_grid_shape",
    "raster_positions",
    "valid_position_range",
]

POSITION_KINDS = ("raster", "random")


def default_step_px(size: int) -> int:
    """Default raster step ``max(1, 3 N // 32)`` pixels (6 px for N = 64)."""
    return max(1, 3 * int(size) // 32)


def _check_count(n_positions: int) -> int:
    if isinstance(n_positions, bool) or not isinstance(n_positions, (int, np.integer)):
        raise TypeError(
            f"invalid n_positions: expected an int, received n_positions={n_positions!r}"
        )
    if n_positions < 1:
        raise ValueError(
            f"invalid n_positions: expected n_positions >= 1, received n_positions={n_positions}"
        )
    return int(n_positions)


def valid_position_range(
    object_shape: Sequence[int], size: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inclusive ``((x_min, x_max), (y_min, y_max))`` of positions whose patch is on the object.

    Raises
    ------
    ValueError
        The object is smaller than one patch.
    """
    height, width = (int(s) for s in object_shape)
    if height < size or width < size:
        raise ValueError(
            f"invalid object_shape: expected at least ({size}, {size}) to hold one patch, "
            f"received object_shape={(height, width)}"
        )
    half = size // 2
    return (half, width - size + half), (half, height - size + half)


def raster_grid_shape(n_positions: int) -> tuple[int, int]:
    """``(n_rows, n_cols)`` of the near-square raster of M positions, ``n_cols = ceil(sqrt(M))``."""
    n_positions = _check_count(n_positions)
    n_cols = math.ceil(math.sqrt(n_positions))
    return math.ceil(n_positions / n_cols), n_cols


def object_shape_for_scan(
    n_positions: int, size: int, step_px: float | None = None, jitter_px: float = 0.0
) -> tuple[int, int]:
    """Smallest ``(H, W)`` holding the raster of M positions, its jitter and the N x N patches.

    ``H = ceil((n_rows - 1) * step + 2 * jitter) + N`` (same for W with ``n_cols``).
    """
    step = float(default_step_px(size) if step_px is None else step_px)
    n_rows, n_cols = raster_grid_shape(n_positions)
    return (
        math.ceil((n_rows - 1) * step + 2 * jitter_px) + int(size),
        math.ceil((n_cols - 1) * step + 2 * jitter_px) + int(size),
    )


def raster_positions(
    n_positions: int,
    object_shape: Sequence[int],
    size: int,
    step_px: float | None = None,
    jitter_px: float = 0.0,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
) -> np.ndarray:
    """A row-major raster of M positions, centred on the object, with optional jitter.

    The grid has ``n_cols = ceil(sqrt(M))`` columns and as many rows as needed; the
    first M grid points in row-major order (x fastest) are used. The grid origin is an
    integer pixel, so an integer step without jitter gives integer positions (exact
    patch extraction and stitching). Jitter is uniform in ``[-jitter_px, jitter_px]``
    per coordinate, then clipped to :func:`valid_position_range`.

    Parameters
    ----------
    n_positions : int
        M.
    object_shape : (int, int)
        ``(H, W)`` of the object, pixels.
    size : int
        Patch side N, pixels.
    step_px : float, optional
        Grid spacing in pixels; default :func:`default_step_px`.
    jitter_px : float
        Half-width of the uniform jitter, pixels (default 0).
    seed : int, SeedSequence or Generator
        Seed of the jitter.

    Returns
    -------
    ndarray, float64, shape (M, 2)
        ``(x, y)`` in object pixels.

    Raises
    ------
    ValueError
        The grid does not fit on the object; the message names the object shape that
        would (:func:`object_shape_for_scan`).
    """
    n_positions = _check_count(n_positions)
    step = float(default_step_px(size) if step_px is None else step_px)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"invalid step_px: expected a positive number, received step_px={step_px}")
    if not (math.isfinite(jitter_px) and jitter_px >= 0):
        raise ValueError(
            f"invalid jitter_px: expected a number >= 0, received jitter_px={jitter_px}"
        )
    (x_min, x_max), (y_min, y_max) = valid_position_range(object_shape, size)
    n_rows, n_cols = raster_grid_shape(n_positions)
    extent_x, extent_y = (n_cols - 1) * step, (n_rows - 1) * step
    if extent_x > x_max - x_min or extent_y > y_max - y_min:
        raise ValueError(
            f"raster of {n_positions} positions ({n_rows} x {n_cols} at step {step:g} px) does "
            f"not fit on object_shape={tuple(object_shape)} with patch size {size}: expected an "
            f"object of at least "
            f"{object_shape_for_scan(n_positions, size, step)}"
        )
    x0 = math.floor((x_min + x_max - extent_x) / 2)
    y0 = math.floor((y_min + y_max - extent_y) / 2)
    index = np.arange(n_positions)
    positions = np.stack([x0 + (index % n_cols) * step, y0 + (index // n_cols) * step], axis=-1)
    if jitter_px > 0:
        rng = np.random.default_rng(seed)
        positions = positions + rng.uniform(-jitter_px, jitter_px, positions.shape)
        positions[:, 0] = np.clip(positions[:, 0], x_min, x_max)
        positions[:, 1] = np.clip(positions[:, 1], y_min, y_max)
    return positions.astype(np.float64)


def random_positions(
    n_positions: int,
    object_shape: Sequence[int],
    size: int,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
) -> np.ndarray:
    """M positions drawn uniformly (seeded) over :func:`valid_position_range`.

    Returns
    -------
    ndarray, float64, shape (M, 2)
        ``(x, y)`` in object pixels.
    """
    n_positions = _check_count(n_positions)
    (x_min, x_max), (y_min, y_max) = valid_position_range(object_shape, size)
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.uniform(x_min, x_max, n_positions), rng.uniform(y_min, y_max, n_positions)], axis=-1
    ).astype(np.float64)
