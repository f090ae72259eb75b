"""``bench/predict_batch.py`` end to end on its smoke case with every installed backend.

Timings are never asserted: this checks that each backend is measured in both slice
settings with positive figures, and that the cache rule's group count is the one the
core's rule gives for the case.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_core.backends import BackendRegistry

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "predict_batch.py"
BACKENDS = ("onnx", "pytorch", "tensorflow")


def test_every_backend_is_measured_in_both_slicings(tmp_path) -> None:
    installed = BackendRegistry.discover().names()
    names = [name for name in BACKENDS if name in installed]
    if not names:
        pytest.skip(f"none of the backends {BACKENDS} is installed")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backends", ",".join(names), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=SCRIPT.parents[1],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "predict_batch.json").read_text())
    assert json.loads(result.stdout) == report
    assert [row["backend"] for row in report["results"]] == names
    for row in report["results"]:
        # N = 32, width 1: 32 x 32 x 32 float32 = 128 KiB a pattern -> 64 groups in 8 MiB.
        assert row["cache_rule_groups"] == 64
        rates = [value for key, value in row.items() if key.endswith("_patterns_per_s")]
        assert len(rates) == 2 and all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in rates)
