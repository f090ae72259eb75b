"""The inference input as a stream of bounded chunks: every scan position seeds one group.

Memory is bounded by the chunk, never by the number of positions; the normalisation is
that of the scan being reconstructed (physics.md §2), not the training scan's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ptychopinn_core.config import Config
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.model.inputs import check_pattern_size
from ptychopinn_core.model.state import ModelState
from ptychopinn_core.physics.grouping import Groups, group_positions
from ptychopinn_core.physics.normalization import amplitude_normalisation, normalise_amplitudes

__all__ = ["InferenceChunk", "prepare_inference_inputs"]


@dataclass(frozen=True, eq=False)
class InferenceChunk:
    """One bounded piece of the inference input.

    Attributes
    ----------
    diffraction : ndarray, float32, shape (B, C, N, N)
        Normalised amplitudes ``X_n = a_inf * X`` (``a_inf`` of the inference scan).
    offsets_xy : ndarray, float32, shape (B, C, 2)
        ``(x, y)`` pixel offsets from the group centre (the network input).
    centers_xy : ndarray, float64, shape (B, 2)
        Group centres, ``(x, y)`` object pixels.
    positions_xy : ndarray, float64, shape (B, C, 2)
        Scan positions of every channel, ``(x, y)`` object pixels.
    position_indices : ndarray, int64, shape (B, C)
        Scan-position index of every channel; channel 0 is the group's seed.
    group_ids : ndarray, int64, shape (B,)
        Group indices; group ``m`` is seeded at position ``m``.
    amplitude_normalisation : float
        ``a_inf``, the same for every chunk of a scan.
    """

    diffraction: np.ndarray
    offsets_xy: np.ndarray
    centers_xy: np.ndarray
    positions_xy: np.ndarray
    position_indices: np.ndarray
    group_ids: np.ndarray
    amplitude_normalisation: float

    @property
    def seed_indices(self) -> np.ndarray:
        """Scan position each group predicts, int64 (B,): its channel 0."""
        return self.position_indices[:, 0]


def prepare_inference_inputs(
    scan: ScanData, config: Config, state: ModelState, chunk_size: int | None = None
) -> Iterator[InferenceChunk]:
    """Stream the inference input in chunks of bounded size.

    Every scan position seeds exactly one group (``C == 1``: itself; ``C > 1``: itself
    plus ``C - 1`` of its ``data.n_neighbors`` nearest neighbours,
    ``seed=training.seed``; ``data.n_groups`` is ignored), so every position is
    predicted. Diffraction is normalised with ``a_inf = amplitude_normalisation`` of
    THIS scan (physics.md §2), not the training value in ``state``. Arrays of one chunk
    are gathered when the chunk is produced: memory is bounded by the chunk, never by
    the number of positions.

    Parameters
    ----------
    scan : ScanData
        The data to reconstruct.
    config : Config
        The model's configuration (from its bundle).
    state : ModelState
        The model state; its probe size must equal the patterns'.
    chunk_size : int, optional
        Patterns per chunk (default ``inference.chunk_size``); a chunk holds
        ``B = max(1, chunk_size // C)`` groups (the last may hold fewer).

    Returns
    -------
    iterator of InferenceChunk
        Groups in order ``0..M-1``.
    """
    check_pattern_size(scan, config)
    if state.pattern_size != scan.pattern_size:
        raise ValueError(
            f"pattern size mismatch: model probe is {state.pattern_size} x {state.pattern_size}, "
            f"received diffraction patterns of {scan.pattern_size} x {scan.pattern_size}"
        )
    if chunk_size is None:
        chunk_size = config.inference.chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"invalid chunk_size: expected an int >= 1, received chunk_size={chunk_size!r}")
    # Groups hold indices and offsets only (M * C * 24 bytes): small even for 1e5 positions.
    groups = group_positions(
        scan.positions_px,
        config.model.gridsize,
        n_neighbors=config.data.n_neighbors,
        n_groups=None,
        seed=config.training.seed,
    )
    a = amplitude_normalisation(scan.diffraction)
    groups_per_chunk = max(1, int(chunk_size) // groups.group_size)
    return _inference_chunks(scan, groups, a, groups_per_chunk)


def _inference_chunks(scan: ScanData, groups: Groups, a: float, groups_per_chunk: int) -> Iterator[InferenceChunk]:
    positions_px = scan.positions_px
    for start in range(0, groups.n_groups, groups_per_chunk):
        group_ids = np.arange(start, min(start + groups_per_chunk, groups.n_groups), dtype=np.int64)
        indices = groups.indices[group_ids]
        yield InferenceChunk(
            diffraction=normalise_amplitudes(scan.diffraction[indices], a),
            offsets_xy=groups.offsets_xy[group_ids].astype(np.float32),
            centers_xy=groups.centers_xy[group_ids],
            positions_xy=positions_px[indices],
            position_indices=indices,
            group_ids=group_ids,
            amplitude_normalisation=a,
        )
