"""Learning-rate schedules and early stopping, decided once for every backend.

Frameworks ship their own versions (Keras ``ReduceLROnPlateau``, torch
``ReduceLROnPlateau``) with different thresholds and cooldown rules; with the logic
here both backends change the learning rate and stop at the same epoch for the same
losses, which the parity tests rely on.

"Improved" is relative to the loss's distance from its floor (:func:`loss_floor`), not
to the loss itself: the Poisson NLL drops its constant ``lgamma(y + 1)`` (docs/physics.md,
Losses), so at 1e9 photons it sits near -4e6 while an epoch improves it by tens. A
test relative to ``|loss|`` then saw plateaus everywhere after a few epochs, halved the
learning rate down to its minimum and stopped training early (docs/benchmarks.md,
"Time to quality"); relative to ``loss - floor`` it means the same at any dose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ptychopinn_core.config import TrainingConfig
from ptychopinn_core.physics.losses import pinn_loss
from ptychopinn_core.training.data import TrainingData

__all__ = [
    "CosineSchedule",
    "EarlyStopping",
    "PlateauSchedule",
    "RELATIVE_IMPROVEMENT",
    "Schedule",
    "batch_loss_floor",
    "loss_floor",
    "make_schedule",
]

#: A loss counts as improved when it is below ``best - (best - floor) * RELATIVE_IMPROVEMENT``.
RELATIVE_IMPROVEMENT = 1e-4
#: Groups per chunk when :func:`loss_floor` walks the data (bounded memory).
_FLOOR_CHUNK = 512


def _improved(loss: float, best: float, floor: float) -> bool:
    if not math.isfinite(loss):
        return False
    return not math.isfinite(best) or loss < best - abs(best - floor) * RELATIVE_IMPROVEMENT


def loss_floor(data: TrainingData, training: TrainingConfig) -> float:
    """The monitored loss of a perfect prediction on these data: the loss with ``A_hat = X_n``.

    Monitored is the validation loss when there is a validation split, else the training
    loss, both means over all their groups (docs/physics.md, Losses); this is the same
    mean with the prediction equal to the measurement, which no model can go below (the
    Poisson term is smallest at ``I_hat = y``, the MAE is then 0). Supervised losses
    are MAEs, whose floor is 0. Computed in float64 with the numpy reference.

    Parameters
    ----------
    data : TrainingData
    training : TrainingConfig
        ``mode``, ``nll_weight`` and ``mae_weight``.
    """
    if training.mode != "pinn":
        return 0.0
    groups = data.validation_groups if data.n_validation else data.train_groups
    total = 0.0
    for start in range(0, groups.size, _FLOOR_CHUNK):
        chunk = groups[start:start + _FLOOR_CHUNK]
        total += chunk.size * batch_loss_floor(data.gather(chunk)[0], data.intensity_scale, training)
    return total / groups.size


def batch_loss_floor(diffraction: np.ndarray, intensity_scale: float, training: TrainingConfig) -> float:
    """The loss of a perfect prediction (``A_hat = X_n``) on one batch ``(B, C, N, N)``, in
    float64; 0 for the supervised MAEs. What a batch's loss is measured from (parity, tests)."""
    if training.mode != "pinn":
        return 0.0
    diffraction = np.asarray(diffraction, np.float64)
    return pinn_loss(diffraction, diffraction, intensity_scale, training.nll_weight, training.mae_weight)


class Schedule(Protocol):
    """What the epoch policy asks of a learning-rate schedule (``training.lr_schedule``).

    :meth:`step` is called once per epoch with the monitored loss and the share of the
    training budget used so far (0 to 1); it returns the next epoch's learning rate.
    """

    learning_rate: float

    def step(self, loss: float, budget_used: float = 0.0) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def make_schedule(training: TrainingConfig, floor: float = 0.0) -> Schedule:
    """The schedule ``training.lr_schedule`` names; ``floor`` as in :class:`PlateauSchedule`."""
    if training.lr_schedule == "cosine":
        return CosineSchedule.from_config(training)
    return PlateauSchedule.from_config(training, floor=floor)


@dataclass
class PlateauSchedule:
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    Call :meth:`step` once per epoch with the monitored loss (validation loss, or the
    training loss when there is no validation split); it returns the learning rate for
    the next epoch, never below ``min_learning_rate``. ``floor``: the loss's floor
    (:func:`loss_floor`; 0 for losses that are 0 at a perfect fit).
    """

    learning_rate: float
    factor: float = 0.5
    patience: int = 2
    min_learning_rate: float = 1e-4
    floor: float = 0.0
    best: float = math.inf
    wait: int = 0

    @classmethod
    def from_config(cls, training: TrainingConfig, floor: float = 0.0) -> PlateauSchedule:
        return cls(
            learning_rate=training.learning_rate,
            factor=training.lr_plateau_factor,
            patience=training.lr_plateau_patience,
            min_learning_rate=min(training.min_learning_rate, training.learning_rate),
            floor=floor,
        )

    def step(self, loss: float, budget_used: float = 0.0) -> float:
        if _improved(loss, self.best, self.floor):
            self.best, self.wait = loss, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.learning_rate = max(self.learning_rate * self.factor, self.min_learning_rate)
                self.wait = 0
        return self.learning_rate

    def state_dict(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "best": _json_float(self.best), "wait": self.wait}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.learning_rate = float(state["learning_rate"])
        self.best = float(state["best"])
        self.wait = int(state["wait"])


@dataclass
class CosineSchedule:
    """Anneal from ``initial`` to ``minimum`` on a half cosine over the training budget.

    For a fixed budget (epochs, or ``max_seconds``) where waiting for plateaus wastes it:
    the rate falls smoothly with the share of the budget used, ``budget_used`` (epochs
    done / ``epochs``, or seconds / ``max_seconds`` when that runs out first), whatever
    the loss does::

        rate = minimum + (initial - minimum) * (1 + cos(pi * budget_used)) / 2

    Measured against the plateau schedule on 30 minutes of gridsize-2 training: the same
    result (docs/benchmarks.md, "Network quality" §10), so the plateau stays the default.
    """

    initial: float
    minimum: float
    learning_rate: float = field(init=False)

    def __post_init__(self) -> None:
        self.learning_rate = self.initial

    @classmethod
    def from_config(cls, training: TrainingConfig) -> CosineSchedule:
        return cls(initial=training.learning_rate, minimum=min(training.min_learning_rate, training.learning_rate))

    def step(self, loss: float, budget_used: float = 0.0) -> float:
        used = min(max(float(budget_used), 0.0), 1.0)
        self.learning_rate = self.minimum + (self.initial - self.minimum) * 0.5 * (1.0 + math.cos(math.pi * used))
        return self.learning_rate

    def state_dict(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.learning_rate = float(state["learning_rate"])


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without improvement (``None``: never stop).

    ``best_epoch`` tells which epoch had the best monitored loss; ``floor`` as in
    :class:`PlateauSchedule`.
    """

    patience: int | None = 5
    floor: float = 0.0
    best: float = math.inf
    best_epoch: int = -1
    wait: int = 0
    history: list[float] = field(default_factory=list)

    def should_stop(self, epoch: int, loss: float) -> bool:
        self.history.append(loss)
        if not math.isfinite(loss):
            return True  # a diverged loss will not come back; stop rather than burn time
        if _improved(loss, self.best, self.floor):
            self.best, self.best_epoch, self.wait = loss, epoch, 0
            return False
        self.wait += 1
        return self.patience is not None and self.wait >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": _json_float(self.best), "best_epoch": self.best_epoch, "wait": self.wait,
                "history": [_json_float(loss) for loss in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.wait = int(state["wait"])
        self.history = [float(loss) for loss in state["history"]]


def _json_float(value: float) -> float | str:
    """JSON has no infinities: ``inf`` (no best loss yet) is kept as the text ``"inf"``."""
    return value if math.isfinite(value) else repr(value)
