"""``bench/refine.py --quick`` end to end with PyTorch only (no TensorFlow, no pty-chi).

Timings and qualities are never asserted (they belong to the benchmark, see
docs/benchmarks.md "Refinement"); this checks that every part runs and reports the
figures the docs tabulate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_core.backends import BackendRegistry

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "refine.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if "pytorch" not in BackendRegistry.discover().names():
        pytest.skip("backend 'pytorch' is not installed")
    out = tmp_path_factory.mktemp("bench") / "refine.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backends", "pytorch", "--no-ptychi",
         "--star-train-backend", "pytorch", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text()), result.stdout


def test_stdout_is_the_json(quick_run):
    report, stdout = quick_run
    assert json.loads(stdout) == report


def test_simulated_curves(quick_run):
    run = quick_run[0]["simulated"]["runs"]["pytorch"]
    assert run["inference_s"] > 0
    for start in ("network", "flat"):
        curve = run[start]["curve"]
        assert [point["iteration"] for point in curve] == list(range(len(curve)))
        assert all(0 <= a["seconds"] <= b["seconds"] for a, b in zip(curve, curve[1:]))
        assert set(run[start]["reach"]) == {"0.95", "0.98"}
    assert run["network"]["curve"][0]["seconds"] == pytest.approx(run["inference_s"], abs=1e-3)


def test_sweep_and_star_and_scale(quick_run):
    report = quick_run[0]
    cases = report["sweep"]["cases"]
    assert {case["probe"] for case in cases} == {"known", "poor guess, refined"}
    star = report["star"]["runs"]["pytorch"]
    for start in ("network", "flat"):
        assert -1 <= star[start]["final"]["phase_ncc"] <= 1
    scale = report["scale"]
    assert scale["peak_rss_bytes"] > scale["diffraction_bytes"] > 0
    assert scale["seconds_per_iteration"] > 0 and scale["finite"]
