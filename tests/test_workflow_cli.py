"""train → bundle → infer → evaluate through the real command line, with the numpy fake
backend standing in for a framework (so these run without TensorFlow or torch)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from conftest import FAKE_BACKEND_ROOT
from ptychopinn_core.cli.main import main
from ptychopinn_core.data import read_scan
from ptychopinn_core.model.bundle import read_bundle, write_bundle
from ptychopinn_core.reconstruction import read_reconstruction


@pytest.fixture
def fake_installed(fake_backend_ok_site, monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_BACKEND_ROOT))
    monkeypatch.syspath_prepend(str(fake_backend_ok_site))


@pytest.fixture
def scans(tmp_path):
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    assert main(["simulate", "--out", str(train), "--n-positions", "64", "--size", "32", "--seed", "1"]) == 0
    assert main(["simulate", "--out", str(test), "--n-positions", "49", "--size", "32", "--seed", "2"]) == 0
    return train, test


def test_train_infer_evaluate_round_trip(fake_installed, scans, tmp_path, capsys):
    train, test = scans
    model = tmp_path / "model.zip"
    code = main(["--quiet", "train", "--backend", "NumpyFake", "--train", str(train), "--out", str(model),
                 "--epochs", "2", "--batch-size", "8", "--set", "model.n_filters_scale=1"])
    assert code == 0, capsys.readouterr().err
    bundle = read_bundle(model)
    assert bundle.manifest["backend"] == "numpyfake"
    assert bundle.config.model.pattern_size == 32, "the pattern size comes from the data"
    assert bundle.config.training.epochs == 2 and bundle.config.training.batch_size == 8
    assert bundle.history.n_epochs == 2

    recon_path = tmp_path / "recon.npz"
    assert main(["--quiet", "infer", "--model", str(model), "--data", str(test), "--out", str(recon_path)]) == 0
    recon = read_reconstruction(recon_path)
    truth = read_scan(test)
    assert recon.object.shape == truth.object.shape, "stitched on the data's object frame"
    assert recon.meta["backend"] == "numpyfake"
    assert np.all(np.isfinite(recon.object)) and np.abs(recon.object).max() > 0

    metrics_path = tmp_path / "metrics.json"
    assert main(["evaluate", "--recon", str(recon_path), "--truth", str(test), "--json", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    for part in ("amplitude", "phase"):
        assert set(metrics[part]) >= {"ssim", "psnr", "mae", "frc50"}


def test_init_from_starts_a_shared_gridsize_2_model_from_a_gridsize_1_one(fake_installed, scans, tmp_path,
                                                                          capsys):
    """--init-from: the gridsize-1 bundle's weights are where gridsize-2 training starts
    (the fake trains only the head biases, so every other weight must come out as it went
    in); a network that does not fit is refused in one line naming the file, the parameter
    and what the model to train needs."""
    train, _ = scans
    single, grouped = tmp_path / "g1.zip", tmp_path / "g2.zip"
    common = ["--quiet", "train", "--backend", "numpyfake", "--train", str(train), "--batch-size", "8",
              "--set", "model.n_filters_scale=1"]
    assert main([*common, "--out", str(single), "--epochs", "1", "--seed", "3"]) == 0
    assert main([*common, "--out", str(grouped), "--epochs", "1", "--seed", "4", "--gridsize", "2",
                 "--init-from", str(single)]) == 0, capsys.readouterr().err
    start, result = read_bundle(single), read_bundle(grouped)
    assert result.config.model.gridsize == 2 and result.config.model.group_network == "shared"
    assert list(result.weights) == list(start.weights)
    unchanged = [name for name in start.weights if not name.startswith("head_")]
    assert unchanged and all(np.array_equal(result.weights[name], start.weights[name]) for name in unchanged)
    fresh = tmp_path / "fresh.zip"
    assert main([*common, "--out", str(fresh), "--epochs", "1", "--seed", "4", "--gridsize", "2"]) == 0
    assert not np.array_equal(read_bundle(fresh).weights["encoder.0.conv0.kernel"],
                              start.weights["encoder.0.conv0.kernel"])
    capsys.readouterr()

    joint = tmp_path / "joint.zip"
    code = main([*common, "--out", str(joint), "--epochs", "1", "--gridsize", "2",
                 "--set", "model.group_network=joint", "--init-from", str(single)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and not joint.exists()
    assert len(err.splitlines()) == 1
    for fragment in (str(single), "'encoder.0.conv0.kernel'", "expected shape (3, 3, 4, 32)", "group_network=joint"):
        assert fragment in err, err


def test_unknown_backend_is_one_line_listing_the_installed(fake_installed, scans, tmp_path, capsys):
    train, _ = scans
    code = main(["train", "--backend", "nosuch", "--train", str(train), "--out", str(tmp_path / "m.zip")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "nosuch" in err and "numpyfake" in err
    assert not (tmp_path / "m.zip").exists()


def test_bundle_from_a_missing_backend_asks_for_backend_flag(fake_installed, scans, tmp_path, capsys):
    train, test = scans
    model = tmp_path / "model.zip"
    assert main(["--quiet", "train", "--backend", "numpyfake", "--train", str(train), "--out", str(model),
                 "--epochs", "1"]) == 0
    bundle = read_bundle(model)
    foreign = tmp_path / "foreign.zip"
    manifest = dict(bundle.manifest, backend="ghost")
    write_bundle(foreign, type(bundle)(manifest, bundle.config, bundle.weights, bundle.state, bundle.history))
    capsys.readouterr()
    code = main(["infer", "--model", str(foreign), "--data", str(test), "--out", str(tmp_path / "r.npz")])
    err = capsys.readouterr().err
    assert code == 1 and "'ghost'" in err and "--backend" in err and "numpyfake" in err
    assert main(["--quiet", "infer", "--model", str(foreign), "--data", str(test), "--out",
                 str(tmp_path / "r.npz"), "--backend", "numpyfake"]) == 0


def test_config_file_and_flags_resolve_in_order(fake_installed, scans, tmp_path):
    train, _ = scans
    config = tmp_path / "run.toml"
    config.write_text("[training]\nepochs = 3\nbatch_size = 4\n")
    model = tmp_path / "model.zip"
    assert main(["--quiet", "train", "--backend", "numpyfake", "--train", str(train), "--out", str(model),
                 "--config", str(config), "--set", "training.batch_size=8", "--epochs", "1"]) == 0
    training = read_bundle(model).config.training
    assert (training.epochs, training.batch_size) == (1, 8), "flags beat --set beat the file"
    with zipfile.ZipFile(model) as archive:
        assert "config.json" in archive.namelist()


def test_demo_quick_writes_a_report_with_real_numbers(fake_installed, tmp_path, monkeypatch):
    from ptychopinn_core import demo

    settings = demo.DemoSettings(n_train_positions=64, n_test_positions=49, epochs=1, n_filters_scale=1,
                                 pattern_size=32)
    report = demo.run_demo(tmp_path / "out", settings)
    out = tmp_path / "out"
    for name in ("report.md", "report.json", "comparison.png", "frc.png", "loss.png", "train.npz", "test.npz",
                 "model-numpyfake.zip", "recon-numpyfake.npz"):
        assert (out / name).stat().st_size > 0, name
    results = report["results"]
    ceiling = results["stitched truth"]["metrics"]
    assert ceiling["amplitude"]["ssim"] > 0.95 and ceiling["phase"]["ssim"] > 0.95
    fake = results["numpyfake"]["metrics"]
    assert 0 <= fake["amplitude"]["ssim"] < ceiling["amplitude"]["ssim"]
    assert json.loads((out / "report.json").read_text())["results"]["numpyfake"]["status"] == "ok"
    assert "| numpyfake |" in (out / "report.md").read_text()


def test_plot_draws_a_reconstruction_alone_and_against_the_truth(fake_installed, scans, tmp_path):
    train, test = scans
    model, recon = tmp_path / "model.zip", tmp_path / "recon.npz"
    assert main(["--quiet", "train", "--backend", "numpyfake", "--train", str(train), "--out", str(model),
                 "--epochs", "1"]) == 0
    assert main(["--quiet", "infer", "--model", str(model), "--data", str(test), "--out", str(recon)]) == 0
    for extra, name in (([], "alone.png"), (["--truth", str(test)], "compare.png")):
        assert main(["--quiet", "plot", str(recon), *extra, "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(recon), "--truth", str(train.with_name("missing.npz")), "--out", "x.png"]) == 2


def test_flags_are_accepted_after_the_command_too(tmp_path, capsys):
    """Users put flags last: `ptychopinn simulate ... --quiet` is `ptychopinn --quiet simulate ...`."""
    out = tmp_path / "scan.npz"
    assert main(["simulate", "--out", str(out), "--n-positions", "9", "--size", "16", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["simulate", "--out", str(out), "--n-positions", "9", "--size", "16"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "missing.npz"), "-q"]) == 1
    assert capsys.readouterr().err.startswith("error:")
