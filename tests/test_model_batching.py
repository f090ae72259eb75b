"""The inference batch rule: groups per network call from the widest activation."""

from __future__ import annotations

import math

import pytest

from ptychopinn_core.config import Config
from ptychopinn_core.model import batching
from ptychopinn_core.model.batching import MAX_INFERENCE_GROUPS, inference_groups, widest_activation


def model(**overrides):
    return Config().with_overrides({f"model.{key}": value for key, value in overrides.items()}).model


@pytest.mark.parametrize(
    ("overrides", "elements", "groups"),
    [
        ({}, 32 * 64 * 64, 16),  # the first encoder block's output, 512 KiB a pattern
        ({"n_filters_scale": 2}, 64 * 64 * 64, 8),
        ({"pattern_size": 128}, 32 * 128 * 128, 4),
        ({"gridsize": 2}, 4 * 32 * 64 * 64, 4),  # shared: C passes a group
        ({"gridsize": 2, "group_network": "joint"}, 32 * 64 * 64, 16),  # one pass a group
        ({"architecture": "unet"}, 32 * 64 * 64, 16),
        ({"architecture": "space_to_depth"}, 32 * 32 * 32, 64),  # no full-resolution block
    ],
)
def test_groups_follow_the_widest_activation(overrides, elements, groups) -> None:
    config = model(**overrides)
    assert widest_activation(config) == elements
    assert inference_groups(config) == groups
    assert inference_groups(config, itemsize=8) == max(1, groups // 2)  # float64


def test_the_widest_layer_is_found_in_the_architecture() -> None:
    # A configuration where the widest output is not the first layer's: a one-filter
    # width would make every layer small, so compare with the description directly.
    from ptychopinn_core.model.parameters import describe_architecture

    config = model(pattern_size=32, n_filters_scale=3)
    sizes = [math.prod(layer["output_shape"]) for layer in describe_architecture(config)
             if layer["op"] not in ("zero_pad", "complex_combine")]
    assert widest_activation(config) == max(sizes)


def test_groups_are_bounded() -> None:
    huge = model(pattern_size=512, gridsize=3, n_filters_scale=4)
    assert inference_groups(huge) == 1
    assert inference_groups(model(pattern_size=16)) == MAX_INFERENCE_GROUPS
    assert inference_groups(model(), budget_bytes=0) == 1


def test_the_budget_is_read_when_called(monkeypatch) -> None:
    monkeypatch.setattr(batching, "ACTIVATION_BUDGET_BYTES", 3 * 4 * 32 * 64 * 64)
    assert inference_groups(model()) == 3
