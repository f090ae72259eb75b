"""``ptychopinn simulate`` and ``ptychopinn evaluate`` end to end."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from ptychopinn_core.cli.evaluate import evaluate_command
from ptychopinn_core.cli.main import main
from ptychopinn_core.cli.simulate import simulate_command
from ptychopinn_core.data import read_scan, write_scan
from ptychopinn_core.physics.stitching import ObjectFrame, default_crop_size, stitch
from ptychopinn_core.reconstruction import Reconstruction, write_reconstruction
from ptychopinn_core.simulation import default_probe, focused_probe
from ptychopinn_core.simulation.probe import velociprobe_probe

CLI = Path(sys.prefix) / "bin" / "ptychopinn"
SMALL = ["--n-positions", "120", "--size", "32", "--nphotons", "1e6"]


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """main() points the root logger at the (captured) stderr; undo that after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "scan.npz"
    assert main(["--quiet", "simulate", "--out", str(path), *SMALL, "--seed", "5"]) == 0
    return path


def _stitched_recon(scan_path: Path, out: Path) -> Path:
    scan = read_scan(scan_path)
    frame = ObjectFrame.for_object(scan.object.shape)
    crop = default_crop_size(scan.pattern_size)
    obj = stitch(scan.patches, scan.positions_px, frame, crop_size=crop)
    meta = {"crop_size_px": crop, "source": "ground-truth Y"}
    return write_reconstruction(out, Reconstruction(obj, frame, meta))


# --------------------------------------------------------------------------- simulate


def test_simulate_writes_a_canonical_scan_with_ground_truth(tmp_path, capsys):
    out = tmp_path / "scan.npz"
    args = ["simulate", "--out", out, *SMALL, "--seed", "3", "--gridsize", "2"]
    code, stdout, stderr = run(capsys, *args)
    assert code == 0, stderr
    assert stdout.startswith(f"wrote {out}: 120 patterns of 32x32") and stdout.count("\n") == 1
    scan = read_scan(out)
    assert scan.n_positions == 120 and scan.pattern_size == 32
    assert scan.object is not None and scan.patches is not None
    assert scan.meta["gridsize"] == 2 and scan.meta["seed"] == 3 and scan.meta["nphotons"] == 1e6
    counts = scan.diffraction.astype(np.float64) ** 2
    assert abs(counts.sum(axis=(1, 2)).mean() - 1e6) < 5 * np.sqrt(1e6 / 120)


def test_simulate_is_reproducible_and_quiet(tmp_path, capsys):
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    code, stdout, _ = run(capsys, "--quiet", "simulate", "--out", first, *SMALL, "--seed", "9")
    assert code == 0 and stdout == ""
    assert run(capsys, "-q", "simulate", "--out", second, *SMALL, "--seed", "9")[0] == 0
    np.testing.assert_array_equal(read_scan(first).diffraction, read_scan(second).diffraction)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gridsize", "2", "--n-positions", "4"], "expected at least 5"),
        (["--size", "31"], "even pattern side"),
        (["--amplitude-image", "moon"], "only used with --object image"),
    ],
)
def test_simulate_rejects_bad_options_in_one_line(tmp_path, capsys, extra, message):
    args = ["simulate", "--out", tmp_path / "x.npz", "--n-positions", "50", "--size", "32", *extra]
    code, stdout, stderr = run(capsys, *args)
    assert code == 1 and message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "x.npz").exists()


def test_simulate_image_object_random_positions_and_probe_file(tmp_path, capsys):
    probe_path = tmp_path / "probe.npy"
    np.save(probe_path, default_probe(16) * 2)
    out = tmp_path / "img.npz"
    code, _, stderr = run(
        capsys, "simulate", "--out", out, "--object", "image", "--phase-image", "moon",
        "--positions", "random", "--probe", probe_path, "--n-positions", "40", "--nphotons", "1e5",
    )
    assert code == 0, stderr
    scan = read_scan(out)
    assert scan.pattern_size == 16  # taken from the probe file
    np.testing.assert_array_equal(scan.probe, default_probe(16) * 2)
    assert scan.meta["object_kind"] == "image" and scan.meta["phase_image"] == "moon"
    assert scan.meta["probe_kind"] == "file" and scan.meta["positions_kind"] == "random"
    code, _, stderr = run(capsys, "simulate", "--out", out, "--probe", probe_path, "--size", "32")
    assert code == 1 and "expected (32, 32), received (16, 16)" in stderr


def test_simulate_focused_probe_and_a_real_scans_probe(tmp_path, capsys):
    focused = tmp_path / "focused.npz"
    code, stdout, stderr = run(capsys, "simulate", "--out", focused, "--size", "32", "--n-positions", "30",
                               "--probe-kind", "focused", "--defocus", "0.5")
    assert code == 0 and "focused probe" in stdout, stderr
    scan = read_scan(focused)
    np.testing.assert_array_equal(scan.probe, focused_probe(32, defocus_waves=0.5))
    assert scan.meta["probe_kind"] == "focused" and scan.meta["probe_defocus_waves"] == 0.5
    # Any canonical NPZ's probe (here the one just written) simulates a new scan.
    again = tmp_path / "again.npz"
    code, _, stderr = run(capsys, "simulate", "--out", again, "--probe", focused, "--n-positions", "30")
    assert code == 0, stderr
    assert read_scan(again).pattern_size == 32 and read_scan(again).meta["probe_file"] == "focused.npz"
    beamline = tmp_path / "beamline.npz"
    code, stdout, stderr = run(capsys, "simulate", "--out", beamline, "--size", "32", "--n-positions", "30",
                               "--probe-kind", "velociprobe")
    assert code == 0 and "velociprobe probe" in stdout, stderr
    assert read_scan(beamline).meta["probe_kind"] == "velociprobe"
    np.testing.assert_array_equal(read_scan(beamline).probe, velociprobe_probe(32))
    for args, message in [
        (("--defocus", "1"), "only used with --probe-kind focused or zoneplate"),
        (("--probe-kind", "velociprobe", "--defocus", "1"), "only used with --probe-kind focused or zoneplate"),
        (("--probe", focused, "--probe-kind", "focused"), "gives the probe"),
    ]:
        code, _, stderr = run(capsys, "simulate", "--out", tmp_path / "x.npz", *args)
        assert code == 1 and message in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("command", [simulate_command, evaluate_command])
def test_every_option_has_help_and_the_docstring_has_examples(command):
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{command.name} {param.opts} has no help"
    assert "Examples:" in command.help and "\b" in command.help
    for line in command.help.split("Examples:")[1].strip().splitlines():
        assert line.strip().startswith("ptychopinn ")


# --------------------------------------------------------------------------- evaluate


def test_evaluate_prints_a_table_and_writes_json(tmp_path, capsys, simulated):
    recon = _stitched_recon(simulated, tmp_path / "recon.npz")
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--recon", recon, "--truth", simulated, "--json", out]
    code, stdout, stderr = run(capsys, *args)
    assert code == 0, stderr
    for label in ("SSIM", "PSNR", "MAE", "FRC50", "amplitude", "phase"):
        assert label in stdout
    metrics = json.loads(out.read_text())
    for part in ("amplitude", "phase"):
        assert set(metrics[part]) >= {"ssim", "psnr", "mae", "frc50"}
        assert metrics[part]["ssim"] > 0.99 and metrics[part]["frc50"] > 0.8
    assert metrics["region"]["window_px"] == default_crop_size(32)


def test_evaluate_truth_against_itself_stores_null_psnr(tmp_path, capsys, simulated):
    scan = read_scan(simulated)
    frame = ObjectFrame.for_object(scan.object.shape)
    recon = write_reconstruction(tmp_path / "truth.npz", Reconstruction(scan.object, frame))
    out = tmp_path / "m.json"
    args = ["evaluate", "--recon", recon, "--truth", simulated, "--json", out]
    code, stdout, stderr = run(capsys, *args)
    assert code == 0, stderr
    assert "inf (identical)" in stdout
    metrics = json.loads(out.read_text())
    for part in ("amplitude", "phase"):
        assert metrics[part]["psnr"] is None
        assert metrics[part]["ssim"] == pytest.approx(1.0) and metrics[part]["mae"] == 0.0
        assert metrics[part]["frc50"] == 1.0


def test_evaluate_without_object_guess_is_a_clear_error(tmp_path, capsys, simulated):
    scan = read_scan(simulated)
    stripped = type(scan)(scan.diffraction, scan.xcoords, scan.ycoords, scan.probe, meta={})
    truth = write_scan(tmp_path / "no_object.npz", stripped)
    recon = _stitched_recon(simulated, tmp_path / "recon.npz")
    code, _, stderr = run(capsys, "evaluate", "--recon", recon, "--truth", truth)
    assert code == 1 and "objectGuess" in stderr and "no_object.npz" in stderr
    assert stderr.count("\n") == 1


def test_evaluate_refuses_a_scan_given_as_reconstruction(capsys, simulated):
    code, _, stderr = run(capsys, "evaluate", "--recon", simulated, "--truth", simulated)
    assert code == 1 and "key 'object': missing" in stderr


# --------------------------------------------------------------------------- installed script


@pytest.mark.skipif(not CLI.exists(), reason="the ptychopinn console script is not installed")
def test_installed_script_simulates_then_inspects(tmp_path):
    out = tmp_path / "scan.npz"
    command = [str(CLI), "simulate", "--out", str(out), *SMALL]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    if importlib.util.find_spec("ptychopinn_core.cli.inspect") is None:
        pytest.skip("ptychopinn inspect is not available")
    command = [str(CLI), "inspect", str(out), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["n_positions"] == 120 and summary["pattern_size"] == 32
