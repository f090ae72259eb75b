"""Backend conformance kit: the checks every PtychoPINN backend must pass.

Modelled on pandas' extension tests: the core ships a base class of pytest tests; a
backend's test suite subclasses it and provides one fixture, ``backend`` (a
:class:`~ptychopinn_core.backends.Backend`). The defaults of the other fixtures
(``config``, ``scan``, ``model``, ...) are derived from the backend's capabilities
and may be overridden too::

    import pytest
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.testing import BackendConformanceTests

    class TestJaxBackend(BackendConformanceTests):
        @pytest.fixture
        def backend(self):
            return BackendRegistry.discover().get("jax")

What is checked: the description (info, capabilities), building from the core's
initial weights, exact weight round trips (get/set and through a bundle file), each
physics step against the numpy reference (:data:`TOLERANCES`), the forward pass
against the numpy forward model, chunked prediction, and that a short training run
lowers the loss and reports progress; refinement: gradients and a few iterations against
the numpy reference (:mod:`ptychopinn_core.refine.reference`), progress, bad inputs, and
that it improves a perturbed object. A check is skipped only through capabilities
(e.g. supervised training when ``"supervised" not in capabilities.modes``, every training
check when ``capabilities.training`` is False, where the backend must refuse training
instead), never by backend name. Every check takes seconds on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ptychopinn_core.backends import (
    ALLOWED_LOGGERS,
    BACKEND_NAME_PATTERN,
    Backend,
    BackendInfo,
    BackendModel,
    Capabilities,
    ForwardResult,
    ProgressEvent,
)
from ptychopinn_core.config import Config
from ptychopinn_core.data import ScanData
from ptychopinn_core.model.bundle import ModelBundle, make_manifest, read_bundle, write_bundle
from ptychopinn_core.model.parameters import (
    effective_intensity_scale,
    initial_weights,
    network_channels,
    parameter_specs,
)
from ptychopinn_core.model.state import History
from ptychopinn_core.physics import far_field, illuminate, pinn_loss, supervised_mae
from ptychopinn_core.parity.cases import CONFORMANCE_SEED, PHYSICS_OPS, physics_case
from ptychopinn_core.parity.tolerances import TOLERANCES, Tolerance, relative_error
from ptychopinn_core.simulation.scan import make_demo_scan

__all__ = [
    "CONFORMANCE_SEED",
    "PHYSICS_OPS",
    "TOLERANCES",
    "BackendConformanceTests",
    "Tolerance",
    "bitwise_equal",
    "physics_case",
    "relative_error",
    "small_config",
    "small_scan",
    "refine_start",
]


#: Positions of the kit's scan: 16 gives 12 training and 4 validation groups at the
#: kit's validation fraction, so an epoch has several steps and still runs in seconds.
_N_POSITIONS = 16
_VALIDATION_FRACTION = 0.25
_BATCH_SIZE = 4


# -- helpers -----------------------------------------------------------------------------


def bitwise_equal(first: np.ndarray, second: np.ndarray) -> bool:
    """Same dtype, shape and bytes (``-0.0 != 0.0``, NaN payloads compared): exact round trips."""
    first, second = np.asarray(first), np.asarray(second)
    return (
        first.dtype == second.dtype
        and first.shape == second.shape
        and np.ascontiguousarray(first).tobytes() == np.ascontiguousarray(second).tobytes()
    )


def small_config(capabilities: Capabilities, *, mode: str | None = None) -> Config:
    """A small configuration the backend supports, for checks that run in seconds.

    The smallest supported pattern size, ``gridsize`` 2 when supported (so the overlap
    constraint is exercised), ``n_filters_scale`` 1, two epochs of batches of 4, a 25%
    validation split, CPU when supported (deterministic and always present).

    Parameters
    ----------
    capabilities : Capabilities
    mode : {"pinn", "supervised"}, optional
        Default: "pinn" when supported, else "supervised".
    """
    if mode is None:
        mode = "pinn" if "pinn" in capabilities.modes else "supervised"
    return Config.from_dict(
        {
            "model": {
                "pattern_size": min(capabilities.pattern_sizes),
                "gridsize": 2 if 2 in capabilities.gridsizes else 1,
                "n_filters_scale": 1,
            },
            "training": {
                "mode": mode,
                "epochs": 2,
                "batch_size": _BATCH_SIZE,
                "validation_fraction": _VALIDATION_FRACTION,
                "seed": 0,
            },
            "execution": {"device": "cpu" if "cpu" in capabilities.devices else "auto"},
        },
        source="conformance kit",
    )


def small_scan(config: Config, n_positions: int = _N_POSITIONS) -> ScanData:
    """A small simulated scan (lines object, default probe, Poisson counts) matching ``config``."""
    return make_demo_scan(
        n_positions, size=config.model.pattern_size, nphotons=config.data.nphotons, seed=CONFORMANCE_SEED
    )


def _training_loss(model: BackendModel, data: Any, config: Config, group_ids: np.ndarray) -> float:
    """The PINN loss of ``model`` on some groups, evaluated with the numpy reference."""
    diffraction, offsets = data.gather(group_ids)
    amplitude = model.forward(diffraction, offsets).amplitude
    scale = effective_intensity_scale(model.state.intensity_scale, model.get_weights())
    return pinn_loss(
        amplitude.astype(np.float64),
        diffraction.astype(np.float64),
        scale,
        config.training.nll_weight,
        config.training.mae_weight,
    )


def _error_up_to_global_phase(actual: np.ndarray, truth: np.ndarray) -> float:
    """Relative error after the complex factor that fits ``actual`` to ``truth``: far-field
    data cannot tell an object from one multiplied by ``exp(i phi)``."""
    actual = np.asarray(actual, dtype=np.complex128)
    factor = np.vdot(actual, truth) / np.vdot(actual, actual)
    return relative_error(factor * actual, truth)


def refine_start(scan: ScanData, problem: Any) -> tuple[np.ndarray, np.ndarray]:
    """A start object half way between the flat start and the truth, and the model's probe.

    The truth is scaled by the factor that fits its predicted amplitudes to the data, so it
    is the refinement's minimiser up to noise (:func:`ptychopinn_core.refine.fitted_truth`).
    """
    from ptychopinn_core.physics.probe_model import normalise_probe
    from ptychopinn_core.refine import fitted_truth, flat_start

    probe = normalise_probe(scan.probe).astype(np.complex64)
    truth = fitted_truth(problem, scan.object, probe)
    return (0.5 * truth + 0.5 * flat_start(problem, probe)).astype(np.complex64), probe


#: Trains a backend (argv[1]) with a config (argv[2], JSON; its run_dir set) on the kit's
#: scan and SIGKILLs itself at the first batch of epoch 2: run_dir then holds epochs 0, 1.
_KILL_IN_EPOCH_2 = """
import json, os, signal, sys
from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.testing.conformance import small_scan
from ptychopinn_core.training.data import prepare_training_data

backend = BackendRegistry.discover().get(sys.argv[1])
config = Config.from_dict(json.loads(sys.argv[2]))
scan = small_scan(config)
model = backend.build_model(config, prepare_model_state(scan, config),
                            initial_weights(parameter_specs(config.model), config.training.seed))

def progress(event):
    if event.stage == "batch" and event.epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)

backend.train(model, prepare_training_data(scan, config), config, progress)
"""


# -- the kit -----------------------------------------------------------------------------


class BackendConformanceTests:
    """Subclass in a test module and provide a ``backend`` fixture (see the module docstring).

    Fixtures (override any of them in the subclass):

    - ``backend``: the :class:`~ptychopinn_core.backends.Backend` under test (required).
    - ``config``: :func:`small_config` of the backend's capabilities.
    - ``scan``: :func:`small_scan` of ``config``.
    - ``training_data``, ``state``, ``weights``, ``model``: derived from those by the core.
    """

    # -- fixtures ----------------------------------------------------------------------

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("a conformance test class must provide a 'backend' fixture")

    @pytest.fixture
    def config(self, backend: Backend) -> Config:
        return small_config(backend.info.capabilities)

    @pytest.fixture
    def scan(self, config: Config) -> ScanData:
        return small_scan(config)

    @pytest.fixture
    def training_data(self, scan: ScanData, config: Config):
        from ptychopinn_core.training.data import prepare_training_data

        return prepare_training_data(scan, config)

    @pytest.fixture
    def state(self, scan: ScanData, config: Config):
        from ptychopinn_core.model.inputs import prepare_model_state

        return prepare_model_state(scan, config)

    @pytest.fixture
    def weights(self, config: Config) -> dict[str, np.ndarray]:
        return initial_weights(parameter_specs(config.model), config.training.seed)

    @pytest.fixture
    def model(self, backend: Backend, config: Config, state, weights) -> BackendModel:
        return backend.build_model(config, state, weights)

    @pytest.fixture
    def batch(self, training_data) -> tuple[np.ndarray, np.ndarray]:
        """``(diffraction (B, C, N, N) float32, offsets (B, C, 2) float32)`` of every group."""
        return training_data.gather(np.arange(training_data.groups.n_groups))

    # -- description -------------------------------------------------------------------

    def test_info_is_valid(self, backend: Backend) -> None:
        info = backend.info
        assert isinstance(info, BackendInfo)
        assert info.name == backend.entry.name == backend.name, "BackendInfo.name must equal the entry point's name"
        assert BACKEND_NAME_PATTERN.fullmatch(info.name)
        assert backend.entry.status == "ok"
        assert backend.entry.framework_version, (
            f"none of framework_distributions={info.framework_distributions} is installed"
        )
        assert info.install_hint.startswith("pip install"), f"install_hint={info.install_hint!r}"

    def test_capabilities_are_consistent(self, backend: Backend, config: Config) -> None:
        capabilities = backend.info.capabilities
        assert isinstance(capabilities, Capabilities)
        # Every advertised size and gridsize must make a valid config and parameter list.
        for size in capabilities.pattern_sizes:
            for gridsize in capabilities.gridsizes:
                model_config = Config.from_dict({"model": {"pattern_size": size, "gridsize": gridsize}}).model
                specs = parameter_specs(model_config)
                assert specs[0].shape[2] == network_channels(model_config)
        trains = capabilities.training  # an inference-only backend is checked for running models
        assert capabilities.unsupported(config, training=trains) == []
        backend.check_config(config, training=trains)

    def test_devices(self, backend: Backend) -> None:
        devices = backend.devices()
        assert devices and all(isinstance(device, str) and device for device in devices)
        if "cpu" in backend.info.capabilities.devices:
            assert any("cpu" in device.lower() for device in devices), f"no CPU device among {devices}"

    # -- weights -----------------------------------------------------------------------

    def test_build_model_holds_the_given_weights(self, model: BackendModel, config: Config, weights, state) -> None:
        assert isinstance(model, BackendModel)
        got = model.get_weights()
        specs = parameter_specs(config.model)
        assert set(got) == {spec.name for spec in specs}
        for spec in specs:
            assert got[spec.name].shape == spec.shape, spec.name
            assert bitwise_equal(got[spec.name], weights[spec.name]), f"{spec.name} changed when loaded"
        assert bitwise_equal(model.state.probe, state.probe)
        assert model.state.intensity_scale == state.intensity_scale

    def test_get_weights_returns_copies(self, model: BackendModel) -> None:
        first = model.get_weights()
        name = next(iter(first))
        first[name][...] = 123.0
        assert not np.any(model.get_weights()[name] == 123.0), "get_weights must not expose internal buffers"

    def test_set_weights_round_trip(self, model: BackendModel, config: Config, weights, batch) -> None:
        rng = np.random.default_rng(CONFORMANCE_SEED)
        changed = {
            name: (value + rng.normal(scale=0.05, size=value.shape)).astype(np.float32)
            for name, value in initial_weights(parameter_specs(config.model), seed=1).items()
        }
        before = model.predict(*batch)
        model.set_weights(changed)
        for name, value in model.get_weights().items():
            assert bitwise_equal(value, changed[name]), f"{name} changed by set_weights/get_weights"
        assert relative_error(model.predict(*batch), before) > 1e-3, "predictions ignore set_weights"
        model.set_weights(weights)
        again = model.predict(*batch)
        assert relative_error(again, before) <= TOLERANCES["prediction_repeat"].relative

    def test_set_weights_rejects_wrong_shape(self, model: BackendModel, weights) -> None:
        name = next(iter(weights))
        wrong = dict(weights)
        wrong[name] = np.zeros(weights[name].shape + (2,), dtype=np.float32)
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            model.set_weights(wrong)

    def test_bundle_round_trip(self, backend: Backend, model: BackendModel, config: Config, batch, tmp_path) -> None:
        manifest = make_manifest(
            config.training.mode, backend.name, backend.info.framework, backend.entry.framework_version or "unknown"
        )
        bundle = ModelBundle(manifest=manifest, config=config, weights=model.get_weights(), state=model.state,
                             history=History())
        path = write_bundle(tmp_path / f"{backend.name}.ptychopinn", bundle)
        loaded = read_bundle(path)
        assert loaded.config == config
        assert bitwise_equal(loaded.state.probe, model.state.probe)
        for name, value in bundle.weights.items():
            assert bitwise_equal(loaded.weights[name], value), f"{name} changed through the bundle"
        rebuilt = backend.build_model(loaded.config, loaded.state, loaded.weights)
        for name, value in rebuilt.get_weights().items():
            assert bitwise_equal(value, bundle.weights[name]), f"{name} changed when rebuilt from the bundle"
        error = relative_error(rebuilt.predict(*batch), model.predict(*batch))
        assert error <= TOLERANCES["prediction_repeat"].relative

    # -- physics -----------------------------------------------------------------------

    @pytest.mark.parametrize("op", PHYSICS_OPS)
    def test_physics_op_matches_numpy_reference(self, backend: Backend, config: Config, op: str) -> None:
        ops = backend.physics_ops()
        scale = math.sqrt(config.data.nphotons) / (config.model.pattern_size / 2)
        arguments, expected = physics_case(op, config.model.pattern_size, scale)
        actual = getattr(ops, op)(*arguments)
        if np.ndim(expected) == 0:
            assert np.ndim(actual) == 0 and np.isfinite(actual), f"{op} must return a finite scalar: {actual!r}"
        else:
            assert isinstance(actual, np.ndarray), f"{op} must return a numpy array, received {type(actual).__name__}"
            assert actual.shape == expected.shape
            assert actual.dtype.kind == np.asarray(expected).dtype.kind
        error = relative_error(actual, expected)
        tolerance = TOLERANCES[op]
        assert error <= tolerance.relative, (
            f"{op}: relative error {error:.2e} > {tolerance.relative:.0e} ({tolerance.reason})"
        )

    def test_forward_is_the_physics_of_its_patches(self, model: BackendModel, config: Config, batch) -> None:
        diffraction, offsets = batch
        result = model.forward(diffraction, offsets)
        assert isinstance(result, ForwardResult)
        size, channels = config.model.pattern_size, config.model.group_size
        shape = (diffraction.shape[0], channels, size, size)
        assert result.patches.shape == shape and result.patches.dtype == np.complex64
        assert result.amplitude.shape == shape and result.amplitude.dtype == np.float32
        assert np.all(np.isfinite(result.patches)) and np.all(np.isfinite(result.amplitude))
        probe = model.state.probe.astype(np.complex128)
        expected = np.abs(far_field(illuminate(result.patches.astype(np.complex128), probe)))
        error = relative_error(result.amplitude, expected)
        assert error <= TOLERANCES["forward_amplitude"].relative, f"relative error {error:.2e}"
        error = relative_error(model.predict(diffraction, offsets), result.patches)
        assert error <= TOLERANCES["prediction_repeat"].relative, "predict differs from forward().patches"

    def test_predict_in_chunks_equals_one_shot(self, model: BackendModel, batch) -> None:
        diffraction, offsets = batch
        whole = model.predict(diffraction, offsets)
        chunks = [model.predict(diffraction[start:start + 3], offsets[start:start + 3])
                  for start in range(0, diffraction.shape[0], 3)]
        error = relative_error(np.concatenate(chunks), whole)
        assert error <= TOLERANCES["prediction_repeat"].relative, f"relative error {error:.2e}"

    # -- training ----------------------------------------------------------------------

    def _require_training(self, backend: Backend) -> None:
        if not backend.info.capabilities.training:
            pytest.skip("capabilities: runs trained models only (no training)")

    def test_an_inference_only_backend_refuses_training(self, backend: Backend, model: BackendModel,
                                                        training_data, config: Config) -> None:
        """Training with it fails before anything runs, naming the backends that can train."""
        if backend.info.capabilities.training:
            pytest.skip("capabilities: trains")
        with pytest.raises(ValueError, match=r"does not support training \(this backend runs trained models only\)"):
            backend.train(model, training_data, config)

    def _train_and_check(self, backend: Backend, model: BackendModel, data: Any, config: Config,
                         loss: Callable[[], float]) -> None:
        events: list[ProgressEvent] = []
        before = loss()
        history = backend.train(model, data, config, events.append)
        after = loss()
        n_epochs = config.training.epochs
        assert isinstance(history, History)
        assert [record.epoch for record in history.epochs] == list(range(n_epochs))
        assert all(math.isfinite(record.train_loss) for record in history.epochs)
        if len(data.validation_groups):
            assert all(record.val_loss is not None and math.isfinite(record.val_loss) for record in history.epochs)
        assert after < before, f"training did not lower the loss: {before!r} -> {after!r}"
        epoch_events = [event for event in events if event.stage == "epoch"]
        assert [event.epoch for event in epoch_events] == list(range(n_epochs))
        for epoch in range(n_epochs):
            steps = [event.step for event in events if event.stage == "batch" and event.epoch == epoch]
            n_steps = len(data.epoch_batches(epoch))
            assert steps == list(range(1, n_steps + 1)), f"epoch {epoch}: batch events {steps}"
        assert all(isinstance(event, ProgressEvent) and event.n_epochs == n_epochs for event in events)

    def test_training_lowers_the_loss(self, backend: Backend, model: BackendModel, training_data,
                                      config: Config) -> None:
        self._require_training(backend)
        if config.training.mode != "pinn":
            pytest.skip("capabilities: PINN training not supported")
        train_ids = np.asarray(training_data.train_groups)
        self._train_and_check(
            backend, model, training_data, config,
            lambda: _training_loss(model, training_data, config, train_ids),
        )

    # -- the core's epoch policy and the run folder ------------------------------------

    def _fresh(self, backend: Backend, scan: ScanData, config: Config) -> tuple[BackendModel, Any]:
        """A model built from the core's initial weights and the data of ``config``."""
        from ptychopinn_core.model.inputs import prepare_model_state
        from ptychopinn_core.training.data import prepare_training_data

        model = backend.build_model(config, prepare_model_state(scan, config),
                                    initial_weights(parameter_specs(config.model), config.training.seed))
        return model, prepare_training_data(scan, config)

    def test_training_follows_the_core_policy(self, backend: Backend, scan: ScanData, config: Config) -> None:
        """Losses and learning rates are the core's EpochPolicy's: weighted epoch means, the
        plateau schedule replayed on the monitored losses, early stopping at its epoch."""
        self._require_training(backend)
        from ptychopinn_core.training.schedule import PlateauSchedule, loss_floor

        # So small a learning rate that the loss never improves by the relative 1e-4 the
        # core asks for: the rate halves every epoch (patience 1), training stops after 3.
        config = config.with_overrides({"training.learning_rate": 1e-12, "training.min_learning_rate": 2e-13,
                                        "training.lr_plateau_patience": 1, "training.early_stopping_patience": 3,
                                        "training.epochs": 10})
        model, data = self._fresh(backend, scan, config)
        events: list[ProgressEvent] = []
        history = backend.train(model, data, config, events.append)
        assert [record.epoch for record in history.epochs] == [0, 1, 2, 3], "early stopping after epoch 3"
        schedule = PlateauSchedule.from_config(config.training, floor=loss_floor(data, config.training))
        expected_rates = []
        for record in history.epochs:
            expected_rates.append(schedule.learning_rate)
            schedule.step(record.val_loss if record.val_loss is not None else record.train_loss)
        assert [record.learning_rate for record in history.epochs] == expected_rates == [
            1e-12, 1e-12, 5e-13, 2.5e-13]
        for record in history.epochs:
            sizes = [len(ids) for ids in data.epoch_batches(record.epoch)]
            losses = [event.metrics["train_loss"] for event in events
                      if event.stage == "batch" and event.epoch == record.epoch]
            assert math.isclose(record.train_loss, float(np.dot(sizes, losses)) / sum(sizes), rel_tol=1e-12)
        epoch_events = [event for event in events if event.stage == "epoch"]
        assert [dict(event.metrics) for event in epoch_events] == [
            {"train_loss": r.train_loss, "val_loss": r.val_loss, "learning_rate": r.learning_rate}
            for r in history.epochs
        ]

    def test_run_folder_settings_are_honoured_or_refused(self, backend: Backend, config: Config, tmp_path) -> None:
        """``execution.run_dir``/``resume``/``logger``/``workers``/``num_nodes``: what the
        capabilities offer, ``check_config`` accepts; the rest it refuses, naming the key."""
        self._require_training(backend)
        capabilities = backend.info.capabilities
        run_dir = {"execution.run_dir": str(tmp_path)}
        cases = [("execution.run_dir", run_dir, capabilities.checkpoints),
                 ("execution.resume", {**run_dir, "execution.resume": True}, capabilities.checkpoints),
                 ("execution.workers", {"execution.workers": 2}, capabilities.data_workers),
                 ("execution.num_nodes", {"execution.num_nodes": 2}, capabilities.multi_node)]
        if capabilities.checkpoints:  # loggers write into the run folder
            cases += [("execution.logger", {**run_dir, "execution.logger": logger}, logger in capabilities.loggers)
                      for logger in sorted(ALLOWED_LOGGERS)]
        for key, overrides, offered in cases:
            candidate = config.with_overrides(overrides)
            if offered:
                assert key not in " ".join(capabilities.unsupported(candidate)), f"{overrides} is offered"
            else:
                with pytest.raises(ValueError, match=rf"does not support .*{key}="):
                    backend.check_config(candidate)

    def _require_checkpoints(self, backend: Backend) -> None:
        self._require_training(backend)
        if not backend.info.capabilities.checkpoints:
            pytest.skip("capabilities: no checkpoints (execution.run_dir is refused)")

    def test_kill_and_resume_continues_the_history(self, backend: Backend, scan: ScanData, config: Config,
                                                   tmp_path) -> None:
        """SIGKILLed in epoch 2 (a crash, not a clean exit), resumed from run_dir: the history
        continues with epochs 2, 3 and the result equals an uninterrupted run's."""
        self._require_checkpoints(backend)
        import json
        import signal
        import subprocess
        import sys

        config = config.with_overrides({"training.epochs": 4, "training.early_stopping_patience": None})
        model, data = self._fresh(backend, scan, config)
        reference = backend.train(model, data, config)
        reference_weights = model.get_weights()

        run_dir = tmp_path / "run"
        logged = "csv" in backend.info.capabilities.loggers
        config = config.with_overrides({"execution.run_dir": str(run_dir),
                                        "execution.logger": "csv" if logged else '"none"'})
        result = subprocess.run(
            [sys.executable, "-c", _KILL_IN_EPOCH_2, backend.name, json.dumps(config.to_dict())],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == -signal.SIGKILL, result.stdout[-2000:] + result.stderr[-2000:]
        resumed_config = config.with_overrides({"execution.resume": True})
        model, data = self._fresh(backend, scan, resumed_config)
        events: list[ProgressEvent] = []
        history = backend.train(model, data, resumed_config, events.append)
        assert [record.epoch for record in history.epochs] == [0, 1, 2, 3]
        assert sorted({event.epoch for event in events}) == [2, 3], "only the missing epochs run"
        tolerance = TOLERANCES["resume"].relative
        for record, expected in zip(history.epochs, reference.epochs, strict=True):
            assert math.isclose(record.train_loss, expected.train_loss, rel_tol=tolerance)
            assert math.isclose(record.val_loss, expected.val_loss, rel_tol=tolerance)
            assert record.learning_rate == expected.learning_rate
        weights = model.get_weights()
        error = relative_error(np.concatenate([weights[k].ravel() for k in sorted(weights)]),
                               np.concatenate([reference_weights[k].ravel() for k in sorted(weights)]))
        assert error <= tolerance, f"resumed weights differ by {error:.2e}"
        if logged:  # one CSV log per (re)start, one row per epoch that ran in it
            logs = sorted((run_dir / "logs").glob("version_*/metrics.csv"))
            assert [len(log.read_text().strip().splitlines()) for log in logs] == [1 + 2, 1 + 2]
        # Resuming a finished run trains nothing more.
        again, _ = self._fresh(backend, scan, resumed_config)
        events.clear()
        assert backend.train(again, data, resumed_config, events.append).epochs == history.epochs
        assert not events

    def test_resume_after_early_stopping_trains_nothing(self, backend: Backend, scan: ScanData, config: Config,
                                                        tmp_path) -> None:
        self._require_checkpoints(backend)
        config = config.with_overrides({"training.learning_rate": 1e-12, "training.min_learning_rate": 1e-12,
                                        "training.early_stopping_patience": 1, "training.epochs": 6,
                                        "execution.run_dir": str(tmp_path), "execution.logger": '"none"'})
        model, data = self._fresh(backend, scan, config)
        first = backend.train(model, data, config)
        assert len(first.epochs) == 2
        weights = model.get_weights()
        resumed = config.with_overrides({"execution.resume": True})
        model, data = self._fresh(backend, scan, resumed)
        events: list[ProgressEvent] = []
        assert backend.train(model, data, resumed, events.append) == first and not events
        assert all(bitwise_equal(weights[k], value) for k, value in model.get_weights().items())

    def test_resume_needs_a_checkpoint(self, backend: Backend, scan: ScanData, config: Config, tmp_path) -> None:
        self._require_checkpoints(backend)
        model, data = self._fresh(backend, scan, config)
        with pytest.raises(ValueError, match="execution.run_dir"):
            backend.train(model, data, config.with_overrides({"execution.resume": True}))
        with pytest.raises(ValueError, match="expected a checkpoint"):
            backend.train(model, data, config.with_overrides({"execution.resume": True,
                                                              "execution.run_dir": str(tmp_path)}))

    def test_max_seconds_stops_at_the_first_epoch_end(self, backend: Backend, scan: ScanData, config: Config) -> None:
        self._require_training(backend)
        from ptychopinn_core.model.inputs import prepare_model_state
        from ptychopinn_core.training.data import prepare_training_data

        config = config.with_overrides({"training.epochs": 3, "training.max_seconds": 1e-6,
                                        "training.early_stopping_patience": None})
        data = prepare_training_data(scan, config)
        model = backend.build_model(config, prepare_model_state(scan, config),
                                    initial_weights(parameter_specs(config.model), config.training.seed))
        events: list[ProgressEvent] = []
        history = backend.train(model, data, config, events.append)
        assert [record.epoch for record in history.epochs] == [0], "training.max_seconds: one epoch, then stop"
        assert [event.epoch for event in events if event.stage == "epoch"] == [0]
        assert len([event for event in events if event.stage == "batch"]) == len(data.epoch_batches(0))

    def test_the_weight_average_is_the_cores(self, backend: Backend, scan: ScanData, config: Config) -> None:
        """``training.ema_decay``: each epoch's event and the trained model hold the core's
        moving average (:mod:`ptychopinn_core.training.averaging`) of the raw weights each
        step's event shows."""
        self._require_training(backend)
        from ptychopinn_core.training.averaging import moving_average

        decay = 0.5  # delta_t reaches it at step 10: the warm-up, then the cap
        config = config.with_overrides({"training.epochs": 2, "training.ema_decay": decay,
                                        "training.early_stopping_patience": None})
        model, data = self._fresh(backend, scan, config)
        steps: list[dict[str, np.ndarray]] = []
        ends: list[dict[str, np.ndarray]] = []
        backend.train(model, data, config, lambda event: (steps if event.stage == "batch" else ends).append(
            model.get_weights()))
        per_epoch = data.steps_per_epoch
        assert len(steps) == 2 * per_epoch and len(ends) == 2
        tolerance = TOLERANCES["weight_average"].relative
        for weights, expected in ((ends[0], moving_average(steps[:per_epoch], decay)),
                                  (ends[1], moving_average(steps, decay)),
                                  (model.get_weights(), moving_average(steps, decay))):
            for name, value in expected.items():
                assert relative_error(weights[name], value) <= tolerance, (name, relative_error(weights[name], value))
        moved = [name for name in steps[-1] if not np.array_equal(steps[-1][name], steps[-2][name])]
        assert moved, "the raw weights did not move between the last two steps"
        assert any(relative_error(model.get_weights()[name], steps[-1][name]) > 10 * tolerance for name in moved), \
            "the trained model holds the last step's weights, not their average"

    def test_supervised_training_lowers_the_error(self, backend: Backend, scan: ScanData, config: Config) -> None:
        self._require_training(backend)
        if "supervised" not in backend.info.capabilities.modes:
            pytest.skip("capabilities: supervised training not supported")
        from ptychopinn_core.model.inputs import prepare_model_state
        from ptychopinn_core.training.data import prepare_training_data

        config = config.with_overrides({"training.mode": "supervised"})
        data = prepare_training_data(scan, config)
        model = backend.build_model(config, prepare_model_state(scan, config),
                                    initial_weights(parameter_specs(config.model), config.training.seed))
        train_ids = np.asarray(data.train_groups)

        def error() -> float:
            diffraction, offsets = data.gather(train_ids)
            return sum(supervised_mae(model.predict(diffraction, offsets), data.gather_truth(train_ids)))

        self._train_and_check(backend, model, data, config, error)

    # -- refinement --------------------------------------------------------------------

    @pytest.fixture
    def refine_config(self, config: Config) -> Config:
        return config.with_overrides(
            {"refine.iterations": 3, "refine.batch_size": 6, "refine.probe": True, "refine.probe_delay": 1}
        )

    def _refine_problem(self, scan: ScanData, config: Config):
        from ptychopinn_core.refine import RefineProblem
        from ptychopinn_core.workflow import object_frame_for

        return RefineProblem.for_scan(scan, object_frame_for(scan), config)

    def _precisions(self, backend: Backend) -> list[str]:
        return [precision for precision in ("32", "64") if precision in backend.info.capabilities.precisions]

    @pytest.mark.parametrize("loss", ["amplitude", "poisson"])
    def test_refiner_gradients_match_numpy_reference(
        self, backend: Backend, scan: ScanData, refine_config: Config, loss: str
    ) -> None:
        from ptychopinn_core.refine import NumpyRefiner

        for precision in self._precisions(backend):
            config = refine_config.with_overrides({"refine.loss": loss, "execution.precision": precision})
            problem = self._refine_problem(scan, config)
            obj, probe = refine_start(scan, problem)
            indices = problem.batches(0)[0]
            expected = NumpyRefiner(problem, "64").loss_and_gradients(obj, probe, indices)
            actual = backend.refiner(problem, config).loss_and_gradients(obj, probe, indices)
            key = "refine_gradient_64" if precision == "64" else (
                "refine_gradient_poisson" if loss == "poisson" else "refine_gradient"
            )
            tolerance = TOLERANCES[key]
            assert math.isclose(actual[0], expected[0], rel_tol=max(tolerance.relative, 1e-6))
            for name, got, want in (("object", actual[1], expected[1]), ("probe", actual[2], expected[2])):
                assert got.shape == want.shape and got.dtype.kind == "c", name
                error = relative_error(got, want)
                assert error <= tolerance.relative, (
                    f"precision {precision}, {loss}: d loss / d {name} relative error {error:.2e} > "
                    f"{tolerance.relative:.0e} ({tolerance.reason})"
                )

    def test_refiner_run_matches_numpy_reference(self, backend: Backend, scan: ScanData, refine_config: Config) -> None:
        from ptychopinn_core.refine import NumpyRefiner

        for precision in self._precisions(backend):
            config = refine_config.with_overrides({"execution.precision": precision})
            problem = self._refine_problem(scan, config)
            obj, probe = refine_start(scan, problem)
            expected = NumpyRefiner(problem, precision).run(obj, probe)
            actual = backend.refiner(problem, config).run(obj, probe)
            tolerance = TOLERANCES["refine_run_64" if precision == "64" else "refine_run"]
            for name, got, want in (("object", actual.object, expected.object), ("probe", actual.probe, expected.probe)):
                error = relative_error(got, want)
                assert error <= tolerance.relative, f"precision {precision}: refined {name} relative error {error:.2e}"
            assert np.allclose(actual.losses, expected.losses, rtol=max(tolerance.relative, 1e-6))

    def test_refiner_reports_progress_and_observes(self, backend: Backend, scan: ScanData, refine_config: Config) -> None:
        problem = self._refine_problem(scan, refine_config)
        obj, probe = refine_start(scan, problem)
        events: list[ProgressEvent] = []
        seen: list[int] = []
        result = backend.refiner(problem, refine_config).run(
            obj, probe, events.append, lambda iteration, o, p: seen.append(iteration)
        )
        n_iterations = refine_config.refine.iterations
        assert seen == list(range(n_iterations))
        assert [event.epoch for event in events if event.stage == "epoch"] == list(range(n_iterations))
        n_steps = len(problem.batches(0))
        assert [event.step for event in events if event.stage == "batch" and event.epoch == 0] == list(range(1, n_steps + 1))
        assert len(result.losses) == n_iterations and all(math.isfinite(loss) for loss in result.losses)
        assert result.object.shape == obj.shape and result.probe.shape == probe.shape

    def test_refiner_rejects_a_start_that_does_not_fit(self, backend: Backend, scan: ScanData, refine_config: Config) -> None:
        problem = self._refine_problem(scan, refine_config)
        obj, probe = refine_start(scan, problem)
        refiner = backend.refiner(problem, refine_config)
        with pytest.raises(ValueError, match="start object"):
            refiner.run(obj[1:], probe)
        with pytest.raises(ValueError, match="probe"):
            refiner.run(obj, probe[1:, 1:])

    def test_refinement_improves_a_perturbed_object(self, backend: Backend, scan: ScanData, refine_config: Config) -> None:
        from ptychopinn_core.refine import fitted_truth, illumination

        config = refine_config.with_overrides({"refine.iterations": 20, "refine.batch_size": 4, "refine.probe": False})
        problem = self._refine_problem(scan, config)
        obj, probe = refine_start(scan, problem)
        truth = fitted_truth(problem, scan.object, probe)
        light = illumination(problem, probe)
        covered = light > 0.1 * light.max()
        result = backend.refiner(problem, config).run(obj, probe)
        before = _error_up_to_global_phase(obj[covered], truth[covered])
        after = _error_up_to_global_phase(result.object[covered], truth[covered])
        assert after < 0.1 * before, f"refinement did not approach the truth: {before:.3f} -> {after:.3f}"
        assert result.losses[-1] < result.losses[0]
