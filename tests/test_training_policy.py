"""The core's epoch policy and run folder, driven by hand: no framework, no network.

The policy gets losses as a training loop would report them; the tests check what every
backend inherits from it: the epoch records, the events, the schedule and early
stopping, the time budget, the loggers, and a checkpoint state that continues a run
exactly.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from ptychopinn_core.config import Config
from ptychopinn_core.progress import ProgressEvent
from ptychopinn_core.simulation.scan import make_demo_scan
from ptychopinn_core.training.data import prepare_training_data
from ptychopinn_core.training.policy import EpochPolicy
from ptychopinn_core.training.run_dir import CsvMetricsLogger, checkpoint_to_resume, new_log_version
from ptychopinn_core.training.schedule import PlateauSchedule, loss_floor

BASE = {
    "model": {"pattern_size": 16, "n_filters_scale": 1},
    "training": {"epochs": 6, "batch_size": 4, "validation_fraction": 0.25, "seed": 3,
                 "learning_rate": 1e-3, "min_learning_rate": 1e-5, "lr_plateau_patience": 1,
                 "early_stopping_patience": 3},
}


@pytest.fixture(scope="module")
def data():
    config = Config.from_dict(BASE)
    return prepare_training_data(make_demo_scan(20, 16, seed=2), config)


def _config(**overrides) -> Config:
    return Config.from_dict(BASE).with_overrides(overrides)


def _run(policy: EpochPolicy, data, batch_loss, val_loss, epochs: range | None = None) -> list[int]:
    """A loop as a backend writes it; ``batch_loss(epoch, step)``, ``val_loss(epoch)``."""
    ran = []
    policy.start()
    for epoch in epochs if epochs is not None else range(policy.next_epoch, policy.n_epochs):
        if policy.stopped:
            break
        policy.begin_epoch(epoch)
        for step, ids in enumerate(data.epoch_batches(epoch), start=1):
            policy.end_batch(step, batch_loss(epoch, step), len(ids))
        ran.append(epoch)
        if policy.end_epoch(val_loss(epoch)):
            break
    return ran


def test_records_events_and_the_weighted_training_loss(data) -> None:
    events: list[ProgressEvent] = []
    policy = EpochPolicy(data, _config(**{"training.epochs": 2}).training, events.append)
    _run(policy, data, lambda epoch, step: 10.0 * step + epoch, lambda epoch: 5.0 - epoch)
    history = policy.history
    assert [record.epoch for record in history.epochs] == [0, 1]
    sizes = [len(ids) for ids in data.epoch_batches(0)]
    assert sizes[-1] != sizes[0], "the data must end on a partial batch for this test to mean something"
    losses = [10.0 * step for step in range(1, len(sizes) + 1)]
    assert math.isclose(history.epochs[0].train_loss, np.dot(sizes, losses) / sum(sizes), rel_tol=1e-15)
    assert [record.val_loss for record in history.epochs] == [5.0, 4.0]
    batch_events = [e for e in events if e.stage == "batch" and e.epoch == 0]
    assert [e.step for e in batch_events] == list(range(1, len(sizes) + 1))
    assert all(e.n_steps == data.steps_per_epoch and e.n_epochs == 2 for e in events)
    epoch_events = [e for e in events if e.stage == "epoch"]
    assert [e.metrics for e in epoch_events] == [
        {"train_loss": r.train_loss, "val_loss": r.val_loss, "learning_rate": r.learning_rate}
        for r in history.epochs
    ]


def test_schedule_and_early_stopping_follow_the_monitored_loss(data) -> None:
    config = _config(**{"training.epochs": 10})
    policy = EpochPolicy(data, config.training)
    # Improvements count relative to the distance from the loss floor (the Poisson NLL's is
    # far below 0): improves, then a plateau of three.
    floor = loss_floor(data, config.training)
    monitored = [floor + loss for loss in (3.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0)]
    ran = _run(policy, data, lambda epoch, step: 1.0, lambda epoch: monitored[epoch])
    assert ran == [0, 1, 2, 3, 4], "early stopping after 3 epochs without improvement"
    assert policy.stopped
    schedule = PlateauSchedule.from_config(config.training, floor=loss_floor(data, config.training))
    expected = []
    for epoch in ran:
        expected.append(schedule.learning_rate)
        schedule.step(monitored[epoch])
    assert [record.learning_rate for record in policy.history.epochs] == expected
    assert expected == [1e-3, 1e-3, 1e-3, 5e-4, 2.5e-4]
    assert policy.learning_rate == schedule.learning_rate


def test_training_loss_is_monitored_without_a_validation_split(data) -> None:
    config = _config(**{"training.validation_fraction": 0.0, "training.epochs": 10})
    unsplit = prepare_training_data(make_demo_scan(20, 16, seed=2), config)
    policy = EpochPolicy(unsplit, config.training)
    ran = _run(policy, unsplit, lambda epoch, step: 1.0, lambda epoch: None)
    assert ran == [0, 1, 2, 3] and all(record.val_loss is None for record in policy.history.epochs)
    with pytest.raises(ValueError, match="expected a validation loss"):
        _run(EpochPolicy(data, config.training), data, lambda epoch, step: 1.0, lambda epoch: None)


def test_a_diverged_loss_stops_at_once(data) -> None:
    policy = EpochPolicy(data, _config().training)
    assert _run(policy, data, lambda epoch, step: 1.0, lambda epoch: math.nan) == [0]
    assert policy.stopped


def test_max_seconds_stops_at_the_first_epoch_end_and_restarts_with_a_run(data) -> None:
    policy = EpochPolicy(data, _config(**{"training.max_seconds": 1e-9, "training.early_stopping_patience": None}
                                       ).training)
    assert _run(policy, data, lambda epoch, step: 1.0, lambda epoch: 1.0) == [0]
    assert not policy.stopped, "out of time is not the end of the run: a resume continues"
    assert _run(policy, data, lambda epoch, step: 1.0, lambda epoch: 1.0) == [1]


def test_the_state_continues_a_run_exactly(data) -> None:
    """Stop after epoch 2, save the state as JSON, load it into a new policy, finish: the
    history equals an uninterrupted run's, learning rates and early stop included."""
    config = _config(**{"training.epochs": 12})
    floor = loss_floor(data, config.training)
    monitored = [floor + loss for loss in (3.0, 2.0, 2.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.0)]

    def batch_loss(epoch, step):
        return 1.0 + 0.1 * epoch + 0.01 * step

    whole = EpochPolicy(data, config.training)
    _run(whole, data, batch_loss, lambda epoch: monitored[epoch])

    first = EpochPolicy(data, config.training)
    _run(first, data, batch_loss, lambda epoch: monitored[epoch], epochs=range(3))
    saved = json.loads(json.dumps(first.state_dict()))  # what a checkpoint file holds
    events: list[ProgressEvent] = []
    second = EpochPolicy(data, config.training, events.append)
    second.load_state_dict(saved)
    assert second.next_epoch == 3
    _run(second, data, batch_loss, lambda epoch: monitored[epoch])
    def without_seconds(policy):
        return [(r.epoch, r.train_loss, r.val_loss, r.learning_rate) for r in policy.history.epochs]

    assert without_seconds(second) == without_seconds(whole)
    assert second.history.epochs[:3] == first.history.epochs
    assert second.stopped and whole.stopped
    assert min(event.epoch for event in events) == 3
    # A finished run stays finished.
    third = EpochPolicy(data, config.training)
    third.load_state_dict(json.loads(json.dumps(second.state_dict())))
    assert _run(third, data, batch_loss, lambda epoch: monitored[epoch]) == []


def test_bad_states_and_calls_are_refused(data) -> None:
    policy = EpochPolicy(data, _config().training)
    with pytest.raises(ValueError, match="next epoch is 0"):
        policy.begin_epoch(1)
    policy.begin_epoch(0)
    with pytest.raises(ValueError, match="without a batch"):
        policy.end_epoch(1.0)
    with pytest.raises(ValueError, match=r"run/last\.ckpt: invalid training state"):
        policy.load_state_dict({"history": []}, source="run/last.ckpt")
    state = policy.state_dict()
    state["history"] = [{"epoch": 1, "train_loss": 1.0, "val_loss": None, "learning_rate": 1e-3, "seconds": 1.0}]
    with pytest.raises(ValueError, match="are not 0, 1"):
        policy.load_state_dict(state)


def test_loggers_get_one_row_per_epoch(data, tmp_path) -> None:
    folder = new_log_version(tmp_path)
    assert folder == tmp_path / "logs" / "version_0"
    assert new_log_version(tmp_path) == tmp_path / "logs" / "version_1"
    logger = CsvMetricsLogger(folder)
    policy = EpochPolicy(data, _config(**{"training.epochs": 3}).training, loggers=[logger])
    _run(policy, data, lambda epoch, step: 2.0, lambda epoch: 1.0 / (epoch + 1))
    with (folder / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2] == [int(row["step"]) for row in rows]
    for row, record in zip(rows, policy.history.epochs, strict=True):
        assert float(row["train_loss"]) == record.train_loss and float(row["val_loss"]) == record.val_loss
        assert float(row["learning_rate"]) == record.learning_rate and float(row["seconds"]) == record.seconds


def test_checkpoint_to_resume(tmp_path) -> None:
    execution = _config().execution
    assert checkpoint_to_resume(execution, "last.npz") is None
    with pytest.raises(ValueError, match="needs execution.run_dir"):
        checkpoint_to_resume(execution.model_copy(update={"resume": True}), "last.npz")
    resuming = execution.model_copy(update={"resume": True, "run_dir": str(tmp_path)})
    with pytest.raises(ValueError, match=r"expected a checkpoint .*last\.npz, found none"):
        checkpoint_to_resume(resuming, "last.npz")
    (tmp_path / "last.npz").write_bytes(b"")
    assert checkpoint_to_resume(resuming, "last.npz") == tmp_path / "last.npz"


def test_cosine_schedule_follows_the_epoch_budget_and_resumes_exactly(data) -> None:
    """The cosine rate of epoch e is the cosine at e / epochs, whatever the losses; a
    resumed run continues on the same curve."""
    config = _config(**{"training.epochs": 5, "training.lr_schedule": "cosine",
                        "training.early_stopping_patience": None})
    whole = EpochPolicy(data, config.training)
    _run(whole, data, lambda epoch, step: 1.0, lambda epoch: 1.0 + epoch)  # worsening: no plateau rule applies
    rates = [record.learning_rate for record in whole.history.epochs]
    expected = [1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * epoch / 5)) / 2 for epoch in range(5)]
    assert rates == pytest.approx(expected, rel=1e-12)
    first = EpochPolicy(data, config.training)
    _run(first, data, lambda epoch, step: 1.0, lambda epoch: 1.0 + epoch, epochs=range(2))
    second = EpochPolicy(data, config.training)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    _run(second, data, lambda epoch, step: 1.0, lambda epoch: 1.0 + epoch)
    assert [record.learning_rate for record in second.history.epochs] == rates


def test_cosine_schedule_reads_max_seconds_when_time_runs_out_first(data) -> None:
    config = _config(**{"training.epochs": 1000, "training.lr_schedule": "cosine", "training.max_seconds": 1e-9,
                        "training.early_stopping_patience": None})
    policy = EpochPolicy(data, config.training)
    assert _run(policy, data, lambda epoch, step: 1.0, lambda epoch: 1.0) == [0]
    assert policy.budget_used() == 1.0
    assert policy.learning_rate == pytest.approx(1e-5), "the whole time budget is spent: the rate is at its end"
