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
RefineIterations    refine.iterations            Config default (20); 0: the network's
                                                 object as it is, no refinement
RefineBatchSize     refine.batch_size            Config default (16)
RefineStepSize      refine.step_size             Config default (0.02)
RefineProbe         refine.probe                 Config default (false): refine the
                                                 probe too (a boolean)
RefineProbeDelay    refine.probe_delay           Config default (1)
RefineProbeStepSize refine.probe_step_size       Config default (0.02)
Overrides           any field                    empty; ``section.key=value`` pairs
                                                 separated by ``;``, applied last
==================  ===========================  ==========================================

Both reconstructors (``PINN`` and ``Supervised``) read every key: training reads the
``training``/``model``/``data`` keys, reconstruction reads ``Device``, ``ChunkSize``,
``NumPhotons`` (the photon scale of the refinement's loss) and the ``Refine*`` keys
(refinement is physics, fitted to the measured patterns whichever way the network was
trained). The other refinement fields (``refine.step_decay``, ``refine.loss``,
``refine.seed``) are set through ``Overrides``.

Values are read when a reconstructor runs (train, reconstruct), never cached, so a
settings file opened in Ptychodus takes effect on the next run. Ptychodus' own
parameter bounds are not used: a bad value is a ValueError from the configuration
that names the settings key and the field, instead of a silent clamp.
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
    "RefineIterations": "refine.iterations",
    "RefineBatchSize": "refine.batch_size",
    "RefineStepSize": "refine.step_size",
    "RefineProbe": "refine.probe",
    "RefineProbeDelay": "refine.probe_delay",
    "RefineProbeStepSize": "refine.probe_step_size",
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
        refine = defaults.refine
        self.refine_iterations = group.create_integer_parameter("RefineIterations", refine.iterations)
        self.refine_batch_size = group.create_integer_parameter("RefineBatchSize", refine.batch_size)
        self.refine_step_size = group.create_real_parameter("RefineStepSize", refine.step_size)
        self.refine_probe = group.create_boolean_parameter("RefineProbe", refine.probe)
        self.refine_probe_delay = group.create_integer_parameter("RefineProbeDelay", refine.probe_delay)
        self.refine_probe_step_size = group.create_real_parameter("RefineProbeStepSize", refine.probe_step_size)
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
        except ConfigError as error:
            raise ValueError(_name_the_keys(str(error), values, self.group_name)) from None
        try:
            extra = _parse_overrides(values[_OVERRIDES_KEY], source)
            return config.with_overrides(extra, source=f"{source} {_OVERRIDES_KEY}") if extra else config
        except ConfigError as error:
            raise ValueError(str(error)) from None


def _name_the_keys(message: str, values: Mapping[str, Any], group_name: str) -> str:
    """``message`` with the settings key(s) that set the refused field(s) named.

    The configuration names the field (``invalid value refine.iterations=-1: ...``); a
    Ptychodus user sets a key (``RefineIterations``), so both are named. A message that
    names no field of a key lists every key.
    """
    named = [
        f"{name} = {values[name]!r}"
        for name, dotted in SETTINGS_KEYS.items()
        if f"{dotted}=" in message or f"{dotted}:" in message
    ]
    if named:
        return f"{message} (set by {', '.join(named)} in [{group_name}])"
    keys = ", ".join(f"{name} = {dotted}" for name, dotted in SETTINGS_KEYS.items())
    return f"{message} (keys of [{group_name}]: {keys})"


def _parse_overrides(text: str, source: str) -> dict[str, str]:
    """``"training.mae_weight=0.1; model.probe_trainable=true"`` -> mapping."""
    items = [item.strip() for item in str(text).replace("\n", ";").split(";")]
    try:
        return parse_assignments([item for item in items if item])
    except ConfigError as error:
        raise ConfigError(f"{source} {_OVERRIDES_KEY}: {error}") from None
