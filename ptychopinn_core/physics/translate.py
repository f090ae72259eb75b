"""Bilinear sub-pixel translation and patch extraction: the one sampling rule.

Every step that moves content between grids (translation inside the forward model,
cutting patches from an object in the simulator, placing patches in the stitcher)
goes through :func:`sample_separable`, so numpy, TensorFlow and PyTorch agree on a
single formula. See ``docs/physics.md`` ("Translation") for the conventions.

Conventions
-----------
- Arrays are batch-first, images in the last two axes: ``(..., rows, cols)``.
- Shifts and positions are ``(x, y)`` pairs in pixels: x along columns, y along rows.
- Translating by ``(dx, dy)`` moves content by ``+dx`` columns and ``+dy`` rows::

      out[r, c] = in(r - dy, c - dx)

  where ``in(·, ·)`` is the bilinear interpolant of the input with zeros outside it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_separable", "translate", "extract_patches"]


def _corners(coords: np.ndarray, size: int, dtype: np.dtype):
    """Integer neighbours, their weights and in-bounds masks of fractional coordinates."""
    lower = np.floor(coords)
    frac = (coords - lower).astype(dtype)
    lower = lower.astype(np.int64)
    upper = lower + 1
    in_lower = (lower >= 0) & (lower < size)
    in_upper = (upper >= 0) & (upper < size)
    return (
        (np.clip(lower, 0, size - 1), (1 - frac) * in_lower),
        (np.clip(upper, 0, size - 1), frac * in_upper),
    )


def sample_separable(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of images on separable grids, zero outside the image.

    Parameters
    ----------
    images : ndarray, shape (B, H, W) or (H, W), real or complex
        Images to sample; a 2-D image is shared by every grid of the batch.
    rows : ndarray, shape (B, Ho), float
        Fractional row coordinate of each output row (0 = first input row).
    cols : ndarray, shape (B, Wo), float
        Fractional column coordinate of each output column.

    Returns
    -------
    ndarray, shape (B, Ho, Wo), dtype of ``images``
        ``out[b, i, j] = sum_{corners} w_r * w_c * images[b, r, c]`` with the usual
        bilinear weights; corners outside the image contribute zero.
    """
    images = np.asarray(images)
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    height, width = images.shape[-2:]
    real_dtype = np.finfo(images.dtype).dtype if images.dtype.kind in "fc" else np.float64
    batch = np.arange(rows.shape[0])[:, None, None]
    out = np.zeros(rows.shape + (cols.shape[-1],), dtype=np.result_type(images, real_dtype))
    for r_idx, r_w in _corners(rows, height, real_dtype):
        for c_idx, c_w in _corners(cols, width, real_dtype):
            if images.ndim == 2:
                values = images[r_idx[:, :, None], c_idx[:, None, :]]
            else:
                values = images[batch, r_idx[:, :, None], c_idx[:, None, :]]
            out += (r_w[:, :, None] * c_w[:, None, :]) * values
    return out


def translate(images: np.ndarray, shifts_xy: np.ndarray) -> np.ndarray:
    """Translate each image by its own sub-pixel shift, bilinear, zero fill.

    Parameters
    ----------
    images : ndarray, shape (..., H, W), real or complex
    shifts_xy : ndarray, shape (..., 2), float
        ``(dx, dy)`` per image, in pixels; the leading axes match ``images``.

    Returns
    -------
    ndarray, shape (..., H, W)
        ``out[..., r, c] = images(r - dy, c - dx)``: content moves by ``+dx`` columns
        and ``+dy`` rows. Integer shifts are exact (a zero-filled roll).
    """
    images = np.asarray(images)
    shifts_xy = np.asarray(shifts_xy, dtype=np.float64)
    lead = images.shape[:-2]
    if shifts_xy.shape != lead + (2,):
        raise ValueError(
            f"invalid shifts shape: expected {lead + (2,)} for images of shape "
            f"{images.shape}, received shifts_xy.shape={shifts_xy.shape}"
        )
    height, width = images.shape[-2:]
    flat = images.reshape((-1, height, width))
    shifts = shifts_xy.reshape((-1, 2))
    rows = np.arange(height)[None, :] - shifts[:, 1:2]
    cols = np.arange(width)[None, :] - shifts[:, 0:1]
    return sample_separable(flat, rows, cols).reshape(images.shape)


def extract_patches(obj: np.ndarray, positions_xy: np.ndarray, size: int) -> np.ndarray:
    """Cut the ``size x size`` patch seen at each scan position from an object.

    Parameters
    ----------
    obj : ndarray, shape (H, W), complex or real
        The object, in its own pixel frame.
    positions_xy : ndarray, shape (M, 2), float
        ``(x, y)`` of the probe centre in object pixels (x = column, y = row).
    size : int
        Patch side N; the probe centre is pixel ``N // 2`` along each axis.

    Returns
    -------
    ndarray, shape (M, N, N)
        ``patch[m, j, i] = obj(y_m - N//2 + j, x_m - N//2 + i)`` (bilinear, zero
        outside the object).
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64).reshape((-1, 2))
    offsets = np.arange(size) - size // 2
    rows = positions_xy[:, 1:2] + offsets[None, :]
    cols = positions_xy[:, 0:1] + offsets[None, :]
    return sample_separable(obj, rows, cols)
