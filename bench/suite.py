"""Benchmark suite: every figure of docs/benchmarks.md from one command.

Run from the repository root::

    .venv/bin/python bench/suite.py                          # every installed backend, a few minutes
    .venv/bin/python bench/suite.py --backends pytorch --quick --json out.json

Prints a table and ONE JSON object (to ``--json OUT`` when given, else to stdout after
the table) with:

- ``machine``: CPU model, cores, memory, GPUs, versions of Python and the frameworks;
- ``core``: grouping, overlap, simulation and stitching throughput
  (``bench/grouping.py``, ``bench/simulate_stitch.py``);
- ``backends.<name>``: the framework's float32 matmul peak; inference throughput
  (patterns/s after warm-up) for N = 64 and 128, gridsize 1 and 2; training throughput
  (patterns/s over an epoch after the first; skipped, with ``"training": {"skipped":
  "inference only"}``, for a backend that cannot train, such as ``onnx``); for each,
  the peak memory of the process,
  the model's FLOPs per pattern (:mod:`ptychopinn_core.model.flops`), the achieved
  GFLOP/s and its fraction of the matmul peak.

Each measurement runs in a fresh subprocess (``bench/measure_backend.py``): its peak
memory is its own, and both frameworks are measured from one command. ``--quick`` is a
smoke run (tiny scans, ``n_filters_scale = 1``, each backend's measurements in one
subprocess, so their peak memories are cumulative) that checks everything runs; its
figures are not for comparison. Nothing is asserted: timings are measured here, never
in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.flops import model_flops

from benchlib import finish, machine_info

BENCH_DIR = Path(__file__).resolve().parent
#: Inference cases ``(N, gridsize)``.
INFERENCE_CASES = ((64, 1), (64, 2), (128, 1), (128, 2))
#: Wall-time limit of one measurement subprocess.
MEASUREMENT_TIMEOUT_S = 900


@dataclass(frozen=True)
class Settings:
    """Sizes of one suite run (scans small enough that the whole suite takes minutes)."""

    n_filters_scale: int
    inference_groups: dict[int, int]  # groups per predict call, by N
    inference_seconds: float  # keep repeating predict for this long (after the warm-up)
    repeats: int  # least number of timed predict calls; grouping and overlap get one more
    training_positions: int
    training_gridsizes: tuple[int, ...]
    training_epochs: int  # the first is set apart (start-up)
    matmul_size: int
    matmul_repeats: int  # the best is the peak
    grouping_positions: int
    overlap_groups: int
    stitch_positions: int


FULL = Settings(
    n_filters_scale=2, inference_groups={64: 128, 128: 32}, inference_seconds=3.0, repeats=2,
    training_positions=192, training_gridsizes=(1, 2), training_epochs=2, matmul_size=2048, matmul_repeats=10,
    grouping_positions=100_000, overlap_groups=256, stitch_positions=4000,
)
QUICK = Settings(
    n_filters_scale=1, inference_groups={64: 12, 128: 6}, inference_seconds=0.0, repeats=1,
    training_positions=24, training_gridsizes=(1,), training_epochs=2, matmul_size=1024, matmul_repeats=5,
    grouping_positions=20_000, overlap_groups=32, stitch_positions=1000,
)


class MeasurementError(RuntimeError):
    """A benchmark subprocess failed; the message holds its command and last output."""


def run_json(script: str, *arguments: str) -> dict[str, Any]:
    """Run ``bench/<script>`` in a fresh interpreter; its JSON (whole stdout or last line)."""
    command = [sys.executable, str(BENCH_DIR / script), *arguments]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=MEASUREMENT_TIMEOUT_S)
    if result.returncode == 0:
        for text in (result.stdout, result.stdout.strip().rsplit("\n", 1)[-1]):
            try:
                return json.loads(text)
            except ValueError:
                continue
    lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
    raise MeasurementError(f"{lines[-1]} (exit status {result.returncode} of {' '.join(command[1:])})")


def measure_core(settings: Settings) -> dict[str, Any]:
    """Grouping, overlap, simulation and stitching throughput of the numpy core."""
    grouping = run_json("grouping.py", "--n-positions", str(settings.grouping_positions),
                        "--batch-groups", str(settings.overlap_groups), "--repeats", str(settings.repeats + 1))
    stitching = run_json("simulate_stitch.py", "--n-positions", str(settings.stitch_positions))
    overlap = grouping["overlap"]
    return {
        "grouping_positions": settings.grouping_positions,
        "grouping_gridsize_1_positions_per_s": grouping["grouping"]["gridsize_1"]["positions_per_second"],
        "grouping_gridsize_2_positions_per_s": grouping["grouping"]["gridsize_2"]["positions_per_second"],
        "overlap_patch_shape": [overlap["batch_groups"], overlap["channels"], overlap["size"], overlap["size"]],
        "overlap_enforce_patches_per_s": overlap["enforce_overlap"]["patches_per_second"],
        "overlap_merge_patches_per_s": overlap["merge_patches"]["patches_per_second"],
        "simulate_stitch_positions": stitching["n_positions"],
        "simulate_positions_per_s": stitching["simulate_positions_per_second"],
        "stitch_positions_per_s": stitching["stitch_positions_per_second"],
        "stitch_peak_traced_bytes": stitching["stitch_peak_traced_bytes"],
        "peak_rss_bytes": stitching["process_peak_rss_bytes"],
    }


def _case(record: dict[str, Any], flops_per_pattern: float, peak_gflops: float) -> dict[str, Any]:
    achieved = flops_per_pattern * record["patterns_per_s"] / 1e9
    return {**record, "flops_per_pattern": flops_per_pattern, "achieved_gflops": achieved,
            "fraction_of_matmul_peak": achieved / peak_gflops}


#: ``training`` of a backend that cannot train (``Capabilities.training`` False).
TRAINING_SKIPPED = {"skipped": "inference only"}


def backend_plan(settings: Settings, training: bool = True) -> list[dict[str, Any]]:
    """The measurements of one backend, as ``bench/measure_backend.py --plan`` items
    (without training when ``training`` is False)."""
    scale = settings.n_filters_scale
    plan: list[dict[str, Any]] = [
        {"measure": "matmul", "matmul_size": settings.matmul_size, "repeats": settings.matmul_repeats}
    ]
    plan += [
        {"measure": "inference", "pattern_size": size, "gridsize": gridsize, "n_filters_scale": scale,
         "n_positions": settings.inference_groups[size], "seconds": settings.inference_seconds,
         "repeats": settings.repeats}
        for size, gridsize in INFERENCE_CASES
    ]
    plan += [
        {"measure": "training", "pattern_size": 64, "gridsize": gridsize, "n_filters_scale": scale,
         "n_positions": settings.training_positions, "epochs": settings.training_epochs}
        for gridsize in settings.training_gridsizes
    ] if training else []
    return plan


def _run_plan(name: str, device: str, plan: list[dict[str, Any]]) -> dict[str, Any]:
    return run_json("measure_backend.py", "--backend", name, "--device", device, "--plan", json.dumps(plan))


def measure_backend(name: str, settings: Settings, device: str, one_process: bool, report,
                    training: bool = True) -> dict[str, Any]:
    """Matmul peak, inference cases and training of one backend.

    Each measurement runs in a fresh subprocess, or, with ``one_process`` (``--quick``),
    all of them in one (their peak memories are then cumulative). Without ``training``
    (a backend that cannot train), ``"training"`` is :data:`TRAINING_SKIPPED`.

    Raises
    ------
    MeasurementError
        The matmul peak could not be measured (nothing else is then meaningful), or
        ``one_process`` and anything failed.
    """
    plan = backend_plan(settings, training)
    if one_process:
        report(f"{name}: {len(plan)} measurements in one process")
        outputs = [_run_plan(name, device, plan)]
        records = outputs[0]["records"]
    else:
        outputs, records = [], []
        for item in plan:
            report(f"{name}: {item['measure']} "
                   + (f"N={item['pattern_size']} gridsize={item['gridsize']}" if "gridsize" in item else "peak"))
            try:
                outputs.append(_run_plan(name, device, [item]))
                records.append(outputs[-1]["records"][0])
            except (MeasurementError, subprocess.TimeoutExpired) as error:
                if item["measure"] == "matmul":
                    raise
                records.append({**item, "error": str(error)})  # recorded; the others still run
    matmul, cases = records[0], records[1:]
    peak = matmul["gflops"]
    result: dict[str, Any] = {key: outputs[0][key] for key in ("framework", "framework_version", "device", "devices")}
    result.update({"one_process": one_process, "matmul_peak_gflops": peak, "matmul_size": matmul["matmul_size"],
                   "matmul_peak_rss_bytes": matmul["peak_rss_bytes"], "inference": {},
                   "training": {} if training else dict(TRAINING_SKIPPED)})
    for record in cases:
        key = f"N{record['pattern_size']}_g{record['gridsize']}"
        if "error" in record:
            result[record["measure"]][key] = record
            continue
        flops = model_flops(ModelConfig(pattern_size=record["pattern_size"], gridsize=record["gridsize"],
                                        n_filters_scale=record["n_filters_scale"]))
        per_pattern = flops.inference if record["measure"] == "inference" else flops.training_step
        result[record["measure"]][key] = _case(record, per_pattern, peak)
    return result


def _cases(backend: dict[str, Any], kind: str) -> dict[str, Any]:
    """The measured cases of ``kind`` ({} when the measurement was skipped)."""
    return {} if "skipped" in backend[kind] else backend[kind]


def _failed(results: dict[str, Any]) -> list[str]:
    """Where a measurement failed: ``core``, ``<backend>``, ``<backend>.<kind>.<case>``."""
    failed = ["core"] if "error" in results["core"] else []
    for name, backend in results["backends"].items():
        if "error" in backend:
            failed.append(name)
            continue
        failed += [f"{name}.{kind}.{case}" for kind in ("inference", "training")
                   for case, record in _cases(backend, kind).items() if "error" in record]
    return failed


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def print_tables(console: Console, results: dict[str, Any]) -> None:
    machine = results["machine"]
    gpus = ", ".join(machine["gpus"]) or "no GPU"
    console.print(f"[bold]{machine['cpu_model']}[/], {machine['cpu_count']} cores, "
                  f"{_mib(machine['memory_bytes'])} MiB, {gpus}; Python {machine['python']}; "
                  f"{results['mode']} run in {results['wall_s']:.0f} s")
    table = Table(title="Backends (% peak: achieved GFLOP/s over the matmul peak; RSS: process peak)")
    for column in ("backend", "measurement", "patterns/s", "GFLOP/pattern", "GFLOP/s", "% peak",
                   "RSS MiB", "GPU MiB"):
        table.add_column(column, justify="left" if column in ("backend", "measurement") else "right")
    for name, backend in results["backends"].items():
        if "error" in backend:
            table.add_row(name, "[red]failed[/]", backend["error"][:80], "", "", "", "", "")
            continue
        table.add_row(name, f"matmul {backend['matmul_size']} {backend['device']}", "", "",
                      f"{backend['matmul_peak_gflops']:.1f}", "100", _mib(backend["matmul_peak_rss_bytes"]), "")
        for kind in ("inference", "training"):
            if "skipped" in backend[kind]:
                table.add_row(name, kind[:5], f"skipped: {backend[kind]['skipped']}", "", "", "", "", "")
                continue
            for case, record in backend[kind].items():
                if "error" in record:
                    table.add_row(name, f"{kind[:5]} {case}", "[red]failed[/]", record["error"][:80], "", "", "", "")
                    continue
                table.add_row(name, f"{kind[:5]} {case}", f"{record['patterns_per_s']:.1f}",
                              f"{record['flops_per_pattern'] / 1e9:.3f}", f"{record['achieved_gflops']:.1f}",
                              f"{100 * record['fraction_of_matmul_peak']:.0f}", _mib(record["peak_rss_bytes"]),
                              _mib(record["gpu_peak_bytes"]))
    console.print(table)
    core = results["core"]
    if "error" in core:
        console.print(f"[red]core failed:[/] {core['error']}")
        return
    table = Table(title="Core (numpy)")
    table.add_column("measurement")
    table.add_column("throughput", justify="right")
    table.add_row(f"grouping {core['grouping_positions']:,} positions, gridsize 1 / 2",
                  f"{core['grouping_gridsize_1_positions_per_s']:,.0f} / "
                  f"{core['grouping_gridsize_2_positions_per_s']:,.0f} positions/s")
    table.add_row(f"overlap constraint {core['overlap_patch_shape']}",
                  f"{core['overlap_enforce_patches_per_s']:,.0f} patches/s")
    table.add_row(f"simulate {core['simulate_stitch_positions']:,} positions, N = 64",
                  f"{core['simulate_positions_per_s']:,.0f} positions/s")
    table.add_row("stitch (streamed)", f"{core['stitch_positions_per_s']:,.0f} positions/s, "
                  f"{_mib(core['stitch_peak_traced_bytes'])} MiB traced")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", help="comma-separated backend names (default: every installed one)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny scans, n_filters_scale 1, one subprocess per backend")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)

    registry = BackendRegistry.discover()
    try:
        names = [registry.get(name.strip()).name for name in args.backends.split(",")] if args.backends \
            else registry.names()
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    settings = QUICK if args.quick else FULL
    progress = Console(stderr=True)
    started = time.perf_counter()

    def report(message: str) -> None:
        progress.print(f"[dim]{time.perf_counter() - started:6.1f} s[/] {message}")

    results: dict[str, Any] = {"benchmark": "suite", "mode": "quick" if args.quick else "full",
                               "machine": machine_info(), "settings": asdict(settings), "backends": {}}
    report("core: grouping, overlap, simulation, stitching")
    try:
        results["core"] = measure_core(settings)
    except (MeasurementError, subprocess.TimeoutExpired) as error:
        results["core"] = {"error": str(error)}
    for name in names:
        trains = registry.get(name).info.capabilities.training
        try:
            results["backends"][name] = measure_backend(name, settings, args.device, args.quick, report, trains)
        except (MeasurementError, subprocess.TimeoutExpired) as error:
            results["backends"][name] = {"error": str(error)}
    results["wall_s"] = time.perf_counter() - started
    report("done")

    return finish(results, args.json, print_tables, _failed(results), progress, width=120)


if __name__ == "__main__":
    sys.exit(main())
