"""ptychopinn_torch training: the core's schedule and batches, checkpoints, kill-and-resume.

Small models (N = 16, n_filters_scale 1) on small simulated scans, so every test takes
seconds. The kill-and-resume test runs the first part in a subprocess that kills itself
with SIGKILL (a crash, not a clean exit) in the middle of epoch 2, then resumes in this
process from ``run_dir/last.ckpt``: the history must continue with epochs 2.. (not
restart at 0) and the result must equal an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from ptychopinn_core.config import Config  # noqa: E402
from ptychopinn_core.model.parameters import initial_weights, parameter_specs  # noqa: E402
from ptychopinn_core.training.schedule import PlateauSchedule, loss_floor  # noqa: E402
from ptychopinn_core.simulation.scan import make_demo_scan  # noqa: E402
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.training.data import prepare_training_data  # noqa: E402
from ptychopinn_torch.model import PinnModel  # noqa: E402
from ptychopinn_torch.training import LAST_CHECKPOINT, train_model  # noqa: E402

#: A resumed run recomputes nothing it restored: same float32 operations in the same
#: order; only the data loader's and Lightning's bookkeeping restart. Measured: equal
#: to the last bit on a CPU; 1e-6 leaves room for a different BLAS thread split.
RESUME_TOLERANCE = 1e-6

BASE = {
    "model": {"pattern_size": 16, "gridsize": 1, "n_filters_scale": 1},
    "training": {"epochs": 4, "batch_size": 6, "validation_fraction": 0.25, "seed": 1,
                 "early_stopping_patience": None},
    "execution": {"device": "cpu"},
}
N_POSITIONS, SCAN_SEED = 24, 7

#: Trains with run_dir set and SIGKILLs itself at the first batch of epoch KILL_EPOCH:
#: last.ckpt then holds epochs 0 .. KILL_EPOCH - 1.
KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from ptychopinn_core.config import Config
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.simulation.scan import make_demo_scan
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.training.data import prepare_training_data
    from ptychopinn_torch.model import PinnModel
    from ptychopinn_torch.training import train_model

    config = Config.from_dict(json.loads(sys.argv[1]))
    kill_epoch = int(sys.argv[4])
    scan = make_demo_scan(int(sys.argv[2]), config.model.pattern_size, seed=int(sys.argv[3]))
    model = PinnModel(config, prepare_model_state(scan, config),
                      initial_weights(parameter_specs(config.model), config.training.seed))

    def progress(event):
        if event.stage == "batch" and event.epoch == kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    train_model(model, prepare_training_data(scan, config), config, progress)
    """
)


def _config(**overrides) -> Config:
    return Config.from_dict(BASE).with_overrides(overrides)


def _setup(config: Config):
    scan = make_demo_scan(N_POSITIONS, config.model.pattern_size, seed=SCAN_SEED)
    model = PinnModel(config, prepare_model_state(scan, config),
                      initial_weights(parameter_specs(config.model), config.training.seed))
    return model, prepare_training_data(scan, config)


def _relative(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    difference = sum(float(np.sum((actual[k].astype(np.float64) - expected[k]) ** 2)) for k in expected)
    return math.sqrt(difference / sum(float(np.sum(expected[k].astype(np.float64) ** 2)) for k in expected))


@pytest.fixture(scope="module")
def uninterrupted():
    """Four epochs without run_dir: the reference history and weights."""
    model, data = _setup(_config())
    events = []
    history = train_model(model, data, _config(), events.append)
    return history, model.get_weights(), events


def test_history_progress_and_batches(uninterrupted) -> None:
    history, _, events = uninterrupted
    model, data = _setup(_config())
    assert [record.epoch for record in history.epochs] == [0, 1, 2, 3]
    assert all(record.val_loss is not None and math.isfinite(record.val_loss) for record in history.epochs)
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    for epoch in range(4):
        steps = [e.step for e in events if e.stage == "batch" and e.epoch == epoch]
        assert steps == list(range(1, len(data.epoch_batches(epoch)) + 1))
    epoch_events = [e for e in events if e.stage == "epoch"]
    assert [e.epoch for e in epoch_events] == [0, 1, 2, 3]
    for event, record in zip(epoch_events, history.epochs):
        assert event.metrics == {"train_loss": record.train_loss, "val_loss": record.val_loss,
                                 "learning_rate": record.learning_rate}
    # The epoch's train loss is the batch-size-weighted mean of its batch losses.
    sizes = [len(batch) for batch in data.epoch_batches(0)]
    batch_losses = [e.metrics["train_loss"] for e in events if e.stage == "batch" and e.epoch == 0]
    assert math.isclose(history.epochs[0].train_loss, np.dot(sizes, batch_losses) / sum(sizes), rel_tol=1e-12)


def test_batches_are_the_cores() -> None:
    """Step k of the trainer is one Adam step on data.epoch_batches(0)[k], replayed by hand."""
    config = _config(**{"training.epochs": 1})
    model, data = _setup(config)
    reference, _ = _setup(config)
    events = []
    train_model(model, data, config, events.append)
    batch_losses = [event.metrics["train_loss"] for event in events if event.stage == "batch"]
    training = config.training
    optimizer = torch.optim.Adam(reference.module.parameters(), lr=training.learning_rate,
                                 betas=(training.adam_beta1, training.adam_beta2), eps=training.adam_epsilon)
    for ids, reported in zip(data.epoch_batches(0), batch_losses, strict=True):
        diffraction, offsets = (torch.from_numpy(array) for array in data.gather(ids))
        loss = reference.loss(diffraction, offsets)
        assert math.isclose(float(loss.detach()), reported, rel_tol=1e-6)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert _relative(model.get_weights(), reference.get_weights()) <= 1e-6


def test_plateau_schedule_and_early_stopping_are_the_cores() -> None:
    # A learning rate so small that the loss never improves by the relative 1e-4 the
    # core asks for: the rate halves every epoch (patience 1) and training stops early.
    config = _config(**{"training.learning_rate": 1e-12, "training.min_learning_rate": 2e-13,
                        "training.lr_plateau_patience": 1, "training.early_stopping_patience": 3,
                        "training.epochs": 10})
    model, data = _setup(config)
    history = train_model(model, data, config, lambda event: None)
    assert len(history.epochs) == 4  # epoch 0 sets the best, 1..3 do not improve: stop
    schedule = PlateauSchedule.from_config(config.training, floor=loss_floor(data, config.training))
    expected_rates = []
    for record in history.epochs:
        expected_rates.append(schedule.learning_rate)
        schedule.step(record.val_loss)
    assert [record.learning_rate for record in history.epochs] == expected_rates
    assert expected_rates == [1e-12, 1e-12, 5e-13, 2.5e-13]


def test_kill_and_resume_continues_the_history(tmp_path: Path, uninterrupted) -> None:
    history_ref, weights_ref, _ = uninterrupted
    run_dir = tmp_path / "run"
    config = _config(**{"execution.run_dir": str(run_dir)})
    script = tmp_path / "train_and_die.py"
    script.write_text(KILL_SCRIPT, encoding="utf-8")
    kill_epoch = 2
    result = subprocess.run(
        [sys.executable, str(script), json.dumps(config.to_dict()), str(N_POSITIONS), str(SCAN_SEED),
         str(kill_epoch)],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == -signal.SIGKILL, result.stdout[-2000:] + result.stderr[-2000:]
    checkpoint = run_dir / LAST_CHECKPOINT
    assert checkpoint.is_file()
    # The checkpoint holds plain values only: loadable with weights_only=True.
    saved = torch.load(checkpoint, weights_only=True, map_location="cpu")
    assert [record["epoch"] for record in saved["ptychopinn"]["history"]] == [0, 1]
    assert saved["epoch"] == kill_epoch - 1

    resumed_config = config.with_overrides({"execution.resume": True})
    model, data = _setup(resumed_config)
    events = []
    history = train_model(model, data, resumed_config, events.append)
    assert [record.epoch for record in history.epochs] == [0, 1, 2, 3]
    assert sorted({event.epoch for event in events}) == [2, 3]  # only the missing epochs ran
    for record, reference in zip(history.epochs, history_ref.epochs):
        assert math.isclose(record.train_loss, reference.train_loss, rel_tol=RESUME_TOLERANCE)
        assert math.isclose(record.val_loss, reference.val_loss, rel_tol=RESUME_TOLERANCE)
        assert record.learning_rate == reference.learning_rate
    assert _relative(model.get_weights(), weights_ref) <= RESUME_TOLERANCE
    # One CSV metrics log per (re)start, one row per epoch that ran in it.
    logs = sorted((run_dir / "logs").glob("version_*/metrics.csv"))
    assert len(logs) == 2
    assert len(logs[1].read_text().strip().splitlines()) == 1 + 2

    # Resuming a finished run trains nothing more.
    again, _ = _setup(resumed_config)
    assert [record.epoch for record in train_model(again, data, resumed_config, lambda e: None).epochs] == [0, 1, 2, 3]


def test_resume_after_early_stopping_trains_nothing(tmp_path: Path) -> None:
    config = _config(**{"training.learning_rate": 1e-12, "training.min_learning_rate": 1e-12,
                        "training.early_stopping_patience": 1, "training.epochs": 6,
                        "execution.run_dir": str(tmp_path)})
    model, data = _setup(config)
    first = train_model(model, data, config, lambda event: None)
    assert len(first.epochs) == 2
    weights = model.get_weights()
    resumed = config.with_overrides({"execution.resume": True})
    model, data = _setup(resumed)
    events = []
    second = train_model(model, data, resumed, events.append)
    assert second == first and not events
    assert _relative(model.get_weights(), weights) == 0


def test_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    model, data = _setup(_config())
    with pytest.raises(ValueError, match="execution.run_dir"):
        train_model(model, data, _config(**{"execution.resume": True}), lambda event: None)
    with pytest.raises(ValueError, match="last.ckpt"):
        train_model(model, data, _config(**{"execution.resume": True, "execution.run_dir": str(tmp_path)}),
                    lambda event: None)


def test_supervised_training_and_gradients() -> None:
    config = _config(**{"training.mode": "supervised", "training.epochs": 2})
    model, data = _setup(config)
    ids = data.train_groups[:4]
    loss, gradients = model.loss_and_gradients(*data.gather(ids), data.gather_truth(ids))
    assert math.isfinite(loss) and all(np.all(np.isfinite(g)) for g in gradients.values())
    history = train_model(model, data, config, lambda event: None)
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss


def test_trainable_probe_and_scale() -> None:
    config = _config(**{"model.probe_trainable": True, "model.probe_mask": True,
                        "model.intensity_scale_trainable": True, "training.epochs": 1})
    model, data = _setup(config)
    probe_before = model.state.probe.copy()
    loss, gradients = model.loss_and_gradients(*data.gather(data.train_groups[:4]))
    assert gradients["log_intensity_scale"].shape == () and gradients["log_intensity_scale"] != 0
    train_model(model, data, config, lambda event: None)
    state = model.state
    assert not np.array_equal(state.probe, probe_before)  # the probe trained ...
    outside = np.hypot(*np.meshgrid(np.arange(16) - 8, np.arange(16) - 8)) > 4
    assert np.all(state.probe[outside] == 0)  # ... inside the mask only
    assert model.get_weights()["log_intensity_scale"] != 0


def test_bf16_mixed_precision_trains() -> None:
    config = _config(**{"execution.precision": "bf16-mixed", "training.epochs": 2})
    model, data = _setup(config)
    history = train_model(model, data, config, lambda event: None)
    assert all(math.isfinite(record.train_loss) for record in history.epochs)
    assert model.get_weights()["head_amplitude.kernel"].dtype == np.float32


def test_execution_settings_are_checked() -> None:
    model, data = _setup(_config())
    with pytest.raises(ValueError, match="strategy='single'"):
        train_model(model, data, _config(**{"execution.strategy": "single", "execution.devices": 2}),
                    lambda event: None)


def test_loggers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    # (with_overrides reads the text "none" as None, so the logger is set as TOML text)
    config = _config(**{"training.epochs": 1, "execution.run_dir": str(tmp_path / "none"),
                        "execution.logger": '"none"'})
    model, data = _setup(config)
    train_model(model, data, config, lambda event: None)
    assert (tmp_path / "none" / LAST_CHECKPOINT).is_file() and not (tmp_path / "none" / "logs").exists()
    # A logger whose package is missing is an error naming the pip command, before training.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in ("tensorboard", "tensorboardX")
                        else real_find_spec(name, *args))
    config = _config(**{"execution.run_dir": str(tmp_path / "tb"), "execution.logger": "tensorboard"})
    with pytest.raises(ImportError, match="pip install tensorboard"):
        train_model(model, data, config, lambda event: None)
