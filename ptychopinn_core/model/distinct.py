"""Each pattern through the network once per chunk, however many groups hold it.

With the ``shared`` group network (docs/physics.md §3) the network reads one pattern per
pass, so a pattern's heads do not depend on the group around it. At inference every
scan position seeds a group of itself and ``C - 1`` neighbours, so a chunk holds each
pattern in about ``C`` groups, and running the network group by group repeats every
pass about ``C`` times. The backends instead run the network on a chunk's distinct
patterns and gather their heads into the groups before the overlap constraint: the same
numbers for about ``1/C`` of the network's work (docs/benchmarks.md, "PyTorch speed").

Patterns are matched by content (their bytes), not by scan index, so the backends'
``predict(diffraction, offsets)`` contract is unchanged: equal inputs give equal heads
whichever position they came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.parameters import network_channels

__all__ = ["DistinctPatterns", "distinct_patterns", "runs_patterns_alone"]


def runs_patterns_alone(model_config: ModelConfig) -> bool:
    """True when the network reads one pattern of a group per pass (``shared``, ``C > 1``)."""
    return model_config.group_size > 1 and network_channels(model_config) == 1


@dataclass(frozen=True, eq=False)
class DistinctPatterns:
    """A chunk's distinct patterns and where each group's channels find theirs.

    Attributes
    ----------
    patterns : ndarray, shape (U, N, N)
        The distinct patterns, in order of first appearance (group by group, channel by
        channel), the chunk's dtype.
    index : ndarray, int64, shape (B, C)
        Group ``b``'s channel ``c`` is ``patterns[index[b, c]]``.
    """

    patterns: np.ndarray
    index: np.ndarray


def distinct_patterns(diffraction: np.ndarray) -> DistinctPatterns:
    """The distinct patterns of a chunk ``(B, C, N, N)``, compared byte for byte.

    ``patterns[index]`` equals ``diffraction`` exactly.
    """
    diffraction = np.asarray(diffraction)
    if diffraction.ndim != 4:
        raise ValueError(f"expected diffraction of shape (B, C, N, N), received shape {diffraction.shape}")
    groups, channels = diffraction.shape[:2]
    if groups * channels == 0:
        return DistinctPatterns(patterns=diffraction.reshape(0, *diffraction.shape[2:]),
                                index=np.zeros((groups, channels), dtype=np.int64))
    flat = np.ascontiguousarray(diffraction).reshape(groups * channels, -1)
    rows = flat.view(np.dtype((np.void, flat.shape[1] * flat.dtype.itemsize))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # first appearance: neighbouring groups stay together
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    patterns = flat[first[order]].reshape(order.size, *diffraction.shape[2:])
    return DistinctPatterns(patterns=patterns, index=rank[inverse.ravel()].reshape(groups, channels).astype(np.int64))
