"""ptychopinn_tf.training: what is TensorFlow's own.

The epoch policy, kill-and-resume and the run-folder settings are checked for every
backend by the conformance kit (tests/test_conformance.py); here: one trace for all
batch sizes, Kingma & Ba's Adam, MirroredStrategy (explicit, or "auto" with two devices)
equal to single-device training, the checkpoint file and the TensorBoard logger.
"""

from __future__ import annotations

import importlib.util
import json
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
from ptychopinn_core.parity.tolerances import TOLERANCES  # noqa: E402
from ptychopinn_core.simulation.scan import make_demo_scan  # noqa: E402
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.training.data import prepare_training_data  # noqa: E402
from ptychopinn_tf.model import PinnModel  # noqa: E402

MIRRORED_LOSS_TOLERANCE = TOLERANCES["mirrored_loss"].relative
MIRRORED_WEIGHT_TOLERANCE = TOLERANCES["mirrored_weights"].relative


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


def test_checkpoint_is_plain_arrays_and_checked_on_resume(tmp_path) -> None:
    config, data, model = small_setup(epochs=1)
    config = config.with_overrides({"execution.run_dir": str(tmp_path), "execution.logger": '"none"'})
    training.train_model(model, data, config, lambda event: None)
    path = tmp_path / training.LAST_CHECKPOINT
    with np.load(path, allow_pickle=False) as saved:  # no pickled object anywhere
        assert str(saved["format"]) == training.CHECKPOINT_FORMAT
        state = json.loads(str(saved["policy"]))
        n_variables = len([name for name in saved.files if name.startswith("variable_")])
        assert n_variables == len(model.trainable_variables)
        assert any(name.startswith("optimizer_") for name in saved.files)
    assert [record["epoch"] for record in state["history"]] == [0]
    assert not (tmp_path / "logs").exists(), "logger 'none' writes no log"
    # A checkpoint of another model is refused with the file and the reason.
    other, other_data, other_model = small_setup(epochs=2)
    other = other.with_overrides({"model.n_filters_scale": 2, "execution.run_dir": str(tmp_path),
                                  "execution.resume": True})
    other_model = PinnModel(other, other_model.state, initial_weights(parameter_specs(other.model), 0))
    with pytest.raises(ValueError, match=r"last\.npz: key 'variable_0' has shape .* another configuration"):
        training.train_model(other_model, other_data, other, lambda event: None)


def test_tensorboard_logger_writes_the_epoch_metrics(tmp_path) -> None:
    config, data, model = small_setup(epochs=2)
    config = config.with_overrides({"execution.run_dir": str(tmp_path), "execution.logger": "tensorboard"})
    history = training.train_model(model, data, config, lambda event: None)
    files = list((tmp_path / "logs" / "version_0").glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars = {}
    for event in tf.compat.v1.train.summary_iterator(str(files[0])):
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert scalars["val_loss"] == pytest.approx([record.val_loss for record in history.epochs], rel=1e-6)
    assert scalars["learning_rate"] == pytest.approx([record.learning_rate for record in history.epochs])
    with pytest.raises(ValueError, match="execution.logger='mlflow' is not offered by the tensorflow backend"):
        training.train_model(model, data, config.with_overrides({"execution.logger": "mlflow"}), lambda e: None)


def test_one_trace_serves_every_batch_size() -> None:
    config, data, model = small_setup()
    optimizer = training._make_optimizer(config.training)
    step = training._single_device_step(model, optimizer, None, supervised=False)
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
    for name, strategy, devices in (("single", "single", 1), ("mirrored", "mirrored", "auto"),
                                    ("auto", "auto", 2)):
        config = Config.from_dict({
            "model": {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1,
                      "probe_trainable": True, "intensity_scale_trainable": True},
            # 16 groups in batches of 5: 5, 5, 5, 1 -> the last step leaves one replica empty.
            "training": {"batch_size": 5, "validation_fraction": 0.0, "epochs": 1, "seed": 0},
            "execution": {"strategy": strategy, "devices": devices, "device": "cpu"},
        })
        scan = make_demo_scan(16, size=16, seed=5)
        data = prepare_training_data(scan, config)
        model = PinnModel(config, prepare_model_state(scan, config),
                          initial_weights(parameter_specs(config.model), 0))
        losses = []
        train_model(model, data, config,
                    lambda event: losses.append(event.metrics["train_loss"]) if event.stage == "batch" else None)
        results[name] = {
            "losses": losses,
            "weights": {name: value.tolist() for name, value in model.get_weights().items()},
            "probe": np.abs(model.state.probe).tolist(),
            "batch_sizes": [len(b) for b in data.epoch_batches(0)],
        }
    results["replicas"] = _make_strategy(config.execution).num_replicas_in_sync  # "auto" on 2 devices
    print("RESULT" + json.dumps(results))
    """
)


def test_mirrored_strategy_equals_single_device_training() -> None:
    """2 logical CPUs, MirroredStrategy (named, or "auto" with devices=2) vs one device:
    same losses per step, same weights."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True,
                               env=environment, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT"))
    results = json.loads(line.removeprefix("RESULT"))
    assert results["replicas"] == 2
    single, mirrored = results["single"], results["mirrored"]
    assert results["auto"] == mirrored, "strategy 'auto' with devices=2 is MirroredStrategy"
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
