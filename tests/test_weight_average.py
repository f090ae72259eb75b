"""``training.ema_decay`` in the TensorFlow and PyTorch training loops.

That the trained model (and each epoch's event) holds the core's moving average of the
raw weights is the conformance kit's check for every backend
(``test_the_weight_average_is_the_cores``); here: validation scores the average, a resumed
run continues it, and the core's definition itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.simulation import make_demo_scan
from ptychopinn_core.training.averaging import decay_at, moving_average
from ptychopinn_core.training.data import prepare_training_data

DECAY = 0.5  # reached at step 10 of 15: the warm-up and the cap are both in these runs
BACKENDS = {"tf": "tensorflow", "torch": "pytorch"}


def _config(**training) -> Config:
    return Config.from_dict({
        "model": {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1},
        "training": {"epochs": 3, "batch_size": 4, "validation_fraction": 0.25, "seed": 1, "ema_decay": DECAY,
                     **training},
        "execution": {"device": "cpu"},
    })


def _run(framework, config: Config):
    backend = BackendRegistry.discover().get(BACKENDS[framework.name])
    scan = make_demo_scan(24, size=16, seed=3)
    data = prepare_training_data(scan, config)
    model = backend.build_model(config, prepare_model_state(scan, config), initial_weights(parameter_specs(config.model), 0))
    steps, epochs = [], []

    def record(event) -> None:
        (steps if event.stage == "batch" else epochs).append(model.get_weights())

    history = backend.train(model, data, config, record)
    return backend, model, data, history, steps, epochs


def _assert_close(weights, reference) -> None:
    for name, value in reference.items():
        np.testing.assert_allclose(weights[name], value, rtol=2e-5, atol=1e-6, err_msg=name)


def test_validation_scores_the_average(framework) -> None:
    _, model, data, history, _, _ = _run(framework, _config())
    losses = [framework.model_loss(model, *data.gather(ids)) * len(ids) for ids in data.validation_batches()]
    expected = sum(losses) / data.n_validation
    assert history.epochs[-1].val_loss == pytest.approx(expected, rel=1e-6)


def test_a_resumed_run_continues_the_average(framework, tmp_path) -> None:
    straight_model = _run(framework, _config(epochs=3))[1]
    run_dir = str(tmp_path / "run")
    _run(framework, _config(epochs=2).with_overrides({"execution.run_dir": run_dir}))
    _, resumed, _, history, _, _ = _run(
        framework, _config(epochs=3).with_overrides({"execution.run_dir": run_dir, "execution.resume": True}))
    assert len(history.epochs) == 3
    _assert_close(resumed.get_weights(), straight_model.get_weights())


def test_the_core_definition() -> None:
    weights = [{"w": np.array([1.0])}, {"w": np.array([3.0])}, {"w": np.array([5.0])}]
    assert moving_average(weights[:1], 0.8)["w"] == pytest.approx(1.0)  # starts at the first step's weights
    # delta_2 = 1/10, delta_3 = 2/11: the warm-up, below the decay
    second = 0.1 * 1.0 + 0.9 * 3.0
    assert moving_average(weights[:2], 0.8)["w"] == pytest.approx(second)
    assert moving_average(weights, 0.8)["w"] == pytest.approx(2 / 11 * second + 9 / 11 * 5.0)
    assert decay_at(0.999, 100) == pytest.approx(99 / 108) and decay_at(0.999, 100_000) == 0.999
    with pytest.raises(ValueError, match="step"):
        decay_at(0.8, 0)
