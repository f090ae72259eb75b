"""``ptychopinn demo --quick``, run as a user runs it: the report's files exist and its
numbers are real (finite, in range, learned, one entry per installed backend).

The demo runs once, in a subprocess, with the real installed backends; the tests read
what it wrote. (tests/test_workflow_cli.py runs ``run_demo`` in-process with the numpy
fake backend, which needs no framework.)
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_core.backends import BackendRegistry

CLI = Path(sys.executable).with_name("ptychopinn")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CEILING = "stitched truth"
#: An untrained network gives an amplitude SSIM near 0 (no structure that follows the
#: truth); even the two quick epochs reach well above this (about 0.27 when written).
LEARNED_SSIM = 0.1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = subprocess.run([CLI, "demo", "--quick", "--out", str(out)], capture_output=True, text=True,
                            timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"ptychopinn demo --quick failed:\n{result.stderr[-3000:]}"
    return out, json.loads((out / "report.json").read_text()), result.stdout


@pytest.fixture(scope="module")
def installed():
    entries = BackendRegistry.discover().entries()
    return {entry.name for entry in entries}, {entry.name for entry in entries if entry.ok}


def test_report_and_figures_are_written(demo, installed):
    out, report, stdout = demo
    markdown = (out / "report.md").read_text()
    expected_figures = {"comparison", "frc"} | ({"loss"} if installed[1] else set())
    assert set(report["figures"]) == expected_figures
    for file in report["figures"].values():
        data = (out / file).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, file
        assert f"]({file})" in markdown, f"report.md does not show {file}"
    assert f"report: {out / 'report.md'}" in stdout


def test_one_entry_per_installed_backend(demo, installed):
    out, report, stdout = demo
    names, usable = installed
    assert set(report["results"]) == names | {CEILING}
    assert {entry["name"] for entry in report["installed_backends"]} == names
    markdown = (out / "report.md").read_text()
    for name in names | {CEILING}:
        assert f"| {name} " in markdown
        assert any(line.startswith(f"{name} ") for line in stdout.splitlines()), f"no summary row for {name}"
    for name in usable:
        result = report["results"][name]
        assert result["status"] == "ok"
        assert (out / f"recon-{name}.npz").stat().st_size > 0
        if result["model_trained_by"] == name:
            assert (out / f"model-{name}.zip").stat().st_size > 0
        else:  # it runs trained models only: the first trainer's, listed as such
            assert result["model_trained_by"] in usable and not (out / f"model-{name}.zip").exists()
            assert f"| {name} (model of {result['model_trained_by']}) |" in markdown


def _check_metrics(name: str, metrics: dict) -> None:
    for part in ("amplitude", "phase"):
        values = metrics[part]
        assert -1 <= values["ssim"] <= 1, (name, part, values["ssim"])
        assert math.isfinite(values["psnr"]) and values["mae"] >= 0, (name, part)
        assert 0 < values["frc50"] <= 1, (name, part, values["frc50"])
        curve = values["frc"]
        assert len(curve["frequency_nyquist"]) == len(curve["correlation"]) > 1
        assert all(math.isfinite(c) for c in curve["correlation"])


def test_quality_numbers_are_real(demo, installed):
    _, report, _ = demo
    results = report["results"]
    ceiling = results[CEILING]["metrics"]
    _check_metrics(CEILING, ceiling)
    assert ceiling["amplitude"]["ssim"] > 0.95 and ceiling["phase"]["ssim"] > 0.95, "stitching the truth loses it"
    for name in installed[1]:
        metrics = results[name]["metrics"]
        _check_metrics(name, metrics)
        amplitude_ssim = metrics["amplitude"]["ssim"]
        assert LEARNED_SSIM < amplitude_ssim < ceiling["amplitude"]["ssim"], (name, amplitude_ssim)
        assert all(seconds > 0 for seconds in results[name]["timings"].values())


def test_loss_curves_decrease(demo, installed):
    _, report, _ = demo
    for name in installed[1]:
        epochs = report["results"][name]["history"]["epochs"]
        assert len(epochs) == report["settings"]["epochs"], name
        for key in ("train_loss", "val_loss"):
            curve = [epoch[key] for epoch in epochs]
            assert all(math.isfinite(value) for value in curve), (name, key, curve)
            assert curve[-1] < curve[0], f"{name} {key} did not decrease: {curve}"


def test_backends_are_compared(demo, installed):
    out, report, _ = demo
    pairs = [f"{a} vs {b}" for a, b in itertools.combinations(sorted(installed[1]), 2)]
    assert sorted(report["agreement"]) == pairs
    for pair in pairs:
        values = report["agreement"][pair]
        # Same initial weights and batches: the two reconstructions differ by a few percent.
        assert 0 <= values["relative_l2"] < 0.5 and 0 <= values["max_abs"], (pair, values)
        assert f"| {pair} |" in (out / "report.md").read_text()
    # A backend that runs another's model gives that backend's reconstruction (parity).
    for name in installed[1]:
        trainer = report["results"][name]["model_trained_by"]
        if trainer != name:
            pair = " vs ".join(sorted((name, trainer)))
            assert report["agreement"][pair]["relative_l2"] < 1e-4, (pair, report["agreement"][pair])


def test_refinement_columns_are_real(demo, installed):
    """Network, network + K and flat + K iterations, per backend: refinement reaches the
    quality of stitching the truth from either start (about 0.99 when written)."""
    out, report, stdout = demo
    iterations = report["config"]["refine"]["iterations"]
    assert iterations > 0
    for name in installed[1]:
        result = report["results"][name]
        for start in ("refined", "flat"):
            entry = result[start]
            _check_metrics(f"{name} {start}", entry["metrics"])
            assert entry["iterations"] == iterations and entry["refine_s"] > 0
            for part in ("amplitude", "phase"):
                assert entry["metrics"][part]["ssim"] > max(0.95, result["metrics"][part]["ssim"]), (name, start, part)
            assert (out / f"recon-{name}-{start}.npz").stat().st_size > 0
        assert f"{name} network + {iterations}" in stdout and f"{name} flat + {iterations}" in stdout
    assert f"network + {iterations}" in (out / "report.md").read_text()
