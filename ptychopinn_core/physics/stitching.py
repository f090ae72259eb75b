"""Stitching patches into one object: object frames and a streaming stitcher (physics §8).

Object frame
------------
An :class:`ObjectFrame` says which object pixels a canvas holds::

    canvas[r, c]  is object pixel  (x = c + origin_x_px, y = r + origin_y_px)

``ObjectFrame.for_object(objectGuess.shape)`` is the data's own frame (origin 0): a
reconstruction stitched onto it lines up pixel for pixel with ``objectGuess``.
``ObjectFrame.around_positions`` is the smallest integer-origin frame holding every
patch window, for data without an object.

Stitching rule
--------------
Each patch keeps its central ``crop x crop`` window, rows and columns
``N//2 - crop//2 .. N//2 - crop//2 + crop - 1``. Window pixel ``(j, i)`` belongs at
object pixel ``(x - crop//2 + i, y - crop//2 + j)``. With
``t = (x - origin_x - crop//2, y - origin_y - crop//2)`` split into an integer part
``t0 = floor(t)`` and a fraction ``f = t - t0``, the window (zero-padded by one pixel)
and its mask of ones are both moved by ``f`` with
:func:`~ptychopinn_core.physics.translate.translate` (the forward model's bilinear rule)
and added at ``t0``::

    value  += translate(window, f)        weight += translate(mask, f)
    object  = value / weight   where weight > STITCH_MIN_WEIGHT, else 0

Integer positions place windows exactly, so stitching the ground-truth patches of a
simulation reproduces the object to float rounding; sub-pixel positions add one
bilinear interpolation.

Phase synchronisation
---------------------
A far-field pattern does not fix the constant phase of its patch (``|F(P O e^{i d})|
= |F(P O)|``), and no loss term does either (for ``C > 1`` the overlap constraint ties
the patches of one group, not of different groups): a network's patches may disagree
by a constant phase each, and averaging them then cancels part of the object where
they overlap. With ``phase_sync`` each patch ``k`` is multiplied by a unit factor
``u_k`` that makes the patches agree. With ``v_k`` the patch's placed window (as added
to ``value``), ``W`` the weight and the Gram matrix of the overlaps
``A_kl = sum_r conj(v_k(r)) v_l(r) / W(r)`` (one sparse product), ``u`` maximises::

    u^H A u + 2 lambda sum_k A_kk Re(u_k)

solved to its optimum from ``u = 1`` by Newton's method on the angles
(:func:`ptychopinn_core.physics.phase_sync.synchronise_phases`: a handful of sparse
Laplacian solves whatever the scan's size). ``u^H A u = sum_r W(r) |object(r)|^2``
rewards patches that add up instead of cancelling; the anchor
``lambda = PHASE_SYNC_ANCHOR`` keeps a small pull towards the network's own phase, so
that small errors of many pairwise overlaps cannot add up to a drift across a large
scan. A patch that overlaps nothing keeps its phase. A common phase is then removed so that
the result agrees on average with the plain average (``u = 1``): the network's absolute
phase, which the data cannot fix either, is kept. Only a per-patch constant changes;
the amplitudes and the shape of each patch's phase are the network's. Synchronising
needs every patch: the stitcher then keeps each placed window (complex64 and an int32
canvas index per pixel: about 5 KiB a position at the 20-pixel default crop) until
:meth:`Stitcher.result`, whose sparse products peak at about 24 KiB a position (240 MB
and 0.6 s more than the plain average, 4 Newton steps, for 10 000 positions at N = 64, on 2 cores:
``bench/simulate_stitch.py``).

Memory is the canvas (complex128 value + float64 weight) plus one chunk of patches;
it never grows with the number of positions (except the kept windows when
synchronising phases).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptychopinn_core.physics.phase_sync import synchronise_phases
from ptychopinn_core.physics.translate import translate

__all__ = [
    "PHASE_SYNC_ANCHOR",
    "STITCH_MIN_WEIGHT",
    "ObjectFrame",
    "Stitcher",
    "default_crop_size",
    "stitch",
]

# Canvas pixels whose accumulated weight is at most this are left at zero: the weight
# is a sum of bilinear mask values, so anything this small is rounding from a
# neighbouring window, not coverage. value and weight scale together, so the
# division does not amplify noise above it.
STITCH_MIN_WEIGHT = 1e-6

# Phase synchronisation (module docstring). The anchor weighs each patch's own phase
# against its neighbours' (lambda, relative to the patch's own overlap A_kk): 0 trusts
# only the overlaps, which lets an error drift across a large scan; chosen by
# measurement on six trained models (docs/benchmarks.md, "Network quality" §17).
PHASE_SYNC_ANCHOR = 0.03


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def default_crop_size(size: int) -> int:
    """Default central crop kept by the stitcher: ``N * 5 // 16`` (20 for N = 64)."""
    if not _is_int(size) or size < 1:
        raise ValueError(f"invalid patch size: expected a positive int, received size={size!r}")
    return max(1, int(size) * 5 // 16)


def _as_positions(positions_xy: Any, name: str = "positions_xy") -> np.ndarray:
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(
            f"invalid positions: expected (M, 2) (x, y) pixels, "
            f"received {name}.shape={positions.shape}"
        )
    if not np.all(np.isfinite(positions)):
        raise ValueError(f"invalid positions: non-finite values in {name}")
    return positions


@dataclass(frozen=True)
class ObjectFrame:
    """Which object pixels a canvas holds.

    ``canvas[r, c]`` is object pixel ``(x = c + origin_x_px, y = r + origin_y_px)``.

    Attributes
    ----------
    origin_x_px, origin_y_px : float
        Object coordinates of canvas pixel ``(0, 0)``, pixels.
    height_px, width_px : int
        Canvas shape ``(H, W)``.
    """

    origin_x_px: float
    origin_y_px: float
    height_px: int
    width_px: int

    def __post_init__(self) -> None:
        for name in ("origin_x_px", "origin_y_px"):
            value = getattr(self, name)
            number = isinstance(value, (int, float, np.integer, np.floating))
            if isinstance(value, bool) or not number or not math.isfinite(value):
                raise ValueError(
                    f"invalid object frame: expected a finite number, received {name}={value!r}"
                )
            object.__setattr__(self, name, float(value))
        for name in ("height_px", "width_px"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(
                    f"invalid object frame: expected a positive int, received {name}={value!r}"
                )
            object.__setattr__(self, name, int(value))

    @property
    def shape(self) -> tuple[int, int]:
        """Canvas shape ``(H, W)``."""
        return (self.height_px, self.width_px)

    @classmethod
    def for_object(cls, shape: Sequence[int]) -> ObjectFrame:
        """The data's own frame: origin 0, the object's ``(H, W)``."""
        height, width = (int(s) for s in shape)
        return cls(0.0, 0.0, height, width)

    @classmethod
    def around_positions(
        cls, positions_xy: np.ndarray, size_px: int, margin: int = 0
    ) -> ObjectFrame:
        """Smallest integer-origin frame holding every ``size_px`` window, plus ``margin`` pixels.

        A window of side ``s`` at ``(x, y)`` covers object columns
        ``x - s//2 .. x - s//2 + s - 1`` (and rows likewise).

        Parameters
        ----------
        positions_xy : ndarray, float, shape (M, 2)
        size_px : int
            Window side: the patch side N, or the stitching crop.
        margin : int
            Extra pixels on every side (>= 0).
        """
        positions = _as_positions(positions_xy)
        if positions.shape[0] == 0:
            raise ValueError(
                "invalid positions: expected at least one position, "
                "received positions_xy.shape=(0, 2)"
            )
        if size_px < 1 or margin < 0:
            raise ValueError(
                "invalid frame window: expected size_px >= 1 and margin >= 0, "
                f"received {size_px=}, {margin=}"
            )
        low = np.floor(positions.min(axis=0) - size_px // 2) - margin
        high = np.ceil(positions.max(axis=0) - size_px // 2 + size_px - 1) + margin
        width, height = (int(span) + 1 for span in high - low)
        return cls(float(low[0]), float(low[1]), height, width)

    def to_json(self) -> dict[str, float | int]:
        """The frame as a JSON-ready dict."""
        return {
            "origin_x_px": self.origin_x_px,
            "origin_y_px": self.origin_y_px,
            "height_px": self.height_px,
            "width_px": self.width_px,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ObjectFrame:
        """Inverse of :meth:`to_json`; a missing or unknown key is a ValueError naming it."""
        if not isinstance(data, Mapping):
            raise TypeError(
                f"invalid object frame: expected a dict, received {type(data).__name__}"
            )
        expected = {"origin_x_px", "origin_y_px", "height_px", "width_px"}
        missing, unknown = expected - set(data), set(data) - expected
        if missing or unknown:
            raise ValueError(
                f"invalid object frame: expected keys {sorted(expected)}, "
                f"missing {sorted(missing)}, "
                f"unknown {sorted(unknown)}"
            )
        return cls(data["origin_x_px"], data["origin_y_px"], data["height_px"], data["width_px"])


class Stitcher:
    """Accumulate patches on a canvas chunk by chunk; memory independent of M.

    Parameters
    ----------
    frame : ObjectFrame
        The canvas and where it lies in object coordinates.
    crop_size : int, optional
        Side of the central window kept from each patch; default
        :func:`default_crop_size` ``(N)``.
    patch_size : int
        Patch side N.
    phase_sync : bool
        Synchronise the patches' constant phases when :meth:`result` is called (module
        docstring); the placed windows are then kept until then. False: the plain average.
    phase_sync_anchor : float
        Weight ``lambda`` of each patch's own (the network's) phase in the
        synchronisation; default :data:`PHASE_SYNC_ANCHOR`.

    Examples
    --------
    >>> stitcher = Stitcher(ObjectFrame.for_object(obj.shape), patch_size=64)  # doctest: +SKIP
    >>> for patches, positions in chunks:                                        # doctest: +SKIP
    ...     stitcher.add(patches, positions)
    >>> obj_hat = stitcher.result()                                              # doctest: +SKIP
    """

    def __init__(
        self,
        frame: ObjectFrame,
        crop_size: int | None = None,
        patch_size: int = 64,
        *,
        phase_sync: bool = False,
        phase_sync_anchor: float = PHASE_SYNC_ANCHOR,
    ) -> None:
        if not isinstance(frame, ObjectFrame):
            raise TypeError(
                f"invalid frame: expected an ObjectFrame, received {type(frame).__name__}"
            )
        if not _is_int(patch_size) or patch_size < 1:
            raise ValueError(
                f"invalid patch_size: expected a positive int, received patch_size={patch_size!r}"
            )
        crop_size = default_crop_size(int(patch_size)) if crop_size is None else crop_size
        if not _is_int(crop_size) or not 1 <= crop_size <= patch_size:
            raise ValueError(
                f"invalid crop_size: expected an int in 1..{patch_size} (the patch size), "
                f"received crop_size={crop_size!r}"
            )
        anchor = phase_sync_anchor
        if isinstance(anchor, bool) or not isinstance(anchor, (int, float)) or not anchor >= 0 or anchor == math.inf:
            raise ValueError(
                f"invalid phase_sync_anchor: expected a finite number >= 0, received phase_sync_anchor={anchor!r}"
            )
        self.frame = frame
        self.phase_sync = bool(phase_sync)
        self.phase_sync_anchor = float(anchor)
        self.sync_steps_run = 0
        # Kept per chunk when synchronising: canvas index (B, span*span) of every window
        # pixel (the spare index H*W for pixels outside the frame) and the placed window.
        self._kept: list[tuple[np.ndarray, np.ndarray]] = []
        self.patch_size = int(patch_size)
        self.crop_size = int(crop_size)
        self.n_added = 0
        self._value = np.zeros(frame.shape, dtype=np.complex128)
        self._weight = np.zeros(frame.shape, dtype=np.float64)
        start = self.patch_size // 2 - self.crop_size // 2
        self._window = slice(start, start + self.crop_size)
        # The window and its mask are shifted by a fraction in [0, 1): one spare
        # row/column at the end keeps the shifted content inside the buffer.
        self._mask = np.zeros((self.crop_size + 1, self.crop_size + 1))
        self._mask[: self.crop_size, : self.crop_size] = 1.0

    def add(self, patches: np.ndarray, positions_xy: np.ndarray) -> None:
        """Add a chunk of patches at their positions.

        Parameters
        ----------
        patches : ndarray, complex or real, shape (B, N, N)
            Object patches; the probe centre is pixel ``(N//2, N//2)``.
        positions_xy : ndarray, float, shape (B, 2)
            ``(x, y)`` of each patch centre in object pixels.
        """
        patches = np.asarray(patches)
        positions = _as_positions(positions_xy)
        size = self.patch_size
        if patches.ndim != 3 or patches.shape[1:] != (size, size):
            raise ValueError(
                f"invalid patches shape: expected (B, {size}, {size}), "
                f"received patches.shape={patches.shape}"
            )
        if patches.shape[0] != positions.shape[0]:
            raise ValueError(
                f"invalid chunk: expected one position per patch, "
                f"received patches.shape={patches.shape} "
                f"and positions_xy.shape={positions.shape}"
            )
        if patches.dtype.kind not in "fciu":
            raise TypeError(
                f"invalid patches dtype: expected a numeric array, received {patches.dtype}"
            )
        n_batch, crop = patches.shape[0], self.crop_size
        if n_batch == 0:
            return
        corner = positions - np.array([self.frame.origin_x_px, self.frame.origin_y_px]) - crop // 2
        integer = np.floor(corner)
        fraction = corner - integer
        integer = integer.astype(np.int64)

        windows = np.zeros((n_batch, crop + 1, crop + 1), dtype=np.complex128)
        windows[:, :crop, :crop] = patches[:, self._window, self._window]
        values = translate(windows, fraction)
        weights = translate(np.broadcast_to(self._mask, windows.shape), fraction)

        height, width = self.frame.shape
        span = crop + 1
        if self.phase_sync:
            self._kept.append((self._canvas_indices(integer, span), values.reshape(n_batch, -1).astype(np.complex64)))
        for b in range(n_batch):
            col0, row0 = int(integer[b, 0]), int(integer[b, 1])
            r_lo, r_hi = max(row0, 0), min(row0 + span, height)
            c_lo, c_hi = max(col0, 0), min(col0 + span, width)
            if r_lo >= r_hi or c_lo >= c_hi:
                continue  # this window lies entirely outside the frame
            source = (slice(r_lo - row0, r_hi - row0), slice(c_lo - col0, c_hi - col0))
            self._value[r_lo:r_hi, c_lo:c_hi] += values[b][source]
            self._weight[r_lo:r_hi, c_lo:c_hi] += weights[b][source]
        self.n_added += n_batch

    def _canvas_indices(self, corners: np.ndarray, span: int) -> np.ndarray:
        """Flat canvas index of every pixel of each ``span x span`` window; ``H*W`` outside."""
        height, width = self.frame.shape
        steps = np.arange(span)
        rows = corners[:, 1, None, None] + steps[None, :, None]
        cols = corners[:, 0, None, None] + steps[None, None, :]
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        index_type = np.int32 if height * width < np.iinfo(np.int32).max else np.int64
        flat = np.where(inside, rows * width + cols, height * width)
        return flat.reshape(len(corners), -1).astype(index_type)

    def _synchronised_value(self) -> np.ndarray:
        """``value`` after the phase synchronisation of the module docstring."""
        from scipy import sparse

        size = self._value.size
        n_pixels = self._kept[0][0].shape[1]
        weight = np.append(self._weight.ravel(), 0.0)  # the spare index: never covered
        covered = weight > STITCH_MIN_WEIGHT
        root_weight = np.sqrt(np.where(covered, weight, 0.0))
        root_inverse = np.zeros_like(weight)
        root_inverse[covered] = 1.0 / root_weight[covered]
        # S[k, r] = v_k(r) / sqrt(W(r)), one row per window (CSR, built in place): the
        # Gram matrix A = conj(S) S^T holds every overlap, a round is one sparse product,
        # and the synchronised value is sqrt(W) * (S^T u).
        indices = np.concatenate([kept[0] for kept in self._kept]).ravel()
        data = np.concatenate([kept[1] * root_inverse[kept[0]].astype(np.float32) for kept in self._kept]).ravel()
        n_windows = data.size // n_pixels
        scaled = sparse.csr_matrix(
            (data, indices, np.arange(0, data.size + 1, n_pixels)), shape=(n_windows, size + 1)
        )
        del data, indices
        gram = (scaled.conj() @ scaled.T).tocsr()
        anchor = self.phase_sync_anchor * gram.diagonal().real.astype(np.float64)
        factors, self.sync_steps_run = synchronise_phases(gram, anchor)
        del gram
        value = root_weight * (scaled.T @ factors)
        # The common phase the data cannot fix: keep the plain average's.
        plain = np.append(self._value.ravel(), 0.0)
        common = np.sum(np.conj(value) * plain * root_inverse**2)
        if abs(common) > 0:
            value = value * (common / abs(common))
        return value[:size].reshape(self.frame.shape)

    @property
    def weight(self) -> np.ndarray:
        """Accumulated weight map, float64 (H, W) (a copy): bilinear coverage count per pixel."""
        return self._weight.copy()

    def result(self) -> np.ndarray:
        """The stitched object, complex64 (H, W): ``value / weight`` where covered, 0 elsewhere.

        With ``phase_sync`` the patches' constant phases are synchronised first (each
        call runs it again; ``sync_steps_run`` says how many Newton steps it took).
        """
        value = self._synchronised_value() if self._kept else self._value
        covered = self._weight > STITCH_MIN_WEIGHT
        out = np.zeros(self.frame.shape, dtype=np.complex64)
        out[covered] = value[covered] / self._weight[covered]
        return out


def _chunks_of(patches: np.ndarray, positions_xy: np.ndarray, chunk_size: int):
    for start in range(0, len(patches), chunk_size):
        yield patches[start : start + chunk_size], positions_xy[start : start + chunk_size]


def stitch(
    patches: np.ndarray | Iterable[tuple[np.ndarray, np.ndarray]],
    positions_xy: np.ndarray | None = None,
    frame: ObjectFrame | None = None,
    crop_size: int | None = None,
    chunk_size: int = 1024,
    *,
    return_weight: bool = False,
    phase_sync: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Stitch patches onto a frame (convenience wrapper around :class:`Stitcher`).

    Parameters
    ----------
    patches : ndarray (M, N, N) or iterable of (patches (B, N, N), positions (B, 2))
        All patches at once (then ``positions_xy`` is required), or a stream of
        chunks, e.g. a generator yielding network predictions batch by batch.
    positions_xy : ndarray, float, shape (M, 2), optional
        ``(x, y)`` object pixels; only with an array of patches.
    frame : ObjectFrame
        Target canvas. Required for streams; for arrays the default is
        ``ObjectFrame.around_positions(positions_xy, crop_size)``.
    crop_size : int, optional
        Central window kept per patch; default :func:`default_crop_size`.
    chunk_size : int
        Patches per chunk when given arrays.
    return_weight : bool
        Also return the weight map.
    phase_sync : bool
        Synchronise the patches' constant phases (module docstring).

    Returns
    -------
    ndarray, complex64, shape (H, W)
        The stitched object on ``frame`` (and the float64 weight map if asked).
    """
    if isinstance(patches, np.ndarray):
        if positions_xy is None:
            raise ValueError(
                "invalid stitch call: positions_xy is required with an array of patches"
            )
        positions = _as_positions(positions_xy)
        if patches.ndim != 3 or patches.shape[0] != positions.shape[0]:
            raise ValueError(
                f"invalid stitch input: expected patches (M, N, N) and positions (M, 2), received "
                f"patches.shape={patches.shape}, positions_xy.shape={positions.shape}"
            )
        size = patches.shape[-1]
        crop = default_crop_size(size) if crop_size is None else crop_size
        frame = frame if frame is not None else ObjectFrame.around_positions(positions, crop)
        chunks: Iterable[tuple[np.ndarray, np.ndarray]] = _chunks_of(patches, positions, chunk_size)
        stitcher: Stitcher | None = Stitcher(frame, crop, size, phase_sync=phase_sync)
    else:
        if positions_xy is not None:
            raise ValueError(
                "invalid stitch call: give positions inside the (patches, positions) chunks "
                "of a stream"
            )
        if frame is None:
            raise ValueError(
                "invalid stitch call: a frame is required when patches come as a stream of chunks"
            )
        chunks, stitcher = patches, None
    for chunk_patches, chunk_positions in chunks:
        chunk_patches = np.asarray(chunk_patches)
        if stitcher is None:
            stitcher = Stitcher(
                frame, crop_size, chunk_patches.shape[-1], phase_sync=phase_sync
            )
        stitcher.add(chunk_patches, chunk_positions)
    if stitcher is None:
        raise ValueError("invalid stitch input: the stream of chunks was empty")
    result = stitcher.result()
    return (result, stitcher.weight) if return_weight else result
