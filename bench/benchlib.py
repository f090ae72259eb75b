"""Helpers the ``bench/`` scripts share: the machine, best-of timing, peak memory, timed training.

The scripts import this module as a sibling (``python bench/<script>.py`` puts
``bench/`` on ``sys.path``). Nothing here imports a framework at import time.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

#: Distributions whose versions a report records (``None`` when not installed).
VERSIONED_DISTRIBUTIONS = ("numpy", "scipy", "scikit-image", "tensorflow", "tensorflow-cpu", "torch", "lightning")


def best_time_s(function: Callable[[], object], repeats: int = 3) -> float:
    """Shortest wall time of ``repeats`` calls (the least disturbed by other load)."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[str]:
    """NVIDIA GPUs as ``"name, memory"`` from ``nvidia-smi`` (no framework import); [] without."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        result = subprocess.run(
            [executable, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def machine_info() -> dict[str, Any]:
    """The machine and the versions behind a measurement, without importing any framework.

    Returns
    -------
    dict
        ``platform``, ``cpu_model``, ``cpu_count``, ``memory_bytes``, ``gpus`` (list of
        ``"name, memory"``), ``python`` and ``versions`` (distribution name to version
        or ``None``).
    """
    from ptychopinn_core import __version__

    versions = {name: _distribution_version(name) for name in VERSIONED_DISTRIBUTIONS}
    versions["ptychopinn_core"] = __version__
    return {
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "gpus": _gpus(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def timed_training(backend, model, data, config, *, seconds: float | None = None,
                   epochs: int | None = None) -> list[dict[str, float]]:
    """Train ``model`` and time each epoch; stop at the first epoch end past a budget.

    Parameters
    ----------
    backend, model, data, config
        As for ``Backend.train`` (``config.training.epochs`` is the upper bound).
    seconds : float, optional
        Wall-time budget (``training.max_seconds``): training ends at the first epoch
        end after it.
    epochs : int, optional
        Stop after this many epochs.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``seconds`` (wall time since the previous epoch end, or
        since the call for the first epoch, which carries tracing or Lightning's
        start-up) and the epoch's metrics (``train_loss``, ``val_loss``, ...).
    """
    overrides: dict[str, Any] = {}
    if seconds is not None:
        overrides["training.max_seconds"] = seconds
    if epochs is not None:
        overrides["training.epochs"] = min(epochs, config.training.epochs)
    config = config.with_overrides(overrides) if overrides else config
    records: list[dict[str, float]] = []
    epoch_started = time.perf_counter()

    def progress(event) -> None:
        nonlocal epoch_started
        if event.stage != "epoch":
            return
        now = time.perf_counter()
        records.append({"epoch": event.epoch, "seconds": now - epoch_started, **event.metrics})
        epoch_started = now

    backend.train(model, data, config, progress)
    return records


def finish(results: dict[str, Any], json_path, print_tables: Callable, failed: list[str], progress, width: int) -> int:
    """Print the tables, then the JSON (to ``json_path`` atomically, else to stdout); name
    the failed measurements on ``progress``. Returns the exit status (1 when any failed)."""
    from rich.console import Console

    from ptychopinn_core.atomic import atomic_write

    console = Console()
    print_tables(console if console.is_terminal else Console(width=width), results)
    text = json.dumps(results, indent=2, default=float)
    if json_path is None:
        print(text)
    else:
        with atomic_write(json_path, "w") as handle:
            handle.write(text + "\n")
    if failed:
        progress.print(f"[red]failed:[/] {', '.join(failed)} (see 'error' in the JSON)")
    return 1 if failed else 0

