"""The embedded default: simulate, train every installed backend, reconstruct an unseen
scan, evaluate, compare, and write a report with pictures.

``ptychopinn demo`` is a thin wrapper around :func:`run_demo`; everything a newcomer
sees there is computed here, from the same public functions a researcher would call.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptychopinn_core import __version__, workflow
from ptychopinn_core.atomic import atomic_write
from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.backends.contract import ProgressCallback
from ptychopinn_core.config import Config
from ptychopinn_core.data import ScanData, summarize_scan, write_scan
from ptychopinn_core.evaluation.aligned_pair import align_to_truth
from ptychopinn_core.evaluation.metrics import metrics_to_json
from ptychopinn_core.evaluation.report import evaluate
from ptychopinn_core.figures import comparison_figure, frc_figure, loss_figure, save_png
from ptychopinn_core.hardware import cpu_bfloat16_flags
from ptychopinn_core.model.bundle import write_bundle
from ptychopinn_core.physics.stitching import ObjectFrame, default_crop_size, stitch
from ptychopinn_core.reconstruction import META_CROP_SIZE_KEY, Reconstruction, write_reconstruction
from ptychopinn_core.simulation.scan import make_demo_scan

__all__ = ["DemoSettings", "QUICK", "DEFAULT", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """Size of the demo: scans, network and training."""

    n_train_positions: int
    n_test_positions: int
    epochs: int
    n_filters_scale: int
    gridsize: int = 1
    batch_size: int = 8
    pattern_size: int = 64
    nphotons: float = 1e9
    seed: int = 0
    #: A beamline's probe: the network learns more per pattern from it than from an
    #: idealised one (docs/benchmarks.md, "Network quality" §10).
    probe_kind: str = "velociprobe"
    #: ``execution.precision`` of training, or "auto": bf16-mixed for a backend that offers
    #: it and trains on a CPU with bfloat16 units (:mod:`ptychopinn_core.hardware`), else 32.
    precision: str = "auto"

    def config(self) -> Config:
        return Config().with_overrides(
            {
                "model.pattern_size": self.pattern_size,
                "model.gridsize": self.gridsize,
                "model.n_filters_scale": self.n_filters_scale,
                "training.epochs": self.epochs,
                "training.batch_size": self.batch_size,
                "training.seed": self.seed,
                "data.nphotons": self.nphotons,
                **({} if self.precision == "auto" else {"execution.precision": self.precision}),
            }
        )


#: Under a minute on 2 CPU cores: proves the pipeline, not the quality.
QUICK = DemoSettings(n_train_positions=256, n_test_positions=144, epochs=2, n_filters_scale=1)
#: About three minutes of training per backend on 2 CPU cores with bfloat16 units (the
#: network in bf16-mixed), about seven without. Gridsize 2: the overlap constraint is what
#: makes the network alone recognisable in a demo's budget; 2048 positions, which bfloat16
#: affords in that time, carry it to an unseen object (PyTorch, bf16-mixed, the unseen scan:
#: 0.90 / 0.83 after 158 s, where 1024 positions gave 0.84 / 0.79 after 82 s;
#: docs/benchmarks.md "Network quality" §11, §16).
DEFAULT = DemoSettings(n_train_positions=2048, n_test_positions=400, epochs=8, n_filters_scale=1, gridsize=2)

ProgressFactory = Callable[..., AbstractContextManager[ProgressCallback]]


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings = DEFAULT,
    *,
    registry: BackendRegistry | None = None,
    progress: ProgressFactory | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    """Run the demo into ``out_dir``; return the report (also written as report.json).

    Parameters
    ----------
    out_dir : path
        Created if needed; receives the scans, bundles, reconstructions, figures,
        ``report.json`` and ``report.md``.
    settings : DemoSettings
    registry : BackendRegistry, optional
        Backends to run (default: everything discovered).
    progress : callable, optional
        ``progress(description, total=n)`` returns a context manager yielding a progress callback.
    say : callable
        Receives one-line status messages.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    registry = registry or BackendRegistry.discover()
    config = settings.config()
    started = time.perf_counter()

    say(f"simulating {settings.n_train_positions} + {settings.n_test_positions} positions (N = {settings.pattern_size})")
    train_scan = _simulate(settings, settings.n_train_positions, seed=settings.seed, role="train")
    test_scan = _simulate(settings, settings.n_test_positions, seed=settings.seed + 1, role="test")
    write_scan(out / "train.npz", train_scan)
    write_scan(out / "test.npz", test_scan)

    window = config.inference.stitch_crop or default_crop_size(settings.pattern_size)
    ceiling = _stitched_truth(test_scan, window)
    pairs = {"stitched truth": align_to_truth(ceiling, test_scan.object, test_scan.positions_px)}
    results: dict[str, Any] = {
        "stitched truth": {"metrics": evaluate(ceiling, test_scan.object, test_scan.positions_px)}
    }

    histories = {}
    bundles: dict[str, Any] = {}
    recons: dict[str, np.ndarray] = {}
    refined_recons: dict[str, np.ndarray] = {}
    for entry in sorted(registry.entries(), key=_runs_trained_models_only):  # trainers first
        if not entry.ok:
            results[entry.name] = {"status": entry.status, "reason": entry.reason}
            say(f"skipping backend {entry.name}: {entry.status} ({entry.reason})")
            continue
        backend = registry.get(entry.name)
        timings: dict[str, float] = {}
        if _runs_trained_models_only(entry):  # it runs the first trainer's model
            if not bundles:
                results[entry.name] = {"status": "skipped", "reason": "runs trained models only, and none was trained"}
                say(f"skipping backend {entry.name}: it runs trained models only, and no installed backend trains")
                continue
            trained_by, bundle = next(iter(bundles.items()))
            say(f"running the model of {trained_by} with {backend.name}")
        else:
            precision, why = _training_precision(settings, backend)
            say(f"training with {backend.name} (precision {precision}: {why})")
            train_config = config.with_overrides({"execution.precision": precision})
            with _progress(progress, f"training ({backend.name})", config.training.epochs) as show:
                tick = time.perf_counter()
                bundle = workflow.train(train_scan, train_config, backend, progress=show)
                timings["train_s"] = time.perf_counter() - tick
            write_bundle(out / f"model-{backend.name}.zip", bundle)
            trained_by = backend.name
            bundles[trained_by] = bundle
            histories[backend.name] = bundle.history
        with _progress(progress, f"reconstructing ({backend.name})", 1) as show:
            tick = time.perf_counter()
            recon = workflow.reconstruct(bundle, test_scan, backend, progress=show)
            timings["reconstruct_s"] = time.perf_counter() - tick
        write_reconstruction(out / f"recon-{backend.name}.npz", recon)
        metrics = evaluate(recon, test_scan.object, test_scan.positions_px)
        pairs[f"{backend.name} network"] = align_to_truth(recon, test_scan.object, test_scan.positions_px)
        recons[backend.name] = recon.object
        results[backend.name] = {
            "status": "ok",
            "model_trained_by": trained_by,
            "training_precision": bundle.config.execution.precision,
            "metrics": metrics,
            "timings": timings,
            "history": bundle.history.to_json(),
            "framework_version": entry.framework_version,
        }
        iterations = config.refine.iterations
        starts = {"refined": recon, "flat": workflow.flat_reconstruction(test_scan, config)}
        for start_name, start in starts.items():
            with _progress(progress, f"refining the {start_name if start_name == 'flat' else 'network'}"
                                     f" start ({backend.name})", iterations) as show:
                tick = time.perf_counter()
                refined = workflow.refine(start, test_scan, config, backend, progress=show)
                seconds = time.perf_counter() - tick
            write_reconstruction(out / f"recon-{backend.name}-{start_name}.npz", refined)
            label = "network" if start_name == "refined" else "flat"
            pairs[f"{backend.name} {label} + {iterations}"] = align_to_truth(
                refined, test_scan.object, test_scan.positions_px
            )
            if start_name == "refined":
                refined_recons[backend.name] = refined.object
            results[backend.name][start_name] = {
                "metrics": evaluate(refined, test_scan.object, test_scan.positions_px),
                "iterations": iterations,
                "refine_s": seconds,
                "final_loss": refined.meta["refine"]["final_loss"] if iterations else None,
            }

    figures = {"comparison": "comparison.png", "loss": "loss.png", "frc": "frc.png"}
    save_png(comparison_figure(pairs, "Unseen test object: truth and reconstructions"), out / figures["comparison"])
    frc_curves = {name: r["metrics"] for name, r in results.items() if "metrics" in r}
    for name, result in results.items():
        if "refined" in result:
            frc_curves[f"{name} + refine"] = result["refined"]["metrics"]
    save_png(frc_figure(frc_curves), out / figures["frc"])
    if histories:
        save_png(loss_figure(histories), out / figures["loss"])
    else:
        figures.pop("loss")

    report = {
        "generator": f"ptychopinn {__version__} demo",
        "settings": asdict(settings),
        "config": config.to_dict(),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "train_scan": summarize_scan(train_scan),
        "test_scan": summarize_scan(test_scan),
        "results": results,
        "agreement": _agreement(recons),
        "agreement_refined": _agreement(refined_recons),
        "figures": figures,
        "installed_backends": [entry.to_dict() for entry in registry.entries()],
        "seconds": time.perf_counter() - started,
    }
    report = metrics_to_json(report)
    with atomic_write(out / "report.json", "w") as handle:
        json.dump(report, handle, indent=2, allow_nan=False)
    with atomic_write(out / "report.md", "w") as handle:
        handle.write(_markdown(report))
    return report


def _training_precision(settings: DemoSettings, backend) -> tuple[str, str]:
    """``(execution.precision, why)`` of one backend's training under ``settings.precision``."""
    if settings.precision != "auto":
        return settings.precision, "set"
    if "bf16-mixed" not in backend.info.capabilities.precisions:
        return "32", f"{backend.name} does not offer bf16-mixed"
    if any(not device.lower().startswith("cpu") for device in backend.devices()):
        return "32", "it trains on a GPU"
    flags = cpu_bfloat16_flags()
    if not flags:
        return "32", "this CPU has no bfloat16 units"
    return "bf16-mixed", f"the network in bfloat16 on this CPU's {flags[0]} units"


def _simulate(settings: DemoSettings, n_positions: int, seed: int, role: str) -> ScanData:
    return make_demo_scan(
        n_positions,
        size=settings.pattern_size,
        nphotons=settings.nphotons,
        seed=seed,
        probe_kind=settings.probe_kind,
        meta={"demo_role": role},
    )


def _stitched_truth(scan: ScanData, window: int) -> Reconstruction:
    """The ground-truth patches stitched like a reconstruction: the best any model can do."""
    frame = ObjectFrame.for_object(scan.object.shape)
    obj = stitch(scan.patches, scan.positions_px, frame, crop_size=window)
    return Reconstruction(object=obj, frame=frame, meta={META_CROP_SIZE_KEY: window, "source": "stitched Y"})


def _agreement(recons: dict[str, np.ndarray]) -> dict[str, Any]:
    """Relative difference between every two backends' reconstructions."""
    names = sorted(recons)
    pairs = {}
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = recons[first], recons[second]
            norm = float(np.linalg.norm(a))
            pairs[f"{first} vs {second}"] = {
                "relative_l2": float(np.linalg.norm(a - b)) / norm if norm else None,
                "max_abs": float(np.max(np.abs(a - b))),
            }
    return pairs


def _progress(factory: ProgressFactory | None, description: str, total: int):
    if factory is None:
        from contextlib import nullcontext

        return nullcontext(None)
    return factory(description, total=total)


def _fmt(value: Any) -> str:
    if value is None:
        return "inf"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _ssim_pair(metrics: dict[str, Any]) -> str:
    return f"{_fmt(metrics['amplitude']['ssim'])} / {_fmt(metrics['phase']['ssim'])}"


def _runs_trained_models_only(entry) -> bool:
    """An installed backend that cannot train (ONNX Runtime): the demo runs another's model with it."""
    return entry.ok and not entry.info.capabilities.training


def _precisions(results: dict[str, Any]) -> str:
    """``"; precision: pytorch bf16-mixed, tensorflow bf16-mixed"`` for the backends that trained."""
    trained = [f"{name} {result['training_precision']}" for name, result in results.items()
               if result.get("model_trained_by") == name and "training_precision" in result]
    return f"; precision: {', '.join(trained)}" if trained else ""


def _markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        "# PtychoPINN demo report",
        "",
        f"{report['generator']}, {report['machine']['platform']}, Python {report['machine']['python']}; "
        f"{report['seconds']:.0f} s in all.",
        "",
        f"Simulated 'lines' scans, N = {settings['pattern_size']}, {settings['nphotons']:.0e} photons per "
        f"pattern: {settings['n_train_positions']} training positions and an unseen test object with "
        f"{settings['n_test_positions']} positions. Training: {settings['epochs']} epochs, gridsize "
        f"{settings['gridsize']}, n_filters_scale {settings['n_filters_scale']}, batch {settings['batch_size']}"
        f"{_precisions(report['results'])}.",
        "",
        "## Quality on the unseen test object",
        "",
        "SSIM/PSNR use the truth's data range after amplitude scaling and phase-plane removal; FRC50 is a "
        "fraction of Nyquist. 'stitched truth' stitches the ground-truth patches: the ceiling of the method.",
        "",
        "| reconstruction | amp SSIM | amp PSNR | amp FRC50 | phase SSIM | phase PSNR | phase FRC50 | train s | infer s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, result in report["results"].items():
        if "metrics" not in result:
            lines.append(f"| {name} | {result['status']}: {result['reason']} | | | | | | | |")
            continue
        amp, phase = result["metrics"]["amplitude"], result["metrics"]["phase"]
        timings = result.get("timings", {})
        trained_by = result.get("model_trained_by", name)
        label = name if trained_by == name else f"{name} (model of {trained_by})"
        lines.append(
            f"| {label} | {_fmt(amp['ssim'])} | {_fmt(amp['psnr'])} | {_fmt(amp['frc50'])} | "
            f"{_fmt(phase['ssim'])} | {_fmt(phase['psnr'])} | {_fmt(phase['frc50'])} | "
            f"{_fmt(timings.get('train_s', '-'))} | {_fmt(timings.get('reconstruct_s', '-'))} |"
        )
    refined = {name: result for name, result in report["results"].items() if "refined" in result}
    if refined:
        iterations = report["config"]["refine"]["iterations"]
        lines += [
            "",
            f"## Network, network + refinement, flat start + refinement ({iterations} iterations)",
            "",
            "Refinement fits the object to the measured patterns through the same physics "
            "(docs/physics.md §10), from the network's object or from a flat one. "
            "SSIM amplitude / phase; seconds of inference and of refinement.",
            "",
            f"| backend | network | s | network + {iterations} | s | flat + {iterations} | s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, result in refined.items():
            cells = [f"{_ssim_pair(result['metrics'])} | {_fmt(result['timings']['reconstruct_s'])}"]
            for start in ("refined", "flat"):
                cells.append(f"{_ssim_pair(result[start]['metrics'])} | {_fmt(result[start]['refine_s'])}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key, title in (("agreement", "Agreement between backends"),
                       ("agreement_refined", "Agreement between backends after refinement")):
        if report.get(key):
            lines += ["", f"## {title}", "", "| pair | relative L2 | max abs |", "| --- | --- | --- |"]
            for pair, values in report[key].items():
                lines.append(f"| {pair} | {_fmt(values['relative_l2'])} | {_fmt(values['max_abs'])} |")
    if not any(entry["status"] == "ok" for entry in report["installed_backends"]):
        lines += [
            "",
            "No backend is installed, so nothing was trained. Install one: "
            '`pip install "ptychopinn-core[torch]"` or `pip install "ptychopinn-core[tf]"`.',
        ]
    lines += ["", "## Figures", ""]
    for name, file in report["figures"].items():
        lines += [f"![{name}]({file})", ""]
    return "\n".join(lines)
