"""The overlap constraint: every channel of a group becomes the group's average object.

When ``C = gridsize**2 > 1`` positions are predicted together, each channel's patch is
replaced by the average of the group's windowed patches, all moved into that channel's
own frame by their position differences (:func:`enforce_overlap`, built on
:func:`merge_patches`). Patches of neighbouring positions are thereby forced to agree on
the object they share. See ``docs/physics.md`` ("Overlap constraint").

Conventions
-----------
- Patches are ``(B, C, N, N)``; offsets are ``(B, C, 2)`` ``(x, y)`` pixels,
  ``offset_c = position_c - group_centre`` (:mod:`ptychopinn_core.physics.grouping`).
- A patch at position ``p`` shows ``O[p - N//2 + r]``; the group frame shows
  ``O[centre - N//2 + q]``. A feature therefore sits ``offset_c`` further along in the
  group frame than in channel ``c``'s patch: merging translates channel ``c`` by
  ``+offset_c`` (:func:`~ptychopinn_core.physics.translate.translate` moves content by
  ``+shift``). Any frame can be the group frame; :func:`enforce_overlap` uses each
  channel's own, where ``offset_k = position_k - position_c``.
- The network predicts content only in the central ``N/2 x N/2`` window
  (:func:`pad_to_full`); the window mask ``w`` is that region.
"""

from __future__ import annotations

import numpy as np

from ptychopinn_core.physics.translate import translate

__all__ = [
    "MERGE_MASK_THRESHOLD",
    "PROBE_WEIGHT_FLOOR",
    "central_window_mask",
    "pad_to_full",
    "merge_patches",
    "relative_offsets",
    "enforce_overlap",
    "probe_weights",
]

#: Smallest probe merge weight inside the window (:func:`probe_weights`): where a probe is
#: dark, its patch still counts a little, so the merge stays defined over every window
#: (no pixel of a window falls under :data:`MERGE_MASK_THRESHOLD`) and a truth that
#: agrees everywhere stays the exact minimiser; 1 % keeps a neighbour's unconstrained
#: prediction small against one under the beam.
PROBE_WEIGHT_FLOOR = 1e-2

#: Smallest summed (translated) window weight at which the merged object is defined.
#: Below it the merged object is zero rather than ``sum / weight``: dividing by a tiny
#: weight would amplify the faint bilinear fringe of a window edge. 1e-3 is far above
#: float32 rounding of a weight (~1e-7); a pixel below it is covered by less than a
#: thousandth of a window pixel, so zeroing it loses at most that fraction of content.
MERGE_MASK_THRESHOLD = 1e-3


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"invalid patch size: expected an int, received size={size!r}")
    if size < 4 or size % 4:
        raise ValueError(
            "invalid patch size: expected a positive multiple of 4 (the central window "
            f"N/2 is padded by N/4 on each side), received size={size}"
        )
    return int(size)


def _real_dtype(array: np.ndarray) -> np.dtype:
    """The real dtype matching an array (float32 for complex64, float64 otherwise)."""
    if array.dtype.kind in "fc":
        return np.finfo(array.dtype).dtype
    return np.dtype(np.float64)


def central_window_mask(size: int, dtype=np.float64) -> np.ndarray:
    """Ones in the central ``N/2 x N/2`` window, zeros elsewhere.

    Parameters
    ----------
    size : int
        Patch side ``N``, a multiple of 4.
    dtype : numpy dtype, optional
        Real dtype of the mask (default float64).

    Returns
    -------
    ndarray, shape (N, N)
        ``w[r, c] = 1`` for ``N//4 <= r, c < N//4 + N//2``, else 0: exactly the pixels
        :func:`pad_to_full` fills.
    """
    size = _check_size(size)
    mask = np.zeros((size, size), dtype=dtype)
    start, stop = size // 4, size // 4 + size // 2
    mask[start:stop, start:stop] = 1
    return mask


def pad_to_full(head: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a network head output from ``N/2 x N/2`` to ``N x N``.

    The network predicts an oversampled patch: content only in the central window,
    ``N/4`` zero pixels on every side (docs/physics.md, "Network").

    Parameters
    ----------
    head : ndarray, shape (..., N/2, N/2)
    size : int
        Full patch side ``N``, a multiple of 4.

    Returns
    -------
    ndarray, shape (..., N, N), dtype of ``head``
    """
    size = _check_size(size)
    head = np.asarray(head)
    half = size // 2
    if head.ndim < 2 or head.shape[-2:] != (half, half):
        raise ValueError(
            f"invalid head shape: expected (..., {half}, {half}) for size={size}, "
            f"received head.shape={head.shape}"
        )
    quarter = size // 4
    pad = ((0, 0),) * (head.ndim - 2) + ((quarter, quarter), (quarter, quarter))
    return np.pad(head, pad)


def probe_weights(probe: np.ndarray) -> np.ndarray:
    """Merge weights that follow the illumination: ``w * max(|P| / max(w |P|), floor)``, real (N, N).

    Why: a patch is constrained by its pattern only where its probe lights the object.
    With window weights a neighbour's prediction in the dark part of its window (which no
    measurement constrains) counts as much as the channel's own prediction under its
    beam; a focused probe, whose footprint is smaller than the window, then does not
    train at gridsize 2 (docs/physics.md §4, measured). ``floor`` =
    :data:`PROBE_WEIGHT_FLOOR`. The weights are a constant of the merge: no gradient flows
    into a trainable probe through them.

    Parameters
    ----------
    probe : ndarray, complex, shape (N, N)
        The model's probe.

    Returns
    -------
    ndarray, shape (N, N), the probe's real dtype
        In ``[floor, 1]`` inside the central window (1 at its brightest pixel), 0 outside.
    """
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"invalid probe shape: expected (N, N), received probe.shape={probe.shape}")
    window = central_window_mask(probe.shape[-1], dtype=_real_dtype(probe))
    weights = np.abs(probe) * window
    peak = weights.max()
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError("invalid probe: zero or non-finite amplitude in the central window")
    return (np.maximum(weights / peak, PROBE_WEIGHT_FLOOR) * window).astype(_real_dtype(probe), copy=False)


def _window_weights(weights: np.ndarray | None, patches: np.ndarray) -> np.ndarray:
    """The merge weights: the central window by default, else ``weights`` (checked)."""
    size = patches.shape[-1]
    if weights is None:
        return central_window_mask(size, dtype=_real_dtype(patches))
    weights = np.asarray(weights)
    if weights.shape != (size, size) or weights.dtype.kind != "f":
        raise ValueError(
            f"invalid merge weights: expected a real ({size}, {size}) array, received "
            f"shape {weights.shape} dtype {weights.dtype}"
        )
    return weights.astype(_real_dtype(patches), copy=False)


def _check_group_arrays(patches: np.ndarray, offsets_xy: np.ndarray) -> None:
    if patches.ndim != 4 or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(
            "invalid patches shape: expected (B, C, N, N), "
            f"received patches.shape={patches.shape}"
        )
    expected = patches.shape[:2] + (2,)
    if offsets_xy.shape != expected:
        raise ValueError(
            f"invalid offsets shape: expected {expected} for patches of shape "
            f"{patches.shape}, received offsets_xy.shape={offsets_xy.shape}"
        )


def merge_patches(patches: np.ndarray, offsets_xy: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Average a group's windowed patches in the group frame.

    Equation (``T_d`` = :func:`translate` by ``d``, ``w`` = the merge weights: the
    :func:`central_window_mask` or :func:`probe_weights`, ``t`` = :data:`MERGE_MASK_THRESHOLD`)::

        S = sum_c T_{+offset_c}(w * O_c)
        W = sum_c T_{+offset_c}(w)
        merged = where(W > t, S / maximum(W, t), 0)

    ``maximum(W, t)`` keeps the untaken branch finite, so the same expression has
    finite gradients in TensorFlow and PyTorch. Applying ``w`` to the patches makes the
    merge a weighted average with weights ``w >= 0`` for any input (content outside the
    window has weight 0): each merged value is a convex combination of patch values
    inside the window, so ``|merged| <= max |O_c|`` there: never amplified.

    Parameters
    ----------
    patches : ndarray, shape (B, C, N, N), complex or real
        Object patches ``O_c``, each in its own position's frame.
    offsets_xy : ndarray, shape (B, C, 2), float
        ``offset_c = position_c - centre`` in pixels, ``(x, y)``.
    weights : ndarray, real, shape (N, N), optional
        Merge weights in ``[0, 1]`` (default: the central window).

    Returns
    -------
    ndarray, shape (B, N, N), dtype of ``patches``
        The merged object in the group frame: pixel ``q`` shows ``O[centre - N//2 + q]``.
    """
    patches = np.asarray(patches)
    offsets_xy = np.asarray(offsets_xy, dtype=np.float64)
    _check_group_arrays(patches, offsets_xy)
    window = _window_weights(weights, patches)
    coverage = translate(np.broadcast_to(window, patches.shape), offsets_xy).sum(axis=1)
    summed = translate(patches * window, offsets_xy).sum(axis=1)
    threshold = coverage.dtype.type(MERGE_MASK_THRESHOLD)
    merged = np.where(coverage > threshold, summed / np.maximum(coverage, threshold), 0)
    return merged.astype(summed.dtype, copy=False)


def relative_offsets(offsets_xy: np.ndarray) -> np.ndarray:
    """``rel[b, c, k] = offset_k - offset_c = position_k - position_c``: channel ``k`` seen
    from channel ``c``'s frame. Shape ``(B, C, 2)`` -> ``(B, C, C, 2)``."""
    return offsets_xy[:, None, :, :] - offsets_xy[:, :, None, :]


def enforce_overlap(patches: np.ndarray, offsets_xy: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Overlap constraint: each channel becomes the group's average seen from its own frame.

    Equation (``T_d`` = :func:`translate`, ``w`` = the window, ``t`` = the threshold)::

        O'_c = where(W_c > t, S_c / maximum(W_c, t), 0)
        S_c  = sum_k T_{position_k - position_c}(w * O_k)
        W_c  = sum_k T_{position_k - position_c}(w)

    i.e. ``O'_c = merge_patches(O, relative_offsets(offsets)[:, c])``: the merge of
    :func:`merge_patches` in a frame centred on channel ``c``'s own position, which is
    channel ``c``'s patch frame, so nothing needs cutting out again. Why not merge once in
    the group frame and cut every channel back out of it: a group centre is the mean of its
    positions, at a fraction of a pixel even for positions on an integer grid, so every
    channel would be moved there and back by bilinear interpolation and blurred twice, and
    the true object would miss the loss floor by 2-3 % of amplitude on noiseless data. In
    its own frame a channel's prediction enters unshifted, integer position differences
    are exact, and the truth is the loss's minimiser (tests/test_grouped_loss_minimiser.py).
    The price: ``C**2`` translations per group instead of ``2 C``.

    Parameters
    ----------
    patches : ndarray, shape (B, C, N, N)
    offsets_xy : ndarray, shape (B, C, 2)
        Offsets from any common reference (the group centre); only their differences count.
    weights : ndarray, real, shape (N, N), optional
        Merge weights ``w`` (default: the central window; the model uses
        :func:`probe_weights` when ``model.overlap_weights = "probe"``).

    Returns
    -------
    ndarray, shape (B, C, N, N), dtype of ``patches``
        For ``C == 1`` the patches themselves (no grouping, nothing to enforce). Not
        windowed: neighbours carry content beyond the own window.
    """
    patches = np.asarray(patches)
    offsets_xy = np.asarray(offsets_xy, dtype=np.float64)
    _check_group_arrays(patches, offsets_xy)
    batch, channels, size = patches.shape[0], patches.shape[1], patches.shape[-1]
    if channels == 1:
        return patches
    stacked = np.broadcast_to(patches[:, None], (batch, channels) + patches.shape[1:])
    merged = merge_patches(
        stacked.reshape((batch * channels,) + patches.shape[1:]),
        relative_offsets(offsets_xy).reshape(batch * channels, channels, 2),
        weights,
    )
    return merged.reshape(batch, channels, size, size)
