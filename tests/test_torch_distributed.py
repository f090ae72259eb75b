"""DDP on two CPU processes (gloo) equals one process on the same global batches.

Lightning's "ddp" strategy re-launches the running script for every extra local rank
(its subprocess script launcher), so the distributed run is a small script in a
subprocess; the single-process reference runs in this process. Each rank takes
``ids[rank::2]`` of every global batch (sizes 5, 5, 5, 3 here: uneven shares, so the
loss weighting ``n_local * world_size / n_global`` is exercised) and DDP averages the
gradients: the update is the gradient of the global batch's mean loss, as in one
process. The subprocess runs in its own session with a timeout; afterwards no process
of that session may be left.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("lightning")

#: Relative tolerance DDP vs one process, weights and losses after 8 Adam steps.
#: Both compute the same float32 function; only the order of float32 sums differs
#: (each rank's share, then the all-reduce), a few ulp per step; measured ~5e-8.
DDP_TOLERANCE = 1e-6
#: Wall-clock limit of the two-process run (imports of torch + Lightning in each rank
#: dominate; it takes ~30 s on a loaded 2-core machine).
TIMEOUT_S = 240

CONFIG = {
    "model": {"pattern_size": 16, "gridsize": 2, "n_filters_scale": 1},
    "training": {"epochs": 2, "batch_size": 5, "validation_fraction": 0.25, "seed": 3},
    "execution": {"device": "cpu"},
}
N_POSITIONS, SCAN_SEED = 24, 5

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from ptychopinn_core.config import Config
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.simulation.scan import make_demo_scan
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.training.data import prepare_training_data
    from ptychopinn_torch.model import PinnModel
    from ptychopinn_torch.training import train_model

    config = Config.from_dict(json.loads(sys.argv[1]))
    scan = make_demo_scan(int(sys.argv[2]), config.model.pattern_size, seed=int(sys.argv[3]))
    data = prepare_training_data(scan, config)
    model = PinnModel(config, prepare_model_state(scan, config),
                      initial_weights(parameter_specs(config.model), config.training.seed))
    losses = []
    history = train_model(model, data, config,
                          lambda event: losses.append(event.metrics["train_loss"]) if event.stage == "batch" else None)
    if os.environ.get("LOCAL_RANK", "0") == "0":  # Lightning sets LOCAL_RANK in the ranks it launches
        np.savez(sys.argv[4], batch_losses=np.array(losses), history=json.dumps(history.to_json()),
                 **model.get_weights())
    """
)


def _session_processes(session_id: int) -> list[int]:
    """PIDs whose session id is ``session_id`` (Linux /proc; the launched ranks inherit it)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, session, ...
        if int(fields[3]) == session_id and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _run_in_session(command: list[str], timeout_s: float, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``command`` in a new session; on timeout kill the whole session; check nothing is left."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env=env)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"distributed run exceeded {timeout_s} s and was killed:\n{output[-3000:]}")
    finally:
        deadline = time.monotonic() + 10
        while _session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)  # ranks may take a moment to exit after rank 0
        left = _session_processes(process.pid)
        if left:
            os.killpg(process.pid, signal.SIGKILL)
        assert not left, f"processes left behind by the distributed run: {left}"
    return subprocess.CompletedProcess(command, process.returncode, output)


def _relative(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    difference = sum(float(np.sum((actual[k].astype(np.float64) - expected[k]) ** 2)) for k in expected)
    scale = sum(float(np.sum(expected[k].astype(np.float64) ** 2)) for k in expected)
    return math.sqrt(difference / scale)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process checks read /proc")
def test_ddp_on_two_cpu_processes_equals_one_process(tmp_path: Path) -> None:
    from ptychopinn_core.config import Config
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.simulation.scan import make_demo_scan
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.training.data import prepare_training_data
    from ptychopinn_torch.model import PinnModel
    from ptychopinn_torch.training import train_model

    distributed = {**CONFIG, "execution": {**CONFIG["execution"], "strategy": "ddp", "devices": 2}}
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "ddp.npz"
    env = {key: value for key, value in os.environ.items() if key not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    started = time.perf_counter()
    result = _run_in_session(
        [sys.executable, str(script), json.dumps(distributed), str(N_POSITIONS), str(SCAN_SEED), str(out)],
        TIMEOUT_S, env,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-3000:]

    # The same training in one process.
    config = Config.from_dict(CONFIG)
    scan = make_demo_scan(N_POSITIONS, config.model.pattern_size, seed=SCAN_SEED)
    data = prepare_training_data(scan, config)
    assert [len(batch) for batch in data.epoch_batches(0)] == [5, 5, 5, 3]  # uneven shares over 2 ranks
    model = PinnModel(config, prepare_model_state(scan, config),
                      initial_weights(parameter_specs(config.model), config.training.seed))
    losses: list[float] = []

    def record(event) -> None:
        if event.stage == "batch":
            losses.append(event.metrics["train_loss"])

    history = train_model(model, data, config, record)

    with np.load(out, allow_pickle=False) as saved:
        ddp_weights = {name: saved[name] for name in saved.files if name not in ("batch_losses", "history")}
        ddp_losses = saved["batch_losses"]
        ddp_history = json.loads(str(saved["history"]))["epochs"]
    weights_error = _relative(ddp_weights, model.get_weights())
    loss_error = float(np.max(np.abs(ddp_losses - np.array(losses)) / np.abs(np.array(losses))))
    print(f"\nDDP (2 gloo processes) vs 1 process: weights rel. error {weights_error:.1e}, "
          f"batch losses max rel. error {loss_error:.1e}, {seconds:.1f} s")
    assert len(ddp_losses) == len(losses) == 8
    assert weights_error <= DDP_TOLERANCE
    assert loss_error <= DDP_TOLERANCE
    assert [record["epoch"] for record in ddp_history] == [record.epoch for record in history.epochs] == [0, 1]
    for ddp_record, record in zip(ddp_history, history.epochs):
        assert math.isclose(ddp_record["train_loss"], record.train_loss, rel_tol=DDP_TOLERANCE)
        assert math.isclose(ddp_record["val_loss"], record.val_loss, rel_tol=DDP_TOLERANCE)
        assert ddp_record["learning_rate"] == record.learning_rate
