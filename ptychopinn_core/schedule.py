"""Learning-rate plateau schedule and early stopping, decided once for every backend.

Frameworks ship their own versions (Keras ``ReduceLROnPlateau``, torch
``ReduceLROnPlateau``) with different thresholds and cooldown rules; with the logic
here both backends change the learning rate and stop at the same epoch for the same
losses, which the parity tests rely on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ptychopinn_core.config import TrainingConfig

__all__ = ["PlateauSchedule", "EarlyStopping", "RELATIVE_IMPROVEMENT"]

#: A loss counts as improved when it is below ``best * (1 - RELATIVE_IMPROVEMENT)``:
#: relative, so it means the same for Poisson NLLs of any dose.
RELATIVE_IMPROVEMENT = 1e-4


def _improved(loss: float, best: float) -> bool:
    return math.isfinite(loss) and (not math.isfinite(best) or loss < best - abs(best) * RELATIVE_IMPROVEMENT)


@dataclass
class PlateauSchedule:
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    Call :meth:`step` once per epoch with the monitored loss (validation loss, or the
    training loss when there is no validation split); it returns the learning rate for
    the next epoch, never below ``min_learning_rate``.
    """

    learning_rate: float
    factor: float = 0.5
    patience: int = 2
    min_learning_rate: float = 1e-4
    best: float = math.inf
    wait: int = 0

    @classmethod
    def from_config(cls, training: TrainingConfig) -> PlateauSchedule:
        return cls(
            learning_rate=training.learning_rate,
            factor=training.lr_plateau_factor,
            patience=training.lr_plateau_patience,
            min_learning_rate=min(training.min_learning_rate, training.learning_rate),
        )

    def step(self, loss: float) -> float:
        if _improved(loss, self.best):
            self.best, self.wait = loss, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.learning_rate = max(self.learning_rate * self.factor, self.min_learning_rate)
                self.wait = 0
        return self.learning_rate


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without improvement (``None``: never stop).

    ``best_epoch`` tells which epoch had the best monitored loss.
    """

    patience: int | None = 5
    best: float = math.inf
    best_epoch: int = -1
    wait: int = 0
    history: list[float] = field(default_factory=list)

    def should_stop(self, epoch: int, loss: float) -> bool:
        self.history.append(loss)
        if not math.isfinite(loss):
            return True  # a diverged loss will not come back; stop rather than burn time
        if _improved(loss, self.best):
            self.best, self.best_epoch, self.wait = loss, epoch, 0
            return False
        self.wait += 1
        return self.patience is not None and self.wait >= self.patience
