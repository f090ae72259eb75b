"""ptychopinn_tf.training: the core's schedule and batches, one trace for all batch
sizes, and MirroredStrategy equal to single-device training.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  # numerics hygiene: torch before tensorflow in one process

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
training = pytest.importorskip("ptychopinn_tf.training")

from ptychopinn_core.config import Config  # noqa: E402
from ptychopinn_core.model.parameters import initial_weights, parameter_specs  # noqa: E402
from ptychopinn_core.training.schedule import PlateauSchedule, loss_floor  # noqa: E402
from ptychopinn_core.simulation.scan import make_demo_scan  # noqa: E402
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.training.data import prepare_training_data  # noqa: E402
from ptychopinn_tf.model import PinnModel  # noqa: E402

#: Mirrored vs single device, per step: the same float32 computation with the gradient
#: sum split in two, so the losses differ only by reordered float32 sums (~1e-7) that
#: Adam carries into the next steps.
MIRRORED_LOSS_TOLERANCE = 1e-5
MIRRORED_WEIGHT_TOLERANCE = 1e-4


def small_setup(**training_settings):
    config = Config.from_dict({
        "model": {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1},
        "training": {"batch_size": 4, "validation_fraction": 0.25, "epochs": 4, **training_settings},
        "execution": {"device": "cpu"},
    })
    scan = make_demo_scan(18, size=16, seed=3)
    data = prepare_training_data(scan, config)
    model = PinnModel(config, prepare_model_state(scan, config), initial_weights(parameter_specs(config.model), 0))
    return config, data, model


def test_history_follows_the_core_batches_and_schedule() -> None:
    config, data, model = small_setup(lr_plateau_patience=1, learning_rate=5e-3, early_stopping_patience=None)
    events = []
    history = training.train_model(model, data, config, events.append)
    assert [record.epoch for record in history.epochs] == [0, 1, 2, 3]
    for record in history.epochs:
        batches = data.epoch_batches(record.epoch)
        losses = [event.metrics["train_loss"] for event in events
                  if event.stage == "batch" and event.epoch == record.epoch]
        sizes = [len(batch) for batch in batches]
        assert len(losses) == len(batches) and sizes[-1] < sizes[0], "the case must have a partial last batch"
        assert record.train_loss == pytest.approx(np.average(losses, weights=sizes), rel=1e-12)
        assert record.val_loss is not None and math.isfinite(record.val_loss)
    # The learning rates are the core's PlateauSchedule stepped on the validation losses,
    # improvements measured from the data's loss floor.
    schedule = PlateauSchedule.from_config(config.training, floor=loss_floor(data, config.training))
    expected = [config.training.learning_rate]
    for record in history.epochs[:-1]:
        expected.append(schedule.step(record.val_loss))
    assert [record.learning_rate for record in history.epochs] == expected
    epoch_events = [event for event in events if event.stage == "epoch"]
    assert [event.metrics["learning_rate"] for event in epoch_events] == expected


def test_one_trace_serves_every_batch_size() -> None:
    config, data, model = small_setup()
    optimizer = training._make_optimizer(config.training)
    step = training._single_device_step(model, optimizer, supervised=False)
    for size in (4, 3, 1, 4):
        diffraction, offsets = data.gather(data.train_groups[:size])
        assert np.isfinite(float(step(tf.constant(diffraction), tf.constant(offsets))))
    assert step.experimental_get_tracing_count() == 1


def test_optimizer_is_kingma_ba_adam() -> None:
    """One step equals Algorithm 1 of Kingma & Ba (eps on the bias-corrected sqrt(v))."""
    config = Config.from_dict({"training": {"learning_rate": 0.1, "adam_epsilon": 1e-3}})
    variable = tf.Variable([1.0, -2.0, 0.5])
    optimizer = training._make_optimizer(config.training)
    gradients = [np.array([0.5, -1e-4, 2.0], np.float32), np.array([0.25, 1e-4, -1.0], np.float32)]
    expected = variable.numpy().astype(np.float64)
    first = second = np.zeros(3)
    for step, gradient in enumerate(gradients, start=1):
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
        first = 0.9 * first + 0.1 * gradient
        second = 0.999 * second + 0.001 * gradient.astype(np.float64) ** 2
        expected -= 0.1 / (1 - 0.9**step) * first / (np.sqrt(second / (1 - 0.999**step)) + 1e-3)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    # Two logical CPU devices; must happen before TensorFlow initialises its runtime.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

    from ptychopinn_core.config import Config
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.simulation.scan import make_demo_scan
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.training.data import prepare_training_data
    from ptychopinn_tf.model import PinnModel
    from ptychopinn_tf.training import _make_strategy, train_model

    results = {}
    for strategy in ("single", "mirrored"):
        config = Config.from_dict({
            "model": {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1,
                      "probe_trainable": True, "intensity_scale_trainable": True},
            # 16 groups in batches of 5: 5, 5, 5, 1 -> the last step leaves one replica empty.
            "training": {"batch_size": 5, "validation_fraction": 0.0, "epochs": 1, "seed": 0},
            "execution": {"strategy": strategy, "device": "cpu"},
        })
        scan = make_demo_scan(16, size=16, seed=5)
        data = prepare_training_data(scan, config)
        model = PinnModel(config, prepare_model_state(scan, config),
                          initial_weights(parameter_specs(config.model), 0))
        losses = []
        train_model(model, data, config,
                    lambda event: losses.append(event.metrics["train_loss"]) if event.stage == "batch" else None)
        results[strategy] = {
            "losses": losses,
            "weights": {name: value.tolist() for name, value in model.get_weights().items()},
            "probe": np.abs(model.state.probe).tolist(),
            "batch_sizes": [len(b) for b in data.epoch_batches(0)],
        }
    results["replicas"] = _make_strategy(config.execution).num_replicas_in_sync
    print("RESULT" + json.dumps(results))
    """
)


def test_mirrored_strategy_equals_single_device_training() -> None:
    """2 logical CPUs, MirroredStrategy vs one device: same losses per step, same weights."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True,
                               env=environment, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT"))
    results = json.loads(line.removeprefix("RESULT"))
    assert results["replicas"] == 2
    single, mirrored = results["single"], results["mirrored"]
    assert 1 in single["batch_sizes"], "the case must include a batch that leaves a replica empty"
    single_losses, mirrored_losses = np.array(single["losses"]), np.array(mirrored["losses"])
    assert single_losses.shape == mirrored_losses.shape == (len(single["batch_sizes"]),)
    relative = np.abs(mirrored_losses - single_losses) / np.abs(single_losses)
    print(f"\n[mirrored vs single] steps {len(relative)}, max relative loss difference {relative.max():.2e}")
    assert relative.max() <= MIRRORED_LOSS_TOLERANCE
    assert single_losses[-1] < single_losses[0], "training must move the weights for the comparison to mean much"
    for name, value in single["weights"].items():
        expected, actual = np.asarray(value), np.asarray(mirrored["weights"][name])
        error = np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-12)
        assert error <= MIRRORED_WEIGHT_TOLERANCE, f"{name}: relative difference {error:.2e}"
    probe_error = np.linalg.norm(np.subtract(mirrored["probe"], single["probe"])) / np.linalg.norm(single["probe"])
    assert probe_error <= MIRRORED_WEIGHT_TOLERANCE
