"""What a trained model carries besides its weights: probe, scales and training history.

Both types are immutable and serialise to JSON-ready dicts (arrays separately), which
is how :mod:`ptychopinn_core.model.bundle` stores them (``state.json`` +
``state.npz``, ``history.json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PROBE_KEY", "EpochRecord", "History", "ModelState"]

#: Key of the probe in the arrays of a ModelState (and in the bundle's state.npz).
PROBE_KEY = "probe"

_STATE_FIELDS = ("intensity_scale", "amplitude_normalisation", "probe_mask")


def _positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"invalid {name}: expected a number, received {name}={value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"invalid {name}: expected a finite number > 0, received {name}={value!r}")
    return value


@dataclass(frozen=True, eq=False)
class ModelState:
    """Non-weight model state shared by every backend.

    Attributes
    ----------
    probe : ndarray, complex64, shape (N, N)
        The model's probe: ``normalise_probe(mask * P)`` of the training scan's probe
        (``sum |P|**2 == N**2``), possibly trained further. Stored as a read-only copy;
        complex128 input is rounded to complex64.
    intensity_scale : float
        ``s = sqrt(nphotons) / (N/2)`` (physics.md §2), > 0. A trainable correction
        lives in the weights (``log_intensity_scale``; used scale ``s * exp(log_s)``).
    amplitude_normalisation : float
        ``a`` of the TRAINING data, > 0, kept for the record: inference normalises
        its own data with its own ``a``.
    probe_mask : bool
        Whether the circular ``N/4`` mask was applied to ``probe``.
    """

    probe: np.ndarray
    intensity_scale: float
    amplitude_normalisation: float
    probe_mask: bool = False

    def __post_init__(self) -> None:
        probe = self.probe
        if not isinstance(probe, np.ndarray):
            raise TypeError(f"invalid probe: expected a numpy array, received {type(probe).__name__}")
        if probe.dtype.kind != "c":
            raise TypeError(f"invalid probe dtype: expected complex64, received probe.dtype={probe.dtype}")
        if probe.ndim != 2 or probe.shape[0] != probe.shape[1] or probe.shape[0] < 1:
            raise ValueError(f"invalid probe shape: expected (N, N), received probe.shape={probe.shape}")
        if not np.all(np.isfinite(probe)):
            raise ValueError("invalid probe: expected finite values, received NaN or inf in probe")
        stored = np.array(probe, dtype=np.complex64, copy=True, order="C")
        stored.flags.writeable = False
        object.__setattr__(self, "probe", stored)
        object.__setattr__(self, "intensity_scale", _positive_float(self.intensity_scale, "intensity_scale"))
        object.__setattr__(
            self,
            "amplitude_normalisation",
            _positive_float(self.amplitude_normalisation, "amplitude_normalisation"),
        )
        if not isinstance(self.probe_mask, (bool, np.bool_)):
            raise TypeError(f"invalid probe_mask: expected a bool, received probe_mask={self.probe_mask!r}")
        object.__setattr__(self, "probe_mask", bool(self.probe_mask))

    @property
    def pattern_size(self) -> int:
        """Probe side ``N``."""
        return int(self.probe.shape[0])

    def check_replacement(self, new: ModelState) -> None:
        """ValueError unless a model built with this state can take ``new``: a new probe
        of the same size; the intensity scale is part of the built model and stays."""
        if new.pattern_size != self.pattern_size:
            raise ValueError(
                f"invalid state: expected a ({self.pattern_size}, {self.pattern_size}) probe, "
                f"received state.probe.shape={new.probe.shape}"
            )
        if new.intensity_scale != self.intensity_scale:
            raise ValueError(
                f"invalid state: the intensity scale is fixed at build time ({self.intensity_scale}), "
                f"received state.intensity_scale={new.intensity_scale}"
            )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the scalar fields (the probe goes in :meth:`to_arrays`)."""
        return {
            "intensity_scale": self.intensity_scale,
            "amplitude_normalisation": self.amplitude_normalisation,
            "probe_mask": self.probe_mask,
            "probe_shape": list(self.probe.shape),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The array fields: ``{"probe": complex64 (N, N)}``."""
        return {PROBE_KEY: self.probe}

    @classmethod
    def from_json(cls, values: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ModelState:
        """Rebuild from :meth:`to_json` and :meth:`to_arrays` output.

        Raises
        ------
        ValueError
            A missing field or array, or a probe shape different from ``probe_shape``.
        TypeError
            A field of the wrong type.
        """
        if not isinstance(values, Mapping):
            raise TypeError(f"invalid model state: expected a JSON object, received {type(values).__name__}")
        missing = [name for name in _STATE_FIELDS if name not in values]
        if missing:
            raise ValueError(f"invalid model state: missing field(s) {missing}")
        if PROBE_KEY not in arrays:
            raise ValueError(f"invalid model state: missing array {PROBE_KEY!r}")
        probe = arrays[PROBE_KEY]
        recorded = values.get("probe_shape")
        if recorded is not None and list(np.shape(probe)) != list(recorded):
            raise ValueError(
                f"invalid probe shape: expected probe_shape={list(recorded)} as recorded, "
                f"received probe.shape={np.shape(probe)}"
            )
        return cls(
            probe=probe,
            intensity_scale=values["intensity_scale"],
            amplitude_normalisation=values["amplitude_normalisation"],
            probe_mask=values["probe_mask"],
        )


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"invalid {name}: expected a number, received {name}={value!r}")
    return float(value)


@dataclass(frozen=True)
class EpochRecord:
    """Losses and timing of one epoch.

    Attributes
    ----------
    epoch : int
        0-based epoch number.
    train_loss : float
        Mean training loss of the epoch (NaN if training diverged).
    val_loss : float or None
        Validation loss after the epoch; None without a validation split.
    learning_rate : float
        Learning rate used during the epoch.
    seconds : float
        Wall time of the epoch in seconds.
    """

    epoch: int
    train_loss: float
    val_loss: float | None
    learning_rate: float
    seconds: float

    def __post_init__(self) -> None:
        if isinstance(self.epoch, bool) or not isinstance(self.epoch, (int, np.integer)) or self.epoch < 0:
            raise ValueError(f"invalid epoch: expected an int >= 0, received epoch={self.epoch!r}")
        object.__setattr__(self, "epoch", int(self.epoch))
        object.__setattr__(self, "train_loss", _as_float(self.train_loss, "train_loss"))
        if self.val_loss is not None:
            object.__setattr__(self, "val_loss", _as_float(self.val_loss, "val_loss"))
        object.__setattr__(self, "learning_rate", _positive_float(self.learning_rate, "learning_rate"))
        seconds = _as_float(self.seconds, "seconds")
        if not seconds >= 0:
            raise ValueError(f"invalid seconds: expected a duration >= 0, received seconds={seconds!r}")
        object.__setattr__(self, "seconds", seconds)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (a diverged loss is written as Python's ``NaN`` token)."""
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "learning_rate": self.learning_rate,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> EpochRecord:
        if not isinstance(values, Mapping):
            raise TypeError(f"invalid epoch record: expected a JSON object, received {type(values).__name__}")
        fields = ("epoch", "train_loss", "val_loss", "learning_rate", "seconds")
        missing = [name for name in fields if name not in values]
        if missing:
            raise ValueError(f"invalid epoch record: missing field(s) {missing}")
        return cls(**{name: values[name] for name in fields})


@dataclass(frozen=True)
class History:
    """Per-epoch training history, epochs in increasing order.

    Attributes
    ----------
    epochs : tuple of EpochRecord
        One record per completed epoch (fewer than configured after early stopping).
    """

    epochs: tuple[EpochRecord, ...] = ()

    def __post_init__(self) -> None:
        epochs = tuple(self.epochs)
        if not all(isinstance(record, EpochRecord) for record in epochs):
            raise TypeError("invalid history: expected a sequence of EpochRecord")
        numbers = [record.epoch for record in epochs]
        if any(later <= earlier for earlier, later in zip(numbers, numbers[1:])):
            raise ValueError(f"invalid history: expected increasing epoch numbers, received {numbers}")
        object.__setattr__(self, "epochs", epochs)

    @property
    def n_epochs(self) -> int:
        """Number of recorded epochs."""
        return len(self.epochs)

    def summary(self) -> dict[str, Any]:
        """Short JSON-ready summary: epochs, final and best losses, total time."""
        summary: dict[str, Any] = {"n_epochs": self.n_epochs}
        if not self.epochs:
            return summary
        last = self.epochs[-1]
        summary.update(
            final_train_loss=last.train_loss,
            final_val_loss=last.val_loss,
            final_learning_rate=last.learning_rate,
            total_seconds=sum(record.seconds for record in self.epochs),
        )
        validated = [r for r in self.epochs if r.val_loss is not None and math.isfinite(r.val_loss)]
        if validated:
            best = min(validated, key=lambda record: record.val_loss)
            summary.update(best_val_loss=best.val_loss, best_epoch=best.epoch)
        return summary

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict ``{"epochs": [record, ...]}``."""
        return {"epochs": [record.to_json() for record in self.epochs]}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> History:
        if not isinstance(values, Mapping) or not isinstance(values.get("epochs"), list):
            raise ValueError('invalid history: expected a JSON object {"epochs": [...]}')
        return cls(tuple(EpochRecord.from_json(record) for record in values["epochs"]))
