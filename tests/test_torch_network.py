"""ptychopinn_torch.network: canonical parameters, weight round trips, shapes, and a numpy oracle.

The numpy forward pass below is written from docs/physics.md §4 with the canonical
HWIO kernels as they are (no transposes), so agreeing with it pins down the layout
conversion, the 'same' padding, the pooling/upsampling conventions and the heads: what
cross-backend parity (TensorFlow vs PyTorch from the same weights) rests on.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ptychopinn_core.config import ModelConfig  # noqa: E402
from ptychopinn_core.model.parameters import (  # noqa: E402
    describe_architecture,
    initial_weights,
    parameter_specs,
)
from ptychopinn_core.testing import bitwise_equal, relative_error  # noqa: E402
from ptychopinn_torch.network import PinnNetwork, canonical_weights, load_canonical_weights  # noqa: E402

#: Network output vs the float64 numpy oracle: float32 convolutions (sums of a few
#: hundred products per output) chained over a few layers.
NETWORK_TOLERANCE = 1e-5


# -- a numpy oracle ---------------------------------------------------------------------------------


def conv3x3_same(values: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Cross-correlation with one zero pixel of padding: (B, I, H, W), HWIO -> (B, O, H, W)."""
    height, width = values.shape[-2:]
    padded = np.pad(values, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((values.shape[0], kernel.shape[3], height, width))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("bihw,io->bohw", padded[:, :, dy:dy + height, dx:dx + width], kernel[dy, dx])
    return out + bias[None, :, None, None]


def relu(values: np.ndarray) -> np.ndarray:
    return np.maximum(values, 0)


def max_pool(values: np.ndarray) -> np.ndarray:
    batch, channels, height, width = values.shape
    return values.reshape(batch, channels, height // 2, 2, width // 2, 2).max(axis=(3, 5))


def upsample(values: np.ndarray) -> np.ndarray:
    return values.repeat(2, axis=2).repeat(2, axis=3)


ACTIVATIONS = {
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "softplus": lambda v: np.log1p(np.exp(v)),
    "relu": relu,
    "swish": lambda v: v / (1 + np.exp(-v)),
}


def numpy_forward(weights: dict[str, np.ndarray], model_config: ModelConfig, diffraction: np.ndarray):
    """docs/physics.md §4 in float64, read off describe_architecture's layer list."""
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    outputs = {"diffraction": diffraction.astype(np.float64)}
    for layer in describe_architecture(model_config):
        name, op = layer["name"], layer["op"]
        if op == "complex_combine":
            continue
        source = outputs[layer["inputs"][0]]
        if op == "conv3x3_relu":
            result = relu(conv3x3_same(source, w[f"{name}.kernel"], w[f"{name}.bias"]))
        elif op == "maxpool2x2":
            result = max_pool(source)
        elif op == "upsample2x_nearest":
            result = upsample(source)
        elif op == "conv3x3_pi_tanh":
            result = math.pi * np.tanh(conv3x3_same(source, w[f"{name}.kernel"], w[f"{name}.bias"]))
        elif op.startswith("conv3x3_"):
            activation = ACTIVATIONS[op.removeprefix("conv3x3_")]
            result = activation(conv3x3_same(source, w[f"{name}.kernel"], w[f"{name}.bias"]))
        elif op == "zero_pad":
            continue
        else:  # pragma: no cover - a new op in the core must be added here
            raise AssertionError(f"unknown op {op!r}")
        assert result.shape[1:] == tuple(layer["output_shape"]), name
        outputs[name] = result
    return outputs["head_amplitude"], outputs["head_phase"]


def build(model_config: ModelConfig, seed: int = 0) -> tuple[PinnNetwork, dict[str, np.ndarray]]:
    network = PinnNetwork(model_config)
    weights = initial_weights(parameter_specs(model_config), seed)
    rng = np.random.default_rng(seed)
    # Non-zero biases, so that a bias mix-up shows.
    weights = {name: np.asarray(value + (rng.normal(scale=0.1, size=value.shape) if name.endswith(".bias") else 0),
                                dtype=np.float32) for name, value in weights.items()}
    load_canonical_weights(network, weights)
    return network, weights


# -- tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 64, 128])
@pytest.mark.parametrize("gridsize", [1, 2])
def test_parameters_match_the_canonical_list(size: int, gridsize: int) -> None:
    model_config = ModelConfig(pattern_size=size, gridsize=gridsize, intensity_scale_trainable=gridsize == 2)
    network = PinnNetwork(model_config)
    specs = parameter_specs(model_config)
    weights = canonical_weights(network)
    assert list(weights) == [spec.name for spec in specs]  # names, in forward order
    for spec in specs:
        assert weights[spec.name].shape == spec.shape and weights[spec.name].dtype == np.float32
    assert sum(p.numel() for p in network.parameters()) == sum(spec.size for spec in specs)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_canonical_weights_round_trip_bit_exact(gridsize: int) -> None:
    model_config = ModelConfig(pattern_size=64, gridsize=gridsize, n_filters_scale=1, intensity_scale_trainable=True)
    network, weights = build(model_config, seed=3)
    back = canonical_weights(network)
    for name, value in weights.items():
        assert bitwise_equal(back[name], value), name
    back[next(iter(back))][...] = 7  # copies: the network must not change
    assert not np.any(canonical_weights(network)[next(iter(back))] == 7)
    # The torch layout is the transpose: kernel HWIO (kh, kw, in, out) -> weight OIHW.
    kernel = weights["encoder.0.conv0.kernel"]
    torch_weight = network.encoder[0].conv0.weight.detach().numpy()
    np.testing.assert_array_equal(torch_weight, kernel.transpose(3, 2, 0, 1))


def test_load_rejects_a_wrong_shape_naming_the_parameter() -> None:
    model_config = ModelConfig(pattern_size=16, n_filters_scale=1)
    network, weights = build(model_config)
    weights["head_phase.kernel"] = np.zeros((3, 3, 32, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"head_phase\.kernel"):
        load_canonical_weights(network, weights)


@pytest.mark.parametrize("size", [16, 64, 128])
@pytest.mark.parametrize("channels", [1, 4])
def test_output_shapes(size: int, channels: int) -> None:
    model_config = ModelConfig(pattern_size=size, gridsize=int(math.isqrt(channels)), n_filters_scale=1)
    network = PinnNetwork(model_config)
    amplitude, phase = network(torch.rand(2, channels, size, size))
    assert amplitude.shape == phase.shape == (2, channels, size // 2, size // 2)
    assert amplitude.dtype == phase.dtype == torch.float32
    assert torch.all(amplitude > 0) and torch.all(amplitude < 1)  # sigmoid
    assert torch.all(phase.abs() <= math.pi)


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("activation", ["sigmoid", "swish"])
def test_network_matches_numpy_oracle(size: int, gridsize: int, activation: str) -> None:
    model_config = ModelConfig(pattern_size=size, gridsize=gridsize, n_filters_scale=1, amp_activation=activation)
    network, weights = build(model_config, seed=size + gridsize)
    rng = np.random.default_rng(size)
    diffraction = rng.uniform(0, 2, size=(3, gridsize**2, size, size)).astype(np.float32)
    with torch.no_grad():
        amplitude, phase = network(torch.from_numpy(diffraction))
    expected_amplitude, expected_phase = numpy_forward(weights, model_config, diffraction)
    assert relative_error(amplitude.numpy(), expected_amplitude) <= NETWORK_TOLERANCE
    assert relative_error(phase.numpy(), expected_phase) <= NETWORK_TOLERANCE


@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_other_amplitude_activations(activation: str) -> None:
    model_config = ModelConfig(pattern_size=16, n_filters_scale=1, amp_activation=activation)
    network, weights = build(model_config, seed=5)
    diffraction = np.random.default_rng(5).uniform(0, 2, size=(2, 1, 16, 16)).astype(np.float32)
    with torch.no_grad():
        amplitude, _ = network(torch.from_numpy(diffraction))
    expected, _ = numpy_forward(weights, model_config, diffraction)
    assert relative_error(amplitude.numpy(), expected) <= NETWORK_TOLERANCE


def test_network_is_deterministic_and_batch_independent() -> None:
    model_config = ModelConfig(pattern_size=64, gridsize=2, n_filters_scale=1)
    network, _ = build(model_config, seed=11)
    diffraction = torch.from_numpy(np.random.default_rng(11).uniform(0, 2, size=(5, 4, 64, 64)).astype(np.float32))
    with torch.no_grad():
        first = network(diffraction)
        second = network(diffraction)
        alone = network(diffraction[2:3])
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    for a, b in zip(first, alone):
        assert relative_error(a[2:3].numpy(), b.numpy()) <= 1e-6
