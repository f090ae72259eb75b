"""Figures for reports and quick looks: reconstructions next to the truth, error maps,
loss curves and FRC curves.

Built on ``matplotlib.figure.Figure`` directly (no pyplot): no global figure state and
no GUI backend, so it is safe in servers, tests and Ptychodus. Every figure is written
atomically as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ptychopinn_core.atomic import atomic_write
from ptychopinn_core.evaluation.aligned_pair import AlignedPair
from ptychopinn_core.model.state import History

__all__ = ["comparison_figure", "object_figure", "loss_figure", "frc_figure", "parity_figures", "save_png"]


def save_png(figure: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``figure`` to ``path`` as PNG, atomically."""
    path = Path(path)
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=dpi, bbox_inches="tight")
    return path


def _show(axes, image: np.ndarray, title: str, cmap: str, vmin=None, vmax=None) -> None:
    shown = axes.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    axes.set_title(title, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.03)


def object_figure(obj: np.ndarray, title: str = "") -> Figure:
    """Amplitude and phase of one complex object, shape (H, W)."""
    figure = Figure(figsize=(8, 3.6), layout="constrained")
    amplitude_axes, phase_axes = figure.subplots(1, 2)
    _show(amplitude_axes, np.abs(obj), "amplitude", "gray")
    _show(phase_axes, np.angle(obj), "phase (rad)", "viridis")
    if title:
        figure.suptitle(title)
    return figure


def comparison_figure(pairs: Mapping[str, AlignedPair], title: str = "") -> Figure:
    """Truth, then each reconstruction (aligned to it) with its error maps.

    Rows: truth, then one per name; columns: amplitude, phase, amplitude error,
    phase error. Colour limits are shared so the rows compare directly.
    """
    if not pairs:
        raise ValueError("comparison_figure needs at least one reconstruction")
    first = next(iter(pairs.values()))
    amp_range = (float(first.truth_amplitude.min()), float(first.truth_amplitude.max()))
    phase_range = (float(first.truth_phase.min()), float(first.truth_phase.max()))
    rows = 1 + len(pairs)
    figure = Figure(figsize=(13, 3.0 * rows), layout="constrained")
    grid = figure.subplots(rows, 4, squeeze=False)
    _show(grid[0, 0], first.truth_amplitude, "truth amplitude", "gray", *amp_range)
    _show(grid[0, 1], first.truth_phase, "truth phase (rad)", "viridis", *phase_range)
    grid[0, 2].axis("off")
    grid[0, 3].axis("off")
    amp_err = max(float(np.abs(p.recon_amplitude - p.truth_amplitude).max()) for p in pairs.values())
    phase_err = max(float(np.abs(p.recon_phase - p.truth_phase).max()) for p in pairs.values())
    for row, (name, pair) in enumerate(pairs.items(), start=1):
        _show(grid[row, 0], pair.recon_amplitude, f"{name}: amplitude", "gray", *amp_range)
        _show(grid[row, 1], pair.recon_phase, f"{name}: phase (rad)", "viridis", *phase_range)
        _show(grid[row, 2], pair.recon_amplitude - pair.truth_amplitude,
              f"{name}: amplitude error", "RdBu_r", -amp_err, amp_err)
        _show(grid[row, 3], pair.recon_phase - pair.truth_phase,
              f"{name}: phase error (rad)", "RdBu_r", -phase_err, phase_err)
    if title:
        figure.suptitle(title)
    return figure


def loss_figure(histories: Mapping[str, History], title: str = "Training loss") -> Figure:
    """Per-epoch training (solid) and validation (dashed) loss of each run."""
    figure = Figure(figsize=(6.5, 4), layout="constrained")
    axes = figure.subplots()
    for index, (name, history) in enumerate(histories.items()):
        color = f"C{index}"
        epochs = [record.epoch + 1 for record in history.epochs]
        axes.plot(epochs, [r.train_loss for r in history.epochs], "-o", color=color,
                  markersize=3, label=f"{name} train")
        validation = [r.val_loss for r in history.epochs]
        if any(v is not None for v in validation):
            axes.plot(epochs, [np.nan if v is None else v for v in validation], "--", color=color,
                      label=f"{name} validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def frc_figure(metrics: Mapping[str, Mapping[str, Any]], title: str = "Fourier ring correlation") -> Figure:
    """FRC curves (amplitude and phase) of each evaluated reconstruction, with the 1/2 line."""
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    panels = figure.subplots(1, 2)
    for axes, part in zip(panels, ("amplitude", "phase")):
        for index, (name, result) in enumerate(metrics.items()):
            curve = result[part]["frc"]
            axes.plot(curve["frequency_nyquist"], curve["correlation"], color=f"C{index}",
                      label=f"{name} (FRC50 {result[part]['frc50']:.2f})")
        axes.axhline(0.5, color="gray", linestyle=":", linewidth=1)
        axes.set_xlim(0, 1)
        axes.set_ylim(-0.1, 1.05)
        axes.set_xlabel("spatial frequency / Nyquist")
        axes.set_title(part)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    panels[0].set_ylabel("FRC")
    figure.suptitle(title)
    return figure


def parity_figures(report: Any, folder: str | os.PathLike[str]) -> list[Path]:
    """The parity report's pictures: per case, the difference maps and the loss curves.

    Parameters
    ----------
    report : ParityReport
        From :func:`ptychopinn_core.parity.run_parity`.
    folder : path
        Created if missing; one ``<case>-differences.png`` and ``<case>-loss.png`` per case.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case, maps in report.maps.items():
        figure = Figure(figsize=(4.2 * len(maps), 3.6), layout="constrained")
        for axes, (name, image) in zip(np.atleast_1d(figure.subplots(1, len(maps))), maps.items()):
            _show(axes, image, name, "magma")
        figure.suptitle(f"{case}: differences between backends (float32)")
        written.append(save_png(figure, folder / f"{_slug(case)}-differences.png"))
    for case, curves in report.curves.items():
        figure = Figure(figsize=(10, 3.8), layout="constrained")
        losses, differences = figure.subplots(1, 2)
        names = list(curves)
        for index, name in enumerate(names):
            steps = np.arange(1, len(curves[name]) + 1)
            losses.plot(steps, curves[name], "-o" if index == 0 else "--x", markersize=4, label=name)
        losses.set_xlabel("step")
        losses.set_ylabel("training loss")
        losses.set_title(case)
        losses.grid(alpha=0.3)
        losses.legend(fontsize=8)
        reference = np.asarray(curves[names[0]], dtype=np.float64)
        for name in names[1:]:
            values = np.asarray(curves[name], dtype=np.float64)
            if values.shape == reference.shape:
                relative = np.abs(values - reference) / np.maximum(np.abs(reference), np.finfo(np.float64).tiny)
                differences.semilogy(np.arange(1, len(values) + 1), np.maximum(relative, 1e-17), "-o",
                                     markersize=3, label=f"{name} vs {names[0]}")
        differences.set_xlabel("step")
        differences.set_ylabel("relative difference")
        differences.set_title("loss difference per step")
        differences.grid(alpha=0.3, which="both")
        if len(names) > 1:
            differences.legend(fontsize=8)
        written.append(save_png(figure, folder / f"{_slug(case)}-loss.png"))
    return written


def _slug(text: str) -> str:
    return "".join(character if character.isalnum() else "-" for character in text).strip("-").replace("--", "-")
