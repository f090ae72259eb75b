"""The settings group of one PtychoPINN library in Ptychodus' ``SettingsRegistry``.

Each library registers ONE group named like the library (``[PINN-TensorFlow]``,
``[PINN-PyTorch]``), so two backends can be tuned separately in one settings file; the
keys are the same in every group, and each maps to one field of
:class:`~ptychopinn_core.config.Config`:

==================  ===========================  ==========================================
key                 Config field                 default
==================  ===========================  ==========================================
Epochs              training.epochs              Config default (50)
BatchSize           training.batch_size          Config default (8)
LearningRate        training.learning_rate       Config default (1e-3)
GridSize            model.gridsize               Config default (1)
NumFiltersScale     model.n_filters_scale        Config default (1)
NumPhotons          data.nphotons                0 = measured: mean total counts per
                                                 training pattern (after bad pixels)
ValidationFraction  training.validation_fraction Config default (0.05)
Seed                training.seed                Config default (0)
Device              execution.device             auto (auto, cpu or gpu)
ChunkSize           inference.chunk_size         Config default (1024)
Overrides           any field                    empty; ``section.key=value`` pairs
                                                 separated by ``;``, applied last
==================  ===========================  ==========================================

Values are read when a reconstructor runs (train, reconstruct), never cached, so a
settings file opened in Ptychodus takes effect on the next run. Ptychodus' own
parameter bounds are not used: a bad value is a ValueError from the configuration
that names the field, instead of a silent clamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ptychodus.api.settings import SettingsRegistry

from ptychopinn_core.config import Config, ConfigError, parse_assignments

__all__ = ["NUM_PHOTONS_MEASURED", "SETTINGS_KEYS", "PINNSettings"]

#: ``NumPhotons`` value meaning "use the measured mean total count per pattern".
NUM_PHOTONS_MEASURED = 0.0
#: Settings key -> Config field it sets (the table of the module docstring).
SETTINGS_KEYS: Mapping[str, str] = {
    "Epochs": "training.epochs",
    "BatchSize": "training.batch_size",
    "LearningRate": "training.learning_rate",
    "GridSize": "model.gridsize",
    "NumFiltersScale": "model.n_filters_scale",
    "NumPhotons": "data.nphotons",
    "ValidationFraction": "training.validation_fraction",
    "Seed": "training.seed",
    "Device": "execution.device",
    "ChunkSize": "inference.chunk_size",
}
_OVERRIDES_KEY = "Overrides"


class PINNSettings:
    """One library's settings group; the values are read at run time.

    Parameters
    ----------
    registry : SettingsRegistry
        Ptychodus' registry (the one handed to ``ProcessingCore``).
    group_name : str
        Unique group name (the library's name); ``ValueError`` if it exists already.
    """

    def __init__(self, registry: SettingsRegistry, group_name: str) -> None:
        defaults = Config()
        self.group_name = group_name
        self._group = registry.create_group(group_name)
        group = self._group
        self.epochs = group.create_integer_parameter("Epochs", defaults.training.epochs)
        self.batch_size = group.create_integer_parameter("BatchSize", defaults.training.batch_size)
        self.learning_rate = group.create_real_parameter("LearningRate", defaults.training.learning_rate)
        self.gridsize = group.create_integer_parameter("GridSize", defaults.model.gridsize)
        self.n_filters_scale = group.create_integer_parameter("NumFiltersScale", defaults.model.n_filters_scale)
        self.nphotons = group.create_real_parameter("NumPhotons", NUM_PHOTONS_MEASURED)
        self.validation_fraction = group.create_real_parameter(
            "ValidationFraction", defaults.training.validation_fraction
        )
        self.seed = group.create_integer_parameter("Seed", defaults.training.seed)
        self.device = group.create_string_parameter("Device", defaults.execution.device)
        self.chunk_size = group.create_integer_parameter("ChunkSize", defaults.inference.chunk_size)
        self.overrides = group.create_string_parameter(_OVERRIDES_KEY, "")

    def values(self) -> dict[str, Any]:
        """Current value of every key (``Overrides`` included), as Ptychodus holds them."""
        return {name: parameter.get_value() for name, parameter in self._group.parameters().items()}

    def config(self, mode: str, measured_nphotons: float | None = None) -> Config:
        """The configuration of a run: defaults, then these settings, then ``Overrides``.

        Parameters
        ----------
        mode : {"pinn", "supervised"}
            ``training.mode`` (the reconstructor decides it, not a setting).
        measured_nphotons : float, optional
            Used for ``data.nphotons`` when ``NumPhotons`` is 0 (measured); required then.

        Raises
        ------
        ValueError
            A value the configuration refuses (the message names the field and this
            group), a malformed ``Overrides`` entry, or ``NumPhotons = 0`` without a
            measurement.
        """
        values = self.values()
        overrides: dict[str, Any] = {dotted: values[name] for name, dotted in SETTINGS_KEYS.items()}
        overrides["training.mode"] = mode
        source = f"Ptychodus settings [{self.group_name}]"
        if values["NumPhotons"] == NUM_PHOTONS_MEASURED:
            if measured_nphotons is None or not measured_nphotons > 0:
                raise ValueError(
                    f"{source}: NumPhotons = 0 asks for the measured photons per pattern, but the data "
                    f"has none (measured {measured_nphotons!r}); set NumPhotons"
                )
            overrides["data.nphotons"] = float(measured_nphotons)
        try:
            config = Config().with_overrides(overrides, source=source)
            extra = _parse_overrides(values[_OVERRIDES_KEY], source)
            return config.with_overrides(extra, source=f"{source} {_OVERRIDES_KEY}") if extra else config
        except ConfigError as error:
            keys = ", ".join(f"{name} = {dotted}" for name, dotted in SETTINGS_KEYS.items())
            raise ValueError(f"{error} (keys of [{self.group_name}]: {keys})") from None


def _parse_overrides(text: str, source: str) -> dict[str, str]:
    """``"training.mae_weight=0.1; model.probe_trainable=true"`` -> mapping."""
    items = [item.strip() for item in str(text).replace("\n", ";").split(";")]
    try:
        return parse_assignments([item for item in items if item])
    except ConfigError as error:
        raise ConfigError(f"{source} {_OVERRIDES_KEY}: {error}") from None
