"""The plateau schedule and early stopping every backend shares."""

from __future__ import annotations

import math

import pytest

from ptychopinn_core.config import Config
from ptychopinn_core.training.schedule import EarlyStopping, PlateauSchedule


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


def test_improvement_is_relative_to_the_floor_not_to_the_loss():
    # A Poisson NLL at 1e9 photons: about -4e6, improving by tens per epoch. Relative to
    # |loss| (1e-4 * 4e6 = 400) that is a plateau; relative to loss - floor it is not.
    floor = -3_990_000.0
    without = PlateauSchedule(learning_rate=1.0, factor=0.5, patience=1)
    with_floor = PlateauSchedule(learning_rate=1.0, factor=0.5, patience=1, floor=floor)
    losses = [-3_980_000.0 - 50.0 * epoch for epoch in range(5)]
    assert [without.step(loss) for loss in losses][-1] < 1.0
    assert [with_floor.step(loss) for loss in losses] == [1.0] * 5
    stopper = EarlyStopping(patience=2, floor=floor)
    assert not any(stopper.should_stop(epoch, loss) for epoch, loss in enumerate(losses))


def test_loss_floor_is_the_loss_of_a_perfect_prediction():
    from ptychopinn_core.physics.losses import pinn_loss
    from ptychopinn_core.training.schedule import loss_floor
    from ptychopinn_core.simulation import make_demo_scan
    from ptychopinn_core.training.data import prepare_training_data

    config = Config().with_overrides({"model.pattern_size": 16, "model.gridsize": 2,
                                      "training.validation_fraction": 0.25, "training.mae_weight": 0.5})
    data = prepare_training_data(make_demo_scan(40, size=16, seed=3), config)
    diffraction = data.gather(data.validation_groups)[0].astype(float)
    expected = pinn_loss(diffraction, diffraction, data.intensity_scale, 1.0, 0.5)
    assert loss_floor(data, config.training) == pytest.approx(expected, rel=1e-12)
    # Any other prediction costs more: the floor is a lower bound of the monitored loss.
    assert pinn_loss(diffraction * 1.01, diffraction, data.intensity_scale, 1.0, 0.5) > expected
    assert loss_floor(data, config.with_overrides({"training.mode": "supervised"}).training) == 0.0
    no_split = prepare_training_data(make_demo_scan(40, size=16, seed=3),
                                     config.with_overrides({"training.validation_fraction": 0.0}))
    everything = no_split.gather(no_split.train_groups)[0].astype(float)
    assert loss_floor(no_split, config.training) == pytest.approx(
        pinn_loss(everything, everything, no_split.intensity_scale, 1.0, 0.5), rel=1e-12)


def test_cosine_anneals_over_the_budget_whatever_the_loss():
    from ptychopinn_core.training.schedule import CosineSchedule, make_schedule

    config = Config().with_overrides({"training.lr_schedule": "cosine", "training.learning_rate": 2e-3,
                                      "training.min_learning_rate": 2e-5})
    schedule = make_schedule(config.training)
    assert isinstance(schedule, CosineSchedule) and schedule.learning_rate == 2e-3
    rates = [schedule.step(loss, used) for loss, used in [(5.0, 0.25), (1.0, 0.5), (9.0, 0.75), (1.0, 1.0)]]
    # rate = min + (initial - min) (1 + cos(pi used)) / 2
    expected = [2e-5 + (2e-3 - 2e-5) * (1 + math.cos(math.pi * used)) / 2 for used in (0.25, 0.5, 0.75, 1.0)]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[-1] == pytest.approx(2e-5) and rates[1] == pytest.approx((2e-3 + 2e-5) / 2)
    assert schedule.step(1.0, 3.0) == pytest.approx(2e-5), "past the budget the rate stays at its end"
    restored = CosineSchedule.from_config(config.training)
    restored.load_state_dict(schedule.state_dict())
    assert restored.learning_rate == schedule.learning_rate
    assert isinstance(make_schedule(Config().training), PlateauSchedule), "plateau stays the default"
