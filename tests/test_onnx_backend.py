"""The ONNX Runtime backend ``onnx``: its model, its ``.onnx`` file and the conformance kit.

- The exported graph is valid ONNX (``onnx.checker`` with ``full_check``), holds every
  canonical parameter under its name, and runs in a plain ONNX Runtime session.
- ``write_model``/``read_model`` give the bundle back bit for bit, and refuse a file
  edited since (digest), a foreign ONNX model, a truncated file, bad metadata: one
  ``BundleError`` each, naming the part.
- The conformance kit (training checks skip through ``capabilities.training``).
- Forward (patches and amplitude) from the same weights equals the PyTorch and
  TensorFlow backends' to ``TOLERANCES["forward:32"]`` (a framework that is not installed
  is skipped).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from test_network import random_weights  # noqa: E402

from ptychopinn_core.backends import BackendRegistry  # noqa: E402
from ptychopinn_core.config import Config  # noqa: E402
from ptychopinn_core.model.bundle import BundleError, ModelBundle, bundle_digest, make_manifest  # noqa: E402
from ptychopinn_core.model.formats import read_model as read_any_model  # noqa: E402
from ptychopinn_core.model.parameters import parameter_specs  # noqa: E402
from ptychopinn_core.model.state import EpochRecord, History, ModelState  # noqa: E402
from ptychopinn_core.parity.tolerances import TOLERANCES, relative_error  # noqa: E402
from ptychopinn_core.physics import far_field, illuminate  # noqa: E402
from ptychopinn_core.physics.probe_model import circular_probe_mask, normalise_probe  # noqa: E402
from ptychopinn_core.simulation.probe import default_probe  # noqa: E402
from ptychopinn_core.testing import bitwise_equal  # noqa: E402
from ptychopinn_onnx import model as onnx_model  # noqa: E402
from ptychopinn_onnx.export import (  # noqa: E402
    FORMAT,
    METADATA_KEYS,
    OUTPUTS,
    build_model_proto,
    read_model,
    write_model,
)
from ptychopinn_onnx.model import OnnxModel  # noqa: E402


@pytest.fixture(scope="module")
def registry() -> BackendRegistry:
    return BackendRegistry.discover()


def make_config(**model) -> Config:
    return Config.from_dict({"model": model, "execution": {"device": "cpu"}})


def make_state(config: Config, masked: bool = False) -> ModelState:
    """The default probe, normalised; ``masked=False`` keeps its energy outside the mask, so
    that a model which masks the probe visibly differs from one that does not."""
    size = config.model.pattern_size
    probe = default_probe(size) * (circular_probe_mask(size) if masked else 1)
    return ModelState(probe=normalise_probe(probe).astype(np.complex64), intensity_scale=3.5,
                      amplitude_normalisation=0.75, probe_mask=config.model.probe_mask)


def make_inputs(config: Config, groups: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    size, channels = config.model.pattern_size, config.model.group_size
    diffraction = rng.uniform(0, 2, size=(groups, channels, size, size)).astype(np.float32)
    offsets = rng.uniform(-4, 4, size=(groups, channels, 2)).astype(np.float32)
    return diffraction, offsets


#: A gridsize-2 model with every optional part: trainable scale, trainable masked probe.
RICH_MODEL = {"pattern_size": 16, "gridsize": 2, "intensity_scale_trainable": True, "probe_trainable": True,
              "probe_mask": True}


@pytest.fixture
def bundle() -> ModelBundle:
    config = make_config(**RICH_MODEL)
    weights = random_weights(config.model, seed=7)
    weights["encoder.0.conv0.bias"][0] = -0.0  # the sign of zero survives too
    weights["log_intensity_scale"] = np.array(0.25, dtype=np.float32)
    history = History((EpochRecord(0, 12.5, 13.0, 1e-3, 1.5), EpochRecord(1, float("nan"), None, 5e-4, 1.25)))
    manifest = make_manifest("pinn", "pytorch", "torch", "2.13.0")
    return ModelBundle(manifest=manifest, config=config, weights=weights, state=make_state(config), history=history)


# -- the graph ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [RICH_MODEL,
     {"pattern_size": 64, "gridsize": 1, "architecture": "unet", "amp_activation": "swish"},
     {"pattern_size": 32, "gridsize": 2, "group_network": "joint", "overlap_weights": "window",
      "amp_activation": "softplus"},
     {"pattern_size": 32, "gridsize": 2, "group_network": "joint", "architecture": "space_to_depth"}],
    ids=["gridsize2-masked", "unet", "joint-window", "joint-space-to-depth"],
)
def test_the_graph_is_valid_onnx_with_canonical_initializers(model) -> None:
    config = make_config(**model)
    weights = random_weights(config.model, seed=1)
    state = make_state(config)
    proto = build_model_proto(config, state, weights)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == 8 and [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert [value.name for value in proto.graph.input] == ["diffraction", "offsets_xy"]
    assert [value.name for value in proto.graph.output] == list(OUTPUTS)
    for value in (*proto.graph.input, *proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    initializers = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in proto.graph.initializer}
    for spec in parameter_specs(config.model):
        stored = initializers[spec.name]
        expected = weights[spec.name].transpose(3, 2, 0, 1) if spec.kind == "conv_kernel" else weights[spec.name]
        assert bitwise_equal(stored, expected), spec.name  # OIHW kernels
    assert bitwise_equal(initializers["probe_real"], state.probe.real)
    assert bitwise_equal(initializers["probe_imag"], state.probe.imag)
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert metadata["ptychopinn.format"] == FORMAT and metadata["ptychopinn.format_version"] == "1"
    assert Config.from_dict(json.loads(metadata["ptychopinn.config"])) == config
    assert proto.producer_name == "ptychopinn-onnx"


def test_a_written_file_runs_alone_in_onnxruntime(bundle: ModelBundle, tmp_path) -> None:
    """Export needs no framework and the file needs nothing but a runtime: its amplitude
    is the numpy forward model of its own patches, with the masked probe."""
    path = write_model(tmp_path / "model.onnx", bundle)
    diffraction, offsets = make_inputs(bundle.config)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    real, imag, amplitude = session.run(None, {"diffraction": diffraction, "offsets_xy": offsets})
    patches = real.astype(np.float64) + 1j * imag
    probe = bundle.state.probe * circular_probe_mask(16)  # trainable and masked: the mask applies
    expected = np.abs(far_field(illuminate(patches, probe.astype(np.complex128))))
    assert relative_error(amplitude, expected) <= TOLERANCES["forward_amplitude"].relative
    assert relative_error(patches, OnnxModel(bundle.config, bundle.state, bundle.weights).predict(
        diffraction, offsets)) <= TOLERANCES["prediction_repeat"].relative


# -- the file -------------------------------------------------------------------------------------


def test_write_read_round_trip_is_exact(bundle: ModelBundle, tmp_path) -> None:
    path = write_model(tmp_path / "model.onnx", bundle)
    loaded = read_model(path)
    assert list(loaded.weights) == list(bundle.weights)
    for name, value in bundle.weights.items():
        assert bitwise_equal(loaded.weights[name], value), name
    assert bitwise_equal(loaded.state.probe, bundle.state.probe)
    assert loaded.config == bundle.config
    assert loaded.state.to_json() == bundle.state.to_json()
    assert loaded.manifest == bundle.manifest  # backend and framework stay the trainer's
    assert json.dumps(loaded.history.to_json()) == json.dumps(bundle.history.to_json())  # NaN included
    assert bundle_digest(loaded) == bundle_digest(bundle)
    # The same bundle always gives the same bytes, and the core reads the file by its suffix.
    again = write_model(tmp_path / "again.onnx", bundle)
    assert again.read_bytes() == path.read_bytes()
    assert bundle_digest(read_any_model(path)) == bundle_digest(bundle)


def _edit(path, edit) -> None:
    proto = onnx.load(str(path))
    edit(proto)
    onnx.save(proto, str(path))


def test_a_tampered_weight_is_refused_by_the_digest(bundle: ModelBundle, tmp_path) -> None:
    path = write_model(tmp_path / "model.onnx", bundle)

    def nudge(proto) -> None:
        tensor = next(t for t in proto.graph.initializer if t.name == "head_phase.bias")
        value = onnx.numpy_helper.to_array(tensor) + np.float32(1e-3)
        tensor.CopyFrom(onnx.numpy_helper.from_array(value, tensor.name))

    _edit(path, nudge)
    with pytest.raises(BundleError, match="digest mismatch") as error:
        read_model(path)
    assert error.value.member == "metadata 'ptychopinn.bundle_sha256'"
    assert str(error.value).startswith(str(path))


def test_a_foreign_onnx_model_is_refused(tmp_path) -> None:
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "other", [value("x", onnx.TensorProto.FLOAT, [1])],
                                   [value("y", onnx.TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save(onnx.helper.make_model(graph, producer_name="someone"), str(path))
    with pytest.raises(BundleError, match="not a PtychoPINN ONNX model") as error:
        read_model(path)
    assert error.value.member is None and "someone" in str(error.value)


def test_a_truncated_empty_or_missing_file_is_refused(bundle: ModelBundle, tmp_path) -> None:
    path = write_model(tmp_path / "model.onnx", bundle)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 40, 7):
        path.write_bytes(data[:cut])
        with pytest.raises(BundleError) as error:
            read_model(path)
        assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    path.write_bytes(b"")
    with pytest.raises(BundleError, match="empty file"):
        read_model(path)
    with pytest.raises(BundleError, match="file not found"):
        read_model(tmp_path / "absent.onnx")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("config", "{", "invalid JSON"),
     ("state", "[]", "expected an object"),
     ("history", None, "missing metadata key"),
     ("format_version", "2", "newer than this ptychopinn-onnx"),
     ("manifest", json.dumps({"format": "ptychopinn-bundle", "format_version": 1}), "missing manifest field 'mode'")],
)
def test_bad_metadata_is_one_error_naming_the_key(bundle: ModelBundle, tmp_path, key, value, message) -> None:
    path = write_model(tmp_path / "model.onnx", bundle)

    def edit(proto) -> None:
        kept = [(p.key, p.value) for p in proto.metadata_props if p.key != f"ptychopinn.{key}"]
        if value is not None:
            kept.append((f"ptychopinn.{key}", value))
        onnx.helper.set_model_props(proto, dict(kept))

    _edit(path, edit)
    with pytest.raises(BundleError, match=message) as error:
        read_model(path)
    assert error.value.member == f"metadata 'ptychopinn.{key}'"


def test_a_missing_initializer_is_named(bundle: ModelBundle, tmp_path) -> None:
    path = write_model(tmp_path / "model.onnx", bundle)

    def drop(proto) -> None:
        kept = [t for t in proto.graph.initializer if t.name != "probe_imag"]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)

    _edit(path, drop)
    with pytest.raises(BundleError, match="missing initializer") as error:
        read_model(path)
    assert error.value.member == "initializer 'probe_imag'"


def test_metadata_keys_are_all_written(bundle: ModelBundle, tmp_path) -> None:
    proto = onnx.load(str(write_model(tmp_path / "model.onnx", bundle)))
    assert [prop.key for prop in proto.metadata_props] == list(METADATA_KEYS)


# -- the model ----------------------------------------------------------------------------------


def test_the_model_runs_trained_models_only(bundle: ModelBundle) -> None:
    model = OnnxModel(bundle.config, bundle.state, bundle.weights)
    with pytest.raises(NotImplementedError, match=r"ptychopinn train --backend tensorflow\|pytorch"):
        model.loss_and_gradients(*make_inputs(bundle.config))
    with pytest.raises(ValueError, match="float32 only"):
        OnnxModel(bundle.config.with_overrides({"execution.precision": "64"}), bundle.state, bundle.weights)
    # A model trained in bf16-mixed is a float32 model: ONNX Runtime runs it, the same numbers.
    mixed = OnnxModel(bundle.config.with_overrides({"execution.precision": "bf16-mixed"}), bundle.state,
                      bundle.weights)
    inputs = make_inputs(bundle.config)
    np.testing.assert_array_equal(mixed.predict(*inputs), model.predict(*inputs))


def test_empty_and_batched_predictions(bundle: ModelBundle, monkeypatch) -> None:
    model = OnnxModel(bundle.config, bundle.state, bundle.weights)
    diffraction, offsets = make_inputs(bundle.config, groups=7)
    empty = model.forward(diffraction[:0], offsets[:0])
    assert empty.patches.shape == (0, 4, 16, 16) and empty.patches.dtype == np.complex64
    assert empty.amplitude.shape == (0, 4, 16, 16) and empty.amplitude.dtype == np.float32
    whole = model.forward(diffraction, offsets)
    monkeypatch.setattr(onnx_model, "BATCH_PIXELS", 2 * 4 * 16 * 16)  # two groups a run
    assert onnx_model.batch_groups(16, 4) == 2
    batched = model.forward(diffraction, offsets)
    for got, want in zip(batched, whole):
        assert relative_error(got, want) <= TOLERANCES["prediction_repeat"].relative
    with pytest.raises(ValueError, match="invalid diffraction shape"):
        model.predict(diffraction[:, :1], offsets)


def test_predict_runs_each_distinct_pattern_once(bundle: ModelBundle, monkeypatch) -> None:
    """The shared network runs once per distinct pattern of the chunk (ptychopinn_core.model.distinct),
    the physics after it with the masked probe's merge weights, both in bounded runs, and the
    patches are the plain graph's; new weights and a new probe reach those graphs too."""
    model = OnnxModel(bundle.config, bundle.state, bundle.weights)
    diffraction, offsets = make_inputs(bundle.config, groups=7)
    diffraction[1:, 0] = diffraction[:-1, 1]  # neighbours repeat, as in an inference chunk
    counted = []
    distinct = onnx_model.distinct_patterns
    monkeypatch.setattr(onnx_model, "distinct_patterns",
                        lambda chunk: counted.append(chunk.shape[0]) or distinct(chunk))
    monkeypatch.setattr(onnx_model, "BATCH_PIXELS", 2 * 4 * 16 * 16)  # two groups a run
    probe = (bundle.state.probe * np.linspace(0.5, 1.5, 16, dtype=np.float32)).astype(np.complex64)
    changes = [lambda: None, lambda: model.set_weights(random_weights(bundle.config.model, seed=8)),
               lambda: setattr(model, "state", ModelState(probe=probe, intensity_scale=bundle.state.intensity_scale,
                                                          amplitude_normalisation=1.0, probe_mask=True))]
    for change in changes:
        change()
        counted.clear()
        predicted = model.predict(diffraction, offsets)
        assert counted == [7]  # the whole chunk's distinct patterns
        assert relative_error(predicted, model.forward(diffraction, offsets).patches) \
            <= TOLERANCES["prediction_repeat"].relative
    assert distinct(diffraction).patterns.shape[0] == 7 * 4 - 6


def test_a_new_state_replaces_the_probe(bundle: ModelBundle) -> None:
    model = OnnxModel(bundle.config, bundle.state, bundle.weights)
    diffraction, offsets = make_inputs(bundle.config)
    before = model.forward(diffraction, offsets).amplitude
    probe = (bundle.state.probe * np.exp(0.5j)).astype(np.complex64)  # same |P|: same merge weights
    model.state = ModelState(probe=2 * probe, intensity_scale=bundle.state.intensity_scale,
                             amplitude_normalisation=1.0, probe_mask=True)
    after = model.forward(diffraction, offsets).amplitude
    assert relative_error(after, 2 * before) <= 1e-6
    with pytest.raises(ValueError, match="intensity scale is fixed"):
        model.state = ModelState(probe=probe, intensity_scale=1.0, amplitude_normalisation=1.0, probe_mask=True)


def test_the_reported_probe_is_the_one_used(bundle: ModelBundle) -> None:
    """A trainable, masked probe is used and reported masked, as the training backends do."""
    model = OnnxModel(bundle.config, bundle.state, bundle.weights)
    assert np.any(bundle.state.probe * (1 - circular_probe_mask(16)))
    np.testing.assert_array_equal(model.state.probe, bundle.state.probe * circular_probe_mask(16, dtype=np.float32))


def test_training_is_refused(registry: BackendRegistry, bundle: ModelBundle) -> None:
    from ptychopinn_onnx import plugin

    with pytest.raises(ValueError, match="runs trained models only"):
        plugin.ptychopinn_train(None, None, bundle.config, None)
    backend = registry.get("onnx")
    assert backend.devices() == ["cpu"]
    assert not backend.info.capabilities.training


# The conformance kit runs on this backend in tests/test_conformance.py (every discovered backend).


# -- against the training backends ------------------------------------------------------------

CROSS_MODELS = {
    "gridsize2-masked-probe": {"pattern_size": 64, "gridsize": 2, "probe_trainable": True, "probe_mask": True},
    "gridsize1-unet": {"pattern_size": 64, "gridsize": 1, "architecture": "unet", "amp_activation": "swish"},
    # joint: the stem rearranges 4 channels, so its channel order is checked in numbers
    "gridsize2-joint-space-to-depth": {"pattern_size": 32, "gridsize": 2, "group_network": "joint",
                                       "architecture": "space_to_depth"},
}


@pytest.mark.parametrize("other", ["pytorch", "tensorflow"])
@pytest.mark.parametrize("case", sorted(CROSS_MODELS))
def test_forward_equals_the_training_backends(registry: BackendRegistry, case: str, other: str) -> None:
    entry = {entry.name: entry for entry in registry.entries()}.get(other)
    if entry is None or not entry.ok:
        pytest.skip(f"backend {other!r} not usable here: {entry.reason if entry else 'not installed'}")
    config = make_config(**CROSS_MODELS[case])
    weights = random_weights(config.model, seed=5)
    state = make_state(config)
    diffraction, offsets = make_inputs(config, groups=4, seed=1)
    ours = registry.get("onnx").build_model(config, state, weights).forward(diffraction, offsets)
    theirs = registry.get(other).build_model(config, state, weights).forward(diffraction, offsets)
    tolerance = TOLERANCES["forward:32"].relative
    for name in ("patches", "amplitude"):
        error = relative_error(getattr(ours, name), getattr(theirs, name))
        assert error <= tolerance, f"{case}: {name} differs from {other} by {error:.2e}"
    assert math.isfinite(float(np.abs(ours.patches).sum()))
