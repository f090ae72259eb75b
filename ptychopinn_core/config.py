"""One typed, validated, immutable configuration for model, data, training, inference
and execution.

Defaults are those of ``docs/physics.md``. A :class:`Config` is built once (from
defaults, a TOML file and command-line overrides) and passed explicitly to whatever
needs it; nothing reads configuration from module state. Bundles store
``config.to_dict()`` and restore it with :meth:`Config.from_dict`.

Examples
--------
>>> cfg = Config().with_overrides({"training.epochs": "5", "model.gridsize": 2})
>>> cfg.training.epochs, cfg.model.group_size
(5, 4)
"""

from __future__ import annotations

import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "parse_assignments",
    "to_toml",
    "Config",
    "ConfigError",
    "DataConfig",
    "ExecutionConfig",
    "InferenceConfig",
    "ModelConfig",
    "RefineConfig",
    "TrainingConfig",
]


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class ModelConfig(_Section):
    """The network and the differentiable forward model (physics.md §4-5)."""

    pattern_size: int = Field(64, ge=8, description="Diffraction pattern side N in pixels.")
    gridsize: int = Field(1, ge=1, le=4, description="Group side g; C = g*g patterns per group.")
    n_filters_scale: int = Field(
        1, ge=1, description="Multiplier of the encoder/decoder widths (1: best quality per CPU minute)."
    )
    amp_activation: Literal["sigmoid", "softplus", "relu", "swish"] = Field(
        "sigmoid", description="Activation of the amplitude head."
    )
    architecture: Literal["encoder_decoder", "unet", "space_to_depth"] = Field(
        "encoder_decoder",
        description="Network: encoder_decoder (no skips), unet (encoder features concatenated into both decoders) "
        "or space_to_depth (the encoder_decoder reading each 2x2 pixel block as 4 channels: "
        "no full-resolution block, ~2x faster).",
    )
    group_network: Literal["shared", "joint"] = Field(
        "shared",
        description="How gridsize > 1 reads a group: shared (one network applied to each pattern, the same "
        "weights; the overlap constraint couples them) or joint (the C patterns as the channels of one network).",
    )
    overlap_weights: Literal["window", "probe"] = Field(
        "probe",
        description="Merge weights of the overlap constraint: probe (|P| in the window, where a pattern "
        "constrains its patch) or window (uniform).",
    )
    probe_trainable: bool = Field(False, description="Refine the probe during training.")
    probe_mask: bool = Field(False, description="Circular mask of radius N/4 on the probe.")
    intensity_scale_trainable: bool = Field(False, description="Learn log(s) instead of fixing s.")

    @field_validator("pattern_size")
    @classmethod
    def _pattern_size_fits_network(cls, size: int) -> int:
        # The encoder halves N down to an 8 x 8 bottleneck and the decoder returns to N/2
        # (physics.md §4: one level per doubling), so N must be 8 * 2**k with k >= 1.
        if size < 16 or size & (size - 1):
            raise ValueError(f"must be a power of two >= 16 (e.g. 64, 128, 256), received {size}")
        return size

    @property
    def group_size(self) -> int:
        """Number of channels C = gridsize**2."""
        return self.gridsize * self.gridsize


class DataConfig(_Section):
    """How scans are read, normalised and grouped (physics.md §2-3)."""

    nphotons: float = Field(1e9, gt=0, description="Expected photons per pattern.")
    n_neighbors: int = Field(4, ge=1, description="K nearest neighbours a group is drawn from.")
    n_groups: int | None = Field(None, ge=1, description="Subsample this many groups (seeded).")
    measurement: Literal["auto", "amplitude", "counts"] = Field(
        "auto", description="Domain of float diffraction data when a file does not declare it."
    )

    @property
    def is_subsampled(self) -> bool:
        return self.n_groups is not None


class TrainingConfig(_Section):
    """Optimisation (physics.md §6-7)."""

    mode: Literal["pinn", "supervised"] = Field(
        "pinn", description="pinn: Poisson loss through the physics; supervised: MAE to Y."
    )
    epochs: int = Field(50, ge=1, description="Maximum number of epochs.")
    batch_size: int = Field(8, ge=1, description="Groups per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, description="Initial Adam learning rate.")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1.")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2.")
    # TF (1e-7) and torch (1e-8) differ by default; one explicit value keeps them equal.
    adam_epsilon: float = Field(1e-7, gt=0, description="Adam epsilon, explicit in both backends.")
    lr_schedule: Literal["plateau", "cosine"] = Field(
        "plateau",
        description="plateau: lower the rate when validation stalls; cosine: anneal it to min_learning_rate "
        "over the budget (epochs, or max_seconds when that ends first).",
    )
    lr_plateau_factor: float = Field(
        0.5, gt=0, lt=1, description="Learning-rate factor on a validation plateau."
    )
    lr_plateau_patience: int = Field(
        2, ge=1, description="Epochs without validation improvement before the factor applies."
    )
    min_learning_rate: float = Field(1e-4, gt=0, description="Floor of the plateau schedule; end of the cosine one.")
    early_stopping_patience: int | None = Field(
        5, ge=1, description="Epochs without validation improvement; None disables."
    )
    max_seconds: float | None = Field(
        None, gt=0, description="Stop at the first epoch end after this many seconds of training; None: no limit."
    )
    validation_fraction: float = Field(
        0.05, ge=0, lt=1, description="Deterministic (seeded) share of groups held out."
    )
    ema_decay: float = Field(
        0.999, ge=0, lt=1,
        description="Exponential moving average of the weights, per optimiser step, with a warm-up "
        "(physics.md §8; 0: off): the average is what validation, the schedule, early stopping and the "
        "trained model use.",
    )
    nll_weight: float = Field(1.0, ge=0, description="Weight of the Poisson NLL (pinn mode).")
    mae_weight: float = Field(0.0, ge=0, description="Weight of the amplitude MAE (pinn mode).")
    seed: int = Field(
        0, ge=0, description="Seeds weights, grouping, split and batch order."
    )

    @model_validator(mode="after")
    def _some_loss(self) -> TrainingConfig:
        if self.mode == "pinn" and self.nll_weight == 0 and self.mae_weight == 0:
            raise ValueError("nll_weight and mae_weight are both 0: the PINN loss would be empty")
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(
                f"min_learning_rate ({self.min_learning_rate}) exceeds learning_rate "
                f"({self.learning_rate})"
            )
        return self


class InferenceConfig(_Section):
    """Prediction and stitching (physics.md §8)."""

    chunk_size: int = Field(1024, ge=1, description="Patterns per streamed prediction chunk.")
    stitch_crop: int | None = Field(
        None, ge=1, description="Central window kept per patch; None = N*5//16 (20 for N=64)."
    )
    phase_sync: bool = Field(
        True,
        description="Synchronise the patches' constant phases before averaging them (physics.md, Stitching); "
        "false: the plain average.",
    )


class RefineConfig(_Section):
    """Physics refinement of a reconstruction: object (and probe) fitted to the data (physics.md §10)."""

    iterations: int = Field(
        20, ge=0, description="Passes over all positions after the network; 0: the network's object as it is."
    )
    batch_size: int = Field(16, ge=1, description="Positions per step: small batches converge in fewer passes; bounds memory.")
    step_size: float = Field(0.02, gt=0, description="Adam step size of the object.")
    step_decay: float = Field(
        0.95, gt=0, le=1, description="Both step sizes are multiplied by this after every iteration."
    )
    loss: Literal["amplitude", "poisson"] = Field(
        "amplitude", description="amplitude: squared amplitude error; poisson: the training's Poisson NLL."
    )
    probe: bool = Field(False, description="Refine the probe too (real data, where the probe is a guess).")
    probe_delay: int = Field(1, ge=0, description="Object-only iterations before the probe is refined.")
    probe_step_size: float = Field(0.02, gt=0, description="Adam step size of the probe.")
    seed: int = Field(0, ge=0, description="Seeds the order in which positions are visited.")


class ExecutionConfig(_Section):
    """Where and how the work runs; backends read what they support."""

    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="auto uses a GPU when the backend sees one."
    )
    devices: int | Literal["auto"] = Field(
        "auto", description="Devices per node for distributed training."
    )
    num_nodes: int = Field(1, ge=1, description="Nodes for distributed training (torch DDP).")
    strategy: Literal["auto", "single", "mirrored", "ddp"] = Field(
        "auto", description="Distribution strategy: mirrored (TensorFlow), ddp (Lightning)."
    )
    precision: Literal["32", "64", "bf16-mixed", "16-mixed"] = Field(
        "32",
        description="Numeric precision: 32 (float32), 64 (float64 throughout: slow, for "
        "parity and numerical checks), bf16-mixed / 16-mixed (network only, physics stays 32).",
    )
    workers: int = Field(0, ge=0, description="Data-loading worker processes.")
    deterministic: bool = Field(
        False, description="Ask the framework for deterministic kernels (slower)."
    )
    run_dir: str | None = Field(
        None, description="Folder for checkpoints and logs; unset: none are kept."
    )
    resume: bool = Field(
        False, description="Continue from the last checkpoint in run_dir (backends that can)."
    )
    logger: Literal["csv", "tensorboard", "mlflow", "none"] = Field(
        "csv", description="Metrics logger in run_dir (tensorboard/mlflow only if installed)."
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        """``--set execution.precision=64`` parses as the integer 64; the names are text."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Config(_Section):
    """The complete configuration; immutable, so it can be shared and stored safely."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    inference: InferenceConfig = InferenceConfig()
    refine: RefineConfig = RefineConfig()
    execution: ExecutionConfig = ExecutionConfig()

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> Config:
        """Validate a nested ``{section: {key: value}}`` mapping."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError(_describe(error, source)) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Config:
        """Read a TOML file whose tables are the sections (``[training]``, ...)."""
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: invalid TOML: {error}") from None
        return cls.from_dict(values, source=str(path))

    def with_overrides(self, overrides: dict[str, Any], *, source: str = "--set") -> Config:
        """A copy with dotted keys replaced (``{"training.epochs": "5"}``), re-validated.

        Values may be strings as typed on a command line; they are parsed as TOML
        values when possible (``5``, ``1e-3``, ``true``, ``"text"``) and otherwise
        kept as text, then validated like any other value. ``none`` clears an optional.
        """
        values = self.to_dict()
        for dotted, raw in overrides.items():
            section, _, key = dotted.partition(".")
            if section not in values or not key:
                raise ConfigError(
                    f"{source}: unknown config key {dotted!r}; keys look like "
                    f"'section.key' with section one of {', '.join(values)}"
                )
            if key not in values[section]:
                raise ConfigError(
                    f"{source}: unknown config key {dotted!r}; allowed keys in "
                    f"[{section}]: {', '.join(values[section])}"
                )
            values[section][key] = _parse_value(raw, _accepts_none(section, key))
        return self.from_dict(values, source=source)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (JSON/TOML-ready)."""
        return self.model_dump(mode="json")


def parse_assignments(assignments: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Turn ``["training.epochs=5", ...]`` (``--set`` options) into a mapping."""
    parsed: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        parsed[key.strip()] = value.strip()
    return parsed


def _accepts_none(section: str, key: str) -> bool:
    annotation = type(getattr(Config(), section)).model_fields[key].annotation
    return type(None) in typing.get_args(annotation)


def _parse_value(raw: Any, accepts_none: bool = True) -> Any:
    if not isinstance(raw, str):
        return raw
    # "none" clears an optional key; for a key whose values include the word (a
    # choice like logger = "none") it stays text.
    if accepts_none and raw.strip().lower() in {"none", "null"}:
        return None
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            section = str(item["loc"][0]) if len(item["loc"]) > 1 else None
            allowed = _allowed_keys(section)
            problems.append(f"unknown config key {location!r}; allowed: {allowed}")
        else:
            value = item.get("input")
            shown = f"={value!r}" if not isinstance(value, dict) else ""
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"invalid value {location}{shown}: {message}")
    return f"{source}: " + "; ".join(problems)


def _allowed_keys(section: str | None) -> str:
    fields = Config.model_fields
    if section is None or section not in fields:
        return ", ".join(fields)
    return ", ".join(fields[section].annotation.model_fields)


def to_toml(config: Config) -> str:
    """The configuration as TOML text that :meth:`Config.from_toml` reads back.

    TOML has no null: an optional key that is unset is written as a comment.
    """
    lines: list[str] = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                lines.append(f"# {key} = (unset)")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
