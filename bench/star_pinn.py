"""Benchmark: the PINN on the full Siemens star, each installed backend, against the ptychi reference.

Run from the repository root (not in CI; run it alone, the machine's cores are shared)::

    .venv/bin/python bench/star_pinn.py                            # 8 min of training per backend
    .venv/bin/python bench/star_pinn.py --backend pytorch --minutes 20 --gridsize 2
    .venv/bin/python bench/star_pinn.py --quick                    # smoke: 64 positions, 1 epoch

Converts the star (516 patterns of 128 x 128 counts) in memory, then for each backend:
trains self-supervised on the scan being reconstructed (the normal PINN use on a new
sample) until the first epoch end past the wall-time budget, reconstructs every position
(prediction + stitching; timed after one warm-up pass) and compares the result with the
iterative reference ``data/siemens-star/reference-ptychi.npz`` (``bench/star_reference.py``)
by :func:`~ptychopinn_core.evaluation.report.evaluate_against_reference`: common scanned region,
sub-pixel registration, amplitude scale, phase offset and ramp removed, then FRC50, SSIM,
PSNR. Writes figures to ``--out`` (reconstructions next to the reference, FRC curves,
training loss) and each reconstruction (``star-BACKEND.npz``), and prints ONE JSON
object (times, metrics, settings, machine, versions). Wall times come with the
process's CPU time (all threads), which other load on a shared machine disturbs less.
The chosen defaults and the runs behind them are in docs/real-data.md.

``data.nphotons`` is set to the scan's mean counts per pattern, so the Poisson loss sees
the measured counts themselves (physics.md §2: ``(s * X_n)**2 = counts``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
from benchlib import machine_info, peak_rss_bytes, timed_training

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torch's OpenMP threads spin while they wait; on a shared machine that costs it up to 5x
# (docs/benchmarks.md). Set before any framework import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
STAR = ROOT / "data" / "siemens-star" / "siemens-star-small.npz.bz2"
REFERENCE = ROOT / "data" / "siemens-star" / "reference-ptychi.npz"
QUICK_SUBSET = 64


def central_subset(scan, count: int):
    """``scan`` cut to the ``count`` positions nearest its centre (same object frame)."""
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(scan.positions_px).query(scan.positions_px.mean(axis=0), k=count)
    keep = np.sort(np.atleast_1d(nearest))
    return dataclasses.replace(
        scan, diffraction=scan.diffraction[keep], xcoords=scan.xcoords[keep], ycoords=scan.ycoords[keep]
    )


def mean_counts(scan) -> float:
    """Mean photon count per pattern (the canonical diffraction is ``sqrt(counts)``)."""
    return float(np.mean(np.sum(np.square(scan.diffraction, dtype=np.float64), axis=(1, 2))))


def star_config(args, scan):
    """The training configuration for the star at N = 128 (see docs/real-data.md for the evidence)."""
    from ptychopinn_core.config import Config

    return Config.from_dict({
        "model": {"pattern_size": scan.pattern_size, "gridsize": args.gridsize,
                  "n_filters_scale": args.n_filters_scale, "probe_trainable": args.probe_trainable},
        "data": {"nphotons": mean_counts(scan), "n_groups": args.n_groups},
        "training": {"epochs": 10_000, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                     "early_stopping_patience": None, "seed": args.seed},
    })


def train_within(backend, scan, config, seconds: float):
    """Train like :func:`ptychopinn_core.workflow.train`, stopping at the first epoch end past ``seconds``."""
    from ptychopinn_core.model.bundle import ModelBundle, make_manifest
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.model.state import EpochRecord, History
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.training.data import prepare_training_data

    backend.check_config(config, training=True)
    data = prepare_training_data(scan, config)
    state = prepare_model_state(scan, config)
    model = backend.build_model(config, state, initial_weights(parameter_specs(config.model), config.training.seed))
    started, cpu_started = time.perf_counter(), time.process_time()
    epochs = timed_training(backend, model, data, config, seconds=seconds)
    training_s = time.perf_counter() - started
    training_cpu_s = time.process_time() - cpu_started
    history = History(tuple(
        EpochRecord(epoch=index, train_loss=float(record["train_loss"]), val_loss=record.get("val_loss"),
                    learning_rate=float(record["learning_rate"]), seconds=float(record["seconds"]))
        for index, record in enumerate(epochs)
    ))
    manifest = make_manifest("pinn", backend.name, backend.info.framework,
                             backend.entry.framework_version or "unknown")
    bundle = ModelBundle(manifest=manifest, config=config, weights=model.get_weights(), state=model.state,
                         history=history)
    return bundle, {"training_s": training_s, "training_cpu_s": training_cpu_s,
                    "train_groups": data.n_train, "validation_groups": data.n_validation}


def _limits(images):
    values = np.concatenate([image.ravel() for image in images])
    return float(np.nanpercentile(values, 0.5)), float(np.nanpercentile(values, 99.5))


def amplitude_phase_figure(rows, title: str, shared_limits: bool):
    """One row per ``(name, complex image)``: amplitude and phase (offset removed) side by side.

    Pixels that are exactly zero (not stitched) are left blank and do not count in the
    colour ranges.
    """
    from matplotlib.figure import Figure

    shown_rows = []
    for name, image in rows:
        offset = np.angle(np.sum(image))  # circular mean phase, amplitude-weighted
        blank = np.where(image == 0, np.nan, 1.0)
        shown_rows.append((name, np.abs(image) * blank, np.angle(image * np.exp(-1j * offset)) * blank))
    figure = Figure(figsize=(7.6, 3.4 * len(rows)), layout="constrained")
    grid = figure.subplots(len(rows), 2, squeeze=False)
    for column, (label, cmap) in enumerate((("amplitude", "gray"), ("phase (rad)", "viridis"))):
        common = _limits([row[1 + column] for row in shown_rows]) if shared_limits else None
        for axes, row in zip(grid[:, column], shown_rows):
            low, high = common or _limits([row[1 + column]])
            shown = axes.imshow(row[1 + column], cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            axes.set_title(f"{row[0]}: {label}", fontsize=9)
            axes.set_xticks([])
            axes.set_yticks([])
            figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.03)
    figure.suptitle(title, fontsize=10)
    return figure


def scanned_box(scan, margin: int) -> tuple[slice, slice]:
    """Rows and columns of the frame around the scan positions, ``margin`` pixels beyond them."""
    x, y = scan.xcoords, scan.ycoords
    return (slice(max(int(np.floor(y.min())) - margin, 0), int(np.ceil(y.max())) + margin + 1),
            slice(max(int(np.floor(x.min())) - margin, 0), int(np.ceil(x.max())) + margin + 1))


def save_small_png(figure, path: Path, dpi: int = 72) -> Path:
    """``figure`` as a PNG of at most 256 colours (a third of the bytes for noisy images), atomically."""
    import io

    from PIL import Image

    from ptychopinn_core.atomic import atomic_write

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colors=256)
    with atomic_write(path) as handle:
        image.save(handle, format="PNG", optimize=True)
    return path


def write_figures(folder: Path, scan, reference, recons, pairs, metrics, histories) -> list[str]:
    """PNG figures of the run; returns their paths.

    ``star-objects.png``: every reconstruction as stitched, on the frame around the scan
    (no registration; each image its own colour range). ``star-registered-NAME.png``: the
    reference and one reconstruction on their common region after
    :func:`align_to_reference`, on shared colour ranges.
    """
    from ptychopinn_core.figures import frc_figure, loss_figure
    from ptychopinn_core.physics.stitching import default_crop_size

    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = scanned_box(scan, default_crop_size(scan.pattern_size) // 2)
    raw = [("ptychi LSQML (reference)", reference.object[rows, cols])]
    raw += [(f"PINN, {name}", recon.object[rows, cols]) for name, recon in recons.items()]
    title = "Siemens star: scanned region, as reconstructed"
    written = [save_small_png(amplitude_phase_figure(raw, title, False), folder / "star-objects.png")]
    for name, pair in pairs.items():  # each pair has its own common region
        registered = [("ptychi LSQML (reference)", pair.truth), (f"PINN, {name}", pair.recon)]
        shift = f"({pair.alignment['shift_x_px']:.2f}, {pair.alignment['shift_y_px']:.2f}) px"
        title = f"PINN {name} on the reference: common region, shifted by {shift}, scaled, de-ramped"
        written.append(save_small_png(amplitude_phase_figure(registered, title, True),
                                      folder / f"star-registered-{name}.png"))
    if pairs:
        labels = {f"PINN {name}": result for name, result in metrics.items()}
        title = "FRC of each PINN reconstruction vs the ptychi reference"
        written.append(save_small_png(frc_figure(labels, title), folder / "star-frc.png"))
    if histories:
        title = "PINN training on the star (Poisson NLL)"
        written.append(save_small_png(loss_figure(histories, title), folder / "star-loss.png"))
    return [str(path) for path in written]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", default=None,
                        help="backend to run (repeatable) [default: every installed backend]")
    parser.add_argument("--minutes", type=float, default=8.0, help="training wall time per backend")
    parser.add_argument("--gridsize", type=int, default=1)
    parser.add_argument("--n-groups", type=int, default=None,
                        help="groups per epoch [default: one per position]; e.g. 129 with --gridsize 2 "
                        "keeps an epoch at 516 patterns")
    parser.add_argument("--n-filters-scale", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--probe-trainable", action="store_true", help="refine the probe during training")
    parser.add_argument("--subset", type=int, default=None, help="train on the positions nearest the centre")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_SUBSET} positions, one epoch per backend")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="iterative reference reconstruction")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "star", help="figure folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.subset, args.minutes = args.subset or QUICK_SUBSET, 0.0

    from ptychopinn_core import workflow
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.data.importers import import_scan
    from ptychopinn_core.evaluation.aligned_pair import align_to_reference
    from ptychopinn_core.evaluation.metrics import metrics_to_json
    from ptychopinn_core.evaluation.report import evaluate_against_reference
    from ptychopinn_core.reconstruction import read_reconstruction, write_reconstruction

    registry = BackendRegistry.discover()
    names = args.backend or registry.names()
    scan = import_scan(STAR)
    if args.subset:
        scan = central_subset(scan, args.subset)
    reference = read_reconstruction(args.reference)
    config = star_config(args, scan)

    results, recons, pairs, metrics, histories = {}, {}, {}, {}, {}
    for name in names:
        backend = registry.get(name)
        versions = {"framework": backend.info.framework, "framework_version": backend.entry.framework_version,
                    "devices": backend.devices()}  # imports the framework: not training time
        bundle, training = train_within(backend, scan, config, args.minutes * 60)
        workflow.reconstruct(bundle, scan, backend)  # warm-up: graph tracing, thread pools
        started, cpu_started = time.perf_counter(), time.process_time()
        recon = workflow.reconstruct(bundle, scan, backend)
        inference_s = time.perf_counter() - started
        inference_cpu_s = time.process_time() - cpu_started
        result = evaluate_against_reference(recon, reference, positions_xy=scan.positions_px)
        pairs[name] = align_to_reference(recon, reference, positions_xy=scan.positions_px)
        recons[name], metrics[name], histories[name] = recon, result, bundle.history
        epochs = bundle.history.epochs
        later = [record.seconds for record in epochs[1:]] or [epochs[0].seconds]
        results[name] = {
            **versions,
            "epochs": len(epochs),
            **training,
            "first_epoch_s": epochs[0].seconds,
            "seconds_per_epoch": sum(later) / len(later),
            "final_train_loss": epochs[-1].train_loss,
            "final_val_loss": epochs[-1].val_loss,
            "final_learning_rate": epochs[-1].learning_rate,
            "inference_s": inference_s,
            "inference_cpu_s": inference_cpu_s,
            "inference_patterns_per_s": scan.n_positions / inference_s,
            "finite": bool(np.all(np.isfinite(recon.object))),
            "vs_reference": {
                part: {key: result[part][key] for key in ("frc50", "ssim", "psnr", "mae")}
                for part in ("amplitude", "phase")
            },
            "alignment": result["alignment"],
            "region": result["region"],
        }
    figures = write_figures(args.out, scan, reference, recons, pairs, metrics, histories)
    for name, recon in recons.items():  # for 'ptychopinn evaluate' / 'plot' afterwards
        write_reconstruction(args.out / f"star-{name}.npz", recon)
    made = reference.meta
    print(json.dumps(metrics_to_json({
        "benchmark": "star_pinn",
        "machine": machine_info(),
        "settings": {
            "n_positions": scan.n_positions, "pattern_size": scan.pattern_size, "gridsize": args.gridsize,
            "n_groups": args.n_groups, "n_filters_scale": args.n_filters_scale, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "probe_trainable": args.probe_trainable,
            "nphotons": config.data.nphotons, "wall_time_budget_s": args.minutes * 60, "seed": args.seed,
            "quick": args.quick, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
        "reference": {"file": str(args.reference), "package": made.get("package"),
                      "reconstruction_s": made.get("reconstruction_s"),
                      "reconstruction_cpu_s": made.get("reconstruction_cpu_s"),
                      "epochs": made.get("settings", {}).get("epochs")},
        "backends": results,
        "figures": figures,
        "peak_rss_bytes": peak_rss_bytes(),
    }), indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
