"""Diagnosis: where a trained model's reconstruction error lies (seen vs unseen, phase offsets, crop).

Run from the repository root, on a bundle written by ``bench/time_to_quality.py --keep-models``::

    .venv/bin/python bench/diagnose_model.py time-to-quality/model-pytorch-velociprobe-g2.zip
    .venv/bin/python bench/diagnose_model.py MODEL.zip --backend tensorflow --out diagnosis
    .venv/bin/python bench/diagnose_model.py MODEL.zip --n-train 8000 --n-test 2000 --unseen-only

The scans are those of ``bench/time_to_quality.py`` (same seeds, probe, sizes): the
training scan (the *seen* object) and the unseen test scan. For each, with the model's
predictions stitched as ``ptychopinn infer`` does and scored as the benchmark scores them:

- ``ssim``: amplitude and phase SSIM; ``phase_rmse_low`` / ``phase_rmse_high``: the phase
  error below and above a Gaussian low-pass of sigma 2 px (where the error lives);
- ``oracle_offsets``: the same after multiplying each position's patch by the phase
  ``exp(-i d_k)`` that best aligns it with the true patch in the stitching crop. Far-field
  data cannot tell a patch's constant phase; what this recovers is the part of the phase
  error that is a per-patch offset (an upper bound, it uses the truth);
- ``oracle_planes``: the same with a phase plane (offset and ramp) per patch fitted to
  the truth in the crop: how much of the error is low-order per patch (a ramp is not an
  ambiguity of the data, but errs the way an offset does);
- ``plain`` / ``phase_sync``: SSIM with the plain average of the patches and with the
  core's phase-synchronised stitching (``inference.phase_sync``, the default; physics.md,
  Stitching: offsets chosen without the truth so that the patches agree), and the
  Newton steps it took;
- ``phase_sync_anchor``: the synchronisation with its anchor ``lambda`` swept (0: the
  overlaps alone; SSIM and steps per value; the default is
  ``ptychopinn_core.physics.stitching.PHASE_SYNC_ANCHOR``);
- ``crop``: the stitching crop swept around the model's (``-8 .. +8`` px; SSIM per crop,
  phase-synchronised);
- ``border``: SSIM of the scored region shrunk by 8, 16 and 32 px on every side (is the
  error where few patches overlap, at the scan's edge?);
- ``phase_gain``: the least-squares slope of the reconstructed phase on the true phase
  (after the scoring's plane removal; 1: the phase contrast is kept, below 1: shrunk
  towards the mean) and the correlation of the low-passed phase error with the low-passed
  true phase (near -1: the error is a shortfall where the phase is high).

Prints ONE JSON object, writes it and a PNG of the error maps to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from benchlib import machine_info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LOW_PASS_SIGMA_PX = 2.0
CROP_STEPS = (-8, -4, 0, 4, 8)  # around the model's stitching crop
BORDER_MARGINS_PX = (8, 16, 32)  # the scored region shrunk by these on every side
ANCHORS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)  # phase synchronisation's pull to each patch's own phase


def _scans(args, probe_kind: str):
    from ptychopinn_core.simulation import make_demo_scan

    size = args.pattern_size
    seen = {} if args.unseen_only else {"seen": make_demo_scan(args.n_train, size, seed=args.seed + 1, probe_kind=probe_kind)}
    return seen | {"unseen": make_demo_scan(args.n_test, size, seed=args.seed + 2, probe_kind=probe_kind)}


def _diagnose(bundle, backend, scan) -> tuple[dict[str, object], object]:
    from scipy import ndimage

    from ptychopinn_core import workflow
    from ptychopinn_core.evaluation.aligned_pair import align_to_truth
    from ptychopinn_core.evaluation.report import evaluate
    from ptychopinn_core.inference_chunks import prepare_inference_inputs
    from ptychopinn_core.physics.stitching import Stitcher, default_crop_size
    from ptychopinn_core.physics.translate import extract_patches
    from ptychopinn_core.reconstruction import Reconstruction

    def ssim(recon) -> list[float]:
        metrics = evaluate(recon, scan.object, scan.positions_px)
        return [round(metrics[part]["ssim"], 4) for part in ("amplitude", "phase")]

    size = scan.pattern_size
    synced = _with(bundle, {"inference.phase_sync": True})
    base = workflow.reconstruct(synced, scan, backend)
    bundle = _with(bundle, {"inference.phase_sync": False})
    config = bundle.config
    plain = workflow.reconstruct(bundle, scan, backend)
    pair = align_to_truth(base, scan.object, scan.positions_px)
    error = pair.recon_phase - pair.truth_phase
    low = ndimage.gaussian_filter(error, LOW_PASS_SIGMA_PX)
    report: dict[str, object] = {
        "ssim": ssim(base),
        "plain": {"ssim": ssim(plain)},
        "phase_sync": {"ssim": ssim(base), "steps": base.meta["phase_sync_steps"]},
        "phase_rmse": float(np.sqrt(np.mean(error**2))),
        "phase_rmse_low": float(np.sqrt(np.mean(low**2))),
        "phase_rmse_high": float(np.sqrt(np.mean((error - low) ** 2))),
        "border": _border(pair),
        "phase_gain": _phase_gain(pair, low),
    }

    model = backend.build_model(config, bundle.state, bundle.weights)
    patches, positions = [], []
    for chunk in prepare_inference_inputs(scan, config, bundle.state):
        patches.append(model.predict(chunk.diffraction, chunk.offsets_xy)[:, 0])
        positions.append(chunk.positions_xy[:, 0])
    patches = np.concatenate(patches).astype(np.complex128)
    positions = np.concatenate(positions)
    crop = config.inference.stitch_crop or default_crop_size(size)
    window = slice(size // 2 - crop // 2, size // 2 - crop // 2 + crop)

    def stitched(values: np.ndarray, **sync) -> Reconstruction:
        stitcher = Stitcher(base.frame, crop_size=crop, patch_size=size, **sync)
        stitcher.add(values, positions)
        obj = stitcher.result()
        meta = dict(base.meta, phase_sync_steps=stitcher.sync_steps_run)
        return Reconstruction(object=obj, frame=base.frame, meta=meta)

    def offsets_to(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
        overlap = np.sum(reference[:, window, window] * np.conj(values[:, window, window]), axis=(1, 2))
        return np.exp(1j * np.angle(overlap))[:, None, None]

    truth = extract_patches(scan.object, positions, size).astype(np.complex128)
    oracle = offsets_to(truth, patches)
    report["oracle_offsets"] = {"ssim": ssim(stitched(patches * oracle)),
                                "offset_std_rad": float(np.std(np.angle(oracle)))}
    report["oracle_planes"] = {"ssim": ssim(stitched(patches * oracle * _planes_to(truth, patches * oracle, window)))}
    anchors = {}
    for anchor in ANCHORS:
        recon = stitched(patches, phase_sync=True, phase_sync_anchor=anchor)
        anchors[str(anchor)] = {"ssim": ssim(recon), "steps": recon.meta["phase_sync_steps"]}
    report["phase_sync_anchor"] = anchors
    crops = {}
    for value in sorted({min(size, max(8, crop + step)) for step in CROP_STEPS}):
        crops[str(value)] = ssim(workflow.reconstruct(_with(synced, {"inference.stitch_crop": value}), scan, backend))
    report["crop"] = crops
    return report, pair


def _border(pair) -> dict[str, list[float]]:
    """SSIM (amplitude, phase) of the aligned pair's region shrunk by each margin that
    leaves room for the SSIM window."""
    from ptychopinn_core.evaluation.metrics import SSIM_WINDOW_PX, image_metrics

    scores = {}
    for margin in BORDER_MARGINS_PX:
        if min(pair.truth.shape) < 2 * margin + SSIM_WINDOW_PX:
            continue
        inner = (slice(margin, -margin), slice(margin, -margin))
        scores[str(margin)] = [
            round(image_metrics(recon[inner], truth[inner], part)["ssim"], 4)
            for part, recon, truth in (("amplitude", pair.recon_amplitude, pair.truth_amplitude),
                                       ("phase", pair.recon_phase, pair.truth_phase))
        ]
    return scores


def _phase_gain(pair, low_error: np.ndarray) -> dict[str, float]:
    """Slope of the reconstructed phase on the truth's, and how the smooth error follows the truth."""
    from scipy import ndimage

    truth = pair.truth_phase - pair.truth_phase.mean()
    recon = pair.recon_phase - pair.recon_phase.mean()
    low_truth = ndimage.gaussian_filter(truth, LOW_PASS_SIGMA_PX)
    return {"slope": float(np.sum(truth * recon) / np.sum(truth * truth)),
            "low_error_vs_truth_correlation": float(np.corrcoef(low_truth.ravel(), low_error.ravel())[0, 1])}


def _planes_to(truth: np.ndarray, patches: np.ndarray, window: slice) -> np.ndarray:
    """Per patch, ``exp(-i plane)`` removing the phase plane of its error in the crop
    (``ptychopinn_core.evaluation.alignment.fit_phase_plane``, as the scoring removes one)."""
    from ptychopinn_core.evaluation.alignment import fit_phase_plane

    size = patches.shape[-1]
    rows, cols = np.indices((size, size), dtype=np.float64) - window.start  # the window's own coordinates
    planes = np.empty(patches.shape, dtype=np.complex128)
    for k in range(len(patches)):
        offset, slope_x, slope_y = fit_phase_plane(patches[k, window, window], truth[k, window, window])
        planes[k] = np.exp(-1j * (offset + slope_x * cols + slope_y * rows))
    return planes


def _with(bundle, overrides: dict[str, object]):
    """``bundle`` with its configuration changed (how it stitches, not what it learned)."""
    import dataclasses

    return dataclasses.replace(bundle, config=bundle.config.with_overrides(overrides))


def _figure(pairs: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    from ptychopinn_core.figures import save_png

    figure = Figure(figsize=(14, 3.5 * len(pairs)), layout="constrained")
    axes = figure.subplots(len(pairs), 4, squeeze=False)
    for row, (name, pair) in enumerate(pairs.items()):
        errors = [pair.recon_phase - pair.truth_phase, pair.recon_amplitude - pair.truth_amplitude]
        panels = [(pair.truth_phase, "truth phase", {"cmap": "gray"}),
                  (pair.recon_phase, "reconstructed phase", {"cmap": "gray"}),
                  *((error, title, {"cmap": "RdBu", "vmin": -np.abs(error).max(), "vmax": np.abs(error).max()})
                    for error, title in zip(errors, ("phase error (rad)", "amplitude error")))]  # errors: white at 0
        for column, (image, title, style) in enumerate(panels):
            shown = axes[row, column].imshow(image, **style)
            figure.colorbar(shown, ax=axes[row, column], shrink=0.7)
            axes[row, column].set_title(f"{name}: {title}", fontsize=9)
    save_png(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a bundle from bench/time_to_quality.py --keep-models")
    parser.add_argument("--backend", default="pytorch")
    parser.add_argument("--probe", help="probe kind of the scans (default: the bundle's file name's, else velociprobe)")
    parser.add_argument("--n-train", type=int, default=2000, help="as the time_to_quality run")
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unseen-only", action="store_true",
                        help="diagnose the unseen object only (the seen one is the training scan: slow for large ones)")
    parser.add_argument("--out", type=Path, default=Path("diagnosis"))
    args = parser.parse_args()

    from ptychopinn_core.atomic import atomic_write
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.model.bundle import read_bundle
    from ptychopinn_core.simulation.probe import PROBE_KINDS

    bundle = read_bundle(args.model)
    args.pattern_size = bundle.config.model.pattern_size
    probe = args.probe or next((kind for kind in PROBE_KINDS if f"-{kind}-" in args.model.name), "velociprobe")
    backend = BackendRegistry.discover().get(args.backend)
    results, pairs = {}, {}
    for name, scan in _scans(args, probe).items():
        results[name], pairs[name] = _diagnose(bundle, backend, scan)
    report = {"benchmark": "diagnose_model", "machine": machine_info(), "model": str(args.model),
              "backend": args.backend, "probe": probe, "gridsize": bundle.config.model.gridsize, **results}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "diagnosis.json", "w") as handle:
        handle.write(json.dumps(report, indent=2) + "\n")
    _figure(pairs, args.out / "diagnosis.png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
