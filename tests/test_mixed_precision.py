"""``execution.precision = "bf16-mixed"``: the network in bfloat16 in training, in both backends alike.

The convolutions, pools and upsamplings run in bfloat16 in the training loop (PyTorch:
Lightning's autocast; TensorFlow: the network's compute dtype); the heads' activations,
the physics, the loss, the weights, their gradients and the optimiser stay float32, and
inference runs the float32 network. On CPUs with bfloat16 matrix units this trains ~3x
faster (docs/benchmarks.md); here: that the network really rounds, by how little, that
the two backends round alike, and that the loss and the weights stay float32.
"""

from __future__ import annotations

import numpy as np

from frameworks import load_framework
from ptychopinn_core.config import Config
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.simulation import make_demo_scan
from ptychopinn_core.training.data import prepare_training_data
from ptychopinn_core.training.schedule import batch_loss_floor

SIZE = 32


def _setup(framework, precision: str):
    config = Config.from_dict({
        "model": {"pattern_size": SIZE, "gridsize": 2, "n_filters_scale": 1},
        "training": {"batch_size": 8},
        "execution": {"device": "cpu", "precision": precision},
    })
    scan = make_demo_scan(40, size=SIZE, seed=3)
    data = prepare_training_data(scan, config)
    diffraction, offsets = data.gather(data.epoch_batches(0)[0])
    weights = initial_weights(parameter_specs(config.model), 0)
    model = framework.model.PinnModel(config, prepare_model_state(scan, config), weights)
    return model, data, diffraction, offsets


def _relative(values: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(values - reference)) / np.max(np.abs(reference)))


def test_the_network_rounds_to_bfloat16_in_training_only(framework) -> None:
    model, _, diffraction, _ = _setup(framework, "bf16-mixed")
    exact = framework.model_heads(model, diffraction)  # inference: the float32 network
    mixed = framework.training_heads(model, diffraction)
    for part, value, reference in zip(("amplitude", "phase"), mixed, exact):
        assert value.dtype == np.float32 and reference.dtype == np.float32, part
        # bfloat16 keeps 8 significant bits (relative spacing 2**-8 = 4e-3): the outputs
        # move (measured 5e-4 amplitude, 1.1e-2 phase of their largest values) ...
        assert 1e-5 < _relative(value, reference) < 3e-2, part
    # ... where the float32 training precision is the inference network exactly.
    model32, _, _, _ = _setup(framework, "32")
    for value, reference in zip(framework.training_heads(model32, diffraction), exact):
        np.testing.assert_array_equal(value, reference)


def test_the_training_loss_stays_float32_and_close(framework) -> None:
    model, data, diffraction, offsets = _setup(framework, "bf16-mixed")
    floor = batch_loss_floor(diffraction, data.intensity_scale, model.config.training)
    exact = framework.model_loss(model, diffraction, offsets)
    mixed = framework.training_loss(model, diffraction, offsets)
    # Measured from the floor (the Poisson term's constant dwarfs what the network moves).
    assert abs(mixed - exact) < 1e-3 * (exact - floor)


def test_the_backends_round_alike() -> None:
    """TensorFlow and PyTorch in bfloat16 from the same weights: far closer than bfloat16's own error."""
    tf_framework, torch_framework = load_framework("tf"), load_framework("torch")
    tf_model, _, diffraction, _ = _setup(tf_framework, "bf16-mixed")
    torch_model, _, _, _ = _setup(torch_framework, "bf16-mixed")
    tf_mixed = tf_framework.training_heads(tf_model, diffraction)
    torch_mixed = torch_framework.training_heads(torch_model, diffraction)
    tf_exact = tf_framework.model_heads(tf_model, diffraction)
    for part, tf_value, torch_value, exact in zip(("amplitude", "phase"), tf_mixed, torch_mixed, tf_exact):
        rounding = _relative(tf_value, exact)
        # Measured 2e-7 / 7e-8 against 5e-4 / 1.1e-2: the same roundings at the same places.
        assert _relative(torch_value, tf_value) < 0.05 * rounding, part


def test_bf16_training_keeps_float32_weights(framework) -> None:
    from ptychopinn_core.backends import BackendRegistry

    backend = BackendRegistry.discover().get({"tf": "tensorflow", "torch": "pytorch"}[framework.name])
    model, _, _, _ = _setup(framework, "bf16-mixed")
    config = model.config.with_overrides({"training.epochs": 3, "training.validation_fraction": 0.25})
    data = prepare_training_data(make_demo_scan(40, size=SIZE, seed=3), config)
    before = model.get_weights()
    history = backend.train(model, data, config, lambda event: None)
    losses = [record.train_loss for record in history.epochs]
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] < losses[0]
    after = model.get_weights()
    assert all(value.dtype == np.float32 for value in after.values())
    assert any(not np.array_equal(after[name], before[name]) for name in before)
