"""Benchmark: grouping of scan positions and the overlap translate/merge throughput.

Run ``.venv/bin/python bench/grouping.py [--n-positions M] [--batch-groups B]``; prints
ONE JSON object to stdout with the machine, the timings (seconds, best of a few repeats)
and throughputs. Nothing here is asserted: timings belong to benchmarks, not tests.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ptychopinn_core.physics.grouping import group_positions
from ptychopinn_core.physics.overlap import enforce_overlap, merge_patches
from ptychopinn_core.physics.translate import translate

from benchlib import best_time_s, machine_info

N_POSITIONS = 100_000
SCAN_EXTENT_PX = 5_000.0
BATCH_GROUPS = 256
PATCH_SIZE = 64
GRIDSIZE = 2
REPEATS = 3


def bench_grouping(rng: np.random.Generator, n_positions: int = N_POSITIONS, repeats: int = REPEATS) -> dict:
    # The same density of positions whatever their number: the extent scales with sqrt(M).
    extent = SCAN_EXTENT_PX * (n_positions / N_POSITIONS) ** 0.5
    positions_px = rng.uniform(0, extent, size=(n_positions, 2))
    results = {}
    for gridsize in (GRIDSIZE, 1):
        seconds = best_time_s(lambda: group_positions(positions_px, gridsize, n_neighbors=4, seed=0), repeats)
        results[f"gridsize_{gridsize}"] = {
            "n_positions": n_positions,
            "group_size": gridsize * gridsize,
            "seconds": seconds,
            "positions_per_second": n_positions / seconds,
        }
    return results


def bench_overlap(rng: np.random.Generator, batch_groups: int = BATCH_GROUPS, repeats: int = REPEATS) -> dict:
    channels = GRIDSIZE * GRIDSIZE
    shape = (batch_groups, channels, PATCH_SIZE, PATCH_SIZE)
    patches = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    offsets_xy = rng.uniform(-4, 4, size=(batch_groups, channels, 2))
    offsets_xy -= offsets_xy.mean(axis=1, keepdims=True)
    n_patches = batch_groups * channels
    steps = {
        "translate": lambda: translate(patches, offsets_xy),
        "merge_patches": lambda: merge_patches(patches, offsets_xy),
        "enforce_overlap": lambda: enforce_overlap(patches, offsets_xy),
    }
    results = {"batch_groups": batch_groups, "channels": channels, "size": PATCH_SIZE, "dtype": "complex64"}
    for name, step in steps.items():
        step()  # warm caches and allocator before timing
        seconds = best_time_s(step, repeats)
        results[name] = {"seconds": seconds, "patches_per_second": n_patches / seconds}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-positions", type=int, default=N_POSITIONS, help="positions to group")
    parser.add_argument("--batch-groups", type=int, default=BATCH_GROUPS, help="groups of the overlap steps")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timings per step (the best is kept)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    report = {
        "benchmark": "grouping",
        "machine": machine_info(),
        "repeats": args.repeats,
        "grouping": bench_grouping(rng, args.n_positions, args.repeats),
        "overlap": bench_overlap(rng, args.batch_groups, args.repeats),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
