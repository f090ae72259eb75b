"""The training data every backend sees: normalised, grouped, split and batched by the core.

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
from dataclasses import dataclass

import numpy as np

from ptychopinn_core.config import Config
from ptychopinn_core.data.keys import PATCHES
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.model.inputs import check_pattern_size
from ptychopinn_core.physics.grouping import Groups, group_positions
from ptychopinn_core.physics.normalization import amplitude_normalisation, intensity_scale, normalise_amplitudes

__all__ = [
    "EPOCH_SPAWN_KEY",
    "SPLIT_SPAWN_KEY",
    "TrainingData",
    "prepare_training_data",
    "split_groups",
    "validation_count",
]

#: ``SeedSequence`` spawn key of the train/validation split.
SPLIT_SPAWN_KEY = 0
#: First element of the spawn key ``(EPOCH_SPAWN_KEY, epoch)`` of an epoch's order.
EPOCH_SPAWN_KEY = 1


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
    check_pattern_size(scan, config)
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


