"""Progress events: what training and refinement report while they work, to a CLI bar, a GUI or a test.

Its own module at the bottom of the layers, so the training policy, the refinement loop and
the backends' contract can all speak it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ProgressCallback", "ProgressEvent"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of ``ptychopinn_train``.

    Attributes
    ----------
    stage : {"batch", "epoch"}
        ``"batch"`` after each optimisation step, ``"epoch"`` after each epoch
        (its metrics include the validation loss when there is a validation split).
    epoch : int
        0-based epoch index.
    n_epochs : int
        Epochs planned (training may stop earlier: early stopping).
    step : int
        1-based step within the epoch (``n_steps`` for an ``"epoch"`` event).
    n_steps : int
        Steps (batches) in this epoch.
    metrics : Mapping[str, float]
        E.g. ``train_loss``, ``val_loss``, ``learning_rate``.
    """

    stage: Literal["batch", "epoch"]
    epoch: int
    n_epochs: int
    step: int
    n_steps: int
    metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in ("batch", "epoch"):
            raise ValueError(f"invalid ProgressEvent.stage: expected 'batch' or 'epoch', received stage={self.stage!r}")
        if not 0 <= self.epoch < max(self.n_epochs, 1):
            raise ValueError(
                f"invalid ProgressEvent.epoch: expected 0 <= epoch < n_epochs={self.n_epochs}, "
                f"received epoch={self.epoch}"
            )
        object.__setattr__(self, "metrics", {str(key): float(value) for key, value in dict(self.metrics).items()})


#: The callback ``ptychopinn_train`` reports to.
#: The callback ``ptychopinn_train`` and a refiner report to.
ProgressCallback = Callable[[ProgressEvent], None]
