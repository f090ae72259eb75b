"""End to end with the PyTorch backend: CLI train -> bundle -> CLI infer in a fresh process -> evaluate.

For gridsize 1 and 2: simulate a 'lines' training scan and an unseen test scan (another
object seed) of 64 x 64 patterns, train a small network (n_filters_scale 1) for a few
epochs with ``ptychopinn train --backend pytorch``, reconstruct the unseen scan with
``ptychopinn infer`` in a fresh process (nothing shared with training but the bundle
file), and score it with ``ptychopinn_core.evaluation.evaluate``. The SSIM of amplitude
and of phase must exceed those of the untrained network (same scan, the core's initial
weights) by a stated margin. ``pytest -s`` prints the numbers.

Budget: the training is the test's cost (about 25 s + 45 s on two idle CPU cores; the
whole file ~110 s). Measured (SSIM amplitude / phase on the unseen scan, untrained ->
trained): gridsize 1, 12 epochs: 0.217 / 0.072 -> 0.283 / 0.192; gridsize 2, 20 epochs:
0.220 / 0.073 -> 0.318 / 0.151. The required gains (SSIM_MARGIN) are about half of
these; the runs are seeded and deterministic on a CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("lightning")

from ptychopinn_core import workflow  # noqa: E402
from ptychopinn_core.backends import BackendRegistry  # noqa: E402
from ptychopinn_core.data import read_scan, write_scan  # noqa: E402
from ptychopinn_core.evaluation import evaluate  # noqa: E402
from ptychopinn_core.model.bundle import ModelBundle, read_bundle  # noqa: E402
from ptychopinn_core.model.parameters import initial_weights, parameter_specs  # noqa: E402
from ptychopinn_core.reconstruction import read_reconstruction  # noqa: E402
from ptychopinn_core.simulation.scan import make_demo_scan  # noqa: E402

PTYCHOPINN = str(Path(sys.executable).with_name("ptychopinn"))
PATTERN_SIZE = 64
N_POSITIONS = 192
TRAIN_SEED, TEST_SEED = 1, 2
#: Training per gridsize: epochs and learning rate of a short run that learns clearly.
#: Batches of 8 groups: more (cheaper) steps per epoch learn faster per second on a CPU.
RUNS = {
    1: {"epochs": 12, "learning_rate": 1e-3},
    2: {"epochs": 20, "learning_rate": 1e-3},
}
#: Required SSIM gain over the untrained network, amplitude and phase.
SSIM_MARGIN = {"amplitude": 0.04, "phase": 0.05}
TIMEOUT_S = 600


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    result = subprocess.run([PTYCHOPINN, "--quiet", *arguments], capture_output=True, text=True,
                            timeout=TIMEOUT_S, env=env)
    assert result.returncode == 0, f"ptychopinn {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scans")
    paths = {}
    for name, seed in (("train", TRAIN_SEED), ("test", TEST_SEED)):
        paths[name] = write_scan(folder / f"{name}.npz", make_demo_scan(N_POSITIONS, PATTERN_SIZE, seed=seed))
    return paths


@pytest.mark.parametrize("gridsize", sorted(RUNS))
def test_train_infer_in_fresh_process_beats_untrained(gridsize: int, scans: dict[str, Path], tmp_path: Path) -> None:
    run = RUNS[gridsize]
    bundle_path = tmp_path / "model.zip"
    _cli("train", "--backend", "pytorch", "--train", str(scans["train"]), "--out", str(bundle_path),
         "--epochs", str(run["epochs"]), "--batch-size", "8", "--gridsize", str(gridsize),
         "--n-filters-scale", "1", "--seed", "0",
         "--set", f"training.learning_rate={run['learning_rate']}",
         "--set", "training.early_stopping_patience=none",
         "--set", "execution.device=cpu")
    bundle = read_bundle(bundle_path)
    assert bundle.manifest["backend"] == "pytorch" and bundle.manifest["framework"] == "torch"
    assert bundle.config.model.gridsize == gridsize
    assert [record.epoch for record in bundle.history.epochs] == list(range(run["epochs"]))
    assert bundle.history.epochs[-1].val_loss < bundle.history.epochs[0].val_loss

    recon_path = tmp_path / "recon.npz"
    _cli("infer", "--model", str(bundle_path), "--data", str(scans["test"]), "--out", str(recon_path))
    test_scan = read_scan(scans["test"])
    recon = read_reconstruction(recon_path)
    assert recon.object.shape == test_scan.object.shape and np.all(np.isfinite(recon.object))
    trained = evaluate(recon, test_scan.object, test_scan.positions_px)

    # The untrained network: the same bundle with the core's initial weights.
    backend = BackendRegistry.discover().get("pytorch")
    untrained_bundle = ModelBundle(
        manifest=bundle.manifest, config=bundle.config, state=bundle.state, history=bundle.history,
        weights=initial_weights(parameter_specs(bundle.config.model), bundle.config.training.seed),
    )
    untrained = evaluate(workflow.reconstruct(untrained_bundle, test_scan, backend),
                         test_scan.object, test_scan.positions_px)

    print(f"\ngridsize {gridsize}, {run['epochs']} epochs: SSIM amplitude "
          f"{untrained['amplitude']['ssim']:.3f} -> {trained['amplitude']['ssim']:.3f}, phase "
          f"{untrained['phase']['ssim']:.3f} -> {trained['phase']['ssim']:.3f} (untrained -> trained, unseen scan)")
    for part, margin in SSIM_MARGIN.items():
        assert trained[part]["ssim"] >= untrained[part]["ssim"] + margin, part
