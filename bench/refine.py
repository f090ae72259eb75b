"""Benchmark: physics refinement after the network, against a flat start and pty-chi LSQML.

Run from the repository root (not in CI; run it alone, the machine's cores are shared)::

    .venv/bin/python bench/refine.py --json bench/results/refine-full.json      # ~30-40 min on 2 cores
    .venv/bin/python bench/refine.py --quick                                    # smoke run, < 2 min
    .venv/bin/python bench/refine.py --parts simulated,sweep --train-seconds 60
    .venv/bin/python bench/refine.py --bundle-torch a.ptychopinn --bundle-tf b.ptychopinn

Parts (``--parts``, default all):

``simulated``
    An unseen ``--n-test``-position N = 64 scan (``--nphotons``, default 1e9). For each
    backend: a network trained for ``--train-seconds`` (``training.max_seconds``) on a
    separate ``--n-train``-position scan (or ``--bundle-torch``/``--bundle-tf``), its
    inference timed after a warm-up, then the SSIM of amplitude and phase against the
    truth after every refinement iteration for (a) the network's object and (b)
    :func:`~ptychopinn_core.refine.flat_start` as start (known probe, the ``[refine]``
    defaults unless ``--set refine.KEY=VALUE``). (c) pty-chi LSQML on the same scan in
    its own environment ``.venv-ptychi`` (see bench/star_reference.py, whose position
    conventions and conversion are imported): object from ones, positions fixed, probe
    fixed to the known probe (scaled by the simulation's intensity scale) and, second
    run, refined from it. Each curve gives the wall time and iteration count to reach
    0.95 and 0.98 in amplitude and phase. A curve's wall time is the refinement's own
    (the scoring inside the observer is subtracted); the network's curve starts at its
    inference time. One warm-up refinement (1 iteration) per backend precedes the timed
    ones, as pty-chi's task is built before its timer starts.
``sweep``
    PyTorch only: iterations to 0.8/0.9/0.95/0.98 (both SSIMs) of network vs flat start
    for each dose in ``--sweep-nphotons`` and raster step (default and ``--sparse-factor``
    times it), one network per dose (trained ``--sweep-train-seconds``); plus the
    probe-refinement case (``refine.probe=true``) from a poor probe guess (the true
    probe's amplitude blurred by N/16 px, flat phase).
``star``
    The real Siemens star (516 patterns, N = 128; see docs/real-data.md): a network
    trained like bench/star_pinn.py for ``--star-train-seconds`` with
    ``--star-train-backend`` (or ``--star-bundle``), then refinement with the probe
    refined (``refine.probe=true``) from the network's object and from a flat start,
    against the pty-chi reference ``data/siemens-star/reference-ptychi.npz``: FRC50/SSIM
    of ``evaluate_against_reference``, the normalised cross-correlation of the phase
    after its registration, scaling and phase-plane removal (whole common region and
    its central half), the finest period where the phase FRC is still >= 0.5, and the
    wall time against the reference's recorded one.
``scale``
    Peak RSS and seconds of one refinement iteration (PyTorch, flat start) of a
    ``--scale-positions``-position N = 128 simulated scan, in a fresh subprocess that
    reads the scan from a file (simulated in another subprocess first).

Prints ONE JSON object to stdout (and writes it to ``--json``); logs go to stderr.
Nothing is asserted. The figure (``--figure``) plots SSIM against wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from benchlib import machine_info, peak_rss_bytes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torch's OpenMP threads spin while waiting; on a shared machine that costs it a lot
# (docs/benchmarks.md). Set before any framework import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
PTYCHI_PYTHON = ROOT / ".venv-ptychi" / "bin" / "python"
REFERENCE = ROOT / "data" / "siemens-star" / "reference-ptychi.npz"
THRESHOLDS = (0.95, 0.98)
SWEEP_THRESHOLDS = (0.8, 0.9, 0.95, 0.98)
ALL_PARTS = ("simulated", "sweep", "star", "scale")
BACKEND_KEYS = {"pytorch": "torch", "tensorflow": "tf"}
_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[refine {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- curves


def first_reach(curve: list[dict[str, Any]], threshold: float, parts=("amplitude", "phase")) -> dict | None:
    """The first point of ``curve`` where every SSIM of ``parts`` is >= ``threshold``."""
    for point in curve:
        if all(point[f"{part}_ssim"] >= threshold for part in parts):
            return {"iteration": point["iteration"], "seconds": round(point["seconds"], 3)}
    return None


def summarize(curve: list[dict[str, Any]], thresholds=THRESHOLDS) -> dict[str, Any]:
    """Time/iterations to each threshold (both SSIMs, and each alone), the best and final point."""
    reached = {}
    for threshold in thresholds:
        reached[f"{threshold:g}"] = {
            "both": first_reach(curve, threshold),
            "amplitude": first_reach(curve, threshold, ("amplitude",)),
            "phase": first_reach(curve, threshold, ("phase",)),
        }
    return {
        "reach": reached,
        "start": {key: curve[0][key] for key in ("amplitude_ssim", "phase_ssim")},
        "final": {key: curve[-1][key] for key in ("iteration", "seconds", "amplitude_ssim", "phase_ssim")},
        "best_amplitude_ssim": max(point["amplitude_ssim"] for point in curve),
        "best_phase_ssim": max(point["phase_ssim"] for point in curve),
    }


def simulated_scorer(scan):
    """``score(obj)``: amplitude/phase SSIM of an object on the scan's frame against its truth."""
    from ptychopinn_core.evaluation.report import evaluate
    from ptychopinn_core.physics.stitching import ObjectFrame, default_crop_size
    from ptychopinn_core.reconstruction import META_CROP_SIZE_KEY, Reconstruction

    frame = ObjectFrame.for_object(scan.object.shape)
    meta = {META_CROP_SIZE_KEY: default_crop_size(scan.pattern_size)}

    def score(obj: np.ndarray, probe: np.ndarray | None = None) -> dict[str, float]:
        result = evaluate(Reconstruction(object=obj, frame=frame, meta=meta), scan.object, scan.positions_px)
        return {"amplitude_ssim": float(result["amplitude"]["ssim"]), "phase_ssim": float(result["phase"]["ssim"])}

    return score


def refine_curve(start, scan, config, backend, score, *, start_seconds: float = 0.0, every: int = 1):
    """Refine ``start`` and score it after every ``every``-th iteration; the scoring time is not counted.

    Returns ``(curve, result)``: points ``{iteration, seconds, ...score}`` from the start
    (iteration 0 at ``start_seconds``) and the refined reconstruction.
    """
    from ptychopinn_core import workflow

    curve = [{"iteration": 0, "seconds": start_seconds, **score(start.object, start.probe)}]
    iterations = config.refine.iterations
    excluded = 0.0
    began = time.perf_counter()

    def observe(iteration: int, obj: np.ndarray, probe: np.ndarray) -> None:
        nonlocal excluded
        now = time.perf_counter()
        done = iteration + 1
        if done % every == 0 or done == iterations:
            curve.append({"iteration": done, "seconds": start_seconds + now - began - excluded, **score(obj, probe)})
        excluded += time.perf_counter() - now

    result = workflow.refine(start, scan, config, backend, observe=observe)
    return curve, result


def flat_reconstruction(scan, config, probe=None):
    """The flat start as a Reconstruction on the scan's frame (:func:`workflow.flat_reconstruction`)."""
    from ptychopinn_core import workflow

    return workflow.flat_reconstruction(scan, config, probe)


def with_probe(recon, probe):
    return dataclasses.replace(recon, probe=probe)


# --------------------------------------------------------------------------- networks


def train_network(scan, backend, seconds: float, seed: int, overrides: dict[str, Any]):
    """``workflow.train`` with ``training.max_seconds = seconds``; returns ``(bundle, wall seconds)``."""
    from ptychopinn_core import workflow
    from ptychopinn_core.config import Config

    config = Config().with_overrides({
        "data.nphotons": float(scan.meta.get("nphotons", 1e9)),
        "training.epochs": 100_000,
        "training.early_stopping_patience": None,
        "training.max_seconds": seconds,
        "training.seed": seed,
        **overrides,
    })
    began = time.perf_counter()
    bundle = workflow.train(scan, config, backend)
    return bundle, time.perf_counter() - began


def timed_inference(bundle, scan, backend):
    """The network's reconstruction of ``scan`` and its wall time (after one warm-up pass)."""
    from ptychopinn_core import workflow

    workflow.reconstruct(bundle, scan, backend)
    began = time.perf_counter()
    recon = workflow.reconstruct(bundle, scan, backend)
    return recon, time.perf_counter() - began


def refine_config(bundle_config, nphotons: float, args, **refine):
    """The bundle's configuration with the photon scale of the scan and today's ``[refine]`` defaults
    (a saved bundle carries those of its training run), then ``--set`` and ``refine``."""
    from ptychopinn_core.config import parse_assignments

    from ptychopinn_core.workflow import with_default_refine

    config = with_default_refine(bundle_config).with_overrides({"data.nphotons": float(nphotons)})
    if args.overrides:
        config = config.with_overrides(parse_assignments(args.overrides))
    if refine:
        config = config.with_overrides({f"refine.{key}": value for key, value in refine.items()})
    return config


def warm_up(start, scan, config, backend) -> None:
    """One iteration of refinement: thread pools, kernels and tracing are ready before timing."""
    from ptychopinn_core import workflow

    workflow.refine(start, scan, config.with_overrides({"refine.iterations": 1}), backend)


# --------------------------------------------------------------------------- pty-chi


def run_ptychi(scan_path: Path, args, *, probe: bool, label: str) -> dict[str, Any]:
    """pty-chi LSQML on ``scan_path`` in ``.venv-ptychi`` (:func:`ptychi_child`); its JSON result."""
    out = scan_path.with_name(f"ptychi-{label}.json")
    command = [str(PTYCHI_PYTHON), str(Path(__file__).resolve()), "--ptychi-child", str(scan_path),
               "--ptychi-epochs", str(args.ptychi_epochs), "--ptychi-batch-size", str(args.ptychi_batch_size),
               "--json", str(out), "--seed", str(args.seed)] + (["--ptychi-probe"] if probe else [])
    log(f"pty-chi ({label}): {' '.join(command[1:])}")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.ptychi_timeout)
    if result.returncode != 0:
        log(f"pty-chi ({label}) failed: {result.stderr[-2000:]}")
        return {"error": result.stderr[-2000:]}
    return json.loads(out.read_text())


def ptychi_child(args) -> None:
    """In ``.venv-ptychi``: LSQML one epoch at a time on a simulated scan, scored after each epoch."""
    import star_reference as ref

    torchvision_stand_in = ref._stand_in_torchvision()
    import logging

    import ptychi
    import torch
    from ptychi.api.task import PtychographyTask

    from ptychopinn_core.data import read_scan

    logging.getLogger("ptychi").setLevel(logging.WARNING)
    scan = read_scan(args.ptychi_child)
    options = ref.lsqml_options(scan, SimpleNamespace(
        epochs=args.ptychi_epochs, batch_size=args.ptychi_batch_size, seed=args.seed,
        position_correction_start=args.ptychi_epochs))  # positions fixed
    options.probe_options.optimizable = bool(args.ptychi_probe)
    data = ref.task_data(scan)
    # The known probe, at the simulation's scale: the object then needs no rescaling.
    data["probe_data"] = (scan.probe * float(scan.meta["intensity_scale"]))[None, None].astype(np.complex64)
    score = simulated_scorer(scan)
    began = time.perf_counter()
    task = PtychographyTask(options, **data)
    ref.check_position_convention(task, scan)
    setup_s = time.perf_counter() - began
    obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    curve = [{"iteration": 0, "seconds": 0.0, **score(obj)}]
    running = 0.0
    extra = None
    for epoch in range(1, args.ptychi_epochs + 1):
        began = time.perf_counter()
        task.run(n_epochs=1)
        running += time.perf_counter() - began
        obj = task.get_data_to_cpu("object", as_numpy=True)[0]
        curve.append({"iteration": epoch, "seconds": running, **score(obj)})
        if extra is None and first_reach(curve, max(THRESHOLDS)) is not None:
            extra = 3
        if extra is not None:
            extra -= 1
            if extra < 0:
                break
    report = {"package": f"ptychi {ptychi.__version__}", "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "torchvision_stand_in": torchvision_stand_in,
              "algorithm": "LSQML", "batch_size": args.ptychi_batch_size, "probe_refined": bool(args.ptychi_probe),
              "positions": "fixed", "object_start": "ones", "setup_s": setup_s,
              "seconds_per_epoch": running / (len(curve) - 1), "curve": curve, **summarize(curve)}
    Path(args.json).write_text(json.dumps(report, indent=2))


def ensure_ptychi_venv() -> bool:
    """Create ``.venv-ptychi`` as bench/star_reference.py documents, when missing."""
    if PTYCHI_PYTHON.exists():
        return True
    log("creating .venv-ptychi (bench/star_reference.py)")
    try:
        subprocess.run(["python3", "-m", "venv",
                        str(ROOT / ".venv-ptychi")], check=True, cwd=ROOT)
        subprocess.run([str(ROOT / ".venv-ptychi" / "bin" / "pip"), "install", "torch==2.13.0", "torchvision",
                        "ptychi", "-e", "."], check=True, cwd=ROOT, stdout=sys.stderr)
    except (OSError, subprocess.CalledProcessError) as error:
        log(f"could not create .venv-ptychi: {error}")
        return False
    return PTYCHI_PYTHON.exists()


# --------------------------------------------------------------------------- parts


def part_simulated(args, registry, names, workdir: Path, bundles: dict) -> dict[str, Any]:
    from ptychopinn_core.data import write_scan
    from ptychopinn_core.model.bundle import read_bundle, write_bundle
    from ptychopinn_core.simulation import make_demo_scan

    log(f"simulating {args.n_train} training and {args.n_test} test positions, nphotons {args.nphotons:g}")
    train_scan = make_demo_scan(args.n_train, 64, nphotons=args.nphotons, seed=args.seed + 1)
    test_scan = make_demo_scan(args.n_test, 64, nphotons=args.nphotons, seed=args.seed + 2)
    score = simulated_scorer(test_scan)
    runs: dict[str, Any] = {}
    for name in names:
        backend = registry.get(name)
        given = getattr(args, f"bundle_{BACKEND_KEYS[name]}")
        if given:
            bundle, training_s = read_bundle(given), None
            log(f"{name}: bundle {given}")
        else:
            log(f"{name}: training {args.train_seconds:g} s on {args.n_train} positions")
            bundle, training_s = train_network(train_scan, backend, args.train_seconds, args.seed, {})
            if args.save_bundles:
                args.save_bundles.mkdir(parents=True, exist_ok=True)
                write_bundle(args.save_bundles / f"sim-{name}.ptychopinn", bundle)
        bundles[name] = bundle
        network, inference_s = timed_inference(bundle, test_scan, backend)
        config = refine_config(bundle.config, args.nphotons, args, iterations=args.iterations)
        flat = flat_reconstruction(test_scan, config)
        warm_up(flat, test_scan, config, backend)
        log(f"{name}: inference {inference_s:.2f} s; refining network and flat starts, {args.iterations} iterations")
        curves = {}
        curves["network"], _ = refine_curve(network, test_scan, config, backend, score, start_seconds=inference_s)
        curves["flat"], _ = refine_curve(flat, test_scan, config, backend, score)
        epochs = len(bundle.history.epochs) if bundle.history else None
        runs[name] = {
            "framework_version": backend.entry.framework_version,
            "training_s": training_s, "training_epochs": epochs,
            "inference_s": round(inference_s, 3),
            "refine": config.refine.model_dump(mode="json"),
            **{start: {**summarize(curve), "curve": curve} for start, curve in curves.items()},
        }
        for start in curves:
            log(f"{name} {start}: {json.dumps(runs[name][start]['reach'])}")
    ptychi: dict[str, Any] = {}
    if args.ptychi and ensure_ptychi_venv():
        scan_path = workdir / "sim-test.npz"
        write_scan(scan_path, test_scan)
        ptychi["probe_fixed"] = run_ptychi(scan_path, args, probe=False, label="probe-fixed")
        if args.ptychi_probe_run:
            ptychi["probe_refined"] = run_ptychi(scan_path, args, probe=True, label="probe-refined")
    ratios = {}
    fixed = ptychi.get("probe_fixed", {})
    for name, run in runs.items():
        for start in ("network", "flat"):
            for threshold in THRESHOLDS:
                key = f"{threshold:g}"
                ours = run[start]["reach"][key]["both"]
                theirs = fixed.get("reach", {}).get(key, {}).get("both")
                ratios[f"{name}/{start}/{key}"] = (
                    round(ours["seconds"] / theirs["seconds"], 3) if ours and theirs and theirs["seconds"] > 0
                    else None)
    return {
        "train_scan": {"n_positions": args.n_train, "nphotons": args.nphotons, "seed": args.seed + 1},
        "test_scan": {"n_positions": test_scan.n_positions, "nphotons": args.nphotons, "seed": args.seed + 2,
                      "object_shape": list(test_scan.object.shape)},
        "runs": runs, "ptychi": ptychi,
        "seconds_ratio_to_ptychi_probe_fixed": ratios,
    }


def poor_probe_guess(probe: np.ndarray) -> np.ndarray:
    """The true probe's amplitude blurred by ``N / 16`` px with a flat phase, normalised as the model's."""
    from scipy import ndimage

    from ptychopinn_core.physics.probe_model import normalise_probe

    blurred = ndimage.gaussian_filter(np.abs(probe).astype(np.float64), sigma=probe.shape[0] / 16)
    return normalise_probe(blurred.astype(np.complex64)).astype(np.complex64)


def part_sweep(args, registry, bundles: dict) -> dict[str, Any]:
    from ptychopinn_core import workflow
    from ptychopinn_core.simulation import make_demo_scan
    from ptychopinn_core.simulation.positions import default_step_px

    backend = registry.get("pytorch")
    cases = []
    for nphotons in args.sweep_nphotons:
        if nphotons == args.nphotons and "pytorch" in bundles:
            bundle, training_s = bundles["pytorch"], None
        else:
            log(f"sweep: training pytorch at nphotons {nphotons:g} for {args.sweep_train_seconds:g} s")
            train_scan = make_demo_scan(args.n_train, 64, nphotons=nphotons, seed=args.seed + 1)
            bundle, training_s = train_network(train_scan, backend, args.sweep_train_seconds, args.seed, {})
        variants = [(factor, False) for factor in (1.0, args.sparse_factor)]
        if nphotons == max(args.sweep_nphotons):
            variants.append((1.0, True))
        for factor, poor_probe in variants:
            step = factor * default_step_px(64)
            scan = make_demo_scan(args.n_test, 64, nphotons=nphotons, seed=args.seed + 2, step_px=step)
            score = simulated_scorer(scan)
            network, inference_s = timed_inference(bundle, scan, backend)
            extra = {"probe": True} if poor_probe else {}
            config = refine_config(bundle.config, nphotons, args, iterations=args.sweep_iterations, **extra)
            probe = poor_probe_guess(scan.probe) if poor_probe else workflow.refine_probe_for(scan, config)
            flat = flat_reconstruction(scan, config, probe)
            network = with_probe(network, probe)
            result = {"nphotons": nphotons, "step_px": round(step, 3), "step_factor": factor,
                      "probe": "poor guess, refined" if poor_probe else "known",
                      "network_training_s": training_s, "inference_s": round(inference_s, 3)}
            for start, recon in (("network", network), ("flat", flat)):
                curve, _ = refine_curve(recon, scan, config, backend, score, start_seconds=0.0)
                summary = summarize(curve, SWEEP_THRESHOLDS)
                result[start] = {**summary, "curve": curve}
            reach_n = result["network"]["reach"]["0.95"]["both"]
            reach_f = result["flat"]["reach"]["0.95"]["both"]
            result["iteration_ratio_0.95"] = (reach_n["iteration"] / reach_f["iteration"]
                                              if reach_n and reach_f and reach_f["iteration"] else None)
            log(f"sweep {nphotons:g} x{factor} {result['probe']}: network "
                f"{result['network']['start']} -> {reach_n}; flat -> {reach_f}; "
                f"best n {result['network']['best_amplitude_ssim']:.3f}/{result['network']['best_phase_ssim']:.3f} "
                f"f {result['flat']['best_amplitude_ssim']:.3f}/{result['flat']['best_phase_ssim']:.3f}")
            cases.append(result)
    return {"backend": "pytorch", "iterations": args.sweep_iterations, "thresholds": list(SWEEP_THRESHOLDS),
            "cases": cases}


def star_scorer(scan, reference):
    """``score(obj)``: agreement with the pty-chi reference (evaluate_against_reference, phase NCC, FRC)."""
    from ptychopinn_core.evaluation.aligned_pair import align_to_reference
    from ptychopinn_core.evaluation.metrics import image_metrics
    from ptychopinn_core.physics.stitching import default_crop_size
    from ptychopinn_core.reconstruction import META_CROP_SIZE_KEY, Reconstruction
    from ptychopinn_core.workflow import object_frame_for

    frame = object_frame_for(scan)
    meta = {META_CROP_SIZE_KEY: default_crop_size(scan.pattern_size)}

    def ncc(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float(np.sum(a * b) / math.sqrt(np.sum(a * a) * np.sum(b * b)))

    def score(obj: np.ndarray, probe: np.ndarray | None = None) -> dict[str, Any]:
        pair = align_to_reference(Reconstruction(object=obj, frame=frame, meta=meta), reference,
                                  positions_xy=scan.positions_px)
        phase = image_metrics(pair.recon_phase, pair.truth_phase, "phase")
        amplitude = image_metrics(pair.recon_amplitude, pair.truth_amplitude, "amplitude")
        height, width = pair.truth.shape
        centre = (slice(height // 4, height - height // 4), slice(width // 4, width - width // 4))
        frequencies = np.asarray(phase["frc"]["frequency_nyquist"])
        correlation = np.asarray(phase["frc"]["correlation"])
        above = np.nonzero(correlation >= 0.5)[0]
        finest = float(frequencies[above[-1]]) if above.size else None
        return {
            "phase_ncc": ncc(pair.recon_phase, pair.truth_phase),
            "phase_ncc_central": ncc(pair.recon_phase[centre], pair.truth_phase[centre]),
            "amplitude_ncc": ncc(pair.recon_amplitude, pair.truth_amplitude),
            "phase_ssim": float(phase["ssim"]), "amplitude_ssim": float(amplitude["ssim"]),
            "phase_frc50": phase["frc50"], "amplitude_frc50": amplitude["frc50"],
            "phase_frc_last_above_half_nyquist": finest,
            "finest_period_px": (2.0 / finest) if finest else None,
            "shift_px": [round(pair.alignment["shift_x_px"], 3), round(pair.alignment["shift_y_px"], 3)],
            "region_shape": list(pair.truth.shape),
        }

    return score


def part_star(args, registry) -> dict[str, Any]:
    import star_pinn

    from ptychopinn_core.data.importers import import_scan
    from ptychopinn_core.model.bundle import read_bundle, write_bundle
    from ptychopinn_core.reconstruction import read_reconstruction

    scan = import_scan(star_pinn.STAR)
    if args.star_subset:
        scan = star_pinn.central_subset(scan, args.star_subset)
    reference = read_reconstruction(REFERENCE)
    score = star_scorer(scan, reference)
    train_backend = registry.get(args.star_train_backend)
    if args.star_bundle:
        bundle, training = read_bundle(args.star_bundle), {"bundle": str(args.star_bundle)}
        log(f"star: bundle {args.star_bundle}")
    else:
        settings = SimpleNamespace(gridsize=1, n_filters_scale=1, probe_trainable=False, n_groups=None,
                                   batch_size=8, learning_rate=1e-3, seed=args.seed)
        config = star_pinn.star_config(settings, scan)
        log(f"star: training {args.star_train_backend} for {args.star_train_seconds:g} s (bench/star_pinn.py settings)")
        bundle, training = star_pinn.train_within(train_backend, scan, config, args.star_train_seconds)
        training["epochs"] = len(bundle.history.epochs)
        training["backend"] = args.star_train_backend
        if args.save_bundles:
            args.save_bundles.mkdir(parents=True, exist_ok=True)
            write_bundle(args.save_bundles / f"star-{args.star_train_backend}.ptychopinn", bundle)
    nphotons = bundle.config.data.nphotons
    runs: dict[str, Any] = {}
    for name in args.star_backends:
        backend = registry.get(name)
        network, inference_s = timed_inference(bundle, scan, backend)
        config = refine_config(bundle.config, nphotons, args, iterations=args.star_iterations, probe=True,
                               **({"probe_delay": args.star_probe_delay} if args.star_probe_delay is not None else {}),
                               **({"probe_step_size": args.star_probe_step} if args.star_probe_step else {}))
        flat = flat_reconstruction(scan, config)
        warm_up(flat, scan, config, backend)
        run: dict[str, Any] = {"inference_s": round(inference_s, 3), "refine": config.refine.model_dump(mode="json")}
        for start, recon in (("network", network), ("flat", flat)):
            log(f"star {name}: refining the {start} start, {args.star_iterations} iterations, probe refined")
            offset = inference_s if start == "network" else 0.0
            curve, _ = refine_curve(recon, scan, config, backend, score, start_seconds=offset,
                                    every=args.star_every)
            run[start] = {"start": curve[0], "final": curve[-1],
                          "best_phase_ncc": max(p["phase_ncc"] for p in curve),
                          "seconds_per_iteration": (curve[-1]["seconds"] - offset) / args.star_iterations,
                          "curve": curve}
            log(f"star {name} {start}: start ncc {curve[0]['phase_ncc']:.3f} -> {curve[-1]['phase_ncc']:.3f} "
                f"(central {curve[-1]['phase_ncc_central']:.3f}), {curve[-1]['seconds']:.1f} s")
        runs[name] = run
    made = reference.meta
    return {
        "n_positions": scan.n_positions, "pattern_size": scan.pattern_size, "nphotons": nphotons,
        "network_training": training, "iterations": args.star_iterations, "runs": runs,
        "reference": {"file": str(REFERENCE.relative_to(ROOT)), "package": made.get("package"),
                      "reconstruction_s": made.get("reconstruction_s"),
                      "reconstruction_cpu_s": made.get("reconstruction_cpu_s"),
                      "epochs": made.get("settings", {}).get("epochs"),
                      "note": "recorded by bench/star_reference.py on a shared machine; "
                              "probe and positions refined, 150 epochs"},
    }


def high_water_rss_bytes() -> int:
    """This process's own peak RSS (``VmHWM``): Linux carries ``ru_maxrss`` over from the
    parent through fork and exec, so a child started by a big parent would report the parent's."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def scale_child(args) -> None:
    """Fresh process: read the scan, refine one iteration (PyTorch, flat start), report peak RSS and time."""
    from ptychopinn_core import workflow
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.config import Config
    from ptychopinn_core.data import read_scan

    began = time.perf_counter()
    scan = read_scan(args.scale_child)
    read_s = time.perf_counter() - began
    rss_read = high_water_rss_bytes()
    backend = BackendRegistry.discover().get("pytorch")
    config = Config().with_overrides({"model.pattern_size": scan.pattern_size, "data.nphotons": 1e9,
                                      "refine.iterations": 1})
    flat = flat_reconstruction(scan, config)
    rss_before = high_water_rss_bytes()
    began = time.perf_counter()
    result = workflow.refine(flat, scan, config, backend)
    seconds = time.perf_counter() - began
    report = {"n_positions": scan.n_positions, "pattern_size": scan.pattern_size,
              "object_shape": list(scan.object.shape), "diffraction_bytes": int(scan.diffraction.nbytes),
              "read_s": read_s, "seconds_per_iteration": seconds,
              "peak_rss_after_read_bytes": rss_read, "peak_rss_before_refine_bytes": rss_before,
              "peak_rss_bytes": high_water_rss_bytes(), "finite": bool(np.all(np.isfinite(result.object)))}
    Path(args.json).write_text(json.dumps(report))


def scale_simulate_child(args) -> None:
    """Fresh process: simulate the scale scan and write it without its patches (Y)."""
    from ptychopinn_core.data import write_scan
    from ptychopinn_core.simulation import make_demo_scan

    began = time.perf_counter()
    scan = make_demo_scan(args.scale_positions, 128, seed=args.seed + 3)
    write_scan(args.scale_simulate, dataclasses.replace(scan, patches=None))
    Path(args.json).write_text(json.dumps({"simulate_s": time.perf_counter() - began,
                                           "peak_rss_bytes": high_water_rss_bytes()}))


def part_scale(args, workdir: Path) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    scan_path = workdir / "scale.npz"
    sim_json, refine_json = workdir / "scale-simulate.json", workdir / "scale-refine.json"
    log(f"scale: simulating {args.scale_positions} positions of N = 128")
    subprocess.run([sys.executable, script, "--scale-simulate", str(scan_path), "--scale-positions",
                    str(args.scale_positions), "--json", str(sim_json), "--seed", str(args.seed)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    log("scale: refining one iteration in a fresh process")
    subprocess.run([sys.executable, script, "--scale-child", str(scan_path), "--json", str(refine_json)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    simulate = json.loads(sim_json.read_text())
    refine = json.loads(refine_json.read_text())
    scan_path.unlink(missing_ok=True)
    limit = 2 * 1024**3
    return {**refine, "simulation": simulate, "limit_bytes": limit, "under_limit": refine["peak_rss_bytes"] < limit}


# --------------------------------------------------------------------------- figure


def write_figure(report: dict[str, Any], path: Path) -> None:
    """SSIM against wall time (log x): amplitude and phase panels, a line per method and backend."""
    from matplotlib.figure import Figure

    from ptychopinn_core.figures import save_png

    simulated = report.get("simulated")
    if not simulated:
        return
    lines = []
    for name, run in simulated["runs"].items():
        lines.append((f"{name}: network + refinement", run["network"]["curve"], "-"))
        lines.append((f"{name}: flat + refinement", run["flat"]["curve"], "--"))
    for label, run in simulated.get("ptychi", {}).items():
        if "curve" in run:
            lines.append((f"pty-chi LSQML, {label.replace('_', ' ')}", run["curve"], ":"))
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    for index, (label, curve, style) in enumerate(lines):
        points = [p for p in curve if p["seconds"] > 0] or curve
        for panel, part in zip(axes, ("amplitude", "phase")):
            panel.plot([max(p["seconds"], 1e-3) for p in points], [p[f"{part}_ssim"] for p in points], style,
                       marker="o", markersize=2.5, color=f"C{index}", label=label)
    for panel, part in zip(axes, ("amplitude", "phase")):
        panel.set_xscale("log")
        for threshold in THRESHOLDS:
            panel.axhline(threshold, color="gray", linewidth=0.7, linestyle=":")
        panel.set_xlabel("wall time (s; network curves include inference)")
        panel.set_title(f"{part} SSIM vs truth")
        panel.grid(alpha=0.3)
    axes[0].set_ylabel("SSIM, unseen simulated scan")
    axes[0].set_ylim(0, 1.01)
    axes[1].legend(fontsize=7, loc="lower right")
    test = simulated["test_scan"]
    figure.suptitle(f"Refinement: {test['n_positions']} positions, N = 64, {test['nphotons']:g} photons", fontsize=10)
    save_png(figure, path)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(ALL_PARTS), help=f"comma-separated subset of {ALL_PARTS}")
    parser.add_argument("--backends", default="pytorch,tensorflow")
    parser.add_argument("--n-train", type=int, default=1500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--nphotons", type=float, default=1e9)
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument("--iterations", type=int, default=30, help="refinement iterations of the curves")
    parser.add_argument("--bundle-torch", type=Path)
    parser.add_argument("--bundle-tf", type=Path)
    parser.add_argument("--save-bundles", type=Path, help="folder to keep the trained bundles in")
    parser.add_argument("--no-ptychi", dest="ptychi", action="store_false")
    parser.add_argument("--no-ptychi-probe-run", dest="ptychi_probe_run", action="store_false")
    parser.add_argument("--ptychi-epochs", type=int, default=60, help="at most; stops 3 epochs after 0.98")
    parser.add_argument("--ptychi-batch-size", type=int, default=96, help="as bench/star_reference.py")
    parser.add_argument("--ptychi-timeout", type=float, default=900.0)
    parser.add_argument("--sweep-nphotons", type=float, nargs="+", default=[1e9, 1e6, 1e4])
    parser.add_argument("--sparse-factor", type=float, default=1.5)
    parser.add_argument("--sweep-train-seconds", type=float, default=120.0)
    parser.add_argument("--sweep-iterations", type=int, default=30)
    parser.add_argument("--star-bundle", type=Path)
    parser.add_argument("--star-train-backend", default="tensorflow")
    parser.add_argument("--star-train-seconds", type=float, default=180.0)
    parser.add_argument("--star-backends", default="pytorch", help="backends that refine the star")
    parser.add_argument("--star-iterations", type=int, default=40)
    parser.add_argument("--star-every", type=int, default=4, help="score the star every this many iterations")
    parser.add_argument("--star-probe-delay", type=int, default=None)
    parser.add_argument("--star-probe-step", type=float, default=None)
    parser.add_argument("--star-subset", type=int, default=None)
    parser.add_argument("--scale-positions", type=int, default=10_000)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="refine.KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: small scans, seconds of training")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    parser.add_argument("--figure", type=Path, help="PNG of SSIM against wall time")
    # Internal: the subprocesses.
    parser.add_argument("--ptychi-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ptychi-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scale-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scale-simulate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ptychi_child:
        return ptychi_child(args)
    if args.scale_child:
        return scale_child(args)
    if args.scale_simulate:
        return scale_simulate_child(args)
    if args.quick:
        args.n_train, args.n_test, args.train_seconds, args.iterations = 128, 64, 2.0, 3
        args.ptychi_epochs, args.ptychi_probe_run = 3, False
        args.sweep_nphotons, args.sweep_train_seconds, args.sweep_iterations = [1e9], 2.0, 2
        args.star_subset, args.star_train_seconds, args.star_iterations, args.star_every = 64, 1.0, 2, 1
        args.scale_positions = 300
    args.star_backends = args.star_backends.split(",")

    from ptychopinn_core.atomic import atomic_write
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.evaluation.metrics import metrics_to_json

    parts = args.parts.split(",")
    registry = BackendRegistry.discover()
    names = [name for name in args.backends.split(",") if name in registry.names()]
    report: dict[str, Any] = {"benchmark": "refine", "machine": machine_info(),
                              "settings": {key: (str(value) if isinstance(value, Path) else value)
                                           for key, value in vars(args).items()}}
    bundles: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-refine-") as folder:
        workdir = Path(folder)
        for part in parts:
            began = time.perf_counter()
            if part == "simulated":
                report["simulated"] = part_simulated(args, registry, names, workdir, bundles)
            elif part == "sweep":
                report["sweep"] = part_sweep(args, registry, bundles)
            elif part == "star":
                report["star"] = part_star(args, registry)
            elif part == "scale":
                report["scale"] = part_scale(args, workdir)
            else:
                raise SystemExit(f"unknown part {part!r}: choose from {ALL_PARTS}")
            report.setdefault("part_seconds", {})[part] = round(time.perf_counter() - began, 1)
            log(f"{part} done in {report['part_seconds'][part]} s")
            if args.json:  # partial results survive a later failure
                args.json.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(args.json, "w") as handle:
                    handle.write(json.dumps(metrics_to_json(report), indent=1, allow_nan=False) + "\n")
    report["peak_rss_bytes"] = peak_rss_bytes()
    text = json.dumps(metrics_to_json(report), indent=1, allow_nan=False)
    if args.json:
        with atomic_write(args.json, "w") as handle:
            handle.write(text + "\n")
    if args.figure:
        write_figure(report, args.figure)
    print(text)


if __name__ == "__main__":
    main()
