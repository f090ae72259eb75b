"""The scanned region: the part of a canvas the scan covers, a rectangle with no holes.

Outside it a stitched reconstruction has no data, so only it is scored. Each scan
position holds a window of side ``window_px`` (the stitching crop, or the patch side
``N``) centred on it; the region is the bounding box of those windows on the canvas,
trimmed until no pixel in it is left uncovered (:func:`scanned_region`).
"""

from __future__ import annotations

import numpy as np

from ptychopinn_core.physics.grouping import check_positions
from ptychopinn_core.physics.stitching import ObjectFrame

__all__ = ["covered_rectangle", "scanned_region", "window_coverage"]


def window_coverage(positions_xy: np.ndarray, frame: ObjectFrame, window_px: int) -> np.ndarray:
    """Number of scan windows fully covering each canvas pixel, int64 (H, W).

    A window of side ``w`` at ``(x, y)`` holds object columns ``x - w//2 .. x - w//2 +
    w - 1`` (rows likewise); a canvas pixel counts when it lies inside that span
    (``ceil`` / ``floor`` for sub-pixel positions).
    """
    positions = check_positions(positions_xy)
    if isinstance(window_px, bool) or not isinstance(window_px, (int, np.integer)) or window_px < 1:
        raise ValueError(
            f"invalid window_px: expected a positive int, received window_px={window_px!r}"
        )
    origin = np.array([frame.origin_x_px, frame.origin_y_px])
    first = positions - window_px // 2 - origin
    # The 1e-9 keeps positions that are integers up to rounding on their integer pixel.
    low = np.ceil(first - 1e-9).astype(np.int64)
    high = np.floor(first + window_px - 1 + 1e-9).astype(np.int64) + 1
    height, width = frame.shape
    col0, row0 = np.clip(low[:, 0], 0, width), np.clip(low[:, 1], 0, height)
    col1, row1 = np.clip(high[:, 0], 0, width), np.clip(high[:, 1], 0, height)
    inside = (col0 < col1) & (row0 < row1)
    # Summed-area trick: +1/-1 at the window corners, then a 2-D cumulative sum.
    corners = np.zeros((height + 1, width + 1), dtype=np.int64)
    for rows, cols, sign in ((row0, col0, 1), (row0, col1, -1), (row1, col0, -1), (row1, col1, 1)):
        np.add.at(corners, (rows[inside], cols[inside]), sign)
    return np.cumsum(np.cumsum(corners, axis=0), axis=1)[:height, :width]


def scanned_region(
    positions_xy: np.ndarray, frame: ObjectFrame, window_px: int
) -> tuple[slice, slice]:
    """Canvas rows and columns covered by the scan: a rectangle with no holes.

    Start from the bounding box of the scan windows (:func:`window_coverage`) on the
    frame, then trim it edge by edge (the edge row or column with the largest
    uncovered fraction first) until every pixel in it is covered by at least one
    window. A full raster gives its bounding box; a raster whose last row is partial
    loses that row; random scans lose their ragged borders.

    Parameters
    ----------
    positions_xy : ndarray, float, shape (M, 2)
        ``(x, y)`` in object pixels.
    frame : ObjectFrame
        The canvas the region indexes.
    window_px : int
        Window side: the stitching crop (what a reconstruction covers) or the patch N.

    Returns
    -------
    (slice, slice)
        ``canvas[rows, cols]`` is the scanned region.

    Raises
    ------
    ValueError
        The scan does not cover any pixel of the frame.
    """
    covered = window_coverage(positions_xy, frame, window_px) > 0
    if not covered.any():
        positions = np.asarray(positions_xy, dtype=np.float64)
        raise ValueError(
            f"invalid scan region: the scan (x {positions[:, 0].min():g}.."
            f"{positions[:, 0].max():g}, y {positions[:, 1].min():g}..{positions[:, 1].max():g}) "
            f"does not cover the frame {frame.to_json()}"
        )
    region = covered_rectangle(covered)
    if region is None:
        raise ValueError(
            "invalid scan region: no hole-free rectangle covered by the scan windows "
            f"on {frame.to_json()}"
        )
    return region


def covered_rectangle(covered: np.ndarray) -> tuple[slice, slice] | None:
    """A rectangle of ``covered`` pixels: the bounding box, trimmed until it has no hole.

    Edges are trimmed one row or column at a time, the edge with the largest uncovered
    fraction first.

    Parameters
    ----------
    covered : ndarray, bool, shape (H, W)

    Returns
    -------
    (slice, slice) or None
        Rows and columns of the rectangle; ``None`` when nothing is covered.
    """
    covered = np.asarray(covered, dtype=bool)
    rows_any = np.flatnonzero(covered.any(axis=1))
    cols_any = np.flatnonzero(covered.any(axis=0))
    if rows_any.size == 0:
        return None
    r0, r1 = int(rows_any[0]), int(rows_any[-1]) + 1
    c0, c1 = int(cols_any[0]), int(cols_any[-1]) + 1
    while r0 < r1 and c0 < c1:
        box = covered[r0:r1, c0:c1]
        if box.all():
            break
        holes = {
            "top": 1 - box[0].mean(),
            "bottom": 1 - box[-1].mean(),
            "left": 1 - box[:, 0].mean(),
            "right": 1 - box[:, -1].mean(),
        }
        edge = max(holes, key=holes.get)
        if edge == "top":
            r0 += 1
        elif edge == "bottom":
            r1 -= 1
        elif edge == "left":
            c0 += 1
        else:
            c1 -= 1
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)
