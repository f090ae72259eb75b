"""PtychoPINN reconstructors driven by the real Ptychodus 1.7: conversion, train,
reconstruct (in-process and batch), model files and training-data export.

Per backend (every installed one plus the numpy fake), one model is trained through
``ptychodus -b train`` and reused:

- batch train: rc 0, ``OUT/model.zip`` holds a bundle trained with the settings file's
  values (read at run time);
- batch reconstruct with that model (``RefineIterations`` from the settings file): rc 0,
  one product file whose object is the stitched, refined reconstruction on the input
  object's grid (shape, pixel size, centre), with the model's losses, and whose comments
  name the reconstructor key that ran and the refinement done; without a
  model: rc 1 and a clear message (every backend through ``batch_mode_execute``, the
  command once). A typo in the key is ignored by Ptychodus (rc 0, the null
  reconstructor runs): our check of which reconstructor ran catches it;
- in-process ``reconstruct_local(..., block=True)``: the selected key is checked; with
  ``RefineIterations = 0`` the object equals the core's own ``workflow.reconstruct`` of
  the simulated scan (so the conversion of counts, bad pixels, metres and probe is
  exact) and the probe is the input's, and it is evaluated against the simulated truth;
  for real backends it is clearly better than an untrained model (amplitude: a few
  epochs do not learn the phase of this object);
- refinement (``Refine*`` settings): a few iterations change the object and lower its
  amplitude misfit to the patterns (the core's numpy forward model); with
  ``RefineProbe`` the product's probe is the refined one (finite, same shape, lower
  misfit together with the object); a bad value fails with the key named;
- training data exported by Ptychodus is read by ``ptychopinn train``;
- settings: file values reach the configuration, bad values name the key, and every
  configuration field has a key of its own or is listed as an ``Overrides`` field.
"""

from __future__ import annotations

import dataclasses
import os
import logging
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import FAKE_BACKEND_ROOT
from ptychodus_helpers import (
    DETECTOR_PIXEL_M,
    FAKE_BACKEND,
    HOOK_MODULE,
    backend_params,
    installed_backend_names,
    output_products,
    ptychodus_command,
    reconstructed_by,
    run,
    simulated_scan,
    subprocess_env,
    write_input_directory,
)

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config
from ptychopinn_core.data import read_scan
from ptychopinn_core.evaluation.report import evaluate
from ptychopinn_core.model.bundle import BundleError, read_bundle
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.physics.probe_model import normalise_probe
from ptychopinn_core.physics.stitching import ObjectFrame, default_crop_size
from ptychopinn_core.physics.translate import extract_patches
from ptychopinn_core.refine.problem import RefineProblem
from ptychopinn_core.refine.reference import loss_and_gradients

pytest.importorskip("ptychodus")

from ptychodus.api.geometry import PixelGeometry  # noqa: E402
from ptychodus.api.interpolate import BarycentricArrayInterpolator  # noqa: E402
from ptychodus.api.io import load_product  # noqa: E402
from ptychodus.api.object import ObjectGeometry  # noqa: E402
from ptychodus.api.probe import ProbeSequence  # noqa: E402
from ptychodus.api.product import Product  # noqa: E402
from ptychodus.api.reconstruct import ReconstructInput, prepare_reconstruct_input  # noqa: E402
from ptychodus.api.settings import SettingsRegistry  # noqa: E402

from ptychopinn_core.data.importers.ptychodus_product import (  # noqa: E402
    META_MEAN_COUNTS,
    amplitudes_from_counts,
    positions_to_object_px,
    probe_centre_offset_px,
    scan_from_reconstruct_input,
)
from ptychopinn_core.ptychodus.convert import positions_to_metres, ptychodus_inputs_from_scan  # noqa: E402
from ptychopinn_core.ptychodus.library import build_libraries, library_name  # noqa: E402
from ptychopinn_core.ptychodus.reconstructor import TRAINING_DATA_FILE, reconstructor_key  # noqa: E402
from ptychopinn_core.ptychodus.settings import (  # noqa: E402
    NOT_SETTINGS,
    OVERRIDES_FIELDS,
    SETTINGS,
    SETTINGS_KEYS,
    PINNSettings,
)

N_POSITIONS = 100
#: Training settings of every backend: small and quick, yet enough for the real
#: networks to learn the amplitude of the simulated object.
TRAIN_SETTINGS = {"Epochs": 8, "BatchSize": 16, "LearningRate": 2e-3, "NumFiltersScale": 1, "NumPhotons": 0}
#: Amplitude SSIM a trained real backend must gain over its untrained network.
MIN_SSIM_GAIN = 0.1
BACKENDS = backend_params()


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def fake_on_path(fake_backend_ok_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FAKE_BACKEND_ROOT))
    monkeypatch.syspath_prepend(str(fake_backend_ok_site))


@pytest.fixture(scope="module")
def env(fake_backend_ok_site: Path) -> dict[str, str]:
    """Subprocess environment in which the fake backend is installed too."""
    return subprocess_env(fake_backend_ok_site, FAKE_BACKEND_ROOT)


@pytest.fixture(scope="module")
def scan():
    return simulated_scan(seed=1, n_positions=N_POSITIONS)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ptychodus")


def trains(name: str) -> bool:
    """Whether the installed backend ``name`` trains (the fake does)."""
    return name == FAKE_BACKEND or BackendRegistry.discover().get(name).info.capabilities.training


def trainer_for(name: str) -> str:
    """The backend whose model ``name`` runs in these tests: itself, or, for a backend that
    runs trained models only, the first installed real backend that trains (else the fake)."""
    if trains(name):
        return name
    real = [other for other in installed_backend_names() if other != FAKE_BACKEND and trains(other)]
    return real[0] if real else FAKE_BACKEND


@pytest.fixture(scope="module")
def trained(workdir, scan, env):
    """Train once per backend with ``ptychodus -b train``; returns a function name -> result.

    For a backend that runs trained models only, the result is its trainer's
    (:func:`trainer_for`) with the key of its own library: its reconstructor runs that model.
    """
    results: dict[str, tuple[object, Path, str]] = {}

    def train(name: str) -> tuple[object, Path, str]:
        if not trains(name):
            result, model_path, _ = train(trainer_for(name))
            return result, model_path, key_of(name, "PINN", env_paths=env)
        if name not in results:
            key = key_of(name, "PINN", env_paths=env)
            inputs = write_input_directory(
                workdir / f"train-{name}", scan, algorithm=key, settings={library_of(name, env): TRAIN_SETTINGS}
            )
            out = workdir / f"model-{name}"
            result = run(ptychodus_command() + ["-b", "train", "-i", str(inputs), "-o", str(out)], env)
            results[name] = (result, out / "model.zip", key)
        return results[name]

    return train


def _registry_with_fake(env_paths) -> BackendRegistry:
    extra = [path for path in env_paths["PYTHONPATH"].split(os.pathsep) if path]
    saved = list(sys.path)
    sys.path[:0] = extra
    try:
        return BackendRegistry.discover()
    finally:
        sys.path[:] = saved


def library_of(name: str, env_paths) -> str:
    entry = next(e for e in _registry_with_fake(env_paths).entries() if e.name == name)
    return library_name(entry)


def key_of(name: str, reconstructor: str, env_paths) -> str:
    return reconstructor_key(library_of(name, env_paths), reconstructor)


def mean_counts(scan) -> float:
    """Measured photons per pattern of a simulated scan, ``mean_m sum X_m**2``."""
    return float(np.sum(scan.diffraction.astype(np.float64) ** 2)) / scan.n_positions


# -- conversion: pure functions ---------------------------------------------------------


@pytest.mark.parametrize("size", [31, 32])
def test_positions_name_the_same_patch_as_ptychodus(size):
    """Ptychodus' get_patch at its pixel position == our extract_patches at ours."""
    rng = np.random.default_rng(5)
    obj = (rng.random((90, 80)) + 1j * rng.random((90, 80))).astype(np.complex64)
    geometry = ObjectGeometry(width_px=80, height_px=90, pixel_width_m=1e-8, pixel_height_m=2e-8,
                              center_x_m=3e-7, center_y_m=-1e-7)
    ours_xy = rng.uniform([size, size], [80 - size, 90 - size], size=(7, 2))
    positions = positions_to_metres(ours_xy, geometry, size)
    np.testing.assert_allclose(positions_to_object_px(positions, geometry, size), ours_xy, atol=1e-9)
    interpolator = BarycentricArrayInterpolator(obj)
    for (x, y), position in zip(ours_xy, positions, strict=True):
        pixel = geometry.map_coordinates_probe_to_object(position)
        theirs = interpolator.get_patch(pixel.x_px, pixel.y_px, size, size)
        ours = extract_patches(obj, np.array([[x, y]]), size)[0]
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert probe_centre_offset_px(size) == (0.5 if size % 2 == 0 else 0.0)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_counts_become_amplitudes_with_bad_pixels_zeroed(dtype):
    rng = np.random.default_rng(0)
    counts = rng.poisson(50.0, size=(3, 8, 8)).astype(dtype)
    bad = np.zeros((8, 8), dtype=bool)
    bad[2, 3] = bad[7, 0] = True
    if dtype == np.float32:
        counts[:, 2, 3] = np.nan  # a dead pixel: allowed, it is masked
        counts[1, 4, 4] = -2.0  # background subtraction: clipped
    amplitudes, report = amplitudes_from_counts(counts, bad)
    assert amplitudes.dtype == np.float32 and amplitudes.shape == counts.shape
    expected = np.sqrt(np.clip(np.where(bad, 0, counts).astype(np.float64), 0, None))
    np.testing.assert_array_equal(amplitudes, expected.astype(np.float32))
    assert np.all(amplitudes[:, bad] == 0)
    assert report["bad_pixels"] == 2
    assert report["negative_counts"] == (1 if dtype == np.float32 else 0)
    np.testing.assert_allclose(report[META_MEAN_COUNTS], np.mean(np.sum(expected**2, axis=(1, 2))))


def test_non_finite_counts_outside_bad_pixels_are_refused():
    counts = np.ones((2, 4, 4), dtype=np.float32)
    counts[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite counts in pattern 1"):
        amplitudes_from_counts(counts, np.zeros((4, 4), dtype=bool))


def test_reconstruct_input_converts_back_to_the_simulated_scan(scan):
    diffraction, product = ptychodus_inputs_from_scan(
        scan, photon_energy_eV=8000.0, detector_distance_m=2.0, detector_pixel_m=DETECTOR_PIXEL_M
    )
    wavelength_m = product.metadata.photon_wavelength_m
    expected_pixel = wavelength_m * 2.0 / (scan.pattern_size * DETECTOR_PIXEL_M)
    assert product.object_.get_pixel_geometry().width_m == pytest.approx(expected_pixel, rel=1e-12)
    parameters = prepare_reconstruct_input(diffraction, product)
    converted = scan_from_reconstruct_input(parameters, with_truth_patches=True)
    np.testing.assert_array_equal(converted.diffraction, scan.diffraction)
    np.testing.assert_allclose(converted.positions_px, scan.positions_px, atol=1e-9)
    np.testing.assert_array_equal(converted.probe, scan.probe)
    np.testing.assert_array_equal(converted.object, scan.object)
    np.testing.assert_allclose(converted.patches, scan.patches, atol=1e-5)
    assert converted.meta[META_MEAN_COUNTS] == pytest.approx(mean_counts(scan))


def test_object_and_probe_pixel_sizes_must_agree(scan):
    diffraction, product = ptychodus_inputs_from_scan(
        scan, photon_energy_eV=8000.0, detector_distance_m=2.0, detector_pixel_m=DETECTOR_PIXEL_M
    )
    pixel = product.probes.get_pixel_geometry()
    probes = ProbeSequence(product.probes.get_array(), None, PixelGeometry(pixel.width_m * 2, pixel.height_m * 2))
    mismatched = dataclasses.replace(product, probes=probes)
    with pytest.raises(ValueError, match="object and probe pixel sizes differ"):
        scan_from_reconstruct_input(ReconstructInput(diffraction.get_patterns(), diffraction.get_bad_pixels(),
                                                     mismatched))


# -- settings -------------------------------------------------------------------------------


def test_settings_file_values_reach_the_config(tmp_path):
    registry = SettingsRegistry()
    settings = PINNSettings(registry, "PINN-test")
    path = tmp_path / "settings.ini"
    path.write_text(
        "[PINN-test]\nEpochs = 7\nBatchSize = 4\nLearningRate = 5e-4\nGridSize = 2\nNumFiltersScale = 1\n"
        "NumPhotons = 0\nSeed = 3\nDevice = cpu\nChunkSize = 64\nPhaseSync = false\n"
        "RefineIterations = 4\nRefineBatchSize = 8\nRefineStepSize = 0.05\nRefineProbe = true\n"
        "RefineProbeDelay = 1\nRefineProbeStepSize = 0.002\n"
        "Overrides = training.mae_weight=0.25; model.probe_trainable=true; refine.loss=poisson\n",
        encoding="utf-8",
    )
    registry.open_settings(path)
    config = settings.config("supervised", measured_nphotons=1234.5)
    assert (config.training.epochs, config.training.batch_size, config.training.learning_rate) == (7, 4, 5e-4)
    assert (config.model.gridsize, config.model.n_filters_scale) == (2, 1)
    assert config.data.nphotons == 1234.5, "NumPhotons = 0 uses the measured photons"
    assert (config.training.seed, config.execution.device, config.inference.chunk_size) == (3, "cpu", 64)
    assert config.inference.phase_sync is False
    assert config.training.mode == "supervised"
    assert config.training.mae_weight == 0.25 and config.model.probe_trainable is True
    refine = config.refine
    assert (refine.iterations, refine.batch_size, refine.step_size) == (4, 8, 0.05)
    assert (refine.probe, refine.probe_delay, refine.probe_step_size, refine.loss) == (True, 1, 0.002, "poisson")
    settings.nphotons.set_value(1e6)
    assert settings.config("pinn", measured_nphotons=1234.5).data.nphotons == 1e6
    with pytest.raises(ValueError, match="Group .* already exists"):
        PINNSettings(registry, "PINN-test")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("Epochs", 0, "training.epochs"), ("Device", "tpu", "execution.device"),
     ("Overrides", "training.nope=1", "unknown config key 'training.nope'"),
     ("Overrides", "training.epochs", "expected section.key=value")],
)
def test_bad_settings_name_the_field(key, value, message):
    settings = PINNSettings(SettingsRegistry(), "PINN-test")
    settings._group.parameters()[key].set_value(value)
    with pytest.raises(ValueError, match=message):
        settings.config("pinn", measured_nphotons=1e6)


def test_every_configuration_field_is_a_key_or_an_override():
    """A field added to the configuration needs a decision: its own key (and panel row) or Overrides."""
    fields = [f"{section}.{name}" for section, model in Config.model_fields.items()
              for name in model.annotation.model_fields]
    keyed = list(SETTINGS_KEYS.values())
    assert sorted(keyed + list(NOT_SETTINGS) + list(OVERRIDES_FIELDS)) == sorted(fields), (
        "fields without a decision: " + ", ".join(sorted(set(fields) - set(keyed) - set(NOT_SETTINGS)
                                                         - set(OVERRIDES_FIELDS))))
    for name in OVERRIDES_FIELDS:  # each can be set through Overrides
        section, _, key = name.partition(".")
        value = Config().to_dict()[section][key]
        settings = PINNSettings(SettingsRegistry(), "PINN-test")
        settings.overrides.set_value(f"{name}={'none' if value is None else value}")
        assert settings.config("pinn", measured_nphotons=1e6).to_dict()[section][key] == value
    defaults = PINNSettings(SettingsRegistry(), "PINN-test").config("supervised", measured_nphotons=1e6).to_dict()
    for setting in SETTINGS:  # the keys' defaults are the configuration's (NumPhotons: measured)
        section, _, key = setting.field.partition(".")
        expected = 1e6 if setting.key == "NumPhotons" else Config().to_dict()[section][key]
        assert defaults[section][key] == expected, setting.key


def test_refine_settings_default_to_the_config_defaults():
    settings = PINNSettings(SettingsRegistry(), "PINN-test")
    assert settings.config("pinn", measured_nphotons=1e6).refine == Config().refine


def test_a_bad_refine_setting_names_the_key():
    settings = PINNSettings(SettingsRegistry(), "PINN-test")
    settings.refine_iterations.set_value(-1)
    with pytest.raises(ValueError) as error:
        settings.config("pinn", measured_nphotons=1e6)
    message = str(error.value)
    assert "RefineIterations = -1" in message and "refine.iterations" in message
    assert "Epochs" not in message, "one key named, not the whole table"


def test_measured_photons_need_data():
    settings = PINNSettings(SettingsRegistry(), "PINN-test")
    with pytest.raises(ValueError, match="NumPhotons = 0"):
        settings.config("pinn", measured_nphotons=None)


# -- the reconstructor without Ptychodus' core ------------------------------------------------


@pytest.fixture
def fake_reconstructor(fake_on_path):
    library = next(lib for lib in build_libraries(SettingsRegistry()) if lib.backend.name == FAKE_BACKEND)
    library.settings.epochs.set_value(4)
    return next(iter(library))


def test_train_yields_every_epoch_and_writes_the_model(fake_reconstructor, scan, tmp_path):
    from ptychopinn_core.data import write_scan

    write_scan(tmp_path / TRAINING_DATA_FILE, scan)
    outputs = list(fake_reconstructor.train(tmp_path, tmp_path / "out"))
    assert [output.progress for output in outputs] == [1, 2, 3, 4]
    assert fake_reconstructor.get_progress_goal() == 4
    assert [len(output.training_loss) for output in outputs] == [1, 2, 3, 4]
    assert all(np.isfinite(loss.value) for loss in outputs[-1].training_loss)
    bundle = read_bundle(tmp_path / "out" / "model.zip")
    assert fake_reconstructor.is_model_loaded()
    assert [record.train_loss for record in bundle.history.epochs] == [loss.value for loss in outputs[-1].training_loss]
    assert bundle.config.data.nphotons == pytest.approx(mean_counts(scan)), "NumPhotons = 0: measured"


def test_stopping_training_ends_the_worker(fake_reconstructor, scan, tmp_path):
    from ptychopinn_core.data import write_scan

    fake_reconstructor._settings.epochs.set_value(50)
    write_scan(tmp_path / TRAINING_DATA_FILE, scan)
    before = {thread.name for thread in threading.enumerate()}
    outputs = fake_reconstructor.train(tmp_path, tmp_path / "out")
    first = next(outputs)
    assert first.progress == 1
    outputs.close()  # what Ptychodus does when the task is stopped
    assert {thread.name for thread in threading.enumerate()} <= before
    assert not (tmp_path / "out" / "model.zip").exists()
    assert not fake_reconstructor.is_model_loaded()


def test_model_files(fake_reconstructor, tmp_path):
    with pytest.raises(RuntimeError, match="no model to save"):
        fake_reconstructor.save_model(tmp_path / "none.zip")
    (tmp_path / "foreign.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    with pytest.raises(BundleError):
        fake_reconstructor.load_model_from_file(tmp_path / "foreign.zip")
    assert fake_reconstructor.get_model_file_extension() == ".zip"
    assert "*.zip" in fake_reconstructor.get_model_file_filter()


def test_training_path_without_data_is_a_clear_error(fake_reconstructor, tmp_path):
    with pytest.raises(FileNotFoundError, match="train_data.npz or diffraction.h5"):
        next(fake_reconstructor.train(tmp_path, tmp_path))


# -- batch mode: the plain `ptychodus` command ------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_train_writes_a_model_with_the_settings(backend, trained, scan, workdir, env):
    if not trains(backend):
        # Its library offers PINN (to run models) and refuses to train, saying what to do.
        key = key_of(backend, "PINN", env)
        inputs = write_input_directory(workdir / f"train-{backend}", scan, algorithm=key)
        out = workdir / f"model-{backend}"
        result = run(ptychodus_command() + ["-b", "train", "-i", str(inputs), "-o", str(out)], env)
        assert result.returncode == 1
        assert f"{key}: backend {backend!r} runs trained models only" in result.stdout + result.stderr
        assert not (out / "model.zip").exists()
        return
    result, model_path, key = trained(backend)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"{key}: training on {N_POSITIONS} patterns" in result.stdout, "our reconstructor did not run"
    bundle = read_bundle(model_path)
    assert bundle.manifest["backend"] == backend
    assert bundle.config.training.epochs == TRAIN_SETTINGS["Epochs"]
    assert bundle.config.training.learning_rate == TRAIN_SETTINGS["LearningRate"]
    assert bundle.config.model.n_filters_scale == TRAIN_SETTINGS["NumFiltersScale"]
    assert bundle.config.model.pattern_size == scan.pattern_size
    assert bundle.config.data.nphotons == pytest.approx(mean_counts(scan)), "NumPhotons = 0: measured"
    assert 1 <= bundle.history.n_epochs <= TRAIN_SETTINGS["Epochs"]


def _reconstruct_inputs(workdir: Path, name: str, scan, key: str, model: Path | None, settings=None) -> Path:
    inputs = write_input_directory(workdir / name, scan, algorithm=key, settings=settings)
    if model is not None:
        shutil.copy(model, inputs / "model.zip")
    return inputs


def assert_product_on_input_grid(product: Product, input_product: Product) -> None:
    obj, reference = product.object_, input_product.object_
    assert obj.get_array().shape == reference.get_array().shape
    assert obj.get_pixel_geometry() == reference.get_pixel_geometry()
    assert obj.get_center() == reference.get_center()
    assert np.all(np.isfinite(obj.get_array()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_reconstruct_writes_the_reconstruction(backend, trained, scan, workdir, env):
    _, model_path, key = trained(backend)
    refine = {"RefineIterations": 2}  # the settings file reaches the refinement (fewer than the default 20)
    inputs = _reconstruct_inputs(workdir, f"recon-{backend}", scan, key, model_path,
                                 settings={library_of(backend, env): refine})
    out = workdir / f"recon-out-{backend}"
    result = run(ptychodus_command() + ["-b", "reconstruct", "-i", str(inputs), "-o", str(out)], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    files = output_products(out)
    assert [path.name for path in files] == [f"product.{N_POSITIONS:06d}.h5"]
    product = load_product(files[0])
    assert reconstructed_by(product.metadata.comments) == [key]
    assert "refined: 2 iterations of the object" in product.metadata.comments
    assert "refinement iteration 2/2" in result.stdout + result.stderr
    assert_product_on_input_grid(product, load_product(inputs / "product.h5"))
    bundle = read_bundle(model_path)
    assert [loss.value for loss in product.losses] == [record.train_loss for record in bundle.history.epochs]
    covered = np.abs(product.object_.get_array()[0]) > 0
    assert covered.mean() > 0.3, "the stitched object covers the scanned region"


def test_batch_reconstruct_without_model_fails_clearly(scan, workdir, env):
    """The ``ptychodus`` command exits 1 with our message (once, with the fake backend)."""
    key = key_of(FAKE_BACKEND, "PINN", env)
    inputs = _reconstruct_inputs(workdir, "nomodel", scan, key, None)
    out = workdir / "nomodel-out"
    result = run(ptychodus_command() + ["-b", "reconstruct", "-i", str(inputs), "-o", str(out)], env)
    assert result.returncode == 1
    assert f"Reconstruction failed: RuntimeError: {key}: no model is loaded" in result.stdout
    assert not output_products(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_mode_without_model_fails_for_every_backend(backend, scan, tmp_path, fake_on_path, env, caplog):
    """Every backend, through ``ModelCore.batch_mode_execute`` (what ``ptychodus -b`` returns)."""
    from ptychodus.model import ModelCore

    key = key_of(backend, "PINN", env)
    inputs = _reconstruct_inputs(tmp_path, "in", scan, key, None)
    caplog.set_level(logging.ERROR)
    with ModelCore(log_level=logging.WARNING) as model:
        code = model.batch_mode_execute("reconstruct", inputs, tmp_path / "out")
        assert model.processing_core.algorithm_parameter.get_value() == key
    assert code == 1
    assert f"{key}: no model is loaded; train one" in caplog.text
    assert not output_products(tmp_path / "out")


def test_a_typo_in_the_key_is_caught(trained, scan, tmp_path, fake_on_path, env):
    """Ptychodus ignores an unknown key (exit code 0, nothing runs); checking what ran catches it.

    Through ``ModelCore.batch_mode_execute``, the function whose result ``ptychodus -b``
    exits with.
    """
    from ptychodus.model import ModelCore

    _, model_path, key = trained(FAKE_BACKEND)
    typo = key.replace("numpyfake", "numpyfak")
    inputs = _reconstruct_inputs(tmp_path, "in", scan, typo, model_path)
    out = tmp_path / "out"
    with ModelCore(log_level=logging.WARNING) as model:
        code = model.batch_mode_execute("reconstruct", inputs, out)
        selected = model.processing_core.algorithm_parameter.get_value()
    assert code == 0, "Ptychodus 1.7 silently ignores an unknown Algorithm"
    assert selected != key
    ran = [reconstructed_by(load_product(path).metadata.comments) for path in output_products(out)]
    assert ran == [], "a typo must not look like a successful run of our reconstructor"


def test_launcher_runs_ptychodus_with_the_hook_alone(trained, scan, workdir, env):
    """``ptychopinn-ptychodus`` works where the hook module is not installed (hidden here)."""
    _, model_path, key = trained(FAKE_BACKEND)
    inputs = _reconstruct_inputs(workdir, "launcher", scan, key, model_path)
    out = workdir / "launcher-out"
    code = (
        f"import sys; sys.modules[{HOOK_MODULE!r}] = None; "
        "from ptychopinn_core.ptychodus.launcher import main; sys.exit(main())"
    )
    result = run([sys.executable, "-c", code, "-b", "reconstruct", "-i", str(inputs), "-o", str(out)], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert [reconstructed_by(load_product(p).metadata.comments) for p in output_products(out)] == [[key]]


def reconstruct_in_process(directory: Path, key: str, library: str, model_path: Path, diffraction, product,
                           settings: dict[str, object]) -> Product:
    """``reconstruct_local(..., block=True)`` in Ptychodus' ``ModelCore`` with ``settings`` in the library's group."""
    from ptychodus.model import ModelCore

    with ModelCore(log_level=logging.WARNING) as model:
        assert key in list(model.workflow_api.available_reconstructors())
        group = model.settings_registry[library]
        for name, value in settings.items():
            group.parameters()[name].set_value(value)
        dataset = model.workflow_api.load_assembled_diffraction_data(directory / "diffraction.h5")
        handle = model.workflow_api.register_product(product, diffraction=dataset)
        model.processing_core.processing_api.load_model_from_file(model_path, algorithm=key)
        output = handle.reconstruct_local(algorithm=key, output_product_file=directory / "product.h5", block=True)
        assert model.processing_core.algorithm_parameter.get_value() == key, "the selected key is ours"
        return output.get_product()


# -- in-process: ModelCore ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_reconstruct_local_in_process(backend, trained, scan, tmp_path, fake_on_path, env):
    from ptychopinn_core import workflow

    _, model_path, key = trained(backend)
    bundle = read_bundle(model_path)
    diffraction, product = ptychodus_inputs_from_scan(
        scan, photon_energy_eV=8000.0, detector_distance_m=2.0, detector_pixel_m=DETECTOR_PIXEL_M, name="sim"
    )
    from ptychodus.api.io import save_diffraction_data

    save_diffraction_data(tmp_path / "diffraction.h5", diffraction)
    result = reconstruct_in_process(tmp_path, key, library_of(backend, env), model_path, diffraction, product,
                                    {"RefineIterations": 0})
    assert reconstructed_by(result.metadata.comments) == [key]
    assert "refined" not in result.metadata.comments, "RefineIterations = 0: the network's object"
    assert_product_on_input_grid(result, product)
    assert output_products(tmp_path) == [tmp_path / f"product.{N_POSITIONS:06d}.h5"]
    np.testing.assert_array_equal(result.probes.get_array(), product.probes.get_array())

    backend_handle = BackendRegistry.discover().get(backend)
    direct = workflow.reconstruct(bundle, scan, backend_handle)
    recon = result.object_.get_array()[0]
    np.testing.assert_allclose(recon, direct.object, rtol=1e-4, atol=1e-5 * np.abs(direct.object).max())

    window = default_crop_size(scan.pattern_size)
    metrics = evaluate(recon, scan.object, scan.positions_px, window_px=window)
    for part in ("amplitude", "phase"):
        assert all(np.isfinite(metrics[part][name]) for name in ("ssim", "mae", "frc50"))
    if trainer_for(backend) == FAKE_BACKEND:
        return  # the fake predicts a constant patch: no image quality to claim
    # PhaseSync is the run's, not the model's: off, the product is the plain average.
    (tmp_path / "plain").mkdir()
    save_diffraction_data(tmp_path / "plain" / "diffraction.h5", diffraction)
    plain_result = reconstruct_in_process(tmp_path / "plain", key, library_of(backend, env), model_path, diffraction,
                                          product, {"RefineIterations": 0, "PhaseSync": False})
    plain_bundle = dataclasses.replace(bundle, config=bundle.config.with_overrides({"inference.phase_sync": False}))
    plain = workflow.reconstruct(plain_bundle, scan, backend_handle).object
    np.testing.assert_allclose(plain_result.object_.get_array()[0], plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())
    assert np.max(np.abs(plain - direct.object)) > 1e-3 * np.abs(plain).max()
    untrained = dataclasses.replace(bundle, weights=initial_weights(parameter_specs(bundle.config.model), 0))
    baseline = evaluate(workflow.reconstruct(untrained, scan, backend_handle).object, scan.object,
                        scan.positions_px, window_px=window)
    assert metrics["amplitude"]["ssim"] > baseline["amplitude"]["ssim"] + MIN_SSIM_GAIN, (metrics, baseline)
    assert metrics["amplitude"]["mae"] < baseline["amplitude"]["mae"]


# -- refinement -------------------------------------------------------------------------------

#: Refinement in the tests: a few iterations (the default is 20), object step as configured.
REFINE_ITERATIONS = 3


def amplitude_misfit(scan, obj: np.ndarray, probe: np.ndarray) -> float:
    """Mean squared amplitude error of ``obj`` under ``probe`` (normalised like the model's) over every position.

    The core's numpy forward model (``refine.reference.loss_and_gradients``, amplitude
    loss), on the scan's own object frame and patterns.
    """
    config = Config().with_overrides({"data.nphotons": mean_counts(scan), "refine.loss": "amplitude"})
    problem = RefineProblem.for_scan(scan, ObjectFrame.for_object(scan.object.shape), config)
    loss, _, _ = loss_and_gradients(obj.astype(np.complex128), probe.astype(np.complex128), problem,
                                    np.arange(scan.n_positions))
    return loss


def _refined_product(backend: str, trained, scan, directory: Path, env, settings: dict[str, object]):
    """The network-only product and the refined one of the same model and scan, in-process."""
    from ptychodus.api.io import save_diffraction_data

    _, model_path, key = trained(backend)
    diffraction, product = ptychodus_inputs_from_scan(
        scan, photon_energy_eV=8000.0, detector_distance_m=2.0, detector_pixel_m=DETECTOR_PIXEL_M, name="sim"
    )
    library = library_of(backend, env)
    results = []
    for name, values in (("network", {"RefineIterations": 0}), ("refined", settings)):
        (directory / name).mkdir()
        save_diffraction_data(directory / name / "diffraction.h5", diffraction)
        results.append(reconstruct_in_process(directory / name, key, library, model_path, diffraction, product,
                                              values))
    return product, results[0], results[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_refinement_lowers_the_misfit_of_the_object(backend, trained, scan, tmp_path, fake_on_path, env):
    product, network, refined = _refined_product(backend, trained, scan, tmp_path, env,
                                                 {"RefineIterations": REFINE_ITERATIONS})
    assert_product_on_input_grid(refined, product)
    start, result = network.object_.get_array()[0], refined.object_.get_array()[0]
    assert not np.allclose(result, start), "refinement changed the object"
    probe = normalise_probe(scan.probe)
    before, after = amplitude_misfit(scan, start, probe), amplitude_misfit(scan, result, probe)
    assert after < before, (before, after)
    np.testing.assert_array_equal(refined.probes.get_array(), product.probes.get_array())  # not refined
    assert f"refined: {REFINE_ITERATIONS} iterations of the object, amplitude loss" in refined.metadata.comments
    assert [loss.value for loss in refined.losses] == [loss.value for loss in network.losses]


@pytest.mark.parametrize("backend", BACKENDS)
def test_refinement_with_the_probe_puts_the_refined_probe_in_the_product(backend, trained, scan, tmp_path,
                                                                         fake_on_path, env):
    settings = {"RefineIterations": REFINE_ITERATIONS, "RefineProbe": True, "RefineProbeDelay": 0}
    product, network, refined = _refined_product(backend, trained, scan, tmp_path, env, settings)
    assert_product_on_input_grid(refined, product)
    given, probes = product.probes.get_array(), refined.probes.get_array()
    assert probes.shape == given.shape and probes.dtype == given.dtype
    assert np.all(np.isfinite(probes))
    assert not np.allclose(probes[0, 0], given[0, 0]), "the product holds the refined probe"
    # The product's probe has the input probe's scale: k * P is what the refinement fitted.
    k = scan.pattern_size / np.sqrt(np.sum(np.abs(scan.probe.astype(np.complex128)) ** 2))
    start = network.object_.get_array()[0]
    before = amplitude_misfit(scan, start, normalise_probe(scan.probe))
    after = amplitude_misfit(scan, refined.object_.get_array()[0], k * probes[0, 0])
    assert after < before, (before, after)
    assert "iterations of the object and probe" in refined.metadata.comments


def test_a_bad_refine_setting_fails_the_batch_run_with_the_key_named(trained, scan, tmp_path, fake_on_path, env,
                                                                    caplog):
    """``RefineIterations = -1`` in the settings file: exit code 1, the key and field named, no product."""
    from ptychodus.model import ModelCore

    _, model_path, key = trained(FAKE_BACKEND)
    inputs = write_input_directory(tmp_path / "in", scan, algorithm=key,
                                   settings={library_of(FAKE_BACKEND, env): {"RefineIterations": -1}})
    shutil.copy(model_path, inputs / "model.zip")
    caplog.set_level(logging.ERROR)
    with ModelCore(log_level=logging.WARNING) as model:
        code = model.batch_mode_execute("reconstruct", inputs, tmp_path / "out")
        assert model.processing_core.algorithm_parameter.get_value() == key
    assert code == 1
    assert "RefineIterations = -1" in caplog.text and "refine.iterations" in caplog.text
    assert not output_products(tmp_path / "out")


# -- training-data export ---------------------------------------------------------------------


def _export(tmp_path: Path, scan, key: str) -> Path:
    from ptychodus.api.io import save_diffraction_data
    from ptychodus.model import ModelCore

    diffraction, product = ptychodus_inputs_from_scan(
        scan, photon_energy_eV=8000.0, detector_distance_m=2.0, detector_pixel_m=DETECTOR_PIXEL_M
    )
    save_diffraction_data(tmp_path / "diffraction.h5", diffraction)
    path = tmp_path / f"{key}.npz"
    with ModelCore(log_level=logging.WARNING) as model:
        dataset = model.workflow_api.load_assembled_diffraction_data(tmp_path / "diffraction.h5")
        handle = model.workflow_api.register_product(product, diffraction=dataset)
        handle.export_training_data(path, algorithm=key)
        assert model.processing_core.algorithm_parameter.get_value() == key
    return path


def _ptychopinn_train(data: Path, backend: str, mode: str, out: Path) -> None:
    """``ptychopinn train`` through its console-script function (in-process: no new imports)."""
    from ptychopinn_core.cli.main import main

    code = main(["--quiet", "train", "--backend", backend, "--train", str(data), "--out", str(out),
                 "--mode", mode, "--epochs", "1", "--n-filters-scale", "1"])
    assert code == 0
    assert read_bundle(out).manifest["mode"] == mode


def test_exported_training_data_is_accepted_by_ptychopinn_train(scan, tmp_path, fake_on_path, env):
    key = key_of(FAKE_BACKEND, "PINN", env)
    path = _export(tmp_path, scan, key)
    exported = read_scan(path)
    np.testing.assert_array_equal(exported.diffraction, scan.diffraction)
    np.testing.assert_allclose(exported.positions_px, scan.positions_px, atol=1e-9)
    np.testing.assert_array_equal(exported.object, scan.object)
    assert exported.patches is None, "PINN export does not claim a ground truth"
    assert exported.meta["source"] == "ptychodus"
    _ptychopinn_train(path, FAKE_BACKEND, "pinn", tmp_path / "model.zip")


def test_supervised_export_carries_the_truth_and_trains(scan, tmp_path, fake_on_path, env):
    registry = BackendRegistry.discover()
    supervised = [name for name in installed_backend_names() if trains(name)
                  and "supervised" in registry.get(name).info.capabilities.modes]
    if not supervised:
        pytest.skip("no installed backend supports supervised training")
    backend = supervised[0]
    path = _export(tmp_path, scan, key_of(backend, "Supervised", env))
    exported = read_scan(path)
    np.testing.assert_allclose(exported.patches, scan.patches, atol=1e-5)
    _ptychopinn_train(path, backend, "supervised", tmp_path / "model.zip")
