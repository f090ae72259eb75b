"""The epoch policy: what happens between training steps, decided once for every backend.

A backend's training loop keeps the framework mechanics (compiled steps, devices,
distribution, checkpoint files) and calls an :class:`EpochPolicy` around them, the way
Keras keeps its callbacks out of its per-backend trainers::

    policy = EpochPolicy(data, config.training, progress, loggers)
    policy.start()                                  # the time budget counts from here
    for epoch in range(policy.next_epoch, config.training.epochs):
        if policy.stopped:
            break
        learning_rate = policy.begin_epoch(epoch)    # set it on the optimiser
        for step, ids in enumerate(data.epoch_batches(epoch), start=1):
            policy.end_batch(step, train_step(ids), len(ids))
        if policy.end_epoch(validation_loss()):      # None without a validation split
            break
    return policy.history

It owns the epoch's bookkeeping (the batch-size-weighted training loss, the epoch
record, the progress events and the metrics loggers), the learning-rate
schedule, early stopping, ``training.max_seconds``, and the state a checkpoint must hold
to continue a run exactly (:meth:`state_dict`, plain JSON values).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ptychopinn_core.progress import ProgressCallback, ProgressEvent
from ptychopinn_core.config import TrainingConfig
from ptychopinn_core.model.state import EpochRecord, History
from ptychopinn_core.training.data import TrainingData
from ptychopinn_core.training.schedule import EarlyStopping, loss_floor, make_schedule

__all__ = ["EpochPolicy", "MetricsLogger"]


class MetricsLogger(Protocol):
    """Receives one row of metrics per epoch (Lightning's loggers have this shape)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def save(self) -> None: ...


class EpochPolicy:
    """Epoch bookkeeping, schedule, early stopping and time budget of one training run.

    Parameters
    ----------
    data : TrainingData
        Gives the number of steps per epoch, whether there is a validation split and
        the loss floor (:func:`~ptychopinn_core.training.schedule.loss_floor`).
    training : TrainingConfig
        ``epochs``, ``learning_rate`` and the schedule settings, ``early_stopping_patience``,
        ``max_seconds``.
    progress : callable, optional
        Receives a :class:`~ptychopinn_core.backends.ProgressEvent` after every batch and
        every epoch.
    loggers : iterable of MetricsLogger
        Each gets the epoch's metrics (plus ``epoch`` and ``seconds``) at its end.
    """

    def __init__(
        self,
        data: TrainingData,
        training: TrainingConfig,
        progress: ProgressCallback | None = None,
        loggers: Iterable[MetricsLogger] = (),
    ) -> None:
        floor = loss_floor(data, training)
        self.n_epochs = training.epochs
        self.steps_per_epoch = data.steps_per_epoch
        self.has_validation = data.n_validation > 0
        self.max_seconds = training.max_seconds
        self.schedule = make_schedule(training, floor=floor)
        self.early_stopping = EarlyStopping(patience=training.early_stopping_patience, floor=floor)
        self.records: list[EpochRecord] = []
        #: Early stopping fired or the loss diverged: the run is over, also after a resume.
        self.stopped = False
        self._progress = progress if progress is not None else (lambda event: None)
        self._loggers = list(loggers)
        self._run_started = time.perf_counter()
        self._begin(epoch=self.next_epoch)

    # -- the loop's calls --------------------------------------------------------------

    @property
    def next_epoch(self) -> int:
        """The epoch to run next: 0, or the first one a restored run has not finished."""
        return len(self.records)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the current (or next) epoch."""
        return self._learning_rate

    @property
    def history(self) -> History:
        return History(tuple(self.records))

    def start(self) -> None:
        """Start the time budget: each run, a resumed one too, gets ``max_seconds`` afresh."""
        self._run_started = time.perf_counter()

    def begin_epoch(self, epoch: int) -> float:
        """Start epoch ``epoch``; returns the learning rate to train it with."""
        if epoch != self.next_epoch:
            raise ValueError(f"epoch {epoch} begun, but the policy's next epoch is {self.next_epoch}")
        self._begin(epoch)
        return self._learning_rate

    def end_batch(self, step: int, loss: float, n_groups: int) -> None:
        """Record the mean loss of a (global) batch of ``n_groups`` groups; report it."""
        loss = float(loss)
        self._loss_sum += loss * n_groups
        self._count += n_groups
        self._progress(ProgressEvent("batch", self._epoch, self.n_epochs, step, self.steps_per_epoch,
                                     {"train_loss": loss, "learning_rate": self._learning_rate}))

    def end_epoch(self, val_loss: float | None) -> bool:
        """Close the epoch: record, report, log, step the schedule; True when training should stop.

        ``val_loss``: the mean loss over all validation groups after the epoch's updates
        (None without a validation split). The monitored loss is the validation loss, or
        the training loss without a split. Stops after the last epoch, when early stopping
        fires, when the monitored loss is not finite, or when ``max_seconds`` have passed
        since :meth:`start`.
        """
        if self._count == 0:
            raise ValueError(f"epoch {self._epoch} ended without a batch")
        if self.has_validation and val_loss is None:
            raise ValueError(f"epoch {self._epoch}: expected a validation loss (the data have a validation split)")
        train_loss = self._loss_sum / self._count
        val_loss = float(val_loss) if val_loss is not None else None
        record = EpochRecord(self._epoch, train_loss, val_loss, self._learning_rate,
                             time.perf_counter() - self._epoch_started)
        self.records.append(record)
        metrics = {"train_loss": train_loss, "learning_rate": self._learning_rate}
        if val_loss is not None:
            metrics["val_loss"] = val_loss
        for logger in self._loggers:
            logger.log_metrics({**metrics, "epoch": record.epoch, "seconds": record.seconds}, step=record.epoch)
            logger.save()
        self._progress(ProgressEvent("epoch", self._epoch, self.n_epochs, self.steps_per_epoch,
                                     self.steps_per_epoch, metrics))
        monitored = val_loss if val_loss is not None else train_loss
        if self.early_stopping.should_stop(record.epoch, monitored):
            self.stopped = True
        self._learning_rate = self.schedule.step(monitored, self.budget_used())
        return self.stopped or self.next_epoch >= self.n_epochs or self.out_of_time()

    def out_of_time(self) -> bool:
        return self.max_seconds is not None and time.perf_counter() - self._run_started >= self.max_seconds

    def budget_used(self) -> float:
        """Share of the budget spent: epochs done / ``epochs``, or of ``max_seconds`` if larger."""
        used = self.next_epoch / self.n_epochs
        if self.max_seconds is not None:
            used = max(used, (time.perf_counter() - self._run_started) / self.max_seconds)
        return min(used, 1.0)

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What continues this run exactly: plain JSON values (no pickling on resume)."""
        return {
            "history": [record.to_json() for record in self.records],
            "schedule": self.schedule.state_dict(),
            "early_stopping": self.early_stopping.state_dict(),
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: Mapping[str, Any], source: str = "checkpoint") -> None:
        """Continue from :meth:`state_dict`'s values; ``source`` names the file in errors."""
        try:
            records = [EpochRecord.from_json(record) for record in state["history"]]
            self.schedule.load_state_dict(state["schedule"])
            self.early_stopping.load_state_dict(state["early_stopping"])
            self.stopped = bool(state["stopped"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: invalid training state: {error!r}") from None
        if [record.epoch for record in records] != list(range(len(records))):
            raise ValueError(f"{source}: invalid training state: epochs {[r.epoch for r in records]} are not 0, 1, ...")
        self.records = records
        self._begin(epoch=self.next_epoch)

    # -- helpers -------------------------------------------------------------------------

    def _begin(self, epoch: int) -> None:
        self._epoch = epoch
        self._loss_sum = 0.0
        self._count = 0
        self._learning_rate = self.schedule.learning_rate
        self._epoch_started = time.perf_counter()

