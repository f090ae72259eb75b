"""The plateau schedule and early stopping every backend shares."""

from __future__ import annotations

import math

from ptychopinn_core.config import Config
from ptychopinn_core.schedule import EarlyStopping, PlateauSchedule


def test_plateau_halves_after_patience_epochs_and_respects_the_floor():
    schedule = PlateauSchedule.from_config(Config().training)
    rates = [schedule.step(loss) for loss in [10, 9, 9, 9, 9, 9, 9, 9, 9, 9]]
    assert rates[:3] == [1e-3, 1e-3, 1e-3]
    assert rates[3] == 5e-4  # second epoch without improvement after the best (9)
    assert rates[5] == 2.5e-4
    assert min(rates) == 1e-4 and rates[-1] == 1e-4


def test_plateau_counts_only_relative_improvements():
    schedule = PlateauSchedule(learning_rate=1.0, factor=0.5, patience=1)
    schedule.step(100.0)
    assert schedule.step(100.0 - 1e-6) == 0.5, "a negligible improvement is a plateau"
    assert schedule.step(50.0) == 0.5, "a real improvement keeps the rate"


def test_early_stopping_stops_after_patience_and_remembers_the_best_epoch():
    stopper = EarlyStopping(patience=2)
    decisions = [stopper.should_stop(epoch, loss) for epoch, loss in enumerate([5, 4, 4.5, 4.2])]
    assert decisions == [False, False, False, True]
    assert stopper.best_epoch == 1 and stopper.best == 4


def test_early_stopping_disabled_and_divergence():
    assert not any(EarlyStopping(patience=None).should_stop(e, 1.0) for e in range(20))
    assert EarlyStopping(patience=None).should_stop(0, math.nan)
