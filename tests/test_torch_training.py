"""ptychopinn_torch training: what is Lightning's or torch's own.

The epoch policy (losses, schedule, early stopping, time budget), checkpoints,
kill-and-resume and the run-folder settings are checked for every backend by the
conformance kit (tests/test_conformance.py); here: the steps are torch's Adam on the
core's batches, supervised mode, trainable probe and scale, Lightning's settings
and loggers. Small models (N = 16, n_filters_scale 1), seconds per test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from ptychopinn_core.config import Config  # noqa: E402
from ptychopinn_core.model.parameters import initial_weights, parameter_specs  # noqa: E402
from ptychopinn_core.simulation.scan import make_demo_scan  # noqa: E402
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.training.data import prepare_training_data  # noqa: E402
from ptychopinn_torch.model import PinnModel  # noqa: E402
from ptychopinn_torch.training import LAST_CHECKPOINT, train_model  # noqa: E402

BASE = {
    "model": {"pattern_size": 16, "gridsize": 1, "n_filters_scale": 1},
    "training": {"epochs": 4, "batch_size": 6, "validation_fraction": 0.25, "seed": 1,
                 "early_stopping_patience": None},
    "execution": {"device": "cpu"},
}
N_POSITIONS, SCAN_SEED = 24, 7

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


def test_batches_are_the_cores() -> None:
    """Step k of the trainer is one Adam step on data.epoch_batches(0)[k], replayed by hand
    (the last step's weights: no average, which tests/test_weight_average.py checks)."""
    config = _config(**{"training.epochs": 1, "training.ema_decay": 0.0})
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
