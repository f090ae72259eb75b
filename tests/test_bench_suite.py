"""``bench/suite.py --quick`` end to end with one backend: every figure is there and real.

Timings themselves are never asserted (they belong to the benchmark); this checks that
the suite measures what docs/benchmarks.md lists, in fresh subprocesses, that its
derived figures (FLOPs, GFLOP/s, fractions of the peaks, ratios between backends)
follow from the measured ones, and, on hand-made numbers, that the medians over rounds
and the failed rounds are what the suite's docstring says.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.flops import model_flops

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
SUITE = BENCH_DIR / "suite.py"
BACKEND = "pytorch"  # starts fastest
INFERENCE_CASES = {"N64_g1": (64, 1), "N64_g2": (64, 2), "N128_g1": (128, 1), "N128_g2": (128, 2)}
CORE_FIGURES = (
    "grouping_gridsize_1_positions_per_s", "grouping_gridsize_2_positions_per_s",
    "overlap_enforce_patches_per_s", "overlap_merge_patches_per_s", "simulate_positions_per_s",
    "stitch_positions_per_s", "stitch_peak_traced_bytes", "peak_rss_bytes",
)
CASE_FIGURES = ("patterns_per_s", "flops_per_pattern", "achieved_gflops", "fraction_of_matmul_peak",
                "fraction_of_conv_peak", "peak_rss_bytes", "setup_rss_bytes")


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
    peak, conv_peak = backend["matmul_peak_gflops"], backend["conv_peak_gflops"]
    assert positive(peak) and positive(backend["matmul_peak_rss_bytes"])
    assert positive(conv_peak) and positive(backend["conv_peak_rss_bytes"])
    assert backend["matmul_peak_gflops_rounds"] == [peak] and backend["conv_peak_gflops_rounds"] == [conv_peak]
    assert results["settings"]["rounds"] == 1 and backend["rounds"] == 1
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
        assert record["fraction_of_conv_peak"] == pytest.approx(record["achieved_gflops"] / conv_peak)
        assert record["rounds"] == 1 and record["patterns_per_s_rounds"] == [record["patterns_per_s"]]
        assert "round_errors" not in record
        assert record["peak_rss_bytes"] >= record["setup_rss_bytes"]
        if backend["device"] == "cpu":
            assert record["gpu_peak_bytes"] is None
        else:
            assert positive(record["gpu_peak_bytes"])
    training = backend["training"]["N64_g1"]
    assert training["epochs"] >= 2 and positive(training["seconds_per_epoch"])
    assert training["patterns_per_epoch"] == training["train_groups"]  # gridsize 1: one pattern per group


def test_side_by_side_is_relative_to_the_only_backend(quick_run):
    comparison = quick_run[0]["side_by_side"]
    assert comparison["reference"] == BACKEND
    assert comparison["inference"] == {case: {BACKEND: 1.0} for case in INFERENCE_CASES}
    assert comparison["training"] == {"N64_g1": {BACKEND: 1.0}}


def test_table_is_printed(quick_run):
    table = quick_run[1]
    for text in (BACKEND, "matmul", "conv", "infer N128_g2", "train N64_g1", "Inference side by side",
                 "Training side by side", "grouping", "stitch"):
        assert text in table


def test_conv_peak_is_measured():
    """``measure_backend.py --measure conv``: one record, FLOPs of the shape asked for."""
    if BACKEND not in BackendRegistry.discover().names():
        pytest.skip(f"backend {BACKEND!r} is not installed")
    shape = {"conv-batch": 2, "conv-size": 16, "conv-in-channels": 8, "conv-out-channels": 4}
    options = [text for name, value in shape.items() for text in (f"--{name}", str(value))]
    result = subprocess.run(
        [sys.executable, str(BENCH_DIR / "measure_backend.py"), "--backend", BACKEND, "--device", "cpu",
         "--measure", "conv", "--repeats", "1", *options],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = json.loads(result.stdout.strip().splitlines()[-1])["records"]
    assert record["measure"] == "conv" and record["conv_flops"] == 2 * 9 * 8 * 4 * 16 * 16 * 2
    assert positive(record["conv_seconds"]) and positive(record["gflops"])
    assert record["gflops"] == pytest.approx(record["conv_flops"] / record["conv_seconds"] / 1e9)


# --- medians over rounds, on hand-made records (no subprocess) ----------------------------------


@pytest.fixture(scope="module")
def suite():
    """``bench/suite.py`` as a module (it imports its sibling ``benchlib``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH_DIR))
        yield importlib.import_module("suite")


def failed(item: dict, message: str = "boom") -> dict:
    """The record of a failed measurement: its plan item and the error."""
    return {**item, "error": message}


def peak(kind: str, gflops: float | None = None) -> dict:
    """A peak's plan item, and its record when given ``gflops``."""
    shape = {"matmul_size": 8} if kind == "matmul" else {"conv_batch": 1, "conv_size": 8, "conv_in_channels": 2,
                                                          "conv_out_channels": 2}
    item = {"measure": kind, **shape, "repeats": 1}
    return item if gflops is None else {**item, "gflops": gflops, "peak_rss_bytes": 100}


def case(kind: str, gridsize: int, patterns_per_s: float | None = None) -> dict:
    """A case's plan item, and its record when given ``patterns_per_s``."""
    item = {"measure": kind, "pattern_size": 64, "gridsize": gridsize, "n_filters_scale": 1}
    return item if patterns_per_s is None else {**item, "patterns_per_s": patterns_per_s,
                                                "seconds_per_call": 10 / patterns_per_s, "peak_rss_bytes": 200}


DESCRIPTION = {"backend": "b", "framework": "torch", "framework_version": "1", "device": "cpu", "devices": ["cpu"]}


def test_median_record_takes_the_median_and_keeps_that_rounds_fields(suite):
    records = [case("inference", 1, 10.0), case("inference", 1, 30.0), case("inference", 1, 20.0)]
    record = suite.median_record(records, "patterns_per_s")
    assert record["patterns_per_s"] == 20.0 and record["patterns_per_s_rounds"] == [10.0, 30.0, 20.0]
    assert record["rounds"] == 3 and record["median_round"] == 3 and record["seconds_per_call"] == 0.5
    assert "round_errors" not in record and "error" not in record


def test_median_record_leaves_failed_rounds_out_and_marks_them(suite):
    records = [case("inference", 1, 10.0), failed(case("inference", 1), "out of memory"),
               case("inference", 1, 30.0)]
    record = suite.median_record(records, "patterns_per_s")
    assert record["patterns_per_s"] == 20.0 and record["patterns_per_s_rounds"] == [10.0, None, 30.0]
    assert record["median_round"] == 1  # 10 and 30 are as close: the earliest
    assert record["round_errors"] == [{"round": 2, "error": "out of memory"}] and "error" not in record

    every = suite.median_record([failed({"measure": "conv"}, "a"), failed({"measure": "conv"}, "b")], "gflops")
    assert every["error"] == "a" and every["gflops_rounds"] == [None, None] and "gflops" not in every
    assert [error["round"] for error in every["round_errors"]] == [1, 2]


def test_aggregate_backend_derives_figures_from_the_medians(suite):
    rounds = [
        {**DESCRIPTION, "records": [peak("matmul", 100.0), peak("conv", 40.0), case("inference", 1, 10.0),
                                    case("training", 1, 3.0)]},
        {**DESCRIPTION, "records": [peak("matmul", 300.0), peak("conv", 60.0),
                                    failed(case("inference", 1)), case("training", 1, 5.0)]},
        {**DESCRIPTION, "records": [peak("matmul", 200.0), failed(peak("conv")), case("inference", 1, 30.0),
                                    case("training", 1, 4.0)]},
    ]
    backend = suite.aggregate_backend(rounds, one_process=False)
    assert backend["rounds"] == 3 and backend["framework"] == "torch" and backend["one_process"] is False
    assert backend["matmul_peak_gflops"] == 200.0 and backend["matmul_peak_gflops_rounds"] == [100.0, 300.0, 200.0]
    assert backend["conv_peak_gflops"] == 50.0 and backend["conv_peak_gflops_rounds"] == [40.0, 60.0, None]
    assert backend["conv_peak_round_errors"] == [{"round": 3, "error": "boom"}] and backend["matmul_size"] == 8
    inference, training = backend["inference"]["N64_g1"], backend["training"]["N64_g1"]
    assert inference["patterns_per_s"] == 20.0 and inference["round_errors"][0]["round"] == 2
    assert training["patterns_per_s"] == 4.0 and training["median_round"] == 3
    flops = model_flops(ModelConfig(pattern_size=64, gridsize=1, n_filters_scale=1))
    for record, per_pattern in ((inference, flops.inference), (training, flops.training_step)):
        achieved = per_pattern * record["patterns_per_s"] / 1e9
        assert record["flops_per_pattern"] == per_pattern and record["achieved_gflops"] == pytest.approx(achieved)
        assert record["fraction_of_matmul_peak"] == pytest.approx(achieved / 200.0)
        assert record["fraction_of_conv_peak"] == pytest.approx(achieved / 50.0)
    assert suite._failed({"core": {}, "backends": {"b": backend}}) == [
        "b.conv_peak (round 3)", "b.inference.N64_g1 (round 2)"]


def test_aggregate_backend_without_peaks_or_runs(suite):
    plan = [peak("matmul"), peak("conv"), case("inference", 2)]
    nothing = {"records": [failed(item, "no framework") for item in plan]}
    assert suite.aggregate_backend([nothing, nothing], one_process=True) == {"error": "no framework"}
    rounds = [nothing, {**DESCRIPTION, "records": [failed(plan[0]), failed(plan[1]), case("inference", 2, 8.0)]}]
    backend = suite.aggregate_backend(rounds, one_process=False, training=False)
    assert backend["training"] == suite.TRAINING_SKIPPED and backend["matmul_peak_gflops"] is None
    assert backend["matmul_peak_error"] == "no framework" and "conv_peak_error" in backend
    record = backend["inference"]["N64_g2"]
    assert record["patterns_per_s"] == 8.0 and record["median_round"] == 2
    assert record["fraction_of_matmul_peak"] is None and record["fraction_of_conv_peak"] is None


def test_side_by_side_ratios_to_the_reference(suite):
    def backend(inference: float | None, training: float | None) -> dict:
        cases = {"inference": {"N64_g1": {"patterns_per_s": inference} if inference else {"error": "boom"}}}
        cases["training"] = {"N64_g1": {"patterns_per_s": training}} if training else dict(suite.TRAINING_SKIPPED)
        return cases

    backends = {"pytorch": backend(20.0, 4.0), "onnx": backend(60.0, None), "tensorflow": backend(40.0, 8.0),
                "jax": {"error": "no jax"}}
    assert suite.reference_backend(list(backends)) == "tensorflow"
    assert suite.reference_backend(["pytorch", "onnx"]) == "pytorch"
    comparison = suite.side_by_side(backends, "tensorflow")
    assert comparison == {
        "reference": "tensorflow",
        "inference": {"N64_g1": {"pytorch": 0.5, "onnx": 1.5, "tensorflow": 1.0, "jax": None}},
        "training": {"N64_g1": {"pytorch": 0.5, "onnx": None, "tensorflow": 1.0, "jax": None}},
    }
    backends["tensorflow"] = backend(None, 8.0)  # the reference's case failed: no ratio
    assert set(suite.side_by_side(backends, "tensorflow")["inference"]["N64_g1"].values()) == {None}
