"""Each backend's ``PinnNetwork``: canonical parameters, exact weight round trips, shapes,
and agreement with a plain numpy forward pass of the same weights.

Every test runs once per installed framework (the ``framework`` fixture). The numpy
network below follows ``describe_architecture`` op by op (cross-correlation with 'same'
zero padding, ReLU, 2x2 max-pool, nearest 2x upsampling, the unet's channel
concatenations, the heads' activations) in
float64 with the canonical HWIO kernels as they are (no transposes), so agreeing with
it pins down each backend's layout conversion, padding, pooling/upsampling
conventions and heads. Both backends in float32 must agree with it to ``TOLERANCES["network"]`` (1e-5):
what cross-backend parity (TensorFlow vs PyTorch from the same weights) rests on.
"""

from __future__ import annotations

import functools
import math
import typing

import numpy as np
import pytest

from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.parameters import (
    describe_architecture,
    initial_weights,
    network_channels,
    parameter_specs,
)
from ptychopinn_core.parity.tolerances import TOLERANCES
from ptychopinn_core.testing import bitwise_equal, relative_error

#: float32 network against the float64 numpy oracle (the reason is in the table).
NETWORK_TOLERANCE = TOLERANCES["network"].relative
#: Every value of model.architecture (the config field is the one list).
ARCHITECTURES = typing.get_args(ModelConfig.model_fields["architecture"].annotation)


def random_weights(model_config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Glorot kernels and non-zero biases, so every parameter (and a bias mix-up) shows."""
    rng = np.random.default_rng(seed)
    weights = initial_weights(parameter_specs(model_config), seed)
    return {
        name: (value + rng.normal(scale=0.1, size=value.shape)).astype(np.float32) if value.ndim == 1 else value
        for name, value in weights.items()
    }


def build(framework, model_config: ModelConfig, weights: dict[str, np.ndarray]):
    network = framework.network.PinnNetwork(model_config)
    framework.network.load_canonical_weights(network, weights)
    return network


# -- a numpy oracle ---------------------------------------------------------------------------


def conv3x3_same(values: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Cross-correlation with one zero pixel of padding: (B, I, H, W), HWIO -> (B, O, H, W)."""
    height, width = values.shape[-2:]
    padded = np.pad(values, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((values.shape[0], kernel.shape[3], height, width))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("bihw,io->bohw", padded[:, :, dy:dy + height, dx:dx + width], kernel[dy, dx])
    return out + bias[None, :, None, None]


ACTIVATIONS = {
    "relu": lambda v: np.maximum(v, 0),
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "softplus": lambda v: np.logaddexp(0, v),
    "swish": lambda v: v / (1 + np.exp(-v)),
    "pi_tanh": lambda v: math.pi * np.tanh(v),
}


def numpy_space_to_depth(source: np.ndarray) -> np.ndarray:
    """docs/physics.md §3 as written: channel ``4k + 2dy + dx`` holds pixel ``(2y + dy, 2x + dx)``
    of channel ``k`` (loops, not a reshape, so that the backends' reshapes are checked)."""
    batch, channels, height, width = source.shape
    result = np.empty((batch, 4 * channels, height // 2, width // 2), dtype=source.dtype)
    for k in range(channels):
        for dy in range(2):
            for dx in range(2):
                result[:, 4 * k + 2 * dy + dx] = source[:, k, dy::2, dx::2]
    return result


def numpy_forward(weights: dict[str, np.ndarray], model_config: ModelConfig, diffraction: np.ndarray):
    """docs/physics.md §3 in float64, read off describe_architecture's layer list (one pass
    of ``network_channels`` channels: a shared group network folds the group into the batch)."""
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    groups, group_size, size = diffraction.shape[:2] + diffraction.shape[-1:]
    passes = diffraction.reshape(-1, network_channels(model_config), size, size)
    outputs = {"diffraction": passes.astype(np.float64)}
    for layer in describe_architecture(model_config):
        name, op = layer["name"], layer["op"]
        if op in ("zero_pad", "complex_combine"):
            continue
        source = outputs[layer["inputs"][0]]
        if op == "concat":  # (B, C, H, W): channels are axis 1, in the order of the inputs
            result = np.concatenate([outputs[source_name] for source_name in layer["inputs"]], axis=1)
        elif op == "space_to_depth2x":
            result = numpy_space_to_depth(source)
        elif op == "maxpool2x2":
            batch, channels, height, width = source.shape
            result = source.reshape(batch, channels, height // 2, 2, width // 2, 2).max(axis=(3, 5))
        elif op == "upsample2x_nearest":
            result = source.repeat(2, axis=2).repeat(2, axis=3)
        elif op.startswith("conv3x3_") and op.removeprefix("conv3x3_") in ACTIVATIONS:
            activation = ACTIVATIONS[op.removeprefix("conv3x3_")]
            result = activation(conv3x3_same(source, w[f"{name}.kernel"], w[f"{name}.bias"]))
        else:  # pragma: no cover - a new op in the core must be added here
            raise AssertionError(f"unknown op {op!r}")
        assert result.shape[1:] == tuple(layer["output_shape"]), name
        outputs[name] = result
    half = (groups, group_size, size // 2, size // 2)
    return outputs["head_amplitude"].reshape(half), outputs["head_phase"].reshape(half)


@functools.cache
def oracle_case(size: int, gridsize: int, activation: str, architecture: str = "encoder_decoder",
                group_network: str = "shared"):
    """Config, weights, input and the numpy oracle's output of one case, computed once for
    both frameworks."""
    model_config = ModelConfig(pattern_size=size, gridsize=gridsize, n_filters_scale=1, amp_activation=activation,
                               architecture=architecture, group_network=group_network)
    weights = random_weights(model_config, seed=size + gridsize)
    diffraction = np.random.default_rng(size).uniform(0, 2, size=(3, gridsize**2, size, size)).astype(np.float32)
    return model_config, weights, diffraction, numpy_forward(weights, model_config, diffraction)


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        *({"pattern_size": size, "gridsize": gridsize, "intensity_scale_trainable": gridsize == 2}
          for size in (16, 64, 128) for gridsize in (1, 2)),
        {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1, "intensity_scale_trainable": True},
        {"pattern_size": 128, "gridsize": 2, "n_filters_scale": 1},
        {"pattern_size": 64, "gridsize": 2, "architecture": "unet", "intensity_scale_trainable": True},
        {"pattern_size": 64, "gridsize": 2, "group_network": "joint"},
        {"pattern_size": 32, "gridsize": 3, "group_network": "joint", "architecture": "unet"},
        {"pattern_size": 64, "gridsize": 2, "architecture": "space_to_depth"},
        {"pattern_size": 16, "gridsize": 2, "group_network": "joint", "architecture": "space_to_depth"},
    ],
    ids=lambda settings: "-".join(f"{value}" for value in settings.values()),
)
def test_parameters_are_the_canonical_list(framework, settings) -> None:
    model_config = ModelConfig(**settings)
    network = framework.network.PinnNetwork(model_config)
    specs = parameter_specs(model_config)
    weights = framework.network.canonical_weights(network)
    assert list(weights) == [spec.name for spec in specs]  # names, in forward order
    for spec in specs:
        assert weights[spec.name].shape == spec.shape and weights[spec.name].dtype == np.float32, spec.name
    native = framework.parameters(network)  # what the framework trains
    assert len(native) == len(specs)
    assert sum(count for count, _ in native) == sum(spec.size for spec in specs)
    assert {dtype for _, dtype in native} == {"float32"}
    assert (network.log_intensity_scale is not None) == model_config.intensity_scale_trainable


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_canonical_weights_round_trip_bit_exact(framework, gridsize: int, architecture: str) -> None:
    model_config = ModelConfig(pattern_size=32, gridsize=gridsize, n_filters_scale=1, intensity_scale_trainable=True,
                               architecture=architecture)
    weights = random_weights(model_config, seed=3)
    weights["encoder.0.conv0.bias"][0] = -0.0  # the sign of zero survives too
    weights["log_intensity_scale"] = np.array(0.25, dtype=np.float32)
    network = build(framework, model_config, weights)
    loaded = framework.network.canonical_weights(network)
    assert list(loaded) == list(weights)
    for name, value in weights.items():
        assert bitwise_equal(loaded[name], value), name
    loaded["head_phase.bias"][...] = 7.0
    assert not np.any(framework.network.canonical_weights(network)["head_phase.bias"] == 7.0), \
        "canonical_weights must copy"
    # The framework's own layout: TensorFlow keeps HWIO, torch transposes to OIHW.
    kernel = weights["encoder.0.conv0.kernel"]
    np.testing.assert_array_equal(framework.native_kernel(network, "encoder.0.conv0.kernel"),
                                  kernel.transpose(framework.kernel_layout))


def test_load_rejects_wrong_weights_naming_the_parameter(framework) -> None:
    model_config = ModelConfig(pattern_size=16, n_filters_scale=1)
    weights = random_weights(model_config, seed=0)
    network = build(framework, model_config, weights)
    for name in ("head_amplitude.kernel", "head_phase.kernel"):
        wrong = dict(weights, **{name: np.zeros((3, 3, 32, 2), np.float32)})
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            framework.network.load_canonical_weights(network, wrong)
    missing = {name: value for name, value in weights.items() if name != "encoder.0.conv1.bias"}
    with pytest.raises(ValueError, match=r"encoder\.0\.conv1\.bias"):
        framework.network.load_canonical_weights(network, missing)
    # Nothing was copied by the failed loads.
    for name, value in framework.network.canonical_weights(network).items():
        assert bitwise_equal(value, weights[name]), name


@pytest.mark.parametrize("size", [16, 64, 128])
@pytest.mark.parametrize("gridsize", [1, 2])
def test_output_shapes(framework, size: int, gridsize: int) -> None:
    model_config = ModelConfig(pattern_size=size, gridsize=gridsize, n_filters_scale=1)
    network = build(framework, model_config, initial_weights(parameter_specs(model_config), 0))
    channels = gridsize * gridsize
    x = np.random.default_rng(0).uniform(0, 1, size=(2, channels, size, size)).astype(np.float32)
    amplitude, phase = framework.run_network(network, x)
    for output in (amplitude, phase):
        assert output.shape == (2, channels, size // 2, size // 2) and output.dtype == np.float32
    assert np.all((amplitude > 0) & (amplitude < 1)), "sigmoid amplitude"
    assert np.all(np.abs(phase) < np.pi), "pi * tanh phase"


@pytest.mark.parametrize("size", [16, 32])  # 32: one up-block, the upsampling
@pytest.mark.parametrize(("gridsize", "group_network"), [(1, "shared"), (2, "shared"), (2, "joint")])
@pytest.mark.parametrize("activation", ["sigmoid", "swish", "softplus", "relu"])
def test_network_matches_numpy_oracle(framework, size: int, gridsize: int, group_network: str,
                                      activation: str) -> None:
    model_config, weights, diffraction, (expected_amplitude, expected_phase) = oracle_case(
        size, gridsize, activation, group_network=group_network
    )
    amplitude, phase = framework.run_network(build(framework, model_config, weights), diffraction)
    assert relative_error(amplitude, expected_amplitude) <= NETWORK_TOLERANCE
    assert relative_error(phase, expected_phase) <= NETWORK_TOLERANCE


@pytest.mark.parametrize("size", [32, 64])  # 32: the head reads a skip; 64: an up-block's conv0 too
@pytest.mark.parametrize(("gridsize", "group_network"), [(1, "shared"), (2, "shared"), (2, "joint")])
def test_unet_matches_numpy_oracle(framework, size: int, gridsize: int, group_network: str) -> None:
    """The skips' order (decoder channels, then encoder) and sources are numbers here, not
    shapes: a swapped concatenation or a post-pool source changes every output."""
    model_config, weights, diffraction, (expected_amplitude, expected_phase) = oracle_case(
        size, gridsize, "sigmoid", "unet", group_network
    )
    amplitude, phase = framework.run_network(build(framework, model_config, weights), diffraction)
    assert relative_error(amplitude, expected_amplitude) <= NETWORK_TOLERANCE
    assert relative_error(phase, expected_phase) <= NETWORK_TOLERANCE


def test_unet_without_its_skip_channels_is_the_encoder_decoder(framework) -> None:
    """Zero the kernel rows that read the encoder's channels of each concatenation: the
    unet then computes the encoder_decoder whose kernels are the remaining (decoder)
    rows, which come first. And the skips do change the output when they are not zero."""
    plain_config = ModelConfig(pattern_size=64, gridsize=2, n_filters_scale=1)
    unet_config = ModelConfig(pattern_size=64, gridsize=2, n_filters_scale=1, architecture="unet")
    unet_weights = random_weights(unet_config, seed=5)
    cut, plain_weights = dict(unet_weights), {}
    for spec in parameter_specs(plain_config):
        value = unet_weights[spec.name]
        if value.shape != spec.shape:  # a kernel reading a concatenation: (3, 3, decoder + encoder, out)
            decoder_rows = spec.shape[2]
            cut[spec.name] = value.copy()
            cut[spec.name][:, :, decoder_rows:, :] = 0
            value = value[:, :, :decoder_rows, :].copy()
        plain_weights[spec.name] = value
    diffraction = np.random.default_rng(4).uniform(0, 2, size=(2, 4, 64, 64)).astype(np.float32)
    expected = framework.run_network(build(framework, plain_config, plain_weights), diffraction)
    without_skips = framework.run_network(build(framework, unet_config, cut), diffraction)
    with_skips = framework.run_network(build(framework, unet_config, unet_weights), diffraction)
    for plain, unet, full in zip(expected, without_skips, with_skips):
        assert relative_error(unet, plain) <= NETWORK_TOLERANCE
        assert relative_error(full, plain) > 1e-3


def test_network_is_deterministic_and_batch_independent(framework) -> None:
    """Two networks from the same canonical weights compute the same bits; one group's
    output does not depend on the rest of the batch."""
    model_config = ModelConfig(pattern_size=64, gridsize=2, n_filters_scale=1)
    weights = random_weights(model_config, seed=2)
    diffraction = np.random.default_rng(11).uniform(0, 2, size=(5, 4, 64, 64)).astype(np.float32)
    network = build(framework, model_config, weights)
    first = framework.run_network(network, diffraction)
    again = framework.run_network(build(framework, model_config, weights), diffraction)
    alone = framework.run_network(network, diffraction[2:3])
    for one, other in zip(first, again):
        assert bitwise_equal(one, other)
    for batched, single in zip(first, alone):
        assert relative_error(batched[2:3], single) <= 1e-6


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_shared_group_network_is_the_single_pattern_network_on_each_pattern(framework, architecture) -> None:
    """model.group_network = "shared": gridsize 2 has the gridsize-1 parameter list, loads
    gridsize-1 weights as they are, and predicts each pattern of a group exactly as the
    gridsize-1 network predicts it alone: the patterns meet only in the physics."""
    single_config = ModelConfig(pattern_size=32, gridsize=1, n_filters_scale=1, architecture=architecture)
    shared_config = single_config.model_copy(update={"gridsize": 2, "group_network": "shared"})
    assert parameter_specs(shared_config) == parameter_specs(single_config)
    weights = random_weights(single_config, seed=8)
    diffraction = np.random.default_rng(9).uniform(0, 2, size=(3, 4, 32, 32)).astype(np.float32)
    grouped = framework.run_network(build(framework, shared_config, weights), diffraction)
    alone = framework.run_network(build(framework, single_config, weights), diffraction.reshape(12, 1, 32, 32))
    for group_output, single_output in zip(grouped, alone):
        assert group_output.shape == (3, 4, 16, 16)
        assert relative_error(group_output, single_output.reshape(3, 4, 16, 16)) <= 1e-6
    # The joint network is a different one: its first conv reads 4 times the channels.
    joint_config = shared_config.model_copy(update={"group_network": "joint"})
    single_in = parameter_specs(single_config)[0].shape[2]  # 1, or 4 after space_to_depth's stem
    assert parameter_specs(joint_config)[0].shape == (3, 3, 4 * single_in, 32)


@pytest.mark.parametrize("size", [16, 64])  # 16: one encoder block, no pool at all; 64: two pools, two up-blocks
@pytest.mark.parametrize(("gridsize", "group_network"), [(1, "shared"), (2, "shared"), (2, "joint")])
def test_space_to_depth_matches_numpy_oracle(framework, size: int, gridsize: int, group_network: str) -> None:
    """The stem's channel order is numbers here: the joint case rearranges 4 channels, so an
    order with the block offset first (``tf.nn.space_to_depth``'s, ONNX's) changes every output."""
    model_config, weights, diffraction, (expected_amplitude, expected_phase) = oracle_case(
        size, gridsize, "sigmoid", "space_to_depth", group_network
    )
    amplitude, phase = framework.run_network(build(framework, model_config, weights), diffraction)
    assert relative_error(amplitude, expected_amplitude) <= NETWORK_TOLERANCE
    assert relative_error(phase, expected_phase) <= NETWORK_TOLERANCE
