"""Benchmark: prediction throughput against the number of groups per network call.

Run from the repository root::

    .venv/bin/python bench/predict_batch.py                        # every backend, 5 cases
    .venv/bin/python bench/predict_batch.py --backends pytorch --quick

For each case (N, gridsize, width) and backend, one model of the core's initial weights
predicts one chunk of a simulated scan (512 positions at N = 64, 128 at N = 128) in
slices of a fixed 256 groups and in slices of the cache rule
(:func:`ptychopinn_core.model.batching.inference_groups`); the ONNX backend's own rule
(``batch_groups``, pixels per run) stands in for the fixed slices. One process, a warm-up
call per variant, then ``--rounds`` interleaved rounds; the best round counts (patterns
per second). This is the measurement behind the PyTorch backend's slices
(docs/benchmarks.md, "PyTorch speed"). Prints ONE JSON object and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from benchlib import machine_info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CASES = [(64, 1, 1), (64, 2, 1), (64, 1, 2), (128, 1, 1), (128, 2, 1)]
QUICK_CASES = [(32, 1, 1)]


@contextmanager
def _slices(backend_name: str, groups: int | None):
    """Every predict call of the backend in slices of ``groups`` (None: its own rule)."""
    if groups is None:
        yield
        return
    if backend_name == "pytorch":
        import ptychopinn_torch.inference as module

        name, value = "inference_groups", lambda *args, **kwargs: groups
    elif backend_name == "tensorflow":
        import ptychopinn_tf.inference as module

        name, value = "PREDICT_BATCH", groups
    elif backend_name == "onnx":
        import ptychopinn_onnx.model as module

        name, value = "batch_groups", lambda *args: groups
    else:
        raise SystemExit(f"predict_batch: no slice setting known for backend {backend_name!r}")
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def _case(backend, size: int, gridsize: int, width: int, scan, rounds: int) -> dict[str, object]:
    from ptychopinn_core.config import Config
    from ptychopinn_core.inference_chunks import prepare_inference_inputs
    from ptychopinn_core.model.batching import MAX_INFERENCE_GROUPS, inference_groups
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs

    config = Config().with_overrides(
        {"model.pattern_size": size, "model.gridsize": gridsize, "model.n_filters_scale": width})
    state = prepare_model_state(scan, config)
    chunk = next(prepare_inference_inputs(scan, config, state, scan.n_positions * config.model.group_size))
    model = backend.build_model(config, state, initial_weights(parameter_specs(config.model), 0))
    rule = inference_groups(config.model)
    fixed = None if backend.name == "onnx" else MAX_INFERENCE_GROUPS
    variants = {"fixed" if fixed else "own_rule": fixed, "cache_rule": rule}
    seconds: dict[str, list[float]] = {label: [] for label in variants}
    for round_index in range(rounds + 1):  # round 0 warms up
        for label, groups in variants.items():
            with _slices(backend.name, groups):
                begin = time.perf_counter()
                model.predict(chunk.diffraction, chunk.offsets_xy)
                if round_index:
                    seconds[label].append(time.perf_counter() - begin)
    patterns = chunk.diffraction.shape[0] * chunk.diffraction.shape[1]
    return {
        "backend": backend.name, "pattern_size": size, "gridsize": gridsize, "n_filters_scale": width,
        "patterns": patterns, "cache_rule_groups": rule, "fixed_groups": fixed,
        **{f"{label}_patterns_per_s": round(patterns / min(values), 1) for label, values in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", help="comma-separated backend names (default: every installed one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 32, gridsize 1, 1 round")
    parser.add_argument("--out", type=Path, default=Path("predict-batch"), help="folder for the JSON")
    args = parser.parse_args()

    from ptychopinn_core.atomic import atomic_write
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.simulation import make_demo_scan

    registry = BackendRegistry.discover()
    names = args.backends.split(",") if args.backends else [e.name for e in registry.entries() if e.ok]
    cases, rounds = (QUICK_CASES, 1) if args.quick else (CASES, args.rounds)
    positions = {32: 64, 64: 512, 128: 128}
    scans = {size: make_demo_scan(positions[size], size, seed=2, probe_kind="disk")
             for size in sorted({case[0] for case in cases})}
    results = [_case(registry.get(name), size, gridsize, width, scans[size], rounds)
               for size, gridsize, width in cases for name in names]
    report = {"benchmark": "predict_batch", "machine": machine_info(), "rounds": rounds, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "predict_batch.json", "w") as handle:
        handle.write(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
