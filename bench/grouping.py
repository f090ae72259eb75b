"""Benchmark: grouping of scan positions and the overlap translate/merge throughput.

Run ``.venv/bin/python bench/grouping.py``; prints ONE JSON object to stdout with the
machine, the timings (seconds, best of a few repeats) and throughputs. Nothing here is
asserted: timings belong to benchmarks, not tests.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy

from ptychopinn_core.physics.grouping import group_positions
from ptychopinn_core.physics.overlap import enforce_overlap, merge_patches
from ptychopinn_core.physics.translate import translate

N_POSITIONS = 100_000
SCAN_EXTENT_PX = 5_000.0
BATCH_GROUPS = 256
PATCH_SIZE = 64
GRIDSIZE = 2
REPEATS = 3


def best_time_s(function: Callable[[], object], repeats: int = REPEATS) -> float:
    """Shortest wall time of ``repeats`` calls (the least disturbed by other load)."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_count": os.cpu_count(),
    }


def bench_grouping(rng: np.random.Generator) -> dict:
    positions_px = rng.uniform(0, SCAN_EXTENT_PX, size=(N_POSITIONS, 2))
    results = {}
    for gridsize in (GRIDSIZE, 1):
        seconds = best_time_s(lambda: group_positions(positions_px, gridsize, n_neighbors=4, seed=0))
        results[f"gridsize_{gridsize}"] = {
            "n_positions": N_POSITIONS,
            "group_size": gridsize * gridsize,
            "seconds": seconds,
            "positions_per_second": N_POSITIONS / seconds,
        }
    return results


def bench_overlap(rng: np.random.Generator) -> dict:
    channels = GRIDSIZE * GRIDSIZE
    shape = (BATCH_GROUPS, channels, PATCH_SIZE, PATCH_SIZE)
    patches = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    offsets_xy = rng.uniform(-4, 4, size=(BATCH_GROUPS, channels, 2))
    offsets_xy -= offsets_xy.mean(axis=1, keepdims=True)
    n_patches = BATCH_GROUPS * channels
    steps = {
        "translate": lambda: translate(patches, offsets_xy),
        "merge_patches": lambda: merge_patches(patches, offsets_xy),
        "enforce_overlap": lambda: enforce_overlap(patches, offsets_xy),
    }
    results = {"batch_groups": BATCH_GROUPS, "channels": channels, "size": PATCH_SIZE, "dtype": "complex64"}
    for name, step in steps.items():
        step()  # warm caches and allocator before timing
        seconds = best_time_s(step)
        results[name] = {"seconds": seconds, "patches_per_second": n_patches / seconds}
    return results


def main() -> None:
    rng = np.random.default_rng(0)
    report = {
        "benchmark": "grouping",
        "machine": machine_info(),
        "repeats": REPEATS,
        "grouping": bench_grouping(rng),
        "overlap": bench_overlap(rng),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
