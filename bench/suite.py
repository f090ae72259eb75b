"""Benchmark suite: every figure of docs/benchmarks.md from one command.

Run from the repository root::

    .venv/bin/python bench/suite.py                          # every installed backend, 3 rounds
    .venv/bin/python bench/suite.py --backends pytorch --quick --json out.json
    .venv/bin/python bench/suite.py --backends tensorflow,pytorch --rounds 5 --n-filters-scale 1

Prints tables and ONE JSON object (to ``--json OUT`` when given, else to stdout after
the tables) with:

- ``machine``: CPU model, cores, memory, GPUs, versions of Python and the frameworks;
- ``settings``: the sizes of the run, the model's width ``n_filters_scale`` and
  ``rounds`` included;
- ``core``: grouping, overlap, simulation and stitching throughput
  (``bench/grouping.py``, ``bench/simulate_stitch.py``);
- ``backends.<name>``: the framework's float32 matmul and 3x3-convolution peaks
  (``matmul_peak_gflops``, ``conv_peak_gflops``); inference throughput (patterns/s
  after warm-up) and training throughput (patterns/s over an epoch after the first),
  each for N = 64 and 128, gridsize 1 and 2 (training skipped, with ``"training":
  {"skipped": "inference only"}``, for a backend that cannot train, such as ``onnx``);
  for each case, the peak memory of the process, the model's FLOPs per pattern
  (:mod:`ptychopinn_core.model.flops`), the achieved GFLOP/s and its fractions of both
  peaks (``fraction_of_matmul_peak``, ``fraction_of_conv_peak``). The network is 3x3
  convolutions, so the conv peak is the ceiling that matters; the matmul peak is a
  generic one;
- ``side_by_side``: each backend's patterns/s over the ``reference`` backend's
  (TensorFlow when measured, else the first of ``--backends``), by kind and case.

Backends are compared under drifting conditions (a shared machine, heat), so every
backend's measurements run ``--rounds`` times, interleaved (A, B, C, then A, B, C
again) so that drift hits all alike, and each figure is the median over the rounds:
``<figure>_rounds`` lists the per-round values (``None`` where that round failed),
``rounds`` their count, and the record's other fields (timings, memory) are those of
the round closest to the median (``median_round``, counted from 1). A round that failed
is listed in ``round_errors`` and left out of the median; when every round failed, the
record holds ``error`` (a peak: ``<kind>_peak_round_errors``, ``<kind>_peak_error`` in
its backend). Derived figures follow from the medians.

Each measurement runs in a fresh subprocess (``bench/measure_backend.py``): its peak
memory is its own, and all frameworks are measured from one command. ``--quick`` is a
smoke run (tiny scans, ``n_filters_scale = 1``, one round, each backend's measurements
of a round in one subprocess, so their peak memories are cumulative) that checks
everything runs; its figures are not for comparison. Nothing is asserted: timings are
measured here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.flops import model_flops

from benchlib import finish, machine_info

BENCH_DIR = Path(__file__).resolve().parent
#: Inference and training cases ``(N, gridsize)``.
CASES = ((64, 1), (64, 2), (128, 1), (128, 2))
#: Wall-time limit of one measurement subprocess.
MEASUREMENT_TIMEOUT_S = 900
#: The peaks a backend's cases are compared with, and the Measurement fields that size each.
PEAK_SHAPES = {"matmul": ("matmul_size",),
               "conv": ("conv_batch", "conv_size", "conv_in_channels", "conv_out_channels")}
#: The measured figure of each measurement, the one whose median is taken.
FIGURES = {"matmul": "gflops", "conv": "gflops", "inference": "patterns_per_s", "training": "patterns_per_s"}
KINDS = ("inference", "training")
#: What every output of ``bench/measure_backend.py`` says about the backend.
DESCRIPTION_KEYS = ("framework", "framework_version", "device", "devices")


@dataclass(frozen=True)
class Settings:
    """Sizes of one suite run (scans small enough that the whole suite takes minutes)."""

    n_filters_scale: int
    inference_groups: dict[int, int]  # groups per predict call, by N
    inference_seconds: float  # keep repeating predict for this long (after the warm-up)
    repeats: int  # least number of timed predict calls; grouping and overlap get one more
    training_positions: dict[int, int]  # positions of the training scan, by N
    training_cases: tuple[tuple[int, int], ...]  # (N, gridsize)
    training_epochs: int  # the first is set apart (start-up)
    matmul_size: int
    matmul_repeats: int  # the best is the peak
    conv_repeats: int  # the best is the peak (the shape: measure_backend.Measurement's defaults)
    rounds: int  # every backend's measurements run this often, interleaved; figures are medians
    grouping_positions: int
    overlap_groups: int
    stitch_positions: int


FULL = Settings(
    n_filters_scale=2, inference_groups={64: 128, 128: 32}, inference_seconds=3.0, repeats=2,
    training_positions={64: 192, 128: 64}, training_cases=CASES, training_epochs=2, matmul_size=2048, matmul_repeats=10,
    conv_repeats=10, rounds=3, grouping_positions=100_000, overlap_groups=256, stitch_positions=4000,
)
QUICK = Settings(
    n_filters_scale=1, inference_groups={64: 12, 128: 6}, inference_seconds=0.0, repeats=1,
    training_positions={64: 24}, training_cases=((64, 1),), training_epochs=2, matmul_size=1024, matmul_repeats=5,
    conv_repeats=3, rounds=1, grouping_positions=20_000, overlap_groups=32, stitch_positions=1000,
)


class MeasurementError(RuntimeError):
    """A benchmark subprocess failed; the message holds its command and last output."""


def run_json(script: str, *arguments: str, python: str = sys.executable) -> dict[str, Any]:
    """Run ``bench/<script>`` in a fresh interpreter (``python``: another environment's, such
    as the published code's); its JSON (whole stdout or last line)."""
    command = [python, str(BENCH_DIR / script), *arguments]
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


#: ``training`` of a backend that cannot train (``Capabilities.training`` False).
TRAINING_SKIPPED = {"skipped": "inference only"}


def backend_plan(settings: Settings, training: bool = True) -> list[dict[str, Any]]:
    """The measurements of one backend, as ``bench/measure_backend.py --plan`` items
    (without training when ``training`` is False)."""
    scale = settings.n_filters_scale
    plan: list[dict[str, Any]] = [
        {"measure": "matmul", "matmul_size": settings.matmul_size, "repeats": settings.matmul_repeats},
        {"measure": "conv", "repeats": settings.conv_repeats},
    ]
    plan += [
        {"measure": "inference", "pattern_size": size, "gridsize": gridsize, "n_filters_scale": scale,
         "n_positions": settings.inference_groups[size], "seconds": settings.inference_seconds,
         "repeats": settings.repeats}
        for size, gridsize in CASES
    ]
    plan += [
        {"measure": "training", "pattern_size": size, "gridsize": gridsize, "n_filters_scale": scale,
         "n_positions": settings.training_positions[size], "epochs": settings.training_epochs}
        for size, gridsize in settings.training_cases
    ] if training else []
    return plan


def _run_plan(name: str, device: str, plan: list[dict[str, Any]]) -> dict[str, Any]:
    return run_json("measure_backend.py", "--backend", name, "--device", device, "--plan", json.dumps(plan))


def run_round(name: str, device: str, plan: list[dict[str, Any]], one_process: bool, report) -> dict[str, Any]:
    """One run of a backend's ``plan``: the backend's description (:data:`DESCRIPTION_KEYS`,
    absent when nothing ran) and ``records``, one per item in plan order, ``{**item,
    "error": ...}`` where it failed, so that one failure does not stop the others.

    Each measurement runs in a fresh subprocess, or, with ``one_process`` (``--quick``),
    all of them in one (their peak memories are then cumulative, and one failure fails all).
    """
    if one_process:
        report(f"{name}: {len(plan)} measurements in one process")
        try:
            return _run_plan(name, device, plan)
        except (MeasurementError, subprocess.TimeoutExpired) as error:
            return {"records": [{**item, "error": str(error)} for item in plan]}
    output: dict[str, Any] = {"records": []}
    for item in plan:
        report(f"{name}: {item['measure']} "
               + (f"N={item['pattern_size']} gridsize={item['gridsize']}" if "gridsize" in item else "peak"))
        try:
            result = _run_plan(name, device, [item])
        except (MeasurementError, subprocess.TimeoutExpired) as error:
            output["records"].append({**item, "error": str(error)})
            continue
        output.update({key: result[key] for key in DESCRIPTION_KEYS})
        output["records"].append(result["records"][0])
    return output


def median_record(records: list[dict[str, Any]], figure: str) -> dict[str, Any]:
    """One measurement's per-round ``records`` as one: ``figure`` is the median over the
    rounds that worked (``<figure>_rounds`` lists them all, ``None`` where one failed),
    the other fields those of the round closest to it (``median_round``, from 1; the
    earliest on a tie), so that a record's timings belong together. Failed rounds go to
    ``round_errors``; when all failed, the record is the first round's, with its ``error``.
    """
    values = [None if "error" in record else record[figure] for record in records]
    errors = [{"round": index + 1, "error": record["error"]} for index, record in enumerate(records)
              if "error" in record]
    summary: dict[str, Any] = {f"{figure}_rounds": values, "rounds": len(records)}
    if errors:
        summary["round_errors"] = errors
    worked = [index for index, value in enumerate(values) if value is not None]
    if not worked:
        return {**{key: value for key, value in records[0].items() if key != figure}, **summary}
    median = statistics.median(values[index] for index in worked)
    closest = min(worked, key=lambda index: abs(values[index] - median))
    return {**records[closest], figure: median, **summary, "median_round": closest + 1}


def _case(record: dict[str, Any], flops_per_pattern: float, peaks: dict[str, float | None]) -> dict[str, Any]:
    """A case's record with its FLOPs and the fractions of the peaks it reaches (``None``
    where that peak failed)."""
    achieved = flops_per_pattern * record["patterns_per_s"] / 1e9
    fractions = {f"fraction_of_{kind}_peak": achieved / peaks[kind] if peaks.get(kind) else None
                 for kind in PEAK_SHAPES}
    return {**record, "flops_per_pattern": flops_per_pattern, "achieved_gflops": achieved, **fractions}


def _peak_keys(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """A backend's flat keys of one peak (``<kind>_peak_gflops`` and its rounds, shape, memory, errors)."""
    prefix = f"{kind}_peak"
    keys = {f"{prefix}_gflops": record.get("gflops"), f"{prefix}_gflops_rounds": record["gflops_rounds"],
            **{name: record[name] for name in PEAK_SHAPES[kind] if name in record},
            f"{prefix}_rss_bytes": record.get("peak_rss_bytes")}
    if "error" in record:
        keys[f"{prefix}_error"] = record["error"]
    if "round_errors" in record:
        keys[f"{prefix}_round_errors"] = record["round_errors"]
    return keys


def aggregate_backend(rounds: list[dict[str, Any]], one_process: bool, training: bool = True) -> dict[str, Any]:
    """A backend's figures from its rounds (:func:`run_round` outputs of the same plan).

    Each measurement's records are reduced by :func:`median_record`; the achieved GFLOP/s
    and the fractions of the peaks follow from the medians. Without ``training`` (a
    backend that cannot train), ``"training"`` is :data:`TRAINING_SKIPPED`. When nothing
    ran in any round, the result is ``{"error": ...}`` (the first round's first error).
    """
    described = [output for output in rounds if "framework" in output]
    if not described:
        return {"error": rounds[0]["records"][0]["error"]}
    result: dict[str, Any] = {key: described[0][key] for key in DESCRIPTION_KEYS}
    result.update({"one_process": one_process, "rounds": len(rounds)})
    records = [median_record(list(per_round), FIGURES[per_round[0]["measure"]])
               for per_round in zip(*(output["records"] for output in rounds))]
    peaks = {}
    for record in records:
        if record["measure"] in PEAK_SHAPES:
            peaks[record["measure"]] = record.get("gflops")
            result.update(_peak_keys(record["measure"], record))
    result.update({"inference": {}, "training": {} if training else dict(TRAINING_SKIPPED)})
    for record in records:
        if record["measure"] in PEAK_SHAPES:
            continue
        key = f"N{record['pattern_size']}_g{record['gridsize']}"
        if "error" not in record:
            flops = model_flops(ModelConfig(pattern_size=record["pattern_size"], gridsize=record["gridsize"],
                                            n_filters_scale=record["n_filters_scale"]))
            per_pattern = flops.inference if record["measure"] == "inference" else flops.training_step
            record = _case(record, per_pattern, peaks)
        result[record["measure"]][key] = record
    return result


def reference_backend(names: list[str]) -> str:
    """The backend the others are compared with: TensorFlow (the framework of the
    original PtychoPINN) when measured, else the first named."""
    return "tensorflow" if "tensorflow" in names else names[0]


def _cases(backend: dict[str, Any], kind: str) -> dict[str, Any]:
    """The cases of ``kind`` ({} when the backend failed or the measurement was skipped)."""
    return {} if "error" in backend or "skipped" in backend[kind] else backend[kind]


def side_by_side(backends: dict[str, dict[str, Any]], reference: str) -> dict[str, Any]:
    """Each backend's median patterns/s over the ``reference`` backend's, by kind and case
    (the reference itself 1; ``None`` where either figure is missing)."""
    comparison: dict[str, Any] = {"reference": reference}
    for kind in KINDS:
        cases = dict.fromkeys(case for backend in backends.values() for case in _cases(backend, kind))
        comparison[kind] = {}
        for case in cases:
            throughputs = {name: _cases(backend, kind).get(case, {}).get("patterns_per_s")
                           for name, backend in backends.items()}
            base = throughputs.get(reference)
            comparison[kind][case] = {name: value / base if value is not None and base else None
                                      for name, value in throughputs.items()}
    return comparison


def _round_note(round_errors: list[dict[str, Any]]) -> str:
    rounds = [str(error["round"]) for error in round_errors]
    return f" (round{'s' if len(rounds) > 1 else ''} {', '.join(rounds)})" if rounds else ""


def _failed(results: dict[str, Any]) -> list[str]:
    """Where a measurement failed: ``core``, ``<backend>``, ``<backend>.<kind>_peak``,
    ``<backend>.<kind>.<case>``; ``(round 2)`` where only some rounds failed."""
    failed = ["core"] if "error" in results["core"] else []
    for name, backend in results["backends"].items():
        if "error" in backend:
            failed.append(name)
            continue
        for kind in PEAK_SHAPES:
            if f"{kind}_peak_error" in backend:
                failed.append(f"{name}.{kind}_peak")
            elif f"{kind}_peak_round_errors" in backend:
                failed.append(f"{name}.{kind}_peak{_round_note(backend[f'{kind}_peak_round_errors'])}")
        for kind in KINDS:
            for case, record in _cases(backend, kind).items():
                if "error" in record:
                    failed.append(f"{name}.{kind}.{case}")
                elif "round_errors" in record:
                    failed.append(f"{name}.{kind}.{case}{_round_note(record['round_errors'])}")
    return failed


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def _percent(numerator: float | None, denominator: float | None) -> str:
    return f"{100 * numerator / denominator:.0f}" if numerator is not None and denominator else "-"


def _peak_label(backend: dict[str, Any], kind: str) -> str:
    if kind == "matmul" and "matmul_size" in backend:
        return f"matmul {backend['matmul_size']}"
    if kind == "conv" and "conv_size" in backend:
        return (f"conv {backend['conv_batch']}x{backend['conv_size']}x{backend['conv_size']} "
                f"{backend['conv_in_channels']}>{backend['conv_out_channels']}")
    return kind


def _backend_rows(name: str, backend: dict[str, Any]) -> list[list[str]]:
    """The rows of one backend in the per-backend table (``*``: some rounds failed)."""
    if "error" in backend:
        return [[name, "[red]failed[/]", backend["error"][:80], "", "", "", "", "", ""]]
    matmul, conv = backend["matmul_peak_gflops"], backend["conv_peak_gflops"]
    rows = []
    for kind in PEAK_SHAPES:
        label = _peak_label(backend, kind) + (f" {backend['device']}" if kind == "matmul" else "")
        if f"{kind}_peak_error" in backend:
            rows.append([name, label, "[red]failed[/]", backend[f"{kind}_peak_error"][:80], "", "", "", "", ""])
            continue
        gflops = backend[f"{kind}_peak_gflops"]
        mark = "*" if f"{kind}_peak_round_errors" in backend else ""
        rows.append([name, label, "", "", f"{gflops:.1f}{mark}", _percent(gflops, matmul), _percent(gflops, conv),
                     _mib(backend[f"{kind}_peak_rss_bytes"]), ""])
    for kind in KINDS:
        if "skipped" in backend[kind]:
            rows.append([name, kind[:5], f"skipped: {backend[kind]['skipped']}", "", "", "", "", "", ""])
            continue
        for case, record in backend[kind].items():
            if "error" in record:
                rows.append([name, f"{kind[:5]} {case}", "[red]failed[/]", record["error"][:80], "", "", "", "", ""])
                continue
            mark = "*" if "round_errors" in record else ""
            rows.append([name, f"{kind[:5]} {case}", f"{record['patterns_per_s']:.1f}{mark}",
                         f"{record['flops_per_pattern'] / 1e9:.3f}", f"{record['achieved_gflops']:.1f}",
                         _percent(record["achieved_gflops"], matmul), _percent(record["achieved_gflops"], conv),
                         _mib(record["peak_rss_bytes"]), _mib(record["gpu_peak_bytes"])])
    return rows


def _side_cell(backend: dict[str, Any], kind: str, case: str) -> str:
    """Median patterns/s and, in brackets, the fraction of the backend's own conv peak."""
    if "error" in backend:
        return "[red]failed[/]"
    if "skipped" in backend[kind]:
        return "skipped"
    record = backend[kind].get(case)
    if record is None:
        return "-"
    if "error" in record:
        return "[red]failed[/]"
    fraction = record["fraction_of_conv_peak"]
    mark = "*" if "round_errors" in record else ""
    return f"{record['patterns_per_s']:,.1f}{mark} ({'-' if fraction is None else f'{100 * fraction:.0f}%'})"


def print_side_by_side(console: Console, results: dict[str, Any]) -> None:
    """One table per kind: a column per backend and their ratios to the reference."""
    comparison, backends = results["side_by_side"], results["backends"]
    reference = comparison["reference"]
    for kind in KINDS:
        if not comparison[kind]:
            continue
        table = Table(title=f"{kind.capitalize()} side by side: median patterns/s (% of the backend's conv peak)")
        table.add_column("case")
        for name in backends:
            table.add_column(name, justify="right")
        table.add_column(f"ratio to {reference}", justify="right")
        for case, ratios in comparison[kind].items():
            others = [f"{name} {ratio:.2f}" for name, ratio in ratios.items()
                      if name != reference and ratio is not None]
            table.add_row(case, *(_side_cell(backend, kind, case) for backend in backends.values()),
                          ", ".join(others) or "-")
        console.print(table)


def print_tables(console: Console, results: dict[str, Any]) -> None:
    machine, settings = results["machine"], results["settings"]
    gpus = ", ".join(machine["gpus"]) or "no GPU"
    console.print(f"[bold]{machine['cpu_model']}[/], {machine['cpu_count']} cores, "
                  f"{_mib(machine['memory_bytes'])} MiB, {gpus}; Python {machine['python']}; "
                  f"{results['mode']} run, n_filters_scale {settings['n_filters_scale']}, "
                  f"{settings['rounds']} round(s), in {results['wall_s']:.0f} s")
    rows = [row for name, backend in results["backends"].items() for row in _backend_rows(name, backend)]
    partial = any("*" in row[2] + row[4] for row in rows if "failed" not in row[2])
    table = Table(title="Backends (medians over rounds; % matmul, % conv: achieved GFLOP/s over that peak; "
                        "RSS: process peak)",
                  caption="* some rounds failed (round_errors in the JSON)" if partial else None)
    for column in ("backend", "measurement", "patterns/s", "GFLOP/pattern", "GFLOP/s", "% matmul", "% conv",
                   "RSS MiB", "GPU MiB"):
        table.add_column(column, justify="left" if column in ("backend", "measurement") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    print_side_by_side(console, results)
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
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny scans, n_filters_scale 1, one round, one subprocess per backend")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--rounds", type=int, metavar="R",
                        help="run every backend's measurements R times, interleaved; figures are medians "
                             "(default: 3, --quick 1)")
    parser.add_argument("--n-filters-scale", type=int, metavar="K",
                        help="the model's width (default: 2, --quick 1)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)

    registry = BackendRegistry.discover()
    try:
        names = [registry.get(name.strip()).name for name in args.backends.split(",")] if args.backends \
            else registry.names()
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    overrides = {name: value for name, value in (("rounds", args.rounds), ("n_filters_scale", args.n_filters_scale))
                 if value is not None}
    if any(value < 1 for value in overrides.values()):
        parser.error(f"--rounds and --n-filters-scale must be at least 1, received {overrides}")
    settings = replace(QUICK if args.quick else FULL, **overrides)
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
    trains = {name: registry.get(name).info.capabilities.training for name in names}
    plans = {name: backend_plan(settings, trains[name]) for name in names}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for number in range(1, settings.rounds + 1):  # interleaved: drift of the machine hits every backend alike
        prefix = f"round {number}/{settings.rounds}: " if settings.rounds > 1 else ""
        for name in names:
            rounds[name].append(run_round(name, args.device, plans[name], args.quick,
                                          lambda message: report(prefix + message)))
    results["backends"] = {name: aggregate_backend(rounds[name], args.quick, trains[name]) for name in names}
    results["side_by_side"] = side_by_side(results["backends"], reference_backend(names))
    results["wall_s"] = time.perf_counter() - started
    report("done")

    return finish(results, args.json, print_tables, _failed(results), progress, width=120)


if __name__ == "__main__":
    sys.exit(main())
