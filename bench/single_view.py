"""Benchmark: what single diffraction patterns give without any learning.

A gridsize-1 PINN maps ONE pattern to its object patch; nothing ties a patch to its
neighbours before stitching. This script measures how much of the object single
patterns determine on their own, with the same known probe the model uses: every
pattern of the unseen test scan of ``bench/time_to_quality.py`` is phase-retrieved
separately by a classical iterative algorithm (a PIE-style update with the known probe,
support = the model's central N/2 window, no overlap, no training), then the patches
are stitched and scored exactly like a PINN reconstruction. It is a reference for the
time-to-quality curves (docs/benchmarks.md), not a reconstructor of the project.

Run from the repository root::

    .venv/bin/python bench/single_view.py                  # 500 positions, 1..50 iterations
    .venv/bin/python bench/single_view.py --n-test 100 --iterations 1,10

Per pattern ``m`` and iteration (``F`` = far field of physics §6, ``X_n`` = normalised
measured amplitude, ``P`` = the model's probe, ``w`` = central-window mask)::

    psi  = F^-1( X_n * exp(i * angle(F(O * P))) )            # measured modulus, kept phase
    O   <- w * (O + conj(P) * (psi - O * P) / ((1 - alpha) |P|^2 + alpha max|P|^2))

starting from ``O = w / 2`` (the amplitude the probe normalisation expects, physics §5).

Prints ONE JSON object: per iteration count, SSIM/FRC50 of amplitude and phase and the
seconds it took (numpy, one process).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from benchlib import machine_info

#: Regularisation of the division by |P|^2 (share of the probe's peak intensity).
ALPHA = 0.1


def inverse_far_field(field: np.ndarray) -> np.ndarray:
    """The inverse of ``ptychopinn_core.physics.forward.far_field`` (unitary, centred)."""
    size = field.shape[-1]
    return np.fft.ifft2(np.fft.ifftshift(field, axes=(-2, -1))) * size


def single_view_patches(amplitudes: np.ndarray, probe: np.ndarray, iterations: int) -> np.ndarray:
    """Retrieve every pattern on its own; returns complex patches ``(M, N, N)``."""
    from ptychopinn_core.physics.forward import far_field, illuminate
    from ptychopinn_core.physics.overlap import central_window_mask

    window = central_window_mask(amplitudes.shape[-1])
    intensity = np.abs(probe) ** 2
    denominator = (1 - ALPHA) * intensity + ALPHA * intensity.max()
    patches = np.broadcast_to(0.5 * window, amplitudes.shape).astype(np.complex128)
    for _ in range(iterations):
        exit_wave = illuminate(patches, probe)
        psi = inverse_far_field(amplitudes * np.exp(1j * np.angle(far_field(exit_wave))))
        patches = window * (patches + np.conj(probe) * (psi - exit_wave) / denominator)
    return patches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=500, help="positions of the test scan (as time_to_quality)")
    parser.add_argument("--iterations", default="1,2,5,10,50", help="comma-separated iteration counts")
    parser.add_argument("--seed", type=int, default=0, help="the seed of time_to_quality (test scan: seed + 2)")
    args = parser.parse_args()

    from ptychopinn_core.config import Config
    from ptychopinn_core.evaluation.report import evaluate
    from ptychopinn_core.physics.stitching import Stitcher, default_crop_size
    from ptychopinn_core.simulation import make_demo_scan
    from ptychopinn_core.inference_chunks import prepare_inference_inputs
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.workflow import object_frame_for

    scan = make_demo_scan(args.n_test, 64, seed=args.seed + 2)
    config = Config()
    state = prepare_model_state(scan, config)
    chunk = next(iter(prepare_inference_inputs(scan, config, state, scan.n_positions)))
    amplitudes = chunk.diffraction[:, 0].astype(np.float64)
    crop = default_crop_size(scan.pattern_size)
    frame = object_frame_for(scan)
    results = []
    for iterations in [int(text) for text in args.iterations.split(",")]:
        begin = time.perf_counter()
        patches = single_view_patches(amplitudes, state.probe.astype(np.complex128), iterations)
        seconds = time.perf_counter() - begin
        stitcher = Stitcher(frame, crop_size=crop, patch_size=scan.pattern_size)
        stitcher.add(patches.astype(np.complex64), chunk.positions_xy[:, 0])
        metrics = evaluate(stitcher.result(), scan.object, scan.positions_px, window_px=crop,
                           recon_frame=frame)
        results.append({
            "iterations": iterations, "seconds": round(seconds, 3),
            **{f"{part}_{key}": round(float(metrics[part][key]), 4)
               for part in ("amplitude", "phase") for key in ("ssim", "frc50")},
        })
    print(json.dumps({"benchmark": "single_view", "machine": machine_info(), "n_positions": scan.n_positions,
                      "alpha": ALPHA, "results": results}, indent=2))


if __name__ == "__main__":
    main()
