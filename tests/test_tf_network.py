"""ptychopinn_tf.network: canonical parameters, exact weight round trips, shapes, and
agreement with a plain numpy forward pass of the same weights.

The numpy network below follows ``describe_architecture`` op by op (cross-correlation
with 'same' zero padding, ReLU, 2x2 max-pool, nearest 2x upsampling, the heads'
activations) in float64; TensorFlow in float32 must agree to 1e-5 relative. Since the
PyTorch backend is held to the same reference, this is what makes the two backends'
networks agree with each other.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  # numerics hygiene: torch before tensorflow in one process

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
network_module = pytest.importorskip("ptychopinn_tf.network")

from ptychopinn_core.config import ModelConfig  # noqa: E402
from ptychopinn_core.model.parameters import describe_architecture, initial_weights, parameter_specs  # noqa: E402
from ptychopinn_core.testing import bitwise_equal, relative_error  # noqa: E402

PinnNetwork = network_module.PinnNetwork
canonical_weights = network_module.canonical_weights
load_canonical_weights = network_module.load_canonical_weights

#: float32 network (a few chained convolutions) against float64 numpy.
NETWORK_TOLERANCE = 1e-5


def random_weights(model_config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Glorot kernels and non-zero biases, so every parameter matters."""
    rng = np.random.default_rng(seed)
    weights = initial_weights(parameter_specs(model_config), seed)
    return {
        name: (value + rng.normal(scale=0.05, size=value.shape)).astype(np.float32) if value.ndim == 1 else value
        for name, value in weights.items()
    }


def build(model_config: ModelConfig, weights: dict[str, np.ndarray]) -> PinnNetwork:
    network = PinnNetwork(model_config)
    load_canonical_weights(network, weights)
    return network


# -- numpy reference network -------------------------------------------------------------


def conv3x3_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Cross-correlation, stride 1, zero padding 1: x (B, Cin, H, W), kernel HWIO."""
    height, width = x.shape[-2:]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], kernel.shape[3], height, width))
    for i in range(3):
        for j in range(3):
            out += np.einsum("bchw,co->bohw", padded[:, :, i:i + height, j:j + width], kernel[i, j])
    return out + bias[None, :, None, None]


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "softplus": lambda x: np.logaddexp(0, x),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "pi_tanh": lambda x: np.pi * np.tanh(x),
}


def numpy_network(model_config: ModelConfig, weights: dict[str, np.ndarray], x: np.ndarray):
    outputs = {"diffraction": x.astype(np.float64)}
    for layer in describe_architecture(model_config):
        op = layer["op"]
        if op in ("zero_pad", "complex_combine"):
            continue
        values = outputs[layer["inputs"][0]]
        if op == "maxpool2x2":
            b, c, h, w = values.shape
            values = values.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        elif op == "upsample2x_nearest":
            values = values.repeat(2, axis=2).repeat(2, axis=3)
        else:
            name = layer["name"]
            kernel = weights[f"{name}.kernel"].astype(np.float64)
            values = conv3x3_same(values, kernel, weights[f"{name}.bias"].astype(np.float64))
            values = ACTIVATIONS[op.removeprefix("conv3x3_")](values)
        assert values.shape[1:] == tuple(layer["output_shape"]), layer["name"]
        outputs[layer["name"]] = values
    return outputs["head_amplitude"], outputs["head_phase"]


# -- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"pattern_size": 64, "gridsize": 1},
        {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1, "intensity_scale_trainable": True},
        {"pattern_size": 128, "gridsize": 2, "n_filters_scale": 1},
    ],
)
def test_variables_are_the_canonical_parameters(settings) -> None:
    model_config = ModelConfig(**settings)
    network = PinnNetwork(model_config)
    specs = parameter_specs(model_config)
    assert list(network.variables_by_name) == [spec.name for spec in specs]
    for spec in specs:
        variable = network.variables_by_name[spec.name]
        assert tuple(variable.shape) == spec.shape and variable.dtype == tf.float32, spec.name
    assert len(network.trainable_variables) == len(specs)
    assert (network.log_intensity_scale is not None) == model_config.intensity_scale_trainable


def test_canonical_weights_round_trip_bit_exact() -> None:
    model_config = ModelConfig(pattern_size=32, gridsize=2, n_filters_scale=1, intensity_scale_trainable=True)
    weights = random_weights(model_config, seed=3)
    weights["encoder.0.conv0.bias"][0] = -0.0  # the sign of zero survives too
    weights["log_intensity_scale"] = np.array(0.25, dtype=np.float32)
    network = build(model_config, weights)
    loaded = canonical_weights(network)
    assert list(loaded) == list(weights)
    for name, value in weights.items():
        assert bitwise_equal(loaded[name], value), name
    loaded["head_phase.bias"][...] = 7.0
    assert not np.any(canonical_weights(network)["head_phase.bias"] == 7.0), "canonical_weights must copy"


def test_load_rejects_wrong_weights_naming_the_parameter() -> None:
    model_config = ModelConfig(pattern_size=16, n_filters_scale=1)
    weights = random_weights(model_config, seed=0)
    network = PinnNetwork(model_config)
    wrong = dict(weights, **{"head_amplitude.kernel": np.zeros((3, 3, 32, 2), np.float32)})
    with pytest.raises(ValueError, match=r"head_amplitude\.kernel"):
        load_canonical_weights(network, wrong)
    missing = {name: value for name, value in weights.items() if name != "encoder.0.conv1.bias"}
    with pytest.raises(ValueError, match=r"encoder\.0\.conv1\.bias"):
        load_canonical_weights(network, missing)


@pytest.mark.parametrize("size", [16, 64, 128])
@pytest.mark.parametrize("gridsize", [1, 2])
def test_output_shapes(size: int, gridsize: int) -> None:
    model_config = ModelConfig(pattern_size=size, gridsize=gridsize, n_filters_scale=1)
    network = build(model_config, initial_weights(parameter_specs(model_config), 0))
    channels = gridsize * gridsize
    x = np.random.default_rng(0).uniform(0, 1, size=(2, channels, size, size)).astype(np.float32)
    amplitude, phase = network(tf.constant(x))
    for output in (amplitude, phase):
        assert tuple(output.shape) == (2, channels, size // 2, size // 2) and output.dtype == tf.float32
    assert np.all((amplitude.numpy() > 0) & (amplitude.numpy() < 1)), "sigmoid amplitude"
    assert np.all(np.abs(phase.numpy()) < np.pi), "pi * tanh phase"


@pytest.mark.parametrize(
    "settings",
    [
        {"pattern_size": 16, "gridsize": 1, "amp_activation": "sigmoid"},
        {"pattern_size": 16, "gridsize": 2, "amp_activation": "softplus"},
        {"pattern_size": 16, "gridsize": 1, "amp_activation": "relu"},
        {"pattern_size": 16, "gridsize": 2, "amp_activation": "swish"},
        {"pattern_size": 32, "gridsize": 2, "amp_activation": "sigmoid"},  # one up-block: upsampling
    ],
)
def test_network_matches_numpy_reference(settings) -> None:
    model_config = ModelConfig(n_filters_scale=1, **settings)
    weights = random_weights(model_config, seed=11)
    size, channels = model_config.pattern_size, model_config.group_size
    x = np.random.default_rng(5).uniform(0, 2, size=(3, channels, size, size)).astype(np.float32)
    amplitude, phase = build(model_config, weights)(tf.constant(x))
    expected_amplitude, expected_phase = numpy_network(model_config, weights, x)
    assert relative_error(amplitude.numpy(), expected_amplitude) <= NETWORK_TOLERANCE
    assert relative_error(phase.numpy(), expected_phase) <= NETWORK_TOLERANCE


def test_network_from_canonical_weights_is_deterministic() -> None:
    model_config = ModelConfig(pattern_size=64, gridsize=2, n_filters_scale=1)
    weights = random_weights(model_config, seed=2)
    x = tf.constant(np.random.default_rng(1).uniform(0, 1, size=(4, 4, 64, 64)).astype(np.float32))
    first = [output.numpy() for output in build(model_config, weights)(x)]
    again = [output.numpy() for output in build(model_config, weights)(x)]
    for one, other in zip(first, again):
        assert bitwise_equal(one, other)
