"""``bench/diagnose_model.py`` end to end on an untrained N = 32 gridsize-2 bundle.

What the figures are is the benchmark's business; this checks that the script reads a
bundle, simulates the seen and unseen scans, and reports every part (SSIMs, the phase
error split, oracle offsets, plain and phase-synchronised stitching, the crop sweep) with finite values, and
that the sweep's entry at the model's own crop is the plain score.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config
from ptychopinn_core.model.bundle import ModelBundle, make_manifest, write_bundle
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.model.state import History
from ptychopinn_core.physics.stitching import PHASE_SYNC_ANCHOR
from ptychopinn_core.simulation import make_demo_scan

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "diagnose_model.py"


def test_every_part_is_reported(tmp_path) -> None:
    installed = [name for name in ("pytorch", "tensorflow") if name in BackendRegistry.discover().names()]
    if not installed:
        pytest.skip("no training backend installed")
    config = Config().with_overrides({"model.pattern_size": 32, "model.gridsize": 2})
    scan = make_demo_scan(40, 32, seed=1, probe_kind="velociprobe")
    bundle = ModelBundle(manifest=make_manifest("pinn", installed[0], "test", "test"), config=config,
                         weights=initial_weights(parameter_specs(config.model), 0),
                         state=prepare_model_state(scan, config), history=History())
    model = write_bundle(tmp_path / f"model-{installed[0]}-velociprobe-g2.zip", bundle)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(model), "--backend", installed[0], "--n-train", "64", "--n-test", "64",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, cwd=SCRIPT.parents[1],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "diagnosis.json").read_text())
    assert (tmp_path / "out" / "diagnosis.png").stat().st_size > 0
    assert report["probe"] == "velociprobe" and report["gridsize"] == 2
    for name in ("seen", "unseen"):
        part = report[name]
        pairs = [part["ssim"], part["oracle_offsets"]["ssim"], part["oracle_planes"]["ssim"], part["plain"]["ssim"], part["phase_sync"]["ssim"],
                 *part["crop"].values()]
        assert part["phase_sync"]["ssim"] == part["ssim"] and part["phase_sync"]["steps"] >= 1
        # The default anchor's entry: the same numbers as the default stitching.
        assert part["phase_sync_anchor"][str(PHASE_SYNC_ANCHOR)] == part["phase_sync"]
        pairs += [entry["ssim"] for entry in part["phase_sync_anchor"].values()]
        assert all(len(pair) == 2 and all(-1 <= value <= 1 for value in pair) for pair in pairs)
        assert all(math.isfinite(part[key]) and part[key] >= 0
                   for key in ("phase_rmse", "phase_rmse_low", "phase_rmse_high"))
        assert "8" in part["border"] and set(part["border"]) <= {"8", "16", "32"}  # margins that fit the region
        assert all(len(pair) == 2 and all(-1 <= value <= 1 for value in pair) for pair in part["border"].values())
        assert math.isfinite(part["phase_gain"]["slope"])
        assert -1 <= part["phase_gain"]["low_error_vs_truth_correlation"] <= 1
        assert part["crop"]["10"] == part["ssim"]  # N = 32: the default crop is 10 px
        assert sorted(map(int, part["crop"])) == [8, 10, 14, 18]
