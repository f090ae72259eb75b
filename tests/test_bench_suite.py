"""``bench/suite.py --quick`` end to end with one backend: every figure is there and real.

Timings themselves are never asserted (they belong to the benchmark); this checks that
the suite measures what docs/benchmarks.md lists, in fresh subprocesses, and that its
derived figures (FLOPs, GFLOP/s, fraction of peak) follow from the measured ones.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.flops import model_flops

SUITE = Path(__file__).resolve().parents[1] / "bench" / "suite.py"
BACKEND = "pytorch"  # starts fastest
INFERENCE_CASES = {"N64_g1": (64, 1), "N64_g2": (64, 2), "N128_g1": (128, 1), "N128_g2": (128, 2)}
CORE_FIGURES = (
    "grouping_gridsize_1_positions_per_s", "grouping_gridsize_2_positions_per_s",
    "overlap_enforce_patches_per_s", "overlap_merge_patches_per_s", "simulate_positions_per_s",
    "stitch_positions_per_s", "stitch_peak_traced_bytes", "peak_rss_bytes",
)
CASE_FIGURES = ("patterns_per_s", "flops_per_pattern", "achieved_gflops", "fraction_of_matmul_peak",
                "peak_rss_bytes", "setup_rss_bytes")


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if BACKEND not in BackendRegistry.discover().names():
        pytest.skip(f"backend {BACKEND!r} is not installed")
    out = tmp_path_factory.mktemp("bench") / "suite.json"
    result = subprocess.run(
        [sys.executable, str(SUITE), "--backends", BACKEND, "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text()), result.stdout


def test_machine_is_described(quick_run):
    machine = quick_run[0]["machine"]
    assert machine["cpu_model"] and machine["python"]
    assert positive(machine["cpu_count"]) and positive(machine["memory_bytes"])
    assert isinstance(machine["gpus"], list)
    assert machine["versions"]["numpy"] and machine["versions"]["torch"]


def test_core_figures_are_positive(quick_run):
    core = quick_run[0]["core"]
    missing = [key for key in CORE_FIGURES if not positive(core.get(key))]
    assert not missing, f"core figures missing or not positive: {missing}"


def test_backend_figures_are_complete_and_consistent(quick_run):
    results = quick_run[0]
    assert list(results["backends"]) == [BACKEND]
    backend = results["backends"][BACKEND]
    peak = backend["matmul_peak_gflops"]
    assert positive(peak) and positive(backend["matmul_peak_rss_bytes"])
    assert backend["device"] in ("cpu", "gpu")
    scale = results["settings"]["n_filters_scale"]
    cases = [("inference", case, size, gridsize) for case, (size, gridsize) in INFERENCE_CASES.items()]
    cases.append(("training", "N64_g1", 64, 1))
    assert set(backend["inference"]) == set(INFERENCE_CASES)
    for kind, case, size, gridsize in cases:
        record = backend[kind][case]
        missing = [key for key in CASE_FIGURES if not positive(record.get(key))]
        assert not missing, f"{kind} {case}: missing or not positive {missing}"
        flops = model_flops(ModelConfig(pattern_size=size, gridsize=gridsize, n_filters_scale=scale))
        assert record["flops_per_pattern"] == (flops.inference if kind == "inference" else flops.training_step)
        assert record["achieved_gflops"] == pytest.approx(record["flops_per_pattern"] * record["patterns_per_s"] / 1e9)
        assert record["fraction_of_matmul_peak"] == pytest.approx(record["achieved_gflops"] / peak)
        assert record["peak_rss_bytes"] >= record["setup_rss_bytes"]
        if backend["device"] == "cpu":
            assert record["gpu_peak_bytes"] is None
        else:
            assert positive(record["gpu_peak_bytes"])
    training = backend["training"]["N64_g1"]
    assert training["epochs"] >= 2 and positive(training["seconds_per_epoch"])
    assert training["patterns_per_epoch"] == training["train_groups"]  # gridsize 1: one pattern per group


def test_table_is_printed(quick_run):
    table = quick_run[1]
    for text in (BACKEND, "matmul", "infer N128_g2", "train N64_g1", "grouping", "stitch"):
        assert text in table
