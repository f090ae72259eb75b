"""What a model is given: its state from a scan, its compute dtypes, checked input arrays.

Every backend builds its model from :func:`prepare_model_state` and checks its inputs
with :func:`check_model_inputs`, so the same mistake gets the same error everywhere.
"""

from __future__ import annotations

import numpy as np

from ptychopinn_core.config import Config, ModelConfig
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.model.state import ModelState
from ptychopinn_core.physics.overlap import probe_weights
from ptychopinn_core.physics.normalization import amplitude_normalisation, intensity_scale
from ptychopinn_core.physics.probe_model import circular_probe_mask, normalise_probe

__all__ = [
    "check_model_inputs",
    "check_pattern_size",
    "compute_dtypes",
    "model_probe",
    "overlap_weights",
    "prepare_model_state",
]


def check_pattern_size(scan: ScanData, config: Config) -> None:
    """One error for a scan whose patterns are not the model's ``N x N``."""
    if scan.pattern_size != config.model.pattern_size:
        raise ValueError(
            f"pattern size mismatch: config model.pattern_size={config.model.pattern_size}, "
            f"received diffraction patterns of {scan.pattern_size} x {scan.pattern_size}"
        )



def model_probe(probe: np.ndarray, mask: bool) -> np.ndarray:
    """The probe a model runs with: ``normalise_probe(mask * P)``, complex64 (physics.md §5)."""
    if mask:
        probe = probe * circular_probe_mask(probe.shape[-1], dtype=np.float32)
    return normalise_probe(probe).astype(np.complex64)


def overlap_weights(model_config: ModelConfig, probe: np.ndarray) -> np.ndarray | None:
    """The merge weights of the overlap constraint (physics.md §4): None for the window,
    else :func:`~ptychopinn_core.physics.overlap.probe_weights` of the model's probe."""
    return probe_weights(probe) if model_config.overlap_weights == "probe" else None


def prepare_model_state(scan: ScanData, config: Config) -> ModelState:
    """Initial model state from a training scan.

    ``probe = normalise_probe(mask * P)`` (mask = ``circular_probe_mask(N)`` when
    ``model.probe_mask``, else 1) as complex64; ``intensity_scale = s``;
    ``amplitude_normalisation = a`` of the scan.
    """
    check_pattern_size(scan, config)
    return ModelState(
        probe=model_probe(scan.probe, config.model.probe_mask),
        intensity_scale=intensity_scale(config.data.nphotons, scan.pattern_size),
        amplitude_normalisation=amplitude_normalisation(scan.diffraction),
        probe_mask=config.model.probe_mask,
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
