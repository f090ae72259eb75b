"""Benchmark: simulate a scan and stitch its ground-truth patches back.

Run from the repository root::

    .venv/bin/python bench/simulate_stitch.py                    # 10^4 positions, N = 64
    .venv/bin/python bench/simulate_stitch.py --n-positions 2000 --size 128

Prints ONE JSON object: the machine, the problem size, wall-clock seconds and
positions per second of simulation and of stitching, the peak traced memory of a
streamed stitch (canvas + one chunk, independent of M) and the process's peak RSS, and
the same stitch with phase synchronisation (``inference.phase_sync``) of patches given
random constant phases (+-0.3 rad, network-like): seconds, Newton steps and peak traced memory
(the kept windows grow with M).
Nothing is asserted: timings are measured here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np

from benchlib import machine_info, peak_rss_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-positions", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--nphotons", type=float, default=1e9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=1024)
    args = parser.parse_args()

    from ptychopinn_core.physics.stitching import ObjectFrame, Stitcher, default_crop_size, stitch
    from ptychopinn_core.simulation import make_demo_scan

    started = time.perf_counter()
    scan = make_demo_scan(
        args.n_positions, args.size, nphotons=args.nphotons, seed=args.seed,
        chunk_size=args.chunk_size,
    )
    simulate_s = time.perf_counter() - started

    frame = ObjectFrame.for_object(scan.object.shape)
    positions = scan.positions_px
    started = time.perf_counter()
    stitched = stitch(scan.patches, positions, frame, chunk_size=args.chunk_size)
    stitch_s = time.perf_counter() - started

    # Peak memory of the streamed stitch alone: the patches already exist, so what is
    # traced is the canvas plus the work space of one chunk.
    stitcher = Stitcher(frame, default_crop_size(args.size), args.size)
    tracemalloc.start()
    for start in range(0, args.n_positions, args.chunk_size):
        stop = start + args.chunk_size
        stitcher.add(scan.patches[start:stop], positions[start:stop])
    _, stitch_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Phase synchronisation: the patches' constant phases disturbed as a network's are.
    phases = np.random.default_rng(args.seed).uniform(-0.3, 0.3, args.n_positions)
    disturbed = scan.patches * np.exp(1j * phases)[:, None, None].astype(np.complex64)

    def synchronised() -> Stitcher:
        synced = Stitcher(frame, default_crop_size(args.size), args.size, phase_sync=True)
        for start in range(0, args.n_positions, args.chunk_size):
            stop = start + args.chunk_size
            synced.add(disturbed[start:stop], positions[start:stop])
        synced.result()
        return synced

    started = time.perf_counter()
    synced = synchronised()
    sync_s = time.perf_counter() - started
    tracemalloc.start()
    synchronised()
    _, sync_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    report = {
        "benchmark": "simulate_stitch",
        "machine": machine_info(),
        "n_positions": args.n_positions,
        "pattern_size": args.size,
        "object_shape": list(scan.object.shape),
        "nphotons": args.nphotons,
        "chunk_size": args.chunk_size,
        "simulate_seconds": round(simulate_s, 3),
        "simulate_positions_per_second": round(args.n_positions / simulate_s, 1),
        "stitch_seconds": round(stitch_s, 3),
        "stitch_positions_per_second": round(args.n_positions / stitch_s, 1),
        "streamed_vs_one_shot_max_abs_diff": float(np.abs(stitched - stitcher.result()).max()),
        "output_bytes": int(scan.diffraction.nbytes + scan.patches.nbytes + scan.object.nbytes),
        "stitch_peak_traced_bytes": int(stitch_peak),
        "phase_sync_stitch_seconds": round(sync_s, 3),
        "phase_sync_steps": synced.sync_steps_run,
        "phase_sync_peak_traced_bytes": int(sync_peak),
        "process_peak_rss_bytes": peak_rss_bytes(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
