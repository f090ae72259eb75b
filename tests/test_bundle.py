"""The one-file model bundle: exact round trip, no pickle, clear errors, atomic writes."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from ptychopinn_core import __version__
from ptychopinn_core.config import Config
from ptychopinn_core.model.bundle import (
    BUNDLE_FORMAT,
    CONFIG_MEMBER,
    HISTORY_MEMBER,
    KEYS_ADDED_SINCE_FORMAT_1,
    MANIFEST_MEMBER,
    MEMBERS,
    STATE_ARRAYS_MEMBER,
    STATE_MEMBER,
    WEIGHTS_MEMBER,
    BundleError,
    ModelBundle,
    inspect_bundle,
    make_manifest,
    read_bundle,
    write_bundle,
)
from ptychopinn_core.model.parameters import count_parameters, initial_weights, parameter_specs
from ptychopinn_core.model.state import EpochRecord, History, ModelState
from ptychopinn_core.testing import bitwise_equal


def small_config(**model) -> Config:
    values = {"pattern_size": 16, "n_filters_scale": 1} | model
    return Config.from_dict({"model": values, "training": {"epochs": 3, "seed": 5}})


def make_bundle(config: Config | None = None, seed: int = 0) -> ModelBundle:
    config = config or small_config()
    rng = np.random.default_rng(seed)
    size = config.model.pattern_size
    probe = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))).astype(np.complex64)
    weights = initial_weights(parameter_specs(config.model), seed)
    history = History(
        (
            EpochRecord(0, 1.25, 1.5, 1e-3, 0.5),
            EpochRecord(1, 0.75, 0.875, 1e-3, 0.25),
            EpochRecord(2, 0.5, None, 5e-4, 0.125),
        )
    )
    state = ModelState(
        probe, intensity_scale=3.9528, amplitude_normalisation=0.0123, probe_mask=config.model.probe_mask
    )
    manifest = make_manifest(config.training.mode, "tensorflow", "tensorflow", "2.99.0")
    return ModelBundle(manifest=manifest, config=config, weights=weights, state=state, history=history)


def rewrite(path: Path, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> None:
    """Rewrite a bundle's zip with some members replaced or removed (no validation)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members.update(replace or {})
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            if name not in drop:
                archive.writestr(name, data)


def member_json(path: Path, member: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(member))


def json_bytes(values) -> bytes:
    return json.dumps(values).encode()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def written(tmp_path) -> tuple[Path, ModelBundle]:
    bundle = make_bundle()
    path = tmp_path / "model.zip"
    write_bundle(path, bundle)
    return path, bundle


def assert_bundle_error(path: Path, member: str | None, *fragments: str) -> BundleError:
    with pytest.raises(BundleError) as caught:
        read_bundle(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    if member is not None:
        assert f"member '{member}'" in message
        assert caught.value.member == member
    for fragment in fragments:
        assert fragment in message, message
    return caught.value


# -- round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        small_config(),
        small_config(pattern_size=32, gridsize=2, intensity_scale_trainable=True, probe_mask=True),
        small_config().with_overrides({"training.mode": "supervised"}),
    ],
    ids=["default", "grouped-trainable", "supervised"],
)
def test_round_trip_is_bit_exact(tmp_path, config):
    bundle = make_bundle(config, seed=1)
    path = write_bundle(tmp_path / "model.ptychopinn", bundle)
    loaded = read_bundle(path)
    assert list(loaded.weights) == [spec.name for spec in parameter_specs(config.model)]
    for name, array in bundle.weights.items():
        assert loaded.weights[name].dtype == np.float32
        assert loaded.weights[name].tobytes() == array.tobytes(), name
    assert loaded.state.probe.dtype == np.complex64
    assert loaded.state.probe.tobytes() == bundle.state.probe.tobytes()
    assert loaded.state.to_json() == bundle.state.to_json()
    assert loaded.config == config and loaded.config.to_dict() == config.to_dict()
    assert loaded.history == bundle.history
    assert loaded.manifest == bundle.manifest
    assert loaded.manifest["parameter_count"] == count_parameters(parameter_specs(config.model))


def test_readable_with_plain_zipfile_and_numpy(written):
    path, bundle = written
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == list(MEMBERS)
        manifest = json.loads(archive.read(MANIFEST_MEMBER))
        with np.load(io.BytesIO(archive.read(WEIGHTS_MEMBER)), allow_pickle=False) as npz:
            kernel = npz["encoder.0.conv0.kernel"]
        with np.load(io.BytesIO(archive.read(STATE_ARRAYS_MEMBER)), allow_pickle=False) as npz:
            probe = npz["probe"]
    assert manifest["format"] == BUNDLE_FORMAT and manifest["format_version"] == 1
    np.testing.assert_array_equal(kernel, bundle.weights["encoder.0.conv0.kernel"])
    np.testing.assert_array_equal(probe, bundle.state.probe)


def test_same_bundle_gives_the_same_bytes(tmp_path):
    bundle = make_bundle()
    first = write_bundle(tmp_path / "a.zip", bundle).read_bytes()
    assert write_bundle(tmp_path / "b.zip", bundle).read_bytes() == first


def test_manifest_fields():
    manifest = make_manifest("pinn", "pytorch", "torch", "2.13.0")
    assert manifest["format"] == "ptychopinn-bundle" and manifest["format_version"] == 1
    assert manifest["core_version"] == __version__
    created = datetime.fromisoformat(manifest["created"])
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 60
    with pytest.raises(ValueError, match="mode"):
        make_manifest("unsupervised", "pytorch", "torch", "2.13.0")


def test_inspect_bundle(written):
    path, bundle = written
    info = inspect_bundle(path)
    assert info["manifest"] == bundle.manifest
    assert info["parameter_count"] == count_parameters(parameter_specs(bundle.config.model))
    assert info["parameter_tensors"] == len(bundle.weights)
    assert info["history"]["n_epochs"] == 3
    assert info["history"]["best_val_loss"] == 0.875 and info["history"]["best_epoch"] == 1
    assert info["history"]["final_val_loss"] is None
    assert info["model"]["pattern_size"] == 16
    json.dumps(info)  # JSON-ready for a CLI


def test_model_bundle_checks_its_parts():
    bundle = make_bundle()
    other = small_config(gridsize=2, group_network="joint")
    with pytest.raises(ValueError, match="parameter"):
        ModelBundle(bundle.manifest, other, bundle.weights, bundle.state, bundle.history)
    wrong_probe = ModelState(np.ones((32, 32), np.complex64), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"probe shape .* expected \(16, 16\)"):
        ModelBundle(bundle.manifest, bundle.config, bundle.weights, wrong_probe, bundle.history)
    supervised = dict(bundle.manifest, mode="supervised")
    with pytest.raises(ValueError, match="training.mode"):
        ModelBundle(supervised, bundle.config, bundle.weights, bundle.state, bundle.history)


# -- corrupt and foreign files -------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0001, 0.01, 0.3, 0.5, 0.9, 0.999])
def test_truncated_bundle(written, fraction):
    path, _ = written
    data = path.read_bytes()
    cut = max(1, int(len(data) * fraction))
    path.write_bytes(data[:cut])
    assert_bundle_error(path, None, "zip archive", "truncated")


def test_truncated_at_every_member_boundary(written):
    # The npz members are stored zips themselves: cutting right after one leaves a valid
    # zip directory (the npz's own) at the end of the file. Still reported as truncated.
    path, _ = written
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    boundaries = {info.header_offset for info in infos[1:]}
    boundaries |= {info.header_offset + 30 + len(info.filename) + info.compress_size for info in infos}
    boundaries |= set(range(1, len(data), max(1, len(data) // 40)))
    for cut in sorted(boundaries):
        if cut >= len(data):
            continue
        path.write_bytes(data[:cut])
        assert_bundle_error(path, None, "zip archive", "truncated")


@pytest.mark.parametrize("cut_from_end", [1, 10, 22, 100])
def test_truncated_at_the_end(written, cut_from_end):
    path, _ = written
    path.write_bytes(path.read_bytes()[:-cut_from_end])
    assert_bundle_error(path, None, "truncated")


def test_empty_missing_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    assert_bundle_error(empty, None, "empty file")
    assert_bundle_error(tmp_path / "absent.zip", None, "file not found")
    text = tmp_path / "notes.zip"
    text.write_text("hello")
    assert_bundle_error(text, None, "not a zip archive")
    foreign = tmp_path / "photos.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("photo.jpg", b"\xff\xd8")
    assert_bundle_error(foreign, MANIFEST_MEMBER, "missing member", "not a PtychoPINN model bundle")


def test_damaged_member_data(written):
    path, bundle = written
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(WEIGHTS_MEMBER)
    # Flip bytes inside the stored weights (past the 30-byte local header and the name).
    start = info.header_offset + 30 + len(WEIGHTS_MEMBER) + 500
    data[start : start + 8] = bytes(255 - b for b in data[start : start + 8])
    path.write_bytes(bytes(data))
    assert_bundle_error(path, WEIGHTS_MEMBER, "corrupt member data")


class _Payload:
    """Unpickling this creates the marker file: proof that pickle code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_weights_are_refused_without_executing(written, tmp_path):
    path, bundle = written
    # The payload works: unpickling it really creates its marker.
    probe_marker = tmp_path / "pickle-works"
    pickle.loads(pickle.dumps(_Payload(probe_marker))).close()
    assert probe_marker.exists()

    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    weights = dict(bundle.weights, **{"encoder.0.conv0.kernel": evil})
    rewrite(path, {WEIGHTS_MEMBER: npz_bytes(**weights)})
    assert_bundle_error(path, WEIGHTS_MEMBER, "'encoder.0.conv0.kernel'", "pickle", "refused")
    assert not marker.exists()
    # Pickle disguised as the whole member is refused too.
    rewrite(path, {WEIGHTS_MEMBER: pickle.dumps(_Payload(marker))})
    assert_bundle_error(path, WEIGHTS_MEMBER, "invalid NPZ")
    assert not marker.exists()


def test_wrong_format_name(written):
    path, _ = written
    manifest = member_json(path, MANIFEST_MEMBER) | {"format": "some-other-tool"}
    rewrite(path, {MANIFEST_MEMBER: json_bytes(manifest)})
    assert_bundle_error(path, MANIFEST_MEMBER, "not a PtychoPINN model bundle", "'some-other-tool'")


def test_future_format_version(written):
    path, _ = written
    manifest = member_json(path, MANIFEST_MEMBER) | {"format_version": 2}
    rewrite(path, {MANIFEST_MEMBER: json_bytes(manifest)})
    assert_bundle_error(path, MANIFEST_MEMBER, "format_version 2",
                        "upgrade ptychopinn-core (pip install --upgrade ptychopinn-core)")


@pytest.mark.parametrize("member", MEMBERS)
def test_missing_member(written, member):
    path, _ = written
    rewrite(path, drop=(member,))
    assert_bundle_error(path, member, "missing member")


@pytest.mark.parametrize("member", [MANIFEST_MEMBER, CONFIG_MEMBER, STATE_MEMBER, HISTORY_MEMBER])
def test_invalid_json(written, member):
    path, _ = written
    rewrite(path, {member: b'{"format": "ptychopinn-bundle",'})
    assert_bundle_error(path, member, "invalid JSON")


def test_missing_manifest_field(written):
    path, _ = written
    manifest = member_json(path, MANIFEST_MEMBER)
    del manifest["framework_version"]
    rewrite(path, {MANIFEST_MEMBER: json_bytes(manifest)})
    assert_bundle_error(path, MANIFEST_MEMBER, "'framework_version'")


def test_invalid_config_passes_the_config_error_through(written):
    path, _ = written
    config = member_json(path, CONFIG_MEMBER)
    config["model"]["gridsize"] = 9
    rewrite(path, {CONFIG_MEMBER: json_bytes(config)})
    error = assert_bundle_error(path, CONFIG_MEMBER, "invalid config", "model.gridsize=9")
    config["model"]["colour"] = "blue"
    rewrite(path, {CONFIG_MEMBER: json_bytes(config)})
    assert_bundle_error(path, CONFIG_MEMBER, "unknown config key 'model.colour'")
    assert "config.json: member" not in str(error)


def test_weights_for_another_config(written):
    path, bundle = written
    config = member_json(path, CONFIG_MEMBER)
    config["model"]["gridsize"] = 2
    config["model"]["group_network"] = "joint"
    rewrite(path, {CONFIG_MEMBER: json_bytes(config)})
    assert_bundle_error(
        path, WEIGHTS_MEMBER, "gridsize=2", "group_network=joint", "'encoder.0.conv0.kernel'",
        "expected shape (3, 3, 4, 32)"
    )


def test_a_gridsize_1_bundle_is_a_shared_gridsize_2_model(written):
    """The shared group network has the gridsize-1 parameter list: the same weights read
    as a gridsize-2 model when the config says so."""
    path, bundle = written
    config = member_json(path, CONFIG_MEMBER)
    config["model"]["gridsize"] = 2
    assert config["model"]["group_network"] == "shared"
    rewrite(path, {CONFIG_MEMBER: json_bytes(config)})
    grouped = read_bundle(path)
    assert grouped.config.model.gridsize == 2
    assert all(bitwise_equal(grouped.weights[name], value) for name, value in bundle.weights.items())


@pytest.mark.parametrize("gridsize", [1, 2])
def test_a_bundle_from_before_group_network_reads_as_the_joint_network(tmp_path, gridsize):
    """Bundles written before model.group_network existed store no such key; their
    gridsize-2 networks read the group as channels (joint), which is not today's default,
    so the reader fills in what they were trained with (KEYS_ADDED_SINCE_FORMAT_1)."""
    joint = make_bundle(small_config(gridsize=gridsize, group_network="joint"))
    path = tmp_path / "old.zip"
    write_bundle(path, joint)
    config = member_json(path, CONFIG_MEMBER)
    del config["model"]["group_network"]
    rewrite(path, {CONFIG_MEMBER: json_bytes(config)})
    old = read_bundle(path)
    assert old.config.model.group_network == KEYS_ADDED_SINCE_FORMAT_1["model.group_network"] == "joint"
    assert old.config == joint.config
    assert all(bitwise_equal(old.weights[name], value) for name, value in joint.weights.items())
    # A config file (not a bundle) without the key takes today's default.
    assert Config.from_dict({"model": {"gridsize": 2}}).model.group_network == "shared"


def test_weights_with_a_missing_parameter(written):
    path, bundle = written
    weights = dict(bundle.weights)
    del weights["head_phase.kernel"]
    rewrite(path, {WEIGHTS_MEMBER: npz_bytes(**weights)})
    assert_bundle_error(path, WEIGHTS_MEMBER, "missing 1 parameter(s) ['head_phase.kernel']")


def test_probe_shape_mismatch(written):
    path, _ = written
    rewrite(path, {STATE_ARRAYS_MEMBER: npz_bytes(probe=np.ones((32, 32), np.complex64))})
    assert_bundle_error(path, STATE_ARRAYS_MEMBER, "probe shape", "(16, 16)", "(32, 32)")


def test_probe_nan_and_bad_state(written):
    path, bundle = written
    probe = np.array(bundle.state.probe)
    probe[3, 3] = np.nan
    rewrite(path, {STATE_ARRAYS_MEMBER: npz_bytes(probe=probe)})
    assert_bundle_error(path, STATE_MEMBER, "finite")
    rewrite(path, {STATE_ARRAYS_MEMBER: npz_bytes(probe=bundle.state.probe)})
    state = member_json(path, STATE_MEMBER) | {"intensity_scale": -1.0}
    rewrite(path, {STATE_MEMBER: json_bytes(state)})
    assert_bundle_error(path, STATE_MEMBER, "intensity_scale", "> 0")


def test_manifest_that_disagrees_with_the_config(written):
    path, _ = written
    manifest = member_json(path, MANIFEST_MEMBER) | {"mode": "supervised"}
    rewrite(path, {MANIFEST_MEMBER: json_bytes(manifest)})
    assert_bundle_error(path, MANIFEST_MEMBER, "training.mode")


# -- atomic write ---------------------------------------------------------------------------


def test_failed_write_leaves_the_existing_bundle_intact(written, monkeypatch):
    path, _ = written
    before = path.read_bytes()
    original = zipfile.ZipFile.writestr

    def fail_on_weights(self, info, data, *args, **kwargs):
        if getattr(info, "filename", info) == WEIGHTS_MEMBER:
            raise OSError("disk full")
        return original(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", fail_on_weights)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(path, make_bundle(seed=9))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left over
    read_bundle(path)


# -- the model digest (what an export carries to be checked against) ---------------------------


def test_digest_survives_a_file_round_trip_and_ignores_manifest_and_history(tmp_path):
    import dataclasses

    from ptychopinn_core.model.bundle import bundle_digest

    bundle = make_bundle()
    digest = bundle_digest(bundle)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert bundle_digest(read_bundle(write_bundle(tmp_path / "model.zip", bundle))) == digest
    other_run = dataclasses.replace(
        bundle, manifest=make_manifest("pinn", "pytorch", "torch", "2.13.0"), history=History(())
    )
    assert bundle_digest(other_run) == digest


def test_digest_changes_with_anything_that_changes_the_output():
    import dataclasses

    from ptychopinn_core.model.bundle import bundle_digest

    bundle = make_bundle()
    digest = bundle_digest(bundle)
    weights = {name: value.copy() for name, value in bundle.weights.items()}
    first = next(iter(weights))
    weights[first].flat[0] = np.nextafter(weights[first].flat[0], np.float32(np.inf))  # one ulp
    probe = bundle.state.probe.copy()
    probe[3, 4] *= np.complex64(-1)
    changed = {
        "a weight by one ulp": dataclasses.replace(bundle, weights=weights),
        "the probe": dataclasses.replace(bundle, state=dataclasses.replace(bundle.state, probe=probe)),
        "the intensity scale": dataclasses.replace(
            bundle, state=dataclasses.replace(bundle.state, intensity_scale=bundle.state.intensity_scale * 2)),
        "a setting": dataclasses.replace(bundle, config=bundle.config.with_overrides({"model.overlap_weights": "window"})),
    }
    for what, other in changed.items():
        assert bundle_digest(other) != digest, what
