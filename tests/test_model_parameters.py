"""The canonical parameter list, architecture description and initial weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ptychopinn_core.config import Config, ModelConfig
from ptychopinn_core.model.parameters import (
    LOG_INTENSITY_SCALE,
    ParameterSpec,
    WeightsError,
    count_parameters,
    decoder_filters,
    decoder_skips,
    describe_architecture,
    effective_intensity_scale,
    encoder_filters,
    glorot_limit,
    initial_weights,
    n_levels,
    network_channels,
    parameter_specs,
    stem_block_side,
    validate_weights,
)

SIZES = [16, 32, 64, 128, 256]
ARCHITECTURES = ["encoder_decoder", "unet", "space_to_depth"]


def conv_count(in_channels: int, out_channels: int) -> int:
    """Scalars of a 3x3 conv: kernel 3*3*in*out plus one bias per output channel."""
    return 9 * in_channels * out_channels + out_channels


def hand_count_n64(
    channels: int, scale: int, trainable_scale: bool = False, architecture: str = "encoder_decoder"
) -> int:
    """Parameter count of the N = 64 network, written out block by block (physics.md §3).

    ``unet``: up-block 1's conv0 also reads encoder block 2's 4f channels (16 x 16), the
    heads also encoder block 1's 2f channels (32 x 32). ``space_to_depth``: block 0 reads
    the stem's 4 channels per pattern channel (at 32 x 32; the blocks' sides do not count).
    """
    f = 32 * scale
    skip_1, skip_head = (4 * f, 2 * f) if architecture == "unet" else (0, 0)
    stem = 4 if architecture == "space_to_depth" else 1
    encoder = (
        conv_count(stem * channels, f) + conv_count(f, f)  # block 0: 64 x 64
        + conv_count(f, 2 * f) + conv_count(2 * f, 2 * f)  # block 1: 32 x 32
        + conv_count(2 * f, 4 * f) + conv_count(4 * f, 4 * f)  # block 2: 16 x 16 -> 8 x 8
    )
    decoder = (
        conv_count(4 * f, 2 * f) + conv_count(2 * f, 2 * f)  # up-block 0: 8 -> 16
        + conv_count(2 * f + skip_1, f) + conv_count(f, f)  # up-block 1: 16 -> 32
    )
    heads = 2 * conv_count(f + skip_head, channels)
    return encoder + 2 * decoder + heads + (1 if trainable_scale else 0)


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("trainable_scale", [False, True])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("group_network", ["shared", "joint"])
def test_parameter_count_n64_matches_hand_formula(gridsize, scale, trainable_scale, architecture, group_network):
    model = ModelConfig(
        pattern_size=64, gridsize=gridsize, n_filters_scale=scale, intensity_scale_trainable=trainable_scale,
        architecture=architecture, group_network=group_network,
    )
    specs = parameter_specs(model)
    channels = gridsize**2 if group_network == "joint" else 1  # shared: one pattern a pass
    assert count_parameters(specs) == hand_count_n64(channels, scale, trainable_scale, architecture)
    assert sum(spec.size for spec in specs) == count_parameters(specs)


def test_default_parameter_count_is_the_documented_number():
    # N = 64, g = 1: the numbers docs/bundle.md quotes (default n_filters_scale 1, and 2).
    assert count_parameters(parameter_specs(ModelConfig())) == 563_874
    assert count_parameters(parameter_specs(ModelConfig(n_filters_scale=2))) == 2_252_098
    # gridsize 2: the default shared network is the gridsize-1 one; a joint one reads 4 channels.
    assert count_parameters(parameter_specs(ModelConfig(gridsize=2))) == 563_874
    joint = ModelConfig(gridsize=2, group_network="joint")
    assert count_parameters(parameter_specs(joint)) == hand_count_n64(4, 1) == 566_472
    # unet, n_filters_scale 1: the numbers docs/physics.md (Architectures) and docs/bundle.md quote.
    assert count_parameters(parameter_specs(ModelConfig(architecture="unet"))) == 638_754
    assert count_parameters(parameter_specs(joint.model_copy(update={"architecture": "unet"}))) == 644_808
    # space_to_depth: only encoder.0.conv0 reads 4 (gridsize 1) or 16 (joint) channels.
    assert count_parameters(parameter_specs(ModelConfig(architecture="space_to_depth"))) == 564_738
    assert count_parameters(parameter_specs(joint.model_copy(update={"architecture": "space_to_depth"}))) == 569_928


def test_the_default_architecture_is_the_encoder_decoder():
    assert ModelConfig().architecture == "encoder_decoder"
    assert not any(layer["op"] == "concat" for layer in describe_architecture(ModelConfig()))


def test_names_and_order_for_n64():
    names = [spec.name for spec in parameter_specs(ModelConfig(pattern_size=64, intensity_scale_trainable=True))]
    convs = [f"encoder.{i}.conv{j}" for i in range(3) for j in range(2)]
    convs += [f"decoder_{b}.{i}.conv{j}" for b in ("amplitude", "phase") for i in range(2) for j in range(2)]
    convs += ["head_amplitude", "head_phase"]
    expected = [f"{conv}.{part}" for conv in convs for part in ("kernel", "bias")] + [LOG_INTENSITY_SCALE]
    assert names == expected


@pytest.mark.parametrize("size, levels", [(16, 1), (32, 2), (64, 3), (128, 4), (256, 5)])
def test_levels_and_filters(size, levels):
    model = ModelConfig(pattern_size=size, n_filters_scale=2)
    assert n_levels(size) == levels
    assert encoder_filters(model) == tuple(64 * 2**i for i in range(levels))
    assert decoder_filters(model) == tuple(64 * 2 ** (levels - 2 - j) for j in range(levels - 1))
    # The spatial side after L poolings is the 8 x 8 bottleneck; after L-1 up-blocks N/2.
    assert size // 2**levels == 8
    assert 8 * 2 ** (levels - 1) == size // 2


@pytest.mark.parametrize("bad", [8, 24, 48, 0, True])
def test_n_levels_rejects_sizes_without_an_8x8_bottleneck(bad):
    with pytest.raises((ValueError, TypeError), match="pattern_size"):
        n_levels(bad)


def test_canonical_layout_is_hwio():
    specs = {spec.name: spec for spec in parameter_specs(
        ModelConfig(pattern_size=64, gridsize=2, n_filters_scale=2, group_network="joint"))}
    assert specs["encoder.0.conv0.kernel"].shape == (3, 3, 4, 64)
    assert specs["encoder.0.conv0.bias"].shape == (64,)
    assert specs["decoder_phase.0.conv0.kernel"].shape == (3, 3, 256, 128)
    assert specs["head_amplitude.kernel"].shape == (3, 3, 64, 4)
    assert specs["head_phase.bias"].shape == (4,)
    assert {spec.kind for spec in specs.values()} == {"conv_kernel", "bias"}


def test_unet_widens_only_the_kernels_that_read_a_skip():
    """N = 64, g = 2, k = 2: up-block 1's conv0 reads 128 (upsampled) + 256 (encoder.2)
    channels, the heads 64 + 128 (encoder.1); every other parameter keeps its shape."""
    settings = {"pattern_size": 64, "gridsize": 2, "n_filters_scale": 2, "group_network": "joint"}
    plain = {spec.name: spec for spec in parameter_specs(ModelConfig(**settings))}
    unet = {spec.name: spec for spec in parameter_specs(ModelConfig(**settings, architecture="unet"))}
    assert list(unet) == list(plain), "same names, same order"
    widened = {name: unet[name].shape for name in unet if unet[name].shape != plain[name].shape}
    assert widened == {
        "decoder_amplitude.1.conv0.kernel": (3, 3, 128 + 256, 64),
        "decoder_phase.1.conv0.kernel": (3, 3, 128 + 256, 64),
        "head_amplitude.kernel": (3, 3, 64 + 128, 4),
        "head_phase.kernel": (3, 3, 64 + 128, 4),
    }


@pytest.mark.parametrize("size, skips", [(16, ()), (32, (1,)), (64, (2, 1)), (128, (3, 2, 1)), (256, (4, 3, 2, 1))])
def test_decoder_skips(size, skips):
    # Up-block j reads encoder block L-1-j; block 0 (side N) never, the decoders end at N/2.
    assert decoder_skips(ModelConfig(pattern_size=size, architecture="unet")) == skips
    assert decoder_skips(ModelConfig(pattern_size=size)) == (None,) * len(skips)


def test_unet_at_n16_is_the_encoder_decoder():
    """No up-block, so no skip: the same parameters and layers."""
    plain, unet = (ModelConfig(pattern_size=16, gridsize=2, architecture=name) for name in ARCHITECTURES[:2])
    assert parameter_specs(unet) == parameter_specs(plain)
    assert describe_architecture(unet) == describe_architecture(plain)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_unet_skips_concatenate_the_pre_pool_features_of_the_same_side(size):
    model = ModelConfig(pattern_size=size, gridsize=2, architecture="unet")
    layers = {layer["name"]: layer for layer in describe_architecture(model)}
    levels = n_levels(size)
    encoded = encoder_filters(model)
    for branch in ("amplitude", "phase"):
        for block, filters in enumerate(decoder_filters(model)):
            skip = layers[f"decoder_{branch}.{block}.skip"]
            source = f"encoder.{levels - 1 - block}.conv1"
            assert skip["op"] == "concat"
            assert skip["inputs"] == (f"decoder_{branch}.{block}.upsample", source)  # decoder first
            side = 8 * 2 ** (block + 1)
            assert layers[source]["output_shape"] == (encoded[levels - 1 - block], side, side)
            assert skip["input_shape"] == ((filters, side, side), layers[source]["output_shape"])
            assert skip["output_shape"] == (filters + encoded[levels - 1 - block], side, side)
            assert skip["parameters"] == ()
            reader = f"decoder_{branch}.{block + 1}.conv0" if block < levels - 2 else f"head_{branch}"
            assert layers[reader]["inputs"] == (skip["name"],)
    # Encoder block 0's features (side N) are never a skip.
    assert not any("encoder.0.conv1" in layer["inputs"] for layer in layers.values() if layer["op"] == "concat")


def test_n16_heads_act_on_the_bottleneck():
    model = ModelConfig(pattern_size=16, gridsize=2, n_filters_scale=1, group_network="joint")
    specs = {spec.name: spec for spec in parameter_specs(model)}
    assert not any(name.startswith("decoder_") for name in specs)
    assert specs["head_amplitude.kernel"].shape == (3, 3, 32, 4)
    layers = {layer["name"]: layer for layer in describe_architecture(model)}
    assert layers["head_amplitude"]["inputs"] == ("encoder.0.pool",)
    assert layers["head_amplitude"]["input_shape"] == (32, 8, 8)
    assert layers["pad_phase"]["output_shape"] == (4, 16, 16)


@pytest.mark.parametrize("gridsize", [1, 2, 3])
def test_a_shared_group_network_describes_one_pattern_a_pass(gridsize):
    """shared: one pass reads one pattern and makes one patch, whatever the gridsize (a
    group is C passes); joint: one pass reads and makes the group's C channels."""
    shared = describe_architecture(ModelConfig(pattern_size=32, gridsize=gridsize))
    joint = describe_architecture(ModelConfig(pattern_size=32, gridsize=gridsize, group_network="joint"))
    assert network_channels(ModelConfig(pattern_size=32, gridsize=gridsize)) == 1
    assert network_channels(ModelConfig(pattern_size=32, gridsize=gridsize, group_network="joint")) == gridsize**2
    assert shared == describe_architecture(ModelConfig(pattern_size=32, gridsize=1))
    assert shared[0]["input_shape"] == (1, 32, 32) and shared[-1]["output_shape"] == (1, 32, 32)
    assert joint[0]["input_shape"] == (gridsize**2, 32, 32) and joint[-1]["output_shape"] == (gridsize**2, 32, 32)
    assert [layer["name"] for layer in shared] == [layer["name"] for layer in joint]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_architecture_shapes_chain(size, gridsize, architecture):
    model = ModelConfig(pattern_size=size, gridsize=gridsize, n_filters_scale=1, amp_activation="softplus",
                        architecture=architecture)
    channels = network_channels(model)  # 1 a pass for the default shared group network
    layers = describe_architecture(model)
    outputs = {"diffraction": (channels, size, size)}
    specs = {spec.name: spec for spec in parameter_specs(model)}
    for layer in layers:
        # Every input is an earlier layer's output (or the network input).
        assert all(name in outputs for name in layer["inputs"]), layer["name"]
        received = tuple(outputs[name] for name in layer["inputs"])
        assert layer["input_shape"] == (received[0] if len(received) == 1 else received), layer["name"]
        c_in, h_in, w_in = received[0]
        c_out, h_out, w_out = layer["output_shape"]
        op = layer["op"]
        if op.startswith("conv3x3"):
            kernel = specs[f"{layer['name']}.kernel"].shape
            bias = specs[f"{layer['name']}.bias"].shape
            # Each conv's input channels are the previous layer's output channels.
            assert kernel == (3, 3, c_in, c_out) and bias == (c_out,)
            assert (h_out, w_out) == (h_in, w_in)  # 'same' padding
        elif op == "maxpool2x2":
            assert (c_out, h_out, w_out) == (c_in, h_in // 2, w_in // 2)
        elif op == "space_to_depth2x":  # the first layer, lossless: 4x the channels, half the side
            assert layer["inputs"] == ("diffraction",) and layer["name"] == "encoder.stem"
            assert (c_out, h_out, w_out) == (4 * c_in, h_in // 2, w_in // 2)
        elif op == "upsample2x_nearest":
            assert (c_out, h_out, w_out) == (c_in, 2 * h_in, 2 * w_in)
        elif op == "zero_pad":
            assert (h_in, w_in) == (size // 2, size // 2) and (h_out, w_out) == (size, size)
        elif op == "concat":
            # Channels add up; every input has the output's side.
            assert len(received) == 2 and c_out == sum(shape[0] for shape in received)
            assert all(shape[1:] == (h_out, w_out) for shape in received)
        else:
            assert op == "complex_combine" and layer["inputs"] == ("pad_amplitude", "pad_phase")
        outputs[layer["name"]] = layer["output_shape"]
    bottleneck = "encoder.%d.conv1" if architecture == "space_to_depth" else "encoder.%d.pool"
    assert outputs[bottleneck % (n_levels(size) - 1)][1:] == (8, 8)
    assert ("encoder.stem" in outputs) == (architecture == "space_to_depth")
    # The stem's block side, the one test of the name the layer list, pools and channels read.
    block_side = stem_block_side(model)
    assert block_side == (2 if architecture == "space_to_depth" else 1)
    first_conv = next(layer for layer in layers if layer["name"] == "encoder.0.conv0")
    assert first_conv["input_shape"] == (channels * block_side**2, size // block_side, size // block_side)
    assert layers[-1]["output_shape"] == (channels, size, size)
    ops = {layer["name"]: layer["op"] for layer in layers}
    assert ops["head_amplitude"] == "conv3x3_softplus" and ops["head_phase"] == "conv3x3_pi_tanh"
    # Listing order is parameter order: the layers own every parameter exactly once, in order.
    owned = [name for layer in layers for name in layer["parameters"]]
    assert owned == [spec.name for spec in parameter_specs(model)]
    concats = [layer for layer in layers if layer["op"] == "concat"]
    assert len(concats) == (2 * (n_levels(size) - 1) if architecture == "unet" else 0)


def test_parameter_spec_size_and_validation():
    assert ParameterSpec("k", (3, 3, 2, 5), "conv_kernel").size == 90
    assert ParameterSpec("b", (5,), "bias").size == 5
    assert ParameterSpec("s", (), "scalar").size == 1
    with pytest.raises(ValueError, match="'k'.*kind 'bias'"):
        ParameterSpec("k", (3, 3, 2, 5), "bias")
    with pytest.raises(ValueError, match="kind"):
        ParameterSpec("k", (3,), "dense")


def test_parameter_specs_wants_the_model_section():
    with pytest.raises(TypeError, match=r"pass config\.model"):
        parameter_specs(Config())


def test_glorot_statistics_of_a_large_kernel():
    spec = ParameterSpec("big.kernel", (3, 3, 256, 128), "conv_kernel")
    limit = math.sqrt(6 / (9 * 256 + 9 * 128))
    assert glorot_limit(spec.shape) == pytest.approx(limit)
    kernel = initial_weights([spec], seed=3)["big.kernel"]
    assert kernel.dtype == np.float32 and kernel.shape == spec.shape
    assert np.abs(kernel).max() <= limit
    # Uniform(-l, l): mean 0, variance l^2 / 3. 295k samples: relative error of the variance ~0.2 %.
    assert abs(float(kernel.mean())) < 0.01 * limit
    assert float(kernel.var(dtype=np.float64)) == pytest.approx(limit**2 / 3, rel=0.01)


def test_initial_weights_deterministic_and_documented_algorithm():
    model = ModelConfig(pattern_size=32, gridsize=2, n_filters_scale=1, intensity_scale_trainable=True)
    specs = parameter_specs(model)
    first, again, other = (initial_weights(specs, seed) for seed in (7, 7, 8))
    assert list(first) == [spec.name for spec in specs]
    for spec in specs:
        np.testing.assert_array_equal(first[spec.name], again[spec.name])
        assert first[spec.name].dtype == np.float32 and first[spec.name].shape == spec.shape
        if spec.kind == "conv_kernel":
            assert not np.array_equal(first[spec.name], other[spec.name])
        else:
            assert not np.any(first[spec.name])  # zero biases, log_intensity_scale 0
    # The docstring's recipe, with plain numpy, gives the same numbers.
    rng = np.random.default_rng(7)
    for spec in specs:
        if spec.kind == "conv_kernel":
            limit = np.sqrt(6 / (spec.shape[0] * spec.shape[1] * (spec.shape[2] + spec.shape[3])))
            expected = rng.uniform(-limit, limit, size=spec.shape).astype(np.float32)
            np.testing.assert_array_equal(first[spec.name], expected)
    assert validate_weights(first, specs) == first


@pytest.fixture
def small():
    specs = parameter_specs(ModelConfig(pattern_size=16, n_filters_scale=1))
    return specs, initial_weights(specs, 0)


def test_validate_weights_missing_and_extra(small):
    specs, weights = small
    del weights["head_phase.bias"]
    weights["head_phase.scale"] = np.zeros(1, np.float32)
    with pytest.raises(WeightsError, match=r"src: .*missing 1 parameter\(s\) \['head_phase.bias'\].*unexpected 1"):
        validate_weights(weights, specs, "src")


def test_validate_weights_shape_dtype_finite(small):
    specs, weights = small
    bad_shape = dict(weights, **{"encoder.0.conv0.kernel": np.zeros((3, 3, 2, 32), np.float32)})
    with pytest.raises(
        ValueError, match=r"'encoder.0.conv0.kernel': expected shape \(3, 3, 1, 32\), received shape=\(3, 3, 2, 32\)"
    ):
        validate_weights(bad_shape, specs, "src")
    bad_dtype = dict(weights, **{"head_amplitude.bias": np.zeros((1,), np.float64)})
    with pytest.raises(TypeError, match=r"'head_amplitude.bias': expected dtype float32, received dtype=float64"):
        validate_weights(bad_dtype, specs, "src")
    with pytest.raises(ValueError):  # a dtype problem is also a ValueError
        validate_weights(bad_dtype, specs, "src")
    nan = weights["encoder.0.conv1.kernel"].copy()
    nan[0, 0, 0, :2] = np.nan
    with pytest.raises(ValueError, match=r"'encoder.0.conv1.kernel': expected finite values, received 2 NaN"):
        validate_weights(dict(weights, **{"encoder.0.conv1.kernel": nan}), specs, "src")
    with pytest.raises(TypeError, match="expected a numpy array, received list"):
        validate_weights(dict(weights, **{"head_phase.bias": [0.0]}), specs, "src")


def test_effective_intensity_scale():
    assert effective_intensity_scale(2.5, {}) == 2.5
    weights = {LOG_INTENSITY_SCALE: np.array(np.log(3.0), dtype=np.float32)}
    assert effective_intensity_scale(2.5, weights) == pytest.approx(7.5, rel=1e-6)


# -- docs/bundle.md shows the N = 64 architecture as describe_architecture gives it ----------

DOC = Path(__file__).resolve().parents[1] / "docs" / "bundle.md"


def architecture_rows(model: ModelConfig) -> list[str]:
    specs = {spec.name: spec for spec in parameter_specs(model)}
    rows = []
    for layer in describe_architecture(model):
        shape_in = layer["input_shape"]
        shown_in = " + ".join(map(str, shape_in)) if len(layer["inputs"]) > 1 else str(shape_in)
        kernel = f"`{specs[layer['parameters'][0]].shape}`" if layer["parameters"] else ""
        rows.append(f"| `{layer['name']}` | {layer['op']} | {shown_in} | {layer['output_shape']} | {kernel} |")
    return rows


def differing_rows(architecture: str) -> list[str]:
    """The rows of the N = 64 ``architecture`` that differ from the encoder_decoder's."""
    plain = set(architecture_rows(ModelConfig(pattern_size=64)))
    return [row for row in architecture_rows(ModelConfig(pattern_size=64, architecture=architecture))
            if row not in plain]


def test_docs_show_the_n64_architecture():
    text = DOC.read_text()
    missing = [row for row in architecture_rows(ModelConfig(pattern_size=64)) if row not in text]
    assert not missing, "docs/bundle.md is stale; regenerate rows:\n" + "\n".join(missing)
    for architecture in ARCHITECTURES[1:]:
        missing = [row for row in differing_rows(architecture) if row not in text]
        assert not missing, f"docs/bundle.md is stale; regenerate the {architecture} rows:\n" + "\n".join(missing)


if __name__ == "__main__":  # regenerate the tables: python tests/test_model_parameters.py
    print("\n".join(architecture_rows(ModelConfig(pattern_size=64))))
    for name in ARCHITECTURES[1:]:
        print(f"\n{name}:")
        print("\n".join(differing_rows(name)))
