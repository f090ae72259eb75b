"""``ptychopinn_core.model.distinct``: a chunk's distinct patterns, on real inference chunks.

Every scan position seeds a group at inference, so a gridsize-2 chunk holds each pattern
in several groups; the backends run the shared network once per distinct pattern. Here:
the distinct patterns are exactly the chunk's distinct scan positions, and gathering them
back gives the chunk byte for byte.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn_core.config import Config
from ptychopinn_core.inference_chunks import prepare_inference_inputs
from ptychopinn_core.model.distinct import distinct_patterns, runs_patterns_alone
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.simulation.scan import make_demo_scan


def config(**model) -> Config:
    return Config.from_dict({"model": {"pattern_size": 16, **model}})


@pytest.mark.parametrize("chunk_size", [24, 1000])
def test_the_distinct_patterns_are_the_chunk_positions(chunk_size: int) -> None:
    settings = config(gridsize=2)
    scan = make_demo_scan(40, size=16, seed=3)
    chunks = list(prepare_inference_inputs(scan, settings, prepare_model_state(scan, settings), chunk_size))
    assert len(chunks) == (1 if chunk_size == 1000 else 7)
    for chunk in chunks:
        distinct = distinct_patterns(chunk.diffraction)
        positions, first = np.unique(chunk.position_indices.ravel(), return_index=True)
        assert distinct.patterns.shape == (positions.size, 16, 16)
        assert positions.size < chunk.position_indices.size  # neighbours repeat within a chunk
        assert distinct.index.shape == chunk.position_indices.shape and distinct.index.dtype == np.int64
        np.testing.assert_array_equal(distinct.patterns[distinct.index], chunk.diffraction)
        # in order of first appearance: the first channel of the first group comes first
        order = chunk.position_indices.ravel()[np.sort(first)]
        np.testing.assert_array_equal(distinct.patterns, chunk.diffraction.reshape(-1, 16, 16)[np.sort(first)])
        assert distinct.index[0, 0] == 0 and len(order) == positions.size


def test_equal_patterns_are_one_whatever_their_position() -> None:
    """By content: two positions with the same bytes share one pass (the same input gives
    the same heads), and -0.0 is not 0.0 (different bytes: two passes, still exact)."""
    pattern = np.arange(16, dtype=np.float32).reshape(4, 4)
    other = pattern.copy()
    other[0, 0] = -0.0
    chunk = np.stack([np.stack([pattern, pattern, other]), np.stack([other, pattern, pattern])])
    distinct = distinct_patterns(chunk)
    assert distinct.patterns.shape == (2, 4, 4)
    np.testing.assert_array_equal(distinct.index, [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(distinct.patterns[distinct.index], chunk)


def test_an_empty_chunk_and_a_wrong_shape() -> None:
    distinct = distinct_patterns(np.zeros((0, 4, 16, 16), np.float32))
    assert distinct.patterns.shape == (0, 16, 16) and distinct.index.shape == (0, 4)
    with pytest.raises(ValueError, match=r"shape \(B, C, N, N\), received shape \(4, 16, 16\)"):
        distinct_patterns(np.zeros((4, 16, 16), np.float32))


def test_only_the_shared_network_at_gridsize_above_one_runs_patterns_alone() -> None:
    assert runs_patterns_alone(config(gridsize=2).model)
    assert not runs_patterns_alone(config(gridsize=2, group_network="joint").model)
    assert not runs_patterns_alone(config(gridsize=1).model)
