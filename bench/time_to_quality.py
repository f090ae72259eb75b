"""Benchmark: reconstruction quality of an unseen scan against training wall time.

Run from the repository root::

    .venv/bin/python bench/time_to_quality.py                       # every backend, gridsize 1 and 2, 10 min each
    .venv/bin/python bench/time_to_quality.py --backends pytorch --gridsize 1 --minutes 3 --out ttq
    .venv/bin/python bench/time_to_quality.py --quick               # a one-minute smoke run
    .venv/bin/python bench/time_to_quality.py --probe disk --probe velociprobe --minutes 30   # the lines table

For each backend, probe (``--probe``: a kind of ptychopinn_core.simulation.probe, by
default the ``velociprobe`` beam, or a probe file of side 64) and gridsize: simulate a 'lines' training scan (N = 64,
1e9 photons, ``--n-train`` positions) and ``--test-objects`` unseen test scans of other objects
(``--n-test`` positions each) with that probe, train from the core's initial weights with ``training.max_seconds`` as the
budget, and keep a copy of the weights at the first epoch end after every
``--snapshot-seconds`` of training (a copy costs milliseconds and is not training time;
an epoch's end is where the model holds the weight average of ``training.ema_decay``). After training, every snapshot
reconstructs the test scans and is scored against their truths (SSIM with the truth's data
range, after amplitude scaling and phase offset/ramp removal: ptychopinn_core.evaluation).
With several test objects a snapshot's scores are their means and ``objects`` lists each
object's; the first object (seed ``--seed`` + 2) is the one every earlier run was scored on.
One object's phase SSIM differs from another's by 0.01-0.03 (docs/benchmarks.md, "Network
quality" §23), as much as many of the levers measured, hence the option.
The final model's prediction + stitching of the first test scan is timed after a warm-up, and
the final model is also scored on its own training scan (``final_seen``: the seen object;
its gap to ``final`` is what the network does not carry over to an unseen object).
``--keep-models`` writes each run's final bundle next to the JSON, for later diagnosis;
``--score MODEL.zip ...`` trains nothing and scores such bundles on the test objects (the
backend that trained each, or the first of ``--backends``), JSON ``scores``.
With ``--start-single-minutes M`` a gridsize > 1 run trains gridsize 1 for its first ``M``
minutes and then its own gridsize from those weights (the shared group network has the
gridsize-1 parameters; the optimiser starts afresh), on one clock.

Prints ONE JSON object (machine, versions, settings, per run the quality-vs-time curve,
the first time both SSIMs reach ``--target``, inference time) and writes it with the
curve PNG to ``--out``. Nothing is asserted; see docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from benchlib import machine_info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _settings(args) -> dict[str, object]:
    return {key: value for key, value in vars(args).items() if key not in ("out", "overrides", "score")} | {
        "overrides": list(args.overrides), "score": [str(path) for path in args.score or []],
    }


def _probe_label(scan) -> str:
    return scan.meta.get("probe_file", scan.meta["probe_kind"])


def _scores(bundle, scans, backend) -> dict[str, object]:
    """SSIM and FRC50 of ``bundle`` on each test scan: their means, and each object's when several."""
    from ptychopinn_core import workflow
    from ptychopinn_core.evaluation.report import evaluate

    objects = []
    for scan in scans:
        metrics = evaluate(workflow.reconstruct(bundle, scan, backend), scan.object, scan.positions_px)
        objects.append({f"{part}_{key}": metrics[part][key] for part in ("amplitude", "phase") for key in ("ssim", "frc50")})
    means = {key: float(np.mean([scores[key] for scores in objects])) for key in objects[0]}
    return means | ({"objects": objects} if len(objects) > 1 else {})


def _run(backend, gridsize: int, train_scan, test_scans, args) -> dict[str, object]:
    """Train one model under the budget and score its snapshots; see the module docstring."""
    from ptychopinn_core import workflow
    from ptychopinn_core.config import Config, parse_assignments
    from ptychopinn_core.model.bundle import ModelBundle, make_manifest
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.model.state import History
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.training.data import prepare_training_data

    config = Config().with_overrides({
        "model.gridsize": gridsize,
        "training.epochs": 100_000,
        "training.early_stopping_patience": None,
        "training.max_seconds": args.minutes * 60.0,
        "training.seed": args.seed,
    })
    if args.overrides:
        config = config.with_overrides(parse_assignments(args.overrides))
    # (config, minutes) per training phase: one, or gridsize 1 first (--start-single-minutes).
    phases = [(config, args.minutes)]
    if args.start_single_minutes > 0 and gridsize > 1:
        single = config.with_overrides({"model.gridsize": 1})
        phases = [(single, args.start_single_minutes), (config, args.minutes - args.start_single_minutes)]
    weights = initial_weights(parameter_specs(config.model), args.seed)

    snapshots: list[dict[str, object]] = []
    started = 0.0  # set once the first model is built; later builds count as training time
    copying = 0.0  # seconds spent copying weights, subtracted from the training clock
    epochs: list[dict[str, float]] = []
    patterns = 0  # patterns seen in training (each epoch: its groups x C)

    for index, (phase, minutes) in enumerate(phases):
        phase = phase.with_overrides({"training.max_seconds": minutes * 60.0})
        data = prepare_training_data(train_scan, phase)
        model = backend.build_model(phase, prepare_model_state(train_scan, phase), weights)

        def snapshot(epoch: int, step: int) -> None:
            nonlocal copying
            begin = time.perf_counter()
            snapshots.append({"training_s": begin - started - copying, "epoch": epoch, "step": step,
                              "weights": model.get_weights(), "state": model.state, "config": phase})
            copying += time.perf_counter() - begin

        def progress(event) -> None:
            nonlocal patterns
            if event.stage != "epoch":
                return
            epochs.append({"epoch": len(epochs), "gridsize": phase.model.gridsize, **event.metrics})
            patterns += data.n_train * phase.model.group_size
            elapsed = time.perf_counter() - started - copying
            last = snapshots[-1]["training_s"] if snapshots else 0.0
            if elapsed - last >= args.snapshot_seconds:
                # At an epoch's end: the model then holds the weight average when there is one.
                snapshot(len(epochs) - 1, data.steps_per_epoch)

        if index == 0:
            started = time.perf_counter()
            snapshot(0, 0)  # the untrained network: the floor every curve starts from
        backend.train(model, data, phase, progress)
        snapshot(len(epochs) - 1, data.steps_per_epoch)
        weights = model.get_weights()
    training_s = time.perf_counter() - started - copying

    manifest = make_manifest(config.training.mode, backend.name, backend.info.framework, "bench")
    curve = []
    for point in snapshots:
        bundle = ModelBundle(manifest=manifest, config=point["config"], weights=point["weights"],
                             state=point["state"], history=History())
        curve.append({
            "training_s": round(point["training_s"], 2), "epoch": point["epoch"], "step": point["step"],
            "gridsize": point["config"].model.gridsize, **_scores(bundle, test_scans, backend),
        })
    final = ModelBundle(manifest=manifest, config=config, weights=snapshots[-1]["weights"],
                        state=snapshots[-1]["state"], history=History())
    seen = _scores(final, [train_scan], backend)
    if args.keep_models:
        from ptychopinn_core.model.bundle import write_bundle

        args.out.mkdir(parents=True, exist_ok=True)
        write_bundle(args.out / f"model-{backend.name}-{_probe_label(train_scan)}-g{gridsize}.zip", final)
    test_scan = test_scans[0]
    workflow.reconstruct(final, test_scan, backend)  # warm-up: tracing, kernels
    begin = time.perf_counter()
    workflow.reconstruct(final, test_scan, backend)
    inference_s = time.perf_counter() - begin
    reached = next((p["training_s"] for p in curve
                    if p["amplitude_ssim"] >= args.target and p["phase_ssim"] >= args.target), None)
    return {
        "backend": backend.name,
        "framework_version": backend.entry.framework_version,
        "probe": _probe_label(train_scan),
        "gridsize": gridsize,
        "start_single_minutes": phases[0][1] if len(phases) > 1 else 0.0,
        "config": config.to_dict(),
        "train_groups": data.n_train,
        "epochs": len(epochs),
        "training_s": round(training_s, 2),
        "train_patterns_per_s": round(patterns / training_s, 2),
        "seconds_to_target": reached,
        "final": curve[-1],
        "final_seen": seen,
        "best_amplitude_ssim": max(p["amplitude_ssim"] for p in curve),
        "best_phase_ssim": max(p["phase_ssim"] for p in curve),
        "inference_s": round(inference_s, 3),
        "inference_patterns_per_s": round(test_scan.n_positions / inference_s, 1),
        "loss_per_epoch": epochs,
        "curve": curve,
    }


def _figure(runs: list[dict[str, object]], target: float, path: Path) -> None:
    from matplotlib.figure import Figure

    from ptychopinn_core.figures import save_png

    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    for index, run in enumerate(runs):
        minutes = [point["training_s"] / 60 for point in run["curve"]]
        label = f"{run['backend']}, {run.get('probe', 'disk')} probe, gridsize {run['gridsize']}"
        if run.get("start_single_minutes"):
            label += f" (gridsize 1 for {run['start_single_minutes']:g} min)"
        axes.plot(minutes, [p["amplitude_ssim"] for p in run["curve"]], "-o", color=f"C{index}", markersize=3,
                  label=f"{label}: amplitude")
        axes.plot(minutes, [p["phase_ssim"] for p in run["curve"]], "--s", color=f"C{index}", markersize=3,
                  label=f"{label}: phase")
    axes.axhline(target, color="gray", linewidth=0.8, linestyle=":")
    axes.set_xlabel("training wall time (min)")
    axes.set_ylabel("SSIM on the unseen scan (mean over the test objects)")
    axes.set_ylim(-0.05, 1.0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title("Time to quality")
    save_png(figure, path)


def _probe_source(probe: str) -> dict[str, object]:
    """``make_demo_scan``'s probe arguments for a ``--probe`` value: a kind, or a probe file."""
    from ptychopinn_core.simulation.probe import PROBE_KINDS, load_probe

    if probe in PROBE_KINDS:
        return {"probe_kind": probe}
    # The simulate command's record of a probe file.
    return {"probe": load_probe(probe, 64), "meta": {"probe_kind": "file", "probe_file": Path(probe).name}}


def _test_scans(probe: str, args) -> list:
    """The unseen test scans: ``--test-objects`` objects, seeds ``--seed`` + 2, + 3, ..."""
    from ptychopinn_core.simulation import make_demo_scan

    return [make_demo_scan(args.n_test, 64, seed=args.seed + 2 + index, **_probe_source(probe))
            for index in range(args.test_objects)]


def _score_bundles(args, registry, names: list[str]) -> None:
    """``--score``: each bundle's scores on the test objects of its probe (``--probe``, default velociprobe)."""
    from ptychopinn_core.atomic import atomic_write
    from ptychopinn_core.model.bundle import read_bundle

    probe = (args.probe or ["velociprobe"])[0]
    test_scans = _test_scans(probe, args)
    scores = []
    for path in args.score:
        bundle = read_bundle(path)
        trained_by = bundle.manifest["backend"]
        backend = registry.get(trained_by if trained_by in names else names[0])
        scores.append({"model": str(path), "backend": backend.name, "probe": probe,
                       "architecture": bundle.config.model.architecture, **_scores(bundle, test_scans, backend)})
    report = {"benchmark": "time_to_quality", "machine": machine_info(), "settings": _settings(args), "scores": scores}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "scores.json", "w") as handle:
        handle.write(json.dumps(report, indent=2, default=float) + "\n")
    print(json.dumps(report, indent=2, default=float))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", help="comma-separated backend names (default: every installed one)")
    parser.add_argument("--gridsize", type=int, action="append", help="repeatable (default: 1 and 2)")
    parser.add_argument("--probe", action="append",
                        help="probe of the simulated scans, repeatable: a kind (disk, focused, zoneplate, velociprobe) or a probe "
                             "file of side 64 (.npy, or .npz with probeGuess/probe) (default: velociprobe, "
                             "the realistic beam, docs/benchmarks.md 'Network quality' §10)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall-time budget per run")
    parser.add_argument("--n-train", type=int, default=2000, help="training positions")
    parser.add_argument("--n-test", type=int, default=500, help="positions of each unseen test scan")
    parser.add_argument("--test-objects", type=int, default=1,
                        help="unseen test objects (seeds --seed + 2, + 3, ...); scores are their means (default 1)")
    parser.add_argument("--snapshot-seconds", type=float, default=60.0, help="training time between snapshots")
    parser.add_argument("--target", type=float, default=0.9, help="SSIM goal for amplitude and phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-single-minutes", type=float, default=0.0,
                        help="gridsize > 1: train gridsize 1 for these first minutes of the budget, then the "
                             "run's gridsize from those weights (needs model.group_network=shared)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="configuration override (repeatable), e.g. --set model.n_filters_scale=1")
    parser.add_argument("--keep-models", action="store_true",
                        help="write each run's final model bundle to --out (model-BACKEND-PROBE-gGRIDSIZE.zip)")
    parser.add_argument("--score", type=Path, nargs="+", metavar="MODEL",
                        help="train nothing: score these bundles (from --keep-models) on the test objects")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256/64 positions, 0.25 min per run")
    parser.add_argument("--out", type=Path, default=Path("time-to-quality"), help="folder for JSON and PNG")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.n_train, args.n_test, args.snapshot_seconds = 0.25, 256, 64, 5.0
    if args.test_objects < 1:
        parser.error(f"--test-objects must be at least 1, received {args.test_objects}")
    if not 0 <= args.start_single_minutes < args.minutes:
        parser.error(f"--start-single-minutes must be in [0, --minutes), received {args.start_single_minutes}")

    from ptychopinn_core.atomic import atomic_write
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.simulation import make_demo_scan

    registry = BackendRegistry.discover()
    names = args.backends.split(",") if args.backends else [e.name for e in registry.entries() if e.ok]
    if args.score:
        _score_bundles(args, registry, names)
        return
    gridsizes = args.gridsize or [1, 2]
    runs = []
    for probe in args.probe or ["velociprobe"]:
        train_scan = make_demo_scan(args.n_train, 64, seed=args.seed + 1, **_probe_source(probe))
        test_scans = _test_scans(probe, args)
        runs += [_run(registry.get(name), gridsize, train_scan, test_scans, args) for name in names for gridsize in gridsizes]
    report = {"benchmark": "time_to_quality", "machine": machine_info(), "settings": _settings(args), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "time_to_quality.json", "w") as handle:
        handle.write(json.dumps(report, indent=2, default=float) + "\n")
    _figure(runs, args.target, args.out / "time_to_quality.png")
    print(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
