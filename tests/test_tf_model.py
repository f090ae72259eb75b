"""ptychopinn_tf.model.PinnModel: its loss is the core's loss of its forward pass, its
gradients are the derivative of that loss, and its probe/scale/state bookkeeping.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  # numerics hygiene: torch before tensorflow in one process

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
model_module = pytest.importorskip("ptychopinn_tf.model")

from ptychopinn_core.config import Config, ExecutionConfig  # noqa: E402
from ptychopinn_core.model.parameters import initial_weights, parameter_specs  # noqa: E402
from ptychopinn_core.physics import (  # noqa: E402
    circular_probe_mask,
    far_field,
    illuminate,
    pinn_loss,
    poisson_nll,
    supervised_mae,
)
from ptychopinn_core.simulation.scan import make_demo_scan  # noqa: E402
from ptychopinn_core.testing import bitwise_equal, relative_error  # noqa: E402
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.training.data import prepare_training_data  # noqa: E402

PinnModel = model_module.PinnModel
select_device = model_module.select_device

#: float32 loss of a float32 forward pass against the float64 reference of the same amplitudes.
LOSS_TOLERANCE = 1e-5


def make_config(**sections) -> Config:
    values = {
        "model": {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1},
        "training": {"batch_size": 4, "validation_fraction": 0.25, "epochs": 1},
        "execution": {"device": "cpu"},
    }
    for section, settings in sections.items():
        values.setdefault(section, {}).update(settings)
    return Config.from_dict(values)


def setup(config: Config, n_positions: int = 16):
    scan = make_demo_scan(n_positions, size=config.model.pattern_size, seed=7)
    data = prepare_training_data(scan, config)
    state = prepare_model_state(scan, config)
    model = PinnModel(config, state, initial_weights(parameter_specs(config.model), config.training.seed))
    ids = np.arange(data.groups.n_groups)
    return model, data, ids


def test_pinn_loss_is_the_core_loss_of_the_forward_pass() -> None:
    config = make_config(training={"nll_weight": 1.0, "mae_weight": 0.5})
    model, data, ids = setup(config)
    diffraction, offsets = data.gather(ids)
    amplitude = model.forward(diffraction, offsets).amplitude
    expected = pinn_loss(amplitude.astype(np.float64), diffraction.astype(np.float64),
                         model.state.intensity_scale, nll_weight=1.0, mae_weight=0.5)
    actual = float(model.loss(tf.constant(diffraction), tf.constant(offsets)))
    assert abs(actual - expected) <= LOSS_TOLERANCE * abs(expected)


def test_trainable_scale_scales_the_prediction_only() -> None:
    """y = (s X_n)^2 with the fixed s; I_hat = (s_eff A_hat)^2, s_eff = s exp(log_s)."""
    config = make_config(model={"intensity_scale_trainable": True}, training={"mae_weight": 0.25})
    model, data, ids = setup(config)
    weights = model.get_weights()
    weights["log_intensity_scale"] = np.array(0.1, dtype=np.float32)
    model.set_weights(weights)
    diffraction, offsets = data.gather(ids)
    amplitude = model.forward(diffraction, offsets).amplitude.astype(np.float64)
    s = model.state.intensity_scale
    s_eff = s * math.exp(float(np.float32(0.1)))
    observed = s * diffraction.astype(np.float64)
    expected = poisson_nll((s_eff * amplitude) ** 2, observed**2) + 0.25 * np.mean(np.abs(s_eff * amplitude - observed))
    actual = float(model.loss(tf.constant(diffraction), tf.constant(offsets)))
    assert abs(actual - expected) <= LOSS_TOLERANCE * abs(expected)
    assert model.state.intensity_scale == s, "the state keeps s; the correction lives in the weights"


def test_supervised_loss_compares_the_central_window_of_the_network_output() -> None:
    config = make_config(training={"mode": "supervised"})
    model, data, ids = setup(config)
    diffraction, offsets = data.gather(ids)
    truth = data.gather_truth(ids)
    amplitude, phase = (value.numpy().astype(np.float64) for value in model.network(tf.constant(diffraction)))
    window = slice(4, 12)  # N = 16: rows/cols N/4 .. 3N/4
    expected = sum(supervised_mae(amplitude * np.exp(1j * phase), truth[..., window, window].astype(np.complex128)))
    actual = float(model.loss(tf.constant(diffraction), tf.constant(offsets), tf.constant(truth)))
    assert abs(actual - expected) <= LOSS_TOLERANCE * abs(expected)
    with pytest.raises(ValueError, match="truth"):
        model.loss(tf.constant(diffraction), tf.constant(offsets))


@pytest.mark.parametrize("mode", ["pinn", "supervised"])
def test_gradients_are_the_derivative_of_the_loss(mode: str) -> None:
    """Central difference of the loss along the normalised gradient equals |gradient|."""
    config = make_config(training={"mode": mode})
    model, data, ids = setup(config)
    diffraction, offsets = data.gather(ids)
    truth = data.gather_truth(ids) if mode == "supervised" else None
    loss, gradients = model.loss_and_gradients(diffraction, offsets, truth)
    specs = parameter_specs(config.model)
    assert list(gradients) == [spec.name for spec in specs]
    assert all(gradients[spec.name].shape == spec.shape for spec in specs)
    assert all(np.all(np.isfinite(value)) for value in gradients.values())
    norm = math.sqrt(sum(float(np.sum(value.astype(np.float64) ** 2)) for value in gradients.values()))
    weights = model.get_weights()
    # A step that changes the loss by ~1e-3 of its size: far above float32 rounding of
    # the loss, small enough for the curvature term.
    step = 1e-3 * abs(loss) / norm

    def loss_at(sign: float) -> float:
        model.set_weights({name: (weights[name] + sign * step * gradients[name] / norm).astype(np.float32)
                           for name in weights})
        return model.loss_and_gradients(diffraction, offsets, truth)[0]

    slope = (loss_at(+1) - loss_at(-1)) / (2 * step)
    assert slope == pytest.approx(norm, rel=0.02)


def test_forward_amplitude_is_the_physics_of_its_patches() -> None:
    config = make_config()
    model, data, ids = setup(config)
    diffraction, offsets = data.gather(ids)
    result = model.forward(diffraction, offsets)
    expected = np.abs(far_field(illuminate(result.patches.astype(np.complex128),
                                           model.state.probe.astype(np.complex128))))
    assert relative_error(result.amplitude, expected) <= 1e-5
    assert bitwise_equal(model.predict(diffraction, offsets), result.patches) or (
        relative_error(model.predict(diffraction, offsets), result.patches) <= 1e-6
    )


def test_trainable_masked_probe_stays_masked_and_round_trips() -> None:
    config = make_config(model={"probe_trainable": True, "probe_mask": True})
    model, data, ids = setup(config)
    mask = circular_probe_mask(16, dtype=np.float32)
    assert bitwise_equal(model.state.probe, (model.state.probe * mask).astype(np.complex64))
    assert len(model.trainable_variables) == len(parameter_specs(config.model)) + 2
    # A probe with content outside the mask is used (and reported) masked.
    bright = np.ones((16, 16), dtype=np.complex64)
    model.state = type(model.state)(probe=bright, intensity_scale=model.state.intensity_scale,
                                    amplitude_normalisation=model.state.amplitude_normalisation, probe_mask=True)
    np.testing.assert_array_equal(model.state.probe, mask.astype(np.complex64))


def test_inputs_are_checked() -> None:
    model, data, ids = setup(make_config())
    diffraction, offsets = data.gather(ids)
    with pytest.raises(ValueError, match="diffraction shape"):
        model.predict(diffraction[:, :1], offsets)
    with pytest.raises(ValueError, match="offsets shape"):
        model.predict(diffraction, offsets[:2])


def test_device_selection() -> None:
    assert select_device(ExecutionConfig(device="cpu")) == "/CPU:0"
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    assert select_device(ExecutionConfig(device="auto")) == ("/GPU:0" if has_gpu else "/CPU:0")
    if not has_gpu:
        with pytest.raises(ValueError, match="GPU"):
            select_device(ExecutionConfig(device="gpu"))
