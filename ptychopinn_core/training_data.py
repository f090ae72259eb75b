"""Framework-neutral preparation of training and inference inputs.

The core decides the numbers and their order — normalisation, grouping, the
train/validation split and the batch order of every epoch — so the TensorFlow and
PyTorch backends see identical batches and can be compared step by step
(design.md §7). Contract (also in ``docs/bundle.md``):

- Normalisation (physics.md §2): ``X_n = a * X`` with
  ``a = amplitude_normalisation(X)`` of the data at hand (the training scan for
  training, the inference scan for inference), computed in float64 and rounded once
  to float32; ``s = intensity_scale(nphotons, N)``.
- Groups: ``group_positions(positions_px, gridsize, n_neighbors, n_groups,
  seed=training.seed)``.
- Split: ``perm = default_rng(SeedSequence(seed, spawn_key=(0,))).permutation(G)``;
  the first ``n_val`` entries are the validation groups, the rest the training
  groups, both sorted. ``n_val = 0`` if ``validation_fraction == 0`` or ``G < 2``,
  else ``clip(floor(f * G + 0.5), 1, G - 1)``.
- Epoch ``e``: ``default_rng(SeedSequence(seed, spawn_key=(1, e))).permutation(
  train_groups)``, cut into batches of ``batch_size``; the last, partial batch is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ptychopinn_core.config import Config
from ptychopinn_core.data.keys import PATCHES
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.model.state import ModelState
from ptychopinn_core.physics.grouping import Groups, group_positions
from ptychopinn_core.physics.normalization import amplitude_normalisation, intensity_scale
from ptychopinn_core.physics.probe_model import circular_probe_mask, normalise_probe

__all__ = [
    "check_model_inputs",
    "compute_dtypes",
    "SPLIT_SPAWN_KEY",
    "EPOCH_SPAWN_KEY",
    "InferenceChunk",
    "TrainingData",
    "model_probe",
    "normalise_amplitudes",
    "prepare_inference_inputs",
    "prepare_model_state",
    "prepare_training_data",
    "split_groups",
    "validation_count",
]

#: ``SeedSequence`` spawn key of the train/validation split.
SPLIT_SPAWN_KEY = 0
#: First element of the spawn key ``(EPOCH_SPAWN_KEY, epoch)`` of an epoch's order.
EPOCH_SPAWN_KEY = 1

# Elements normalised at once (float64 temporaries stay ~32 MiB).
_BLOCK_ELEMENTS = 1 << 22


def normalise_amplitudes(diffraction: np.ndarray, amplitude_normalisation: float) -> np.ndarray:
    """Normalised amplitudes ``X_n = a * X``, float32.

    The product is taken in float64 and rounded once, so normalising a whole dataset
    or one chunk of it gives bit-identical numbers.

    Parameters
    ----------
    diffraction : ndarray, float, shape (..., N, N)
        Amplitudes ``X``.
    amplitude_normalisation : float
        ``a`` (physics.md §2).

    Returns
    -------
    ndarray, float32, same shape
    """
    diffraction = np.asarray(diffraction)
    factor = float(amplitude_normalisation)
    normalised = np.empty(diffraction.shape, dtype=np.float32)
    if diffraction.ndim < 3:
        normalised[...] = diffraction.astype(np.float64) * factor
        return normalised
    # Work through the float64 product a block of patterns at a time: a whole 10^5-pattern
    # scan in float64 would double the memory of the result.
    per_block = max(1, _BLOCK_ELEMENTS // max(1, math.prod(diffraction.shape[1:])))
    for start in range(0, diffraction.shape[0], per_block):
        block = slice(start, start + per_block)
        normalised[block] = diffraction[block].astype(np.float64) * factor
    return normalised


def validation_count(n_groups: int, validation_fraction: float) -> int:
    """Number of validation groups for ``G`` groups and fraction ``f``.

    0 when ``f == 0`` or ``G < 2``; otherwise ``round_half_up(f * G)`` kept within
    ``[1, G - 1]``: a requested validation split always gets one group, and training
    always keeps one.
    """
    if validation_fraction <= 0 or n_groups < 2:
        return 0
    return min(max(int(math.floor(validation_fraction * n_groups + 0.5)), 1), n_groups - 1)


def _generator(seed: int, *spawn_key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in spawn_key)))


def split_groups(n_groups: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation split of group indices ``0..G-1``.

    Returns
    -------
    train_groups, validation_groups : ndarray, int64
        Sorted, disjoint, together ``0..G-1``; see the module docstring for the rule.
    """
    permutation = _generator(seed, SPLIT_SPAWN_KEY).permutation(n_groups).astype(np.int64)
    n_validation = validation_count(n_groups, validation_fraction)
    return np.sort(permutation[n_validation:]), np.sort(permutation[:n_validation])


def _batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Normalised patterns, groups, split and batch order shared by every backend.

    Attributes
    ----------
    diffraction : ndarray, float32, shape (M, N, N)
        Normalised amplitudes ``X_n = a * X``.
    groups : Groups
        ``indices`` (G, C), ``centers_xy`` (G, 2), ``offsets_xy`` (G, C, 2) pixels.
    train_groups, validation_groups : ndarray, int64
        Group indices (into ``groups``) of each part; sorted and disjoint.
    intensity_scale : float
        ``s = sqrt(nphotons) / (N/2)``.
    amplitude_normalisation : float
        ``a`` of this (training) data.
    patches : ndarray, complex64, shape (M, N, N), or None
        Ground-truth object patches (NPZ key ``Y``); present in supervised mode.
    batch_size : int
        Groups per batch.
    seed : int
        Seed of the epoch order (``training.seed``).
    """

    diffraction: np.ndarray
    groups: Groups
    train_groups: np.ndarray
    validation_groups: np.ndarray
    intensity_scale: float
    amplitude_normalisation: float
    patches: np.ndarray | None
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        if self.diffraction.ndim != 3 or self.diffraction.dtype != np.float32:
            raise ValueError(
                "invalid diffraction: expected float32 (M, N, N), received "
                f"diffraction.dtype={self.diffraction.dtype}, diffraction.shape={self.diffraction.shape}"
            )
        n_positions = self.diffraction.shape[0]
        indices = self.groups.indices
        if indices.size and (indices.min() < 0 or indices.max() >= n_positions):
            raise ValueError(
                f"invalid groups: expected position indices in [0, {n_positions}), "
                f"received range [{indices.min()}, {indices.max()}]"
            )
        n_groups = self.groups.n_groups
        for name in ("train_groups", "validation_groups"):
            part = np.asarray(getattr(self, name), dtype=np.int64)
            if part.ndim != 1 or (part.size and (part.min() < 0 or part.max() >= n_groups)):
                raise ValueError(f"invalid {name}: expected group indices in [0, {n_groups}), received {part!r}")
            object.__setattr__(self, name, part)
        if np.intersect1d(self.train_groups, self.validation_groups).size:
            raise ValueError("invalid split: train_groups and validation_groups overlap")
        if self.train_groups.size == 0:
            raise ValueError("invalid split: expected at least one training group, received none")
        if self.patches is not None and self.patches.shape != self.diffraction.shape:
            raise ValueError(
                f"invalid patches: expected shape {self.diffraction.shape}, received patches.shape={self.patches.shape}"
            )
        batch_size = self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"invalid batch_size: expected an int >= 1, received batch_size={self.batch_size!r}")

    @property
    def pattern_size(self) -> int:
        """Pattern side ``N``."""
        return int(self.diffraction.shape[-1])

    @property
    def group_size(self) -> int:
        """Channels ``C`` per group."""
        return self.groups.group_size

    @property
    def n_train(self) -> int:
        return int(self.train_groups.size)

    @property
    def n_validation(self) -> int:
        return int(self.validation_groups.size)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch, ``ceil(n_train / batch_size)``."""
        return -(-self.n_train // self.batch_size)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Training-group indices of each batch of ``epoch``, in order.

        A permutation of ``train_groups`` drawn from
        ``default_rng(SeedSequence(seed, spawn_key=(1, epoch)))``, cut into batches of
        ``batch_size``; the last, partial batch is kept.

        Returns
        -------
        list of ndarray, int64, shape (B,)
        """
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"invalid epoch: expected an int >= 0, received epoch={epoch!r}")
        order = _generator(self.seed, EPOCH_SPAWN_KEY, epoch).permutation(self.train_groups)
        return _batches(order, self.batch_size)

    def validation_batches(self) -> list[np.ndarray]:
        """Validation-group indices in sorted order, in batches of ``batch_size``."""
        return _batches(self.validation_groups, self.batch_size)

    def _check_group_ids(self, group_ids: np.ndarray) -> np.ndarray:
        group_ids = np.asarray(group_ids)
        if group_ids.ndim != 1 or group_ids.dtype.kind not in "iu":
            raise ValueError(
                f"invalid group_ids: expected a 1-D integer array, received dtype={group_ids.dtype}, "
                f"shape={group_ids.shape}"
            )
        return group_ids

    def gather(self, group_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs of the given groups.

        Parameters
        ----------
        group_ids : ndarray, int, shape (B,)
            Indices into ``groups``.

        Returns
        -------
        diffraction : ndarray, float32, shape (B, C, N, N)
            Normalised amplitudes ``X_n`` of each group's positions, channel order of
            ``groups.indices``.
        offsets_xy : ndarray, float32, shape (B, C, 2)
            ``(x, y)`` pixel offsets of each position from its group centre.
        """
        group_ids = self._check_group_ids(group_ids)
        positions = self.groups.indices[group_ids]
        return self.diffraction[positions], self.groups.offsets_xy[group_ids].astype(np.float32)

    def gather_truth(self, group_ids: np.ndarray) -> np.ndarray:
        """Ground-truth patches of the given groups, complex64 (B, C, N, N) (supervised)."""
        if self.patches is None:
            raise ValueError(
                f"no ground-truth patches: supervised training needs key {PATCHES!r} in the training data"
            )
        group_ids = self._check_group_ids(group_ids)
        return self.patches[self.groups.indices[group_ids]]


def _check_pattern_size(scan: ScanData, config: Config) -> None:
    if scan.pattern_size != config.model.pattern_size:
        raise ValueError(
            f"pattern size mismatch: config model.pattern_size={config.model.pattern_size}, "
            f"received diffraction patterns of {scan.pattern_size} x {scan.pattern_size}"
        )


def prepare_training_data(scan: ScanData, config: Config) -> TrainingData:
    """Normalise, group and split a training scan (see the module docstring).

    Parameters
    ----------
    scan : ScanData
        Training scan; ``scan.patches`` (key ``Y``) is required in supervised mode.
    config : Config
        Uses ``model.pattern_size``/``gridsize``, ``data.nphotons``/``n_neighbors``/
        ``n_groups`` and ``training.mode``/``validation_fraction``/``batch_size``/``seed``.

    Returns
    -------
    TrainingData

    Raises
    ------
    ValueError
        Pattern size differs from the config; supervised mode without ``Y``.
    """
    _check_pattern_size(scan, config)
    mode = config.training.mode
    patches = None
    if mode == "supervised":
        if scan.patches is None:
            raise ValueError(
                f"missing ground truth: training.mode='{mode}' needs the ground-truth patches "
                f"(key {PATCHES!r}, complex64 (M, N, N)) in the training data; add them or use mode 'pinn'"
            )
        patches = scan.patches
    a = amplitude_normalisation(scan.diffraction)
    seed = config.training.seed
    groups = group_positions(
        scan.positions_px,
        config.model.gridsize,
        n_neighbors=config.data.n_neighbors,
        n_groups=config.data.n_groups,
        seed=seed,
    )
    train_groups, validation_groups = split_groups(groups.n_groups, config.training.validation_fraction, seed)
    return TrainingData(
        diffraction=normalise_amplitudes(scan.diffraction, a),
        groups=groups,
        train_groups=train_groups,
        validation_groups=validation_groups,
        intensity_scale=intensity_scale(config.data.nphotons, scan.pattern_size),
        amplitude_normalisation=a,
        patches=patches,
        batch_size=config.training.batch_size,
        seed=seed,
    )


def model_probe(probe: np.ndarray, mask: bool) -> np.ndarray:
    """The probe a model runs with: ``normalise_probe(mask * P)``, complex64 (physics.md §5)."""
    if mask:
        probe = probe * circular_probe_mask(probe.shape[-1], dtype=np.float32)
    return normalise_probe(probe).astype(np.complex64)


def prepare_model_state(scan: ScanData, config: Config) -> ModelState:
    """Initial model state from a training scan.

    ``probe = normalise_probe(mask * P)`` (mask = ``circular_probe_mask(N)`` when
    ``model.probe_mask``, else 1) as complex64; ``intensity_scale = s``;
    ``amplitude_normalisation = a`` of the scan.
    """
    _check_pattern_size(scan, config)
    return ModelState(
        probe=model_probe(scan.probe, config.model.probe_mask),
        intensity_scale=intensity_scale(config.data.nphotons, scan.pattern_size),
        amplitude_normalisation=amplitude_normalisation(scan.diffraction),
        probe_mask=config.model.probe_mask,
    )


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
    _check_pattern_size(scan, config)
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


def compute_dtypes(precision: str) -> tuple[np.dtype, np.dtype]:
    """Real and complex dtypes a model computes its physics in for ``execution.precision``.

    ``"64"`` runs everything in float64/complex128 (parity and numerical checks: ReLU
    pre-activations then never straddle zero by rounding, see docs/parity.md); every
    other precision keeps the physics in float32/complex64 (mixed precisions change
    only the network's matrix products).

    Returns
    -------
    (numpy.dtype, numpy.dtype)
        ``(float64, complex128)`` or ``(float32, complex64)``.
    """
    if precision == "64":
        return np.dtype(np.float64), np.dtype(np.complex128)
    return np.dtype(np.float32), np.dtype(np.complex64)


def check_model_inputs(
    diffraction: np.ndarray,
    offsets_xy: np.ndarray,
    pattern_size: int,
    group_size: int,
    dtype: np.dtype | type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """``dtype`` views/copies of a model's inputs after checking their shapes.

    Every backend's ``BackendModel.predict``/``forward`` takes the arrays of an
    :class:`InferenceChunk` (or :meth:`TrainingData.gather`); checking them here gives
    every backend the same error for the same mistake.

    Parameters
    ----------
    diffraction : ndarray, shape (B, C, N, N)
        Normalised amplitudes.
    offsets_xy : ndarray, shape (B, C, 2)
    pattern_size, group_size : int
        N and C of the model.
    dtype : numpy dtype
        The model's real compute dtype (:func:`compute_dtypes`), float32 by default.
    """
    diffraction = np.asarray(diffraction, dtype=dtype)
    offsets_xy = np.asarray(offsets_xy, dtype=dtype)
    size, channels = pattern_size, group_size
    if diffraction.ndim != 4 or diffraction.shape[1:] != (channels, size, size):
        raise ValueError(
            f"invalid diffraction shape: expected (B, {channels}, {size}, {size}), "
            f"received diffraction.shape={diffraction.shape}"
        )
    if offsets_xy.shape != diffraction.shape[:2] + (2,):
        raise ValueError(
            f"invalid offsets shape: expected {diffraction.shape[:2] + (2,)}, "
            f"received offsets_xy.shape={offsets_xy.shape}"
        )
    return diffraction, offsets_xy
