"""Benchmark: train one backend for a fixed wall time and score an unseen scan.

Run from the repository root::

    .venv/bin/python bench/train_backend.py --backend pytorch           # 180 s of training
    .venv/bin/python bench/train_backend.py --backend tensorflow --seconds 60 --gridsize 2

Simulates a 'lines' training scan and an unseen test scan (another object seed) of
64 x 64 patterns, trains with the default model settings unless told otherwise, stops
at the first epoch end past ``--seconds``, reconstructs the test scan and prints ONE
JSON object: machine and settings, seconds per epoch (first epoch, with tracing or
Lightning's start-up, and the mean of the others), training patterns per second,
inference patterns per second
and the SSIM/PSNR/FRC50 of amplitude and phase. Nothing is asserted: timings are
measured here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchlib import machine_info, timed_training

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _machine(backend) -> dict[str, object]:
    return {
        **machine_info(),
        "backend": backend.name,
        "framework": backend.info.framework,
        "framework_version": backend.entry.framework_version,
        "devices": backend.devices(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True, help="backend name (tensorflow, pytorch, ...)")
    parser.add_argument("--seconds", type=float, default=180.0, help="training wall time (stops at an epoch end)")
    parser.add_argument("--n-positions", type=int, default=512)
    parser.add_argument("--gridsize", type=int, default=1)
    parser.add_argument("--n-filters-scale", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ptychopinn_core import workflow
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.config import Config
    from ptychopinn_core.evaluation.report import evaluate
    from ptychopinn_core.model.bundle import ModelBundle, make_manifest
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.model.state import History
    from ptychopinn_core.simulation import make_demo_scan
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.training.data import prepare_training_data

    size = 64
    config = Config.from_dict({
        "model": {"pattern_size": size, "gridsize": args.gridsize, "n_filters_scale": args.n_filters_scale},
        "training": {"epochs": 10_000, "batch_size": args.batch_size, "early_stopping_patience": None,
                     "seed": args.seed},
        "execution": {"device": args.device},
    })
    train_scan = make_demo_scan(args.n_positions, size, seed=args.seed + 1)
    test_scan = make_demo_scan(args.n_positions, size, seed=args.seed + 2)
    backend = BackendRegistry.discover().get(args.backend)
    machine = _machine(backend)  # imports the framework: import time is not training time
    data = prepare_training_data(train_scan, config)
    state = prepare_model_state(train_scan, config)
    model = backend.build_model(config, state, initial_weights(parameter_specs(config.model), args.seed))

    started = time.perf_counter()
    epochs = timed_training(backend, model, data, config, seconds=args.seconds)
    training_s = time.perf_counter() - started

    bundle = ModelBundle(manifest=make_manifest("pinn", backend.name, backend.info.framework, "bench"), config=config,
                         weights=model.get_weights(), state=model.state, history=History())
    started = time.perf_counter()
    recon = workflow.reconstruct(bundle, test_scan, backend)
    inference_s = time.perf_counter() - started
    metrics = evaluate(recon, test_scan.object, test_scan.positions_px)

    channels = config.model.group_size
    patterns_per_epoch = data.n_train * channels
    later = [epoch["seconds"] for epoch in epochs[1:]] or [epochs[0]["seconds"]]
    print(json.dumps({
        "benchmark": "train_backend",
        "machine": machine,
        "settings": {"pattern_size": size, "n_positions": args.n_positions, "gridsize": args.gridsize,
                     "n_filters_scale": args.n_filters_scale, "batch_size": args.batch_size,
                     "device": args.device, "train_groups": data.n_train,
                     "validation_groups": data.n_validation, "wall_time_budget_s": args.seconds},
        "epochs": len(epochs),
        "training_s": training_s,
        "first_epoch_s": epochs[0]["seconds"],
        "seconds_per_epoch": sum(later) / len(later),
        "train_patterns_per_s": patterns_per_epoch / (sum(later) / len(later)),
        "inference_s": inference_s,
        "inference_patterns_per_s": test_scan.n_positions * channels / inference_s,
        "final_train_loss": epochs[-1]["train_loss"],
        "final_val_loss": epochs[-1].get("val_loss"),
        "final_learning_rate": epochs[-1]["learning_rate"],
        "test_scan": {
            part: {key: metrics[part][key] for key in ("ssim", "psnr", "mae", "frc50")}
            for part in ("amplitude", "phase")
        },
    }, indent=2, default=float))


if __name__ == "__main__":
    main()
