"""The published PtychoPINN as a peer in ``bench/inference.py --published`` (issue 22).

The published code and its environment are not installed in CI, so the peer here is a
stand-in interpreter that records how it was called and answers with fixed figures: it
checks that the peer is run on each case's very scan with the case's model, in the
rotation of the rounds, and that the ratios to it follow from the medians. The scan
conversion the real peer runs (``published_npz``, numpy only) is checked on real data.
"""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.data import read_scan, write_scan
from ptychopinn_core.simulation import make_demo_scan

BENCH = Path(__file__).resolve().parents[1] / "bench"
BACKEND = "pytorch"
PEER_PREDICT, PEER_RECONSTRUCT = 50.0, 20.0  # the stand-in's patterns/s


def _load(name: str):
    """``bench/<name>.py`` as a module (its siblings importable, as when run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def test_published_npz_holds_our_scan_in_the_published_keys(tmp_path):
    peer = _load("published_peer")
    canonical = tmp_path / "scan.npz"
    write_scan(canonical, make_demo_scan(12, 16, seed=3))
    scan = read_scan(canonical)
    assert peer.published_npz(canonical, tmp_path / "published.npz") == 12
    with np.load(tmp_path / "published.npz", allow_pickle=False) as data:
        np.testing.assert_array_equal(data["diffraction"], scan.diffraction)
        np.testing.assert_array_equal(data["probeGuess"], scan.probe)
        np.testing.assert_array_equal(data["objectGuess"], scan.object)
        for axis in ("x", "y"):
            assert data[f"{axis}coords"].dtype == np.float64
            np.testing.assert_array_equal(data[f"{axis}coords_start"], data[f"{axis}coords"])
        np.testing.assert_array_equal(data["xcoords"], scan.xcoords)
        np.testing.assert_array_equal(data["ycoords"], scan.ycoords)


def test_published_npz_refuses_a_file_that_is_not_a_scan(tmp_path):
    peer = _load("published_peer")
    np.savez(tmp_path / "other.npz", diffraction=np.zeros((2, 8, 8), np.float32))
    with pytest.raises(SystemExit, match=r"other\.npz.*missing \['probeGuess', 'xcoords', 'ycoords'\]"):
        peer.published_npz(tmp_path / "other.npz", tmp_path / "out.npz")


def _stand_in_peer(folder: Path) -> Path:
    """A peer folder whose interpreter logs its arguments and prints fixed figures."""
    (folder / "PtychoPINN").mkdir(parents=True)
    (folder / "models" / "g2").mkdir(parents=True)
    python = folder / "venv-tf" / "bin" / "python"
    python.parent.mkdir(parents=True)
    answer = {"framework": "tensorflow (published PtychoPINN)", "framework_version": "2.21.0", "device": "cpu",
              "predict": {"patterns_per_s": PEER_PREDICT, "calls": 2, "seconds_per_call": 1.0},
              "reconstruct": {"patterns_per_s": PEER_RECONSTRUCT, "calls": 2, "seconds_per_call": 1.0,
                              "build_model_s": 0.5},
              "peak_rss_bytes": 2**30, "setup_rss_bytes": 2**29, "n_parameters": 2_330_000, "n_filters_scale": 2}
    python.write_text(f"#!/bin/sh\necho \"$@\" >> '{folder / 'calls.log'}'\necho 'noise'\n"
                      f"echo '{json.dumps(answer)}'\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return folder


def test_the_published_peer_is_timed_on_each_case_scan_and_compared(tmp_path):
    if BACKEND not in BackendRegistry.discover().names():
        pytest.skip(f"backend {BACKEND!r} is not installed")
    peer = _stand_in_peer(tmp_path / "peer")
    out = tmp_path / "inference.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / "inference.py"), "--backends", BACKEND, "--pattern-sizes", "64",
         "--gridsizes", "2", "--positions", "8", "--repeats", "2", "--seconds", "0", "--calls", "1",
         "--published", str(peer), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["settings"]["published"] == str(peer.resolve())
    assert "published" in results["goals"]
    case = results["cases"]["N64_g2"]
    assert set(case["backends"]) == {BACKEND, "published"}
    published = case["backends"]["published"]
    assert published["rounds_measured"] == 2 and published["predict_gflops"] is None
    assert published["predict_patterns_per_s"]["median"] == PEER_PREDICT
    assert published["n_parameters"] == 2_330_000
    ours = case["backends"][BACKEND]
    comparison = case["vs_published"][BACKEND]
    assert comparison["predict"] == pytest.approx(ours["predict_patterns_per_s"]["median"] / PEER_PREDICT)
    assert comparison["reconstruct"] == pytest.approx(ours["reconstruct_patterns_per_s"]["median"] / PEER_RECONSTRUCT)
    assert comparison["meets_goal"] == (comparison["reconstruct"] >= 2)
    assert case["onnx_vs_fastest_framework"] == {"skipped": "needs the onnx backend and a framework backend, "
                                                             "both measured"}  # the peer is not a backend
    calls = (peer / "calls.log").read_text().splitlines()
    assert len(calls) == 2  # one fresh process a round
    for line in calls:
        words = line.split()
        assert words[0] == str(BENCH / "published_peer.py") and words[1] == "measure"
        assert words[words.index("--model") + 1] == str(peer.resolve() / "models" / "g2")
        assert words[words.index("--source") + 1] == str(peer.resolve() / "PtychoPINN")
        scan = Path(words[words.index("--scan") + 1])
        assert scan.name == "N64_g2.npz"  # the very scan our backends ran
    assert "Ours / the published PtychoPINN" in result.stdout


def test_the_peer_runs_the_cases_it_has_a_model_for(tmp_path):
    inference = _load("inference")
    peer = _stand_in_peer(tmp_path / "peer")
    assert inference.peer_model(peer, 64, 2) == peer / "models" / "g2"
    assert inference.peer_model(peer, 64, 1) is None  # no models/g1
    assert inference.peer_model(peer, 128, 2) is None  # its models are N = 64
    assert inference.peer_model(None, 64, 2) is None


def test_published_needs_the_peer_environment(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH / "inference.py"), "--published", str(tmp_path), "--no-inference"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "no venv-tf/bin/python there" in result.stderr
