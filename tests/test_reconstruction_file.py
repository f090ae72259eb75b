"""The reconstruction NPZ written by ``ptychopinn infer`` (design.md §6)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.reconstruction import (
    META_KEY,
    OBJECT_KEY,
    RECONSTRUCTION_FORMAT,
    Reconstruction,
    read_reconstruction,
    write_reconstruction,
)


@pytest.fixture
def recon():
    rng = np.random.default_rng(0)
    obj = rng.uniform(0.2, 1, (30, 40)) * np.exp(1j * rng.uniform(-3, 3, (30, 40)))
    meta = {"backend": "pytorch", "crop_size_px": 20}
    return Reconstruction(obj.astype(np.complex64), ObjectFrame(-4.0, 12.0, 30, 40), meta)


def _meta_text(frame=None, **extra):
    frame = ObjectFrame(0, 0, 4, 4) if frame is None else frame
    meta = {"format": RECONSTRUCTION_FORMAT, "format_version": 1,
            "frame": frame.to_json() if isinstance(frame, ObjectFrame) else frame, "provenance": {}}
    meta.update(extra)
    return np.array(json.dumps(meta))


def test_round_trip_is_exact(tmp_path, recon):
    path = write_reconstruction(tmp_path / "recon.npz", recon)
    loaded = read_reconstruction(path)
    assert loaded.object.dtype == np.complex64
    np.testing.assert_array_equal(loaded.object, recon.object)
    assert loaded.frame == recon.frame
    assert loaded.meta == recon.meta
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted([OBJECT_KEY, META_KEY])
        assert archive[META_KEY].ndim == 0 and archive[META_KEY].dtype.kind == "U"
        stored = json.loads(str(archive[META_KEY]))
    assert stored["frame"] == recon.frame.to_json() and stored["provenance"]["backend"] == "pytorch"


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, recon):
    path = tmp_path / "recon.npz"
    write_reconstruction(path, recon)
    before = path.read_bytes()
    bad = Reconstruction(recon.object, recon.frame, {"not_json": {1, 2}})
    with pytest.raises(ValueError, match="JSON"):
        write_reconstruction(path, bad)
    nan_meta = Reconstruction(recon.object, recon.frame, {"loss": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        write_reconstruction(path, nan_meta)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["recon.npz"]


def test_reconstruction_validates_its_fields():
    frame = ObjectFrame(0, 0, 4, 5)
    with pytest.raises(ValueError, match=r"frame shape \(4, 5\).*\(5, 4\)"):
        Reconstruction(np.zeros((5, 4), np.complex64), frame)
    with pytest.raises(ValueError, match="shape"):
        Reconstruction(np.zeros((2, 4, 5), np.complex64), frame)
    with pytest.raises(TypeError, match="ObjectFrame"):
        Reconstruction(np.zeros((4, 5), np.complex64), (4, 5))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtype"):
        Reconstruction(np.zeros((4, 5), np.int32), frame)
    assert Reconstruction(np.zeros((4, 5), np.complex128), frame).object.dtype == np.complex64


ZEROS = np.zeros((4, 4), np.complex64)
BAD_FILES = {
    "no object": ({"meta": _meta_text()}, r"key 'object': missing", ValueError),
    "no meta": ({"object": ZEROS}, r"key 'meta': missing", ValueError),
    "real object": (
        {"object": np.zeros((4, 4), np.float32), "meta": _meta_text()},
        r"key 'object': expected complex64",
        TypeError,
    ),
    "meta not JSON": (
        {"object": ZEROS, "meta": np.array("{not json")}, r"key 'meta': invalid JSON", ValueError
    ),
    "meta not 0-d": ({"object": ZEROS, "meta": np.array(["a", "b"])}, r"0-d unicode", ValueError),
    "other format": (
        {"object": ZEROS, "meta": _meta_text(format="other")}, r"expected format", ValueError
    ),
    "future version": (
        {"object": ZEROS, "meta": _meta_text(format_version=7)}, r"format_version", ValueError
    ),
    "frame shape": (
        {"object": ZEROS, "meta": _meta_text(frame=ObjectFrame(0, 0, 5, 4))},
        r"does not match the frame",
        ValueError,
    ),
    "bad frame": (
        {"object": ZEROS, "meta": _meta_text(frame={"width_px": 4})}, r"bad 'frame'", ValueError
    ),
    "pickled object": (
        {"object": np.array([None, 1], dtype=object), "meta": _meta_text()},
        r"key 'object': refused: holds pickled",
        ValueError,
    ),
}


@pytest.mark.parametrize(("arrays", "match", "error"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_read_errors_name_file_key_and_problem(tmp_path, arrays, match, error):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(error, match=match) as info:
        read_reconstruction(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_read_refuses_files_that_are_not_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such reconstruction file"):
        read_reconstruction(tmp_path / "missing.npz")
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.npz: not an NPZ archive"):
        read_reconstruction(text)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros((3, 3), np.complex64))
    with pytest.raises(ValueError, match="not an NPZ archive"):
        read_reconstruction(npy)
