"""``bench/inference.py`` end to end on the smallest sizes, with every installed backend.

Timings are never asserted (they belong to the benchmark): this checks that every case
and backend is measured, in fresh subprocesses on the same bundle and data, with
positive figures, and that the ONNX / framework ratio follows from them. The
``--env-sizes`` part (minutes, the package index) is run by hand.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_core.backends import BackendRegistry

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "inference.py"
#: The backends this test runs when installed (a fake backend on the path is left out).
BACKENDS = ("onnx", "pytorch", "tensorflow")
#: One case (gridsize 2: the overlap constraint too); a subprocess per backend and case.
CASES = {"N16_g2": (16, 2)}
POSITIONS = 8  # gridsize 2 groups among n_neighbors + 1 = 5 positions at least


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    installed = BackendRegistry.discover().names()
    names = [name for name in BACKENDS if name in installed]
    if not names:
        pytest.skip(f"none of the backends {BACKENDS} is installed")
    out = tmp_path_factory.mktemp("bench") / "inference.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--backends", ",".join(names), "--pattern-sizes", "16", "--gridsizes", "2",
         "--positions", str(POSITIONS), "--repeats", "1", "--seconds", "0", "--calls", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120 * len(names),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return names, json.loads(out.read_text()), result.stdout


def test_every_case_and_backend_is_measured(run):
    names, results, _ = run
    assert results["benchmark"] == "inference"
    assert results["machine"]["cpu_model"] and positive(results["machine"]["cpu_count"])
    assert results["settings"]["backends"] == names
    assert set(results["cases"]) == set(CASES)
    digests = set()
    for key, (size, gridsize) in CASES.items():
        case = results["cases"][key]
        assert (case["pattern_size"], case["gridsize"], case["n_positions"]) == (size, gridsize, POSITIONS)
        assert case["patterns"] == POSITIONS * gridsize**2
        digests.add(case["bundle_digest"])
        assert list(case["backends"]) == names
        for name, record in case["backends"].items():
            assert "error" not in record and "errors" not in record, (key, name, record)
            assert record["rounds_measured"] == 1
            for figure in ("predict_patterns_per_s", "reconstruct_patterns_per_s"):
                spread = record[figure]
                assert all(positive(spread[stat]) for stat in ("median", "min", "max")), (key, name, figure)
                assert spread["min"] <= spread["median"] <= spread["max"]
            assert positive(record["predict_gflops"]) and record["build_model_s"] >= 0
            assert positive(record["setup_rss_mib"]) and record["peak_rss_mib"] >= record["setup_rss_mib"]
            assert record["device"] == "cpu"
            (round_,) = record["rounds"]
            assert round_["predict"]["calls"] >= 1 and round_["reconstruct"]["calls"] >= 1
    assert len(digests) == len(CASES)  # one bundle per case, shared by the backends


def test_onnx_is_compared_with_the_fastest_framework_backend(run):
    names, results, _ = run
    if "onnx" not in names or len(names) < 2:
        pytest.skip("needs the onnx backend and a framework backend")
    for case in results["cases"].values():
        comparison = case["onnx_vs_fastest_framework"]
        for figure in ("predict", "reconstruct"):
            fastest = comparison[figure]["fastest_framework_backend"]
            assert fastest in names and fastest != "onnx"
            rates = {name: record[f"{figure}_patterns_per_s"]["median"] for name, record in case["backends"].items()}
            assert rates[fastest] == max(rate for name, rate in rates.items() if name != "onnx")
            assert comparison[figure]["ratio"] == pytest.approx(rates["onnx"] / rates[fastest])
            assert comparison[figure]["meets_goal"] == (comparison[figure]["ratio"] >= 1)


def test_tables_are_printed(run):
    names, _, table = run
    for text in (*CASES, "predict", "reconstruct", *names):
        assert text in table
