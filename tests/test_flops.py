"""FLOP counts of the model against hand counts written out layer by layer."""

from __future__ import annotations

import math

import pytest

from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.flops import (
    TRAINING_STEP_FACTOR,
    far_field_flops,
    layer_flops,
    model_flops,
    network_flops,
    overlap_flops,
)
from ptychopinn_core.model.parameters import describe_architecture


def conv(in_channels: int, out_channels: int, side: int, activation: int = 1) -> int:
    """A 3x3 'same' conv on side x side: 2 FLOPs per multiply-add, bias, activation."""
    outputs = out_channels * side * side
    return 2 * 9 * in_channels * outputs + outputs + activation * outputs


def pool(channels: int, side_out: int) -> int:
    """Max-pool 2x2: three compares per output element."""
    return 3 * channels * side_out * side_out


SIGMOID, PI_TANH = 3, 2


def hand_network_n16(channels: int, scale: int) -> int:
    """N = 16: one encoder block, no decoder; heads on the 8 x 8 bottleneck."""
    f = 32 * scale
    encoder = conv(channels, f, 16) + conv(f, f, 16) + pool(f, 8)
    heads = conv(f, channels, 8, SIGMOID) + conv(f, channels, 8, PI_TANH)
    combine = 4 * channels * 16 * 16  # cos, sin and two multiplies per output pixel
    return encoder + heads + combine


def hand_network_n64(channels: int, scale: int, architecture: str = "encoder_decoder") -> int:
    """N = 64: three encoder blocks, two decoders of two up-blocks (physics.md §3).

    ``unet``: the concatenations cost nothing; up-block 1's conv0 reads 4f more channels
    (encoder block 2, 16 x 16) and each head 2f more (encoder block 1, 32 x 32).
    ``space_to_depth``: the stem costs nothing; the blocks run at 32, 16 and 8, the first
    reading 4 channels per pattern channel, the last without a pool.
    """
    f = 32 * scale
    skip_1, skip_head = (4 * f, 2 * f) if architecture == "unet" else (0, 0)
    if architecture == "space_to_depth":
        encoder = (
            conv(4 * channels, f, 32) + conv(f, f, 32) + pool(f, 16)
            + conv(f, 2 * f, 16) + conv(2 * f, 2 * f, 16) + pool(2 * f, 8)
            + conv(2 * f, 4 * f, 8) + conv(4 * f, 4 * f, 8)
        )
    else:
        encoder = (
            conv(channels, f, 64) + conv(f, f, 64) + pool(f, 32)
            + conv(f, 2 * f, 32) + conv(2 * f, 2 * f, 32) + pool(2 * f, 16)
            + conv(2 * f, 4 * f, 16) + conv(4 * f, 4 * f, 16) + pool(4 * f, 8)
        )
    decoder = conv(4 * f, 2 * f, 8) + conv(2 * f, 2 * f, 8) + conv(2 * f + skip_1, f, 16) + conv(f, f, 16)
    heads = conv(f + skip_head, channels, 32, SIGMOID) + conv(f + skip_head, channels, 32, PI_TANH)
    return encoder + 2 * decoder + heads + 4 * channels * 64 * 64


def hand_far_field(size: int) -> float:
    """One channel: O * P (6/pixel), FFT 5 n log2 n, division by N (2), modulus (4)."""
    pixels = size * size
    return 6 * pixels + 5 * pixels * math.log2(pixels) + 2 * pixels + 4 * pixels


def passes_and_channels(gridsize: int, group_network: str) -> tuple[int, int]:
    """A group's network passes and the channels of each: C of 1 (shared) or 1 of C (joint)."""
    channels = gridsize**2
    return (channels, 1) if group_network == "shared" else (1, channels)


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("group_network", ["shared", "joint"])
def test_network_n16_matches_hand_count(gridsize, scale, group_network):
    config = ModelConfig(pattern_size=16, gridsize=gridsize, n_filters_scale=scale, group_network=group_network)
    passes, channels = passes_and_channels(gridsize, group_network)
    assert network_flops(config) == passes * hand_network_n16(channels, scale)


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("architecture", ["encoder_decoder", "unet", "space_to_depth"])
@pytest.mark.parametrize("group_network", ["shared", "joint"])
def test_network_n64_matches_hand_count(gridsize, scale, architecture, group_network):
    config = ModelConfig(pattern_size=64, gridsize=gridsize, n_filters_scale=scale, architecture=architecture,
                         group_network=group_network)
    passes, channels = passes_and_channels(gridsize, group_network)
    assert network_flops(config) == passes * hand_network_n64(channels, scale, architecture)


def test_concat_moves_data_only():
    layers = describe_architecture(ModelConfig(pattern_size=64, architecture="unet"))
    concats = [layer for layer in layers if layer["op"] == "concat"]
    assert len(concats) == 4  # two per decoder
    assert all(layer_flops(layer) == 0 for layer in concats)


@pytest.mark.parametrize("size", [16, 32, 64, 128])
@pytest.mark.parametrize("gridsize", [1, 2])
def test_unet_costs_exactly_its_wider_convolutions(size, gridsize):
    """unet - encoder_decoder = the multiply-adds of the skip channels, nothing else: every
    conv that reads a concatenation multiplies 9 x (encoder channels) more inputs per output
    (2 FLOPs each); bias, activation and every other layer are the same."""
    plain, unet = (ModelConfig(pattern_size=size, gridsize=gridsize, architecture=name, group_network="joint")
                   for name in ("encoder_decoder", "unet"))
    shapes = {layer["name"]: layer for layer in describe_architecture(unet)}
    extra = 0
    for layer in shapes.values():
        if layer["op"] == "concat":
            reader = next(other for other in shapes.values() if other["inputs"] == (layer["name"],))
            encoder_channels = layer["input_shape"][1][0]
            extra += 2 * 9 * encoder_channels * math.prod(reader["output_shape"])
    assert network_flops(unet) - network_flops(plain) == extra
    assert (extra > 0) == (size > 16)  # N = 16 has no up-block: the same network


def test_tiny_model_per_pattern_figures():
    # N = 16, C = 1: every part of the forward pass, written out.
    flops = model_flops(ModelConfig(pattern_size=16, gridsize=1, n_filters_scale=1))
    network = (
        conv(1, 32, 16) + conv(32, 32, 16) + pool(32, 8)
        + conv(32, 1, 8, SIGMOID) + conv(32, 1, 8, PI_TANH) + 4 * 256
    )
    assert network == 4_980_160
    assert flops.network == network
    assert flops.overlap == 0
    assert flops.far_field == hand_far_field(16) == 13_312  # FFT alone 5 * 256 * 8
    assert flops.loss == 9 * 256
    assert flops.inference == network
    assert flops.forward == network + 13_312 + 9 * 256
    assert flops.training_step == TRAINING_STEP_FACTOR * flops.forward


def test_overlap_counts_translations_of_every_channel():
    # C = 4, N = 16 (256 pixels): one merge per channel in its own frame, each weighting
    # (2/px), translating patches (18) and weights (11) of all 4 channels, 3 sums of 3
    # (2 complex + 1 real) and a divide (4).
    pixels = 256
    expected = 4 * (4 * pixels * (2 + 18 + 11) + 3 * 3 * pixels + 4 * pixels)
    assert overlap_flops(ModelConfig(pattern_size=16, gridsize=2)) == expected
    assert model_flops(ModelConfig(pattern_size=16, gridsize=2)).overlap == expected / 4


def test_filters_scale_enters_quadratically():
    # Inner convs have k-times more inputs and outputs (k**2); the first conv, the heads'
    # multiply-adds, biases, activations and pooling k times more; the heads' bias and
    # activations and the complex combine not at all; nor does the physics.
    def network(scale: int) -> int:
        return network_flops(ModelConfig(pattern_size=64, n_filters_scale=scale))

    f1, f2, f3 = network(1), network(2), network(3)
    quadratic = (f3 - 2 * f2 + f1) / 2
    linear = f2 - f1 - 3 * quadratic
    constant = f1 - quadratic - linear
    assert constant == 32 * 32 * (1 + 3 + 1 + 2) + 4 * 64 * 64  # heads' bias and activations, combine
    assert quadratic > 0 and linear > 0
    assert network(4) == quadratic * 16 + linear * 4 + constant
    assert 3.9 < f2 / f1 < 4
    flops = [model_flops(ModelConfig(pattern_size=64, n_filters_scale=scale)) for scale in (1, 2)]
    assert flops[0].far_field == flops[1].far_field
    assert flops[0].loss == flops[1].loss


def test_pattern_size_scaling():
    small, large = ModelConfig(pattern_size=64), ModelConfig(pattern_size=128)
    # Physics: N**2 log N per channel. Network: every N = 64 layer reappears at four
    # times the area, plus one deeper level, so more than 4x.
    assert far_field_flops(large) / far_field_flops(small) == pytest.approx(
        hand_far_field(128) / hand_far_field(64)
    )
    assert 4 < network_flops(large) / network_flops(small) < 8
    assert model_flops(large).network == network_flops(large)


def test_per_pattern_divides_a_group_by_its_size():
    single = model_flops(ModelConfig(pattern_size=64, gridsize=1))
    joint_config = ModelConfig(pattern_size=64, gridsize=2, group_network="joint")
    joint = model_flops(joint_config)
    shared = model_flops(ModelConfig(pattern_size=64, gridsize=2, group_network="shared"))
    assert joint.group_size == shared.group_size == 4
    assert joint.network == network_flops(joint_config) / 4
    # A joint group of 4 costs about one single-pattern network pass (only the first conv
    # and the heads see the channels), i.e. about a quarter per pattern; a shared one runs
    # the single-pattern network on each pattern.
    assert 0.25 < joint.network / single.network < 0.26
    assert shared.network == single.network
    assert joint.far_field == shared.far_field == single.far_field  # the physics runs per pattern


def test_amplitude_activation_changes_only_its_head():
    sigmoid = network_flops(ModelConfig(pattern_size=64, amp_activation="sigmoid"))
    swish = network_flops(ModelConfig(pattern_size=64, amp_activation="swish"))
    assert swish - sigmoid == (4 - 3) * 32 * 32  # head output 1 x 32 x 32


def test_unknown_op_is_an_error_naming_the_layer():
    layer = dict(describe_architecture(ModelConfig(pattern_size=16))[0], op="conv5x5_relu")
    with pytest.raises(ValueError, match="encoder.0.conv0"):
        layer_flops(layer)


def test_to_dict_is_per_pattern_and_consistent():
    flops = model_flops(ModelConfig(pattern_size=64, gridsize=2))
    figures = flops.to_dict()
    assert figures["inference"] == figures["network"] + figures["overlap"]
    assert figures["training_step"] == 3 * figures["forward"]
    assert figures["group_size"] == 4
