"""Numpy reference of every physics step both backends implement (docs/physics.md)."""

from ptychopinn_core.physics.forward import far_field, illuminate, predicted_amplitude, predicted_intensity
from ptychopinn_core.physics.grouping import Groups, group_positions
from ptychopinn_core.physics.losses import POISSON_EPS, amplitude_mae, pinn_loss, poisson_nll, supervised_mae
from ptychopinn_core.physics.normalization import amplitude_normalisation, intensity_scale
from ptychopinn_core.physics.overlap import (
    MERGE_MASK_THRESHOLD,
    PROBE_WEIGHT_FLOOR,
    central_window_mask,
    enforce_overlap,
    probe_weights,
    relative_offsets,
    merge_patches,
    pad_to_full,
)
from ptychopinn_core.physics.probe_model import circular_probe_mask, normalise_probe
from ptychopinn_core.physics.translate import extract_patches, sample_separable, translate

__all__ = [
    # translate
    "sample_separable",
    "translate",
    "extract_patches",
    # forward
    "illuminate",
    "far_field",
    "predicted_amplitude",
    "predicted_intensity",
    # overlap
    "MERGE_MASK_THRESHOLD",
    "PROBE_WEIGHT_FLOOR",
    "central_window_mask",
    "pad_to_full",
    "merge_patches",
    "relative_offsets",
    "probe_weights",
    "enforce_overlap",
    # probe model
    "circular_probe_mask",
    "normalise_probe",
    # normalisation
    "amplitude_normalisation",
    "intensity_scale",
    # losses
    "POISSON_EPS",
    "poisson_nll",
    "amplitude_mae",
    "supervised_mae",
    "pinn_loss",
    # grouping
    "Groups",
    "group_positions",
]
