"""Framework-neutral model definition: canonical parameters, model state and the bundle.

- :mod:`~ptychopinn_core.model.parameters`: the parameter list both backends build from,
  the initial weights and their validation.
- :mod:`~ptychopinn_core.model.state`: :class:`ModelState` (probe, scales) and
  :class:`History` (per-epoch losses).
- :mod:`~ptychopinn_core.model.bundle`: the one-file model bundle (``docs/bundle.md``).
"""

from ptychopinn_core.model.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    BundleError,
    ModelBundle,
    inspect_bundle,
    make_manifest,
    read_bundle,
    write_bundle,
)
from ptychopinn_core.model.parameters import (
    LOG_INTENSITY_SCALE,
    ParameterSpec,
    WeightsError,
    count_parameters,
    describe_architecture,
    effective_intensity_scale,
    initial_weights,
    network_channels,
    parameter_specs,
    validate_weights,
)
from ptychopinn_core.model.state import EpochRecord, History, ModelState

__all__ = [
    # parameters
    "LOG_INTENSITY_SCALE",
    "ParameterSpec",
    "WeightsError",
    "count_parameters",
    "describe_architecture",
    "effective_intensity_scale",
    "initial_weights",
    "network_channels",
    "parameter_specs",
    "validate_weights",
    # state
    "EpochRecord",
    "History",
    "ModelState",
    # bundle
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BundleError",
    "ModelBundle",
    "inspect_bundle",
    "make_manifest",
    "read_bundle",
    "write_bundle",
]
