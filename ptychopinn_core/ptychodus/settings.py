"""The settings group of one PtychoPINN library in Ptychodus' ``SettingsRegistry``.

Each library registers ONE group named like the library (``[PINN-TensorFlow]``,
``[PINN-pytorch]``), so two backends can be tuned separately in one settings file; the
keys are the same in every group, and each maps to one field of
:class:`~ptychopinn_core.config.Config` (:data:`SETTINGS`, in the order and groups of
the configuration: model, data, training, inference, refinement, execution), plus
``Overrides``: ``section.key=value`` pairs separated by ``;``, applied last, for every
other field. Defaults are the configuration's, except ``NumPhotons`` (0 = measured:
the mean total count per pattern of the data at hand).

Who reads what: Train reads the model, data and training keys; Infer reads the
inference keys (``ChunkSize``, ``PhaseSync``: how patches are stitched), ``NumPhotons``
(the photon scale of the refinement's loss) and the ``Refine*`` keys (the network
itself is the trained model's); both read ``Device``.
The keys marked ``pinn_only`` (the PINN loss and its physics: loss weights, overlap
weights, trainable probe and scale, probe mask) are not read by a ``Supervised``
training, whose loss is the MAE to the true patches; the GUI panel leaves them out there.

Values are read when a reconstructor runs (train, reconstruct), never cached, so a
settings file opened in Ptychodus, or a value edited in the panel, takes effect on the
next run. Ptychodus' own parameter bounds are not used (they clamp silently): a bad
value is a ValueError from the configuration that names the settings key and the
field; :meth:`PINNSettings.check` lets the panel refuse such a value as it is typed.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic.fields import FieldInfo

from ptychodus.api.parameters import Parameter
from ptychodus.api.settings import SettingsRegistry

from ptychopinn_core.config import Config, ConfigError, parse_assignments

__all__ = [
    "NOT_SETTINGS",
    "NUM_PHOTONS_MEASURED",
    "OVERRIDES_FIELDS",
    "OVERRIDES_KEY",
    "SETTINGS",
    "SETTINGS_KEYS",
    "PINNSettings",
    "Setting",
]

#: ``NumPhotons`` value meaning "use the measured mean total count per pattern".
NUM_PHOTONS_MEASURED = 0.0
#: The free-form key: ``section.key=value`` pairs for any configuration field.
OVERRIDES_KEY = "Overrides"
#: Runs that read a section's fields (``execution.device`` and ``data.nphotons``: both).
_READ_BY = {"model": ("Train",), "data": ("Train",), "training": ("Train",),
            "inference": ("Infer",), "refine": ("Infer",), "execution": ("Train", "Infer")}


@dataclass(frozen=True)
class Setting:
    """One settings key and the configuration field it sets.

    Attributes
    ----------
    key : str
        The key in the settings group (``Epochs``).
    field : str
        The dotted configuration field (``training.epochs``).
    label : str
        The label of its row in the GUI panel.
    pinn_only : bool
        Read only by a ``PINN`` training (the ``Supervised`` panel leaves it out).
    note : str
        What the key means beyond the field's description (``NumPhotons = 0``).
    """

    key: str
    field: str
    label: str
    pinn_only: bool = False
    note: str = ""

    @property
    def section(self) -> str:
        return self.field.partition(".")[0]

    @property
    def attribute(self) -> str:
        """Attribute of :class:`PINNSettings` holding the parameter (``refine_`` + name for refinement)."""
        section, _, name = self.field.partition(".")
        return f"refine_{name}" if section == "refine" else name

    @property
    def info(self) -> FieldInfo:
        """The pydantic field: type, bounds, default and description."""
        section, _, name = self.field.partition(".")
        return Config.model_fields[section].annotation.model_fields[name]

    @property
    def read_by(self) -> tuple[str, ...]:
        """``("Train",)``, ``("Infer",)`` or both; ``NumPhotons`` is read by both."""
        return ("Train", "Infer") if self.key == "NumPhotons" else _READ_BY[self.section]

    def choices(self) -> tuple[str, ...] | None:
        """The allowed values of a choice field (``typing.Literal``), else None."""
        annotation = self.info.annotation
        return tuple(typing.get_args(annotation)) if typing.get_origin(annotation) is typing.Literal else None

    def integer_range(self) -> tuple[int, int | None]:
        """Inclusive ``(minimum, maximum)`` of an integer field (maximum None: unbounded)."""
        minimum, maximum = 0, None
        for constraint in self.info.metadata:  # annotated_types.Ge, Gt, Le, Lt
            if getattr(constraint, "ge", None) is not None:
                minimum = int(constraint.ge)
            elif getattr(constraint, "gt", None) is not None:
                minimum = int(constraint.gt) + 1
            elif getattr(constraint, "le", None) is not None:
                maximum = int(constraint.le)
            elif getattr(constraint, "lt", None) is not None:
                maximum = int(constraint.lt) - 1
        return minimum, maximum

    def description(self) -> str:
        """Tool tip: the field's description, this key's note, the key and the runs that read it."""
        text = self.info.description or ""
        if self.note:
            text = f"{text} {self.note}"
        return f"{text}\n{self.key} = {self.field}; read by {' and '.join(self.read_by)}."


#: Every settings key but ``Overrides``, in the configuration's order of sections.
SETTINGS: tuple[Setting, ...] = (
    Setting("GridSize", "model.gridsize", "Grid size"),
    Setting("NumFiltersScale", "model.n_filters_scale", "Filters scale"),
    Setting("Architecture", "model.architecture", "Architecture"),
    Setting("GroupNetwork", "model.group_network", "Group network"),
    Setting("AmpActivation", "model.amp_activation", "Amplitude activation"),
    Setting("OverlapWeights", "model.overlap_weights", "Overlap weights", pinn_only=True),
    Setting("ProbeTrainable", "model.probe_trainable", "Probe trainable", pinn_only=True),
    Setting("ProbeMask", "model.probe_mask", "Probe mask", pinn_only=True),
    Setting("IntensityScaleTrainable", "model.intensity_scale_trainable", "Intensity scale trainable",
            pinn_only=True),
    Setting("NumPhotons", "data.nphotons", "Photons per pattern",
            note="0: the measured mean total count per pattern of the data (training or reconstructed)."),
    Setting("NumNeighbors", "data.n_neighbors", "Neighbours per group"),
    Setting("Epochs", "training.epochs", "Epochs"),
    Setting("BatchSize", "training.batch_size", "Batch size"),
    Setting("LearningRate", "training.learning_rate", "Learning rate"),
    Setting("ValidationFraction", "training.validation_fraction", "Validation fraction"),
    Setting("NLLWeight", "training.nll_weight", "Poisson NLL weight", pinn_only=True),
    Setting("MAEWeight", "training.mae_weight", "Amplitude MAE weight", pinn_only=True),
    Setting("Seed", "training.seed", "Seed"),
    Setting("ChunkSize", "inference.chunk_size", "Chunk size"),
    Setting("PhaseSync", "inference.phase_sync", "Phase-synchronised stitching"),
    Setting("RefineIterations", "refine.iterations", "Iterations"),
    Setting("RefineBatchSize", "refine.batch_size", "Batch size"),
    Setting("RefineStepSize", "refine.step_size", "Object step size"),
    Setting("RefineStepDecay", "refine.step_decay", "Step decay"),
    Setting("RefineLoss", "refine.loss", "Loss"),
    Setting("RefineProbe", "refine.probe", "Refine the probe"),
    Setting("RefineProbeDelay", "refine.probe_delay", "Probe delay"),
    Setting("RefineProbeStepSize", "refine.probe_step_size", "Probe step size"),
    Setting("RefineSeed", "refine.seed", "Seed"),
    Setting("Device", "execution.device", "Device"),
)
#: Settings key -> Config field it sets.
SETTINGS_KEYS: Mapping[str, str] = {setting.key: setting.field for setting in SETTINGS}
#: Fields no setting decides: the reconstructor and the data do.
NOT_SETTINGS: Mapping[str, str] = {
    "training.mode": "the reconstructor (PINN or Supervised)",
    "model.pattern_size": "the data's pattern size",
}
#: Fields without a key of their own, set with ``Overrides`` (every field is in exactly
#: one of SETTINGS, NOT_SETTINGS and this list; a test keeps it so as fields are added).
OVERRIDES_FIELDS: tuple[str, ...] = (
    "data.n_groups", "data.measurement",
    "training.adam_beta1", "training.adam_beta2", "training.adam_epsilon", "training.lr_schedule",
    "training.lr_plateau_factor",
    "training.lr_plateau_patience", "training.min_learning_rate", "training.early_stopping_patience",
    "training.max_seconds", "training.ema_decay",
    "inference.stitch_crop",
    "execution.devices", "execution.num_nodes", "execution.strategy", "execution.precision", "execution.workers",
    "execution.deterministic", "execution.run_dir", "execution.resume", "execution.logger",
)


class PINNSettings:
    """One library's settings group; the values are read at run time.

    Every key of :data:`SETTINGS` is an attribute holding its Ptychodus parameter
    (:attr:`Setting.attribute`: ``epochs``, ``nphotons``, ``refine_iterations``, ...), and
    ``overrides`` holds ``Overrides``.

    Parameters
    ----------
    registry : SettingsRegistry
        Ptychodus' registry (the one handed to ``ProcessingCore``).
    group_name : str
        Unique group name (the library's name); ``ValueError`` if it exists already.
    """

    def __init__(self, registry: SettingsRegistry, group_name: str) -> None:
        self.group_name = group_name
        self._group = registry.create_group(group_name)
        defaults = Config().to_dict()
        for setting in SETTINGS:
            section, _, name = setting.field.partition(".")
            value = NUM_PHOTONS_MEASURED if setting.key == "NumPhotons" else defaults[section][name]
            setattr(self, setting.attribute, self._create(setting.key, value))
        self.overrides = self._group.create_string_parameter(OVERRIDES_KEY, "")

    def _create(self, key: str, value: Any) -> Parameter[Any]:
        if isinstance(value, bool):
            return self._group.create_boolean_parameter(key, value)
        if isinstance(value, int):
            return self._group.create_integer_parameter(key, value)
        if isinstance(value, float):
            return self._group.create_real_parameter(key, value)
        return self._group.create_string_parameter(key, str(value))

    def parameter(self, key: str) -> Parameter[Any]:
        """The Ptychodus parameter of a key (``Overrides`` included)."""
        return self._group.parameters()[key]

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
        return self._config(self.values(), mode, measured_nphotons)

    def check(self, changes: Mapping[str, Any], mode: str = "pinn") -> None:
        """Raise the ValueError :meth:`config` would raise with ``changes`` applied; change nothing.

        The panel calls it before it stores a typed value, so that a value the
        configuration refuses (alone or with the other settings) is refused there.
        ``NumPhotons = 0`` (measured) counts as valid.
        """
        unknown = sorted(set(changes) - set(self._group.parameters()))
        if unknown:
            raise ValueError(f"[{self.group_name}]: unknown settings key(s) {unknown}")
        self._config({**self.values(), **changes}, mode, measured_nphotons=1.0)

    def _config(self, values: Mapping[str, Any], mode: str, measured_nphotons: float | None) -> Config:
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
            extra = _parse_overrides(values[OVERRIDES_KEY], source)
            return config.with_overrides(extra, source=f"{source} {OVERRIDES_KEY}") if extra else config
        except ConfigError as error:
            raise ValueError(str(error)) from None


def _name_the_keys(message: str, values: Mapping[str, Any], group_name: str) -> str:
    """``message`` with the settings key(s) that set the refused field(s) named.

    The configuration names the field (``invalid value refine.iterations=-1: ...``); a
    Ptychodus user sets a key (``RefineIterations``), so both are named. A check of
    several fields names them without their section (``min_learning_rate (0.0001)
    exceeds learning_rate``): a key whose field name appears as a word is named then. A
    message that names no field of a key lists every key.
    """
    named = [
        f"{name} = {values[name]!r}"
        for name, dotted in SETTINGS_KEYS.items()
        if f"{dotted}=" in message or f"{dotted}:" in message
    ]
    if not named:
        named = [
            f"{name} = {values[name]!r}"
            for name, dotted in SETTINGS_KEYS.items()
            if f" {dotted.partition('.')[0]}:" in message
            and re.search(rf"\b{re.escape(dotted.partition('.')[2])}\b", message)
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
        raise ConfigError(f"{source} {OVERRIDES_KEY}: {error}") from None
