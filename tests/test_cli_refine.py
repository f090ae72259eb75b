"""Refinement through the real command line: `infer` refines after the network, `refine`
fits any reconstruction (or a flat start); the numpy fake backend stands in for a framework
(it refines with the core's reference), so these run without TensorFlow or torch."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FAKE_BACKEND_ROOT
from ptychopinn_core.cli.main import main
from ptychopinn_core.data import read_scan
from ptychopinn_core.evaluation.report import evaluate
from ptychopinn_core.reconstruction import Reconstruction, read_reconstruction, write_reconstruction


@pytest.fixture
def fake_installed(fake_backend_ok_site, monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_BACKEND_ROOT))
    monkeypatch.syspath_prepend(str(fake_backend_ok_site))


@pytest.fixture(scope="module")
def scan_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("refine") / "scan.npz"
    assert main(["simulate", "--out", str(path), "--n-positions", "49", "--size", "32", "--seed", "2"]) == 0
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, scan_path, fake_backend_ok_site):
    import sys

    sys.path[:0] = [str(FAKE_BACKEND_ROOT), str(fake_backend_ok_site)]
    try:
        path = tmp_path_factory.mktemp("model") / "model.zip"
        assert main(["--quiet", "train", "--backend", "numpyfake", "--train", str(scan_path), "--out", str(path),
                     "--epochs", "1", "--batch-size", "8"]) == 0
    finally:
        del sys.path[:2]
    return path


def ssim(path, scan_path) -> tuple[float, float]:
    scan = read_scan(scan_path)
    metrics = evaluate(read_reconstruction(path), scan.object, scan.positions_px)
    return metrics["amplitude"]["ssim"], metrics["phase"]["ssim"]


def test_infer_refines_after_the_network_and_zero_keeps_the_network(fake_installed, scan_path, model_path, tmp_path,
                                                                    capsys):
    network, refined = tmp_path / "network.npz", tmp_path / "refined.npz"
    assert main(["--quiet", "infer", "--model", str(model_path), "--data", str(scan_path), "--out", str(network),
                 "--refine-iterations", "0"]) == 0
    assert main(["infer", "--model", str(model_path), "--data", str(scan_path), "--out", str(refined),
                 "--refine-iterations", "6", "--set", "refine.batch_size=8"]) == 0
    assert "refined 6 iterations" in capsys.readouterr().out
    before, after = read_reconstruction(network), read_reconstruction(refined)
    assert "refine" not in before.meta and before.probe is not None
    assert after.meta["refine"]["iterations"] == 6 and after.meta["refine"]["backend"] == "numpyfake"
    assert after.meta["refine"]["final_loss"] < after.meta["refine"]["first_loss"]
    assert after.object.shape == before.object.shape == read_scan(scan_path).object.shape
    assert np.array_equal(after.probe, before.probe), "the probe is refined only when asked"
    amp_before, phase_before = ssim(network, scan_path)
    amp_after, phase_after = ssim(refined, scan_path)
    assert amp_after > amp_before + 0.2 and phase_after > phase_before + 0.2


def test_refine_from_flat_and_from_a_file_with_the_probe(fake_installed, scan_path, tmp_path):
    flat, again = tmp_path / "flat.npz", tmp_path / "again.npz"
    assert main(["--quiet", "refine", "--recon", "flat", "--data", str(scan_path), "--out", str(flat),
                 "--iterations", "8", "--set", "refine.batch_size=8"]) == 0
    amplitude, phase = ssim(flat, scan_path)
    assert amplitude > 0.9 and phase > 0.8
    assert main(["--quiet", "refine", "--recon", str(flat), "--data", str(scan_path), "--out", str(again),
                 "--iterations", "3", "--refine-probe", "--set", "refine.probe_delay=1",
                 "--set", "refine.batch_size=8"]) == 0
    first, second = read_reconstruction(flat), read_reconstruction(again)
    assert second.meta["refine"]["probe"] is True
    assert second.probe.shape == first.probe.shape and np.all(np.isfinite(second.probe))
    assert not np.array_equal(second.probe, first.probe), "the probe was refined"
    assert second.meta["start"] == "flat", "provenance of the start is kept"


def test_a_reconstruction_on_another_frame_is_one_clear_error(fake_installed, scan_path, tmp_path, capsys):
    scan = read_scan(scan_path)
    other = tmp_path / "other.npz"
    from ptychopinn_core.physics.stitching import ObjectFrame

    frame = ObjectFrame(0.0, 0.0, scan.object.shape[0] + 2, scan.object.shape[1])
    write_reconstruction(other, Reconstruction(object=np.ones(frame.shape, np.complex64), frame=frame))
    out = tmp_path / "never.npz"
    assert main(["refine", "--recon", str(other), "--data", str(scan_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(other) in err and "object frame" in err
    assert not out.exists(), "nothing is written on error"


def test_a_probe_of_the_wrong_shape_is_one_clear_error(fake_installed, scan_path, tmp_path, capsys):
    scan = read_scan(scan_path)
    from ptychopinn_core.workflow import object_frame_for

    bad = tmp_path / "bad-probe.npz"
    frame = object_frame_for(scan)
    write_reconstruction(bad, Reconstruction(object=np.ones(frame.shape, np.complex64), frame=frame,
                                             probe=np.ones((16, 16), np.complex64)))
    out = tmp_path / "never.npz"
    assert main(["refine", "--recon", str(bad), "--data", str(scan_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "probe: expected shape (32, 32)" in err and str(bad) in err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "refine.iterations=-1"], "refine.iterations"),
        (["--set", "refine.loss=l1"], "refine.loss"),
        (["--iterations", "-3"], "--iterations"),
    ],
)
def test_bad_refine_settings_name_the_key(fake_installed, scan_path, tmp_path, capsys, args, message):
    out = tmp_path / "never.npz"
    code = main(["refine", "--recon", "flat", "--data", str(scan_path), "--out", str(out), *args])
    assert code != 0 and message in capsys.readouterr().err
    assert not out.exists()


def test_infer_refuses_to_change_the_models_settings(fake_installed, scan_path, model_path, tmp_path, capsys):
    out = tmp_path / "never.npz"
    code = main(["infer", "--model", str(model_path), "--data", str(scan_path), "--out", str(out),
                 "--set", "model.gridsize=2"])
    assert code == 1 and "refine.* and inference.* settings only" in capsys.readouterr().err
    assert not out.exists()


def test_infer_uses_todays_refine_defaults_not_the_bundles(fake_installed, scan_path, model_path, tmp_path):
    """A bundle keeps the [refine] section of its training run; refinement is not part of the
    model, so an older bundle must not pin the refinement settings of its day."""
    import dataclasses

    from ptychopinn_core.config import Config
    from ptychopinn_core.model.bundle import read_bundle, write_bundle

    bundle = read_bundle(model_path)
    old = dataclasses.replace(bundle, config=bundle.config.with_overrides({"refine.iterations": 2,
                                                                          "refine.step_decay": 0.5}))
    old_path, out = tmp_path / "old.zip", tmp_path / "out.npz"
    write_bundle(old_path, old)
    assert main(["--quiet", "infer", "--model", str(old_path), "--data", str(scan_path), "--out", str(out),
                 "--set", "refine.batch_size=25"]) == 0
    settings = read_reconstruction(out).meta["refine"]
    defaults = Config().refine
    assert (settings["iterations"], settings["step_decay"]) == (defaults.iterations, defaults.step_decay)
    assert settings["batch_size"] == 25


def test_infer_sets_how_the_patches_are_stitched(fake_installed, scan_path, model_path, tmp_path):
    """inference.* says how a scan is stitched, not what the model is: infer may change it."""
    synced, plain = tmp_path / "synced.npz", tmp_path / "plain.npz"
    common = ["--quiet", "infer", "--model", str(model_path), "--data", str(scan_path), "--refine-iterations", "0"]
    assert main([*common, "--out", str(synced)]) == 0
    assert main([*common, "--out", str(plain), "--set", "inference.phase_sync=false"]) == 0
    synced_meta, plain_meta = read_reconstruction(synced).meta, read_reconstruction(plain).meta
    assert synced_meta["phase_sync"] is True and synced_meta["phase_sync_steps"] >= 0  # 0: the patches already agree
    assert plain_meta["phase_sync"] is False and "phase_sync_steps" not in plain_meta
