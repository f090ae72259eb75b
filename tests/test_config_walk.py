"""Every config key, across every installed backend: honoured or refused, never ignored.

Each key of :class:`~ptychopinn_core.config.Config` is classified here, so a new key
fails this test until someone says who honours it:

- **core keys** are consumed by the core before or after any backend runs (data
  preparation, the epoch policy, stitching, refinement's definition): the test checks
  that the core's code reads them;
- **backend keys** reach the backend. For every installed backend and every
  non-default value, the backend either refuses it (``check_config``, or a clear
  ValueError/ImportError naming the key when it runs) or a small real run shows its
  effect. The few settings with no visible effect on a CPU (``deterministic``, the
  device and distribution settings the backend accepts) must at least be read by the
  backend's code.

The TensorFlow backend once accepted ``execution.run_dir``/``resume``/``logger`` and
wrote nothing: this is the test that would have caught it.
"""

from __future__ import annotations

import importlib.util
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  # numerics hygiene: torch before tensorflow in one process

from ptychopinn_core.backends import Backend, BackendRegistry, BackendWarning
from ptychopinn_core.config import Config
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.simulation.scan import make_demo_scan
from ptychopinn_core.training.data import prepare_training_data

ROOT = Path(__file__).resolve().parents[1]

#: The small run every probe starts from: 8 positions, 2 steps of 4, no validation split.
SMALL = {
    "model": {"pattern_size": 16, "gridsize": 1, "n_filters_scale": 1},
    "training": {"epochs": 1, "batch_size": 4, "validation_fraction": 0.0, "seed": 0},
    "execution": {"device": "cpu"},
}

#: Keys the core honours for every backend, and where.
CORE_KEYS = {
    "model.probe_mask": "model/inputs.py masks the probe every backend is built with",
    "model.architecture": "model/parameters.py: parameter_specs and describe_architecture, which both "
                          "backends build their network from (tests/test_network.py holds each to them)",
    "model.group_network": "model/parameters.py: network_channels, parameter_specs and describe_architecture "
                           "(one pass per pattern or per group; tests/test_network.py holds each backend to them)",
    "data.nphotons": "model/inputs.py, training/data.py: the intensity scale in the model state",
    "data.n_neighbors": "training/data.py, inference_chunks.py: the groups",
    "data.n_groups": "training/data.py: the number of training groups",
    "data.measurement": "the CLI's readers: amplitudes or counts",
    "training.epochs": "training/policy.py",
    "training.batch_size": "training/data.py: the batches",
    "training.lr_schedule": "training/schedule.py",
    "training.lr_plateau_factor": "training/schedule.py",
    "training.lr_plateau_patience": "training/schedule.py",
    "training.min_learning_rate": "training/schedule.py",
    "training.early_stopping_patience": "training/policy.py",
    "training.max_seconds": "training/policy.py",
    "training.validation_fraction": "training/data.py: the split",
    "training.seed": "initial weights, the split and every epoch's order",
    "inference.chunk_size": "inference_chunks.py",
    "inference.stitch_crop": "workflow.py: the stitcher",
    "inference.phase_sync": "workflow.py: the stitcher (phase synchronisation)",
    "refine.iterations": "refine/: the problem and the loop (the kit checks each backend's steps)",
    "refine.batch_size": "refine/problem.py",
    "refine.step_size": "refine/problem.py",
    "refine.step_decay": "refine/problem.py",
    "refine.loss": "refine/problem.py",
    "refine.probe": "refine/problem.py",
    "refine.probe_delay": "refine/problem.py",
    "refine.probe_step_size": "refine/problem.py",
    "refine.seed": "refine/problem.py",
}


# -- the probes: a small real run per key and value ----------------------------------------------


@dataclass
class Run:
    """A model built and (optionally) trained with a config, and what came out."""

    config: Config
    model: Any
    data: Any
    events: list
    history: Any = None


def _setup(backend: Backend, config: Config) -> Run:
    scan = make_demo_scan(8, config.model.pattern_size, seed=1)
    data = prepare_training_data(scan, config)
    model = backend.build_model(config, prepare_model_state(scan, config),
                                initial_weights(parameter_specs(config.model), config.training.seed))
    return Run(config, model, data, [])


def _trained(backend: Backend, config: Config) -> Run:
    run = _setup(backend, config)
    run.history = backend.train(run.model, run.data, config, run.events.append)
    return run


def _batch(run: Run) -> tuple[np.ndarray, np.ndarray]:
    return run.data.gather(run.data.train_groups)


def _relative_change(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> float:
    keys = sorted(first)
    a = np.concatenate([np.ravel(first[k]).astype(np.float64) for k in keys])
    b = np.concatenate([np.ravel(second[k]).astype(np.float64) for k in keys])
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


class Probes:
    """The evidence for each backend key; ``base`` runs are cached per backend."""

    def __init__(self, backend: Backend, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.base = Config.from_dict(SMALL)
        self._built = _setup(backend, self.base)
        self._trained: Run | None = None

    @property
    def trained(self) -> Run:
        if self._trained is None:
            self._trained = _trained(self.backend, self.base)
        return self._trained

    # -- what a value changes ----------------------------------------------------------

    def shape(self, config: Config) -> None:
        run = _setup(self.backend, config)
        size, channels = config.model.pattern_size, config.model.gridsize**2
        assert run.model.forward(*_batch(run)).patches.shape[1:] == (channels, size, size)

    def prediction_changes(self, config: Config) -> None:
        run = _setup(self.backend, config)
        before = self._built.model.predict(*_batch(self._built))
        after = run.model.predict(*_batch(run))
        assert not np.allclose(before, after, rtol=1e-6, atol=0), "the prediction did not change"

    def grouped_prediction_changes(self, config: Config) -> None:
        """For settings of the overlap constraint, which gridsize 1 does not run."""
        grouped = {"model.gridsize": 2}
        base = _setup(self.backend, self.base.with_overrides(grouped))
        run = _setup(self.backend, config.with_overrides(grouped))
        before, after = base.model.predict(*_batch(base)), run.model.predict(*_batch(run))
        assert not np.allclose(before, after, rtol=1e-6, atol=0), "the grouped prediction did not change"

    def loss_changes(self, config: Config) -> None:
        run = _setup(self.backend, config)
        truth = run.data.gather_truth(run.data.train_groups) if config.training.mode == "supervised" else None
        loss, _ = run.model.loss_and_gradients(*_batch(run), truth)
        base_loss, _ = self._built.model.loss_and_gradients(*_batch(self._built))
        assert math.isfinite(loss) and not math.isclose(loss, base_loss, rel_tol=1e-6), "the loss did not change"

    def training_changes_weights(self, config: Config) -> None:
        run = _trained(self.backend, config)
        change = _relative_change(self.trained.model.get_weights(), run.model.get_weights())
        assert change > 1e-6, f"the trained weights did not change ({change:.1e})"

    def scale_is_trained(self, config: Config) -> None:
        run = _setup(self.backend, config)
        _, gradients = run.model.loss_and_gradients(*_batch(run))
        assert gradients.get("log_intensity_scale", 0) != 0, "no gradient reaches the intensity scale"

    def probe_is_trained(self, config: Config) -> None:
        run = _trained(self.backend, config)
        assert not np.array_equal(run.model.state.probe, self._built.model.state.probe), "the probe did not train"

    def precision_64(self, config: Config) -> None:
        run = _setup(self.backend, config)
        assert run.model.forward(*_batch(run)).amplitude.dtype == np.float64

    def checkpoint_written(self, config: Config) -> None:
        _trained(self.backend, config)
        assert [path for path in Path(config.execution.run_dir).iterdir() if path.is_file()], "no checkpoint"

    def resumed(self, config: Config) -> None:
        first = _trained(self.backend, config.with_overrides({"execution.resume": False}))
        again = _trained(self.backend, config)
        assert again.history == first.history and not again.events, "a finished run trained again"

    def logged(self, config: Config) -> None:
        _trained(self.backend, config)
        logs = Path(config.execution.run_dir) / "logs"
        if config.execution.logger == "none":
            assert not logs.exists()
        else:
            assert [path for path in logs.rglob("*") if path.is_file()], "no log written"

    def read_by_backend(self, key: str) -> Callable[[Config], None]:
        """For settings with no visible effect here: the backend's code must read the key."""
        def check(config: Config) -> None:
            package = self.backend.entry.target.split(".")[0]
            folder = Path(importlib.util.find_spec(package).origin).parent
            source = "\n".join(path.read_text(encoding="utf-8") for path in folder.rglob("*.py"))
            assert re.search(rf"\b{re.escape(key)}\b", source), f"{package} never reads {key}"
        return check


def _backend_keys(probes: Probes, tmp: Path) -> dict[str, list[tuple[Any, Callable[[Config], None]]]]:
    """Backend key -> [(non-default value, evidence)]."""
    run_dir = str(tmp / "run")
    return {
        "model.pattern_size": [(32, probes.shape)],
        "model.gridsize": [(2, probes.shape)],
        "model.n_filters_scale": [(2, probes.prediction_changes)],
        "model.amp_activation": [(name, probes.prediction_changes) for name in ("softplus", "relu", "swish")],
        "model.overlap_weights": [("window", probes.grouped_prediction_changes)],
        "model.probe_trainable": [(True, probes.probe_is_trained)],
        "model.intensity_scale_trainable": [(True, probes.scale_is_trained)],
        "training.mode": [("supervised", probes.loss_changes)],
        "training.learning_rate": [(1e-2, probes.training_changes_weights)],
        "training.adam_beta1": [(0.5, probes.training_changes_weights)],
        "training.adam_beta2": [(0.9, probes.training_changes_weights)],
        "training.adam_epsilon": [(1e-2, probes.training_changes_weights)],
        "training.ema_decay": [(0.0, probes.training_changes_weights)],  # the 2nd step's weights, not the average
        "training.nll_weight": [(0.5, probes.loss_changes)],
        "training.mae_weight": [(1.0, probes.loss_changes)],
        "execution.device": [("gpu", probes.prediction_changes)],  # no GPU here: refused when built
        "execution.devices": [(2, probes.read_by_backend("execution.devices"))],
        "execution.num_nodes": [(2, probes.read_by_backend("execution.num_nodes"))],
        "execution.strategy": [(name, probes.read_by_backend("execution.strategy"))
                               for name in ("single", "mirrored", "ddp")],
        # Mixed precision is a training setting (inference runs the float32 network).
        "execution.precision": [("64", probes.precision_64), ("bf16-mixed", probes.training_changes_weights),
                                ("16-mixed", probes.training_changes_weights)],
        "execution.workers": [(1, probes.read_by_backend("execution.workers"))],
        "execution.deterministic": [(True, probes.read_by_backend("execution.deterministic"))],
        "execution.run_dir": [(run_dir, probes.checkpoint_written)],
        "execution.resume": [(True, probes.resumed)],
        "execution.logger": [(name, probes.logged) for name in ("tensorboard", "mlflow", "none")],
    }


#: Settings a probe needs beside the key itself (a run folder for resume and the loggers).
def _with_context(key: str, value: Any, tmp: Path) -> dict[str, Any]:
    overrides = {key: f'"{value}"' if value == "none" else value}
    if key in ("execution.resume", "execution.logger"):
        overrides["execution.run_dir"] = str(tmp / f"{key}-{value}")
    if key == "execution.precision" and value == "64":
        overrides["execution.device"] = "cpu"
    return overrides


def _all_keys() -> list[str]:
    return [f"{section}.{name}" for section, field in Config.model_fields.items()
            for name in field.annotation.model_fields]


def _installed() -> BackendRegistry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendWarning)
        return BackendRegistry.discover()


#: The installed backends that train: the walk trains and predicts with every key. A backend
#: that runs trained models only (ONNX) reads the model keys alone; its graph is checked
#: against the numpy oracle and the training backends for each of them (tests/test_onnx_*.py).
INSTALLED = [entry.name for entry in _installed().entries() if entry.ok and entry.info.capabilities.training]


# -- the tests -----------------------------------------------------------------------------------


def test_every_key_is_classified() -> None:
    backend_keys = set(_backend_keys(Probes.__new__(Probes), Path("/unused")))
    assert not backend_keys & set(CORE_KEYS), "a key is either the core's or the backends'"
    unclassified = sorted(set(_all_keys()) - backend_keys - set(CORE_KEYS))
    assert not unclassified, f"say who honours these keys (CORE_KEYS or _backend_keys): {unclassified}"
    stale = sorted((backend_keys | set(CORE_KEYS)) - set(_all_keys()))
    assert not stale, f"no longer config keys: {stale}"


def test_the_core_reads_its_keys() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "ptychopinn_core").rglob("*.py")
                       if path.name != "config.py")
    unread = []
    for key in CORE_KEYS:
        section, name = key.split(".")
        # config.training.seed, training.seed, or the section bound to a name (`refine = config.refine`)
        if not re.search(rf"\b{section}\.{name}\b", source):
            unread.append(key)
    assert not unread, f"CORE_KEYS the core never reads: {unread}"


@pytest.mark.skipif(not INSTALLED, reason="no backend installed")
@pytest.mark.parametrize("name", INSTALLED)
def test_every_backend_key_is_honoured_or_refused(name: str, tmp_path: Path) -> None:
    backend = _installed().get(name)
    probes = Probes(backend, tmp_path)
    ignored, outcomes = [], []
    for key, cases in _backend_keys(probes, tmp_path).items():
        for value, evidence in cases:
            config = probes.base.with_overrides(_with_context(key, value, tmp_path))
            try:
                backend.check_config(config)
                evidence(config)
                outcomes.append(f"{key}={value!r}: honoured")
            except (ValueError, ImportError) as error:
                if key not in str(error):
                    ignored.append(f"{key}={value!r}: refused without naming the key: {error}")
                else:
                    outcomes.append(f"{key}={value!r}: refused")
            except AssertionError as error:
                ignored.append(f"{key}={value!r}: accepted and IGNORED ({error})")
    print(f"\n[{name}]\n  " + "\n  ".join(outcomes))
    assert not ignored, "\n".join(ignored)
