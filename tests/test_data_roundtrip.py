"""write_scan -> read_scan is exact, and writing is atomic."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ptychopinn_core.data import ScanData, read_scan, write_scan
from ptychopinn_core.data import keys

RESERVED_META = {keys.META_MEASUREMENT, keys.META_CONVERSIONS, keys.META_SOURCE_FILE,
                 keys.META_CONTRACT_VERSION}

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
metas = st.dictionaries(st.text(max_size=8).filter(lambda key: key not in RESERVED_META),
                        json_values, max_size=4)


def finite(width: int, **bounds):
    return st.floats(width=width, allow_nan=False, allow_infinity=False, **bounds)


def complex_finite(width: int):
    return st.complex_numbers(width=width, allow_nan=False, allow_infinity=False)


@st.composite
def scans(draw) -> ScanData:
    m = draw(st.integers(1, 4))
    n = draw(st.integers(1, 5))
    optional = draw(st.fixed_dictionaries({
        "object": st.booleans(), "scan_index": st.booleans(), "patches": st.booleans()}))
    obj_shape = draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    return ScanData(
        diffraction=draw(hnp.arrays(np.float32, (m, n, n), elements=finite(32, min_value=0))),
        xcoords=draw(hnp.arrays(np.float64, (m,), elements=finite(64))),
        ycoords=draw(hnp.arrays(np.float64, (m,), elements=finite(64))),
        probe=draw(hnp.arrays(np.complex64, (n, n), elements=complex_finite(64))),
        object=draw(hnp.arrays(np.complex64, obj_shape, elements=complex_finite(64)))
        if optional["object"] else None,
        scan_index=draw(hnp.arrays(np.int64, (m,))) if optional["scan_index"] else None,
        patches=draw(hnp.arrays(np.complex64, (m, n, n), elements=complex_finite(64)))
        if optional["patches"] else None,
        meta=draw(metas),
    )


ARRAY_FIELDS = ("diffraction", "xcoords", "ycoords", "probe", "object", "scan_index", "patches")


def assert_bitwise_equal(read: ScanData, written: ScanData) -> None:
    for name in ARRAY_FIELDS:
        original, restored = getattr(written, name), getattr(read, name)
        if original is None:
            assert restored is None, name
            continue
        assert restored.dtype == original.dtype, name
        assert restored.shape == original.shape, name
        assert restored.tobytes() == original.tobytes(), name  # bitwise: keeps -0.0 too


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scan=scans(), compress=st.booleans())
def test_write_then_read_is_exact(tmp_path, scan, compress):
    path = tmp_path / "roundtrip.npz"
    write_scan(path, scan, compress=compress)
    read = read_scan(path)
    assert_bitwise_equal(read, scan)
    for key, value in scan.meta.items():
        assert read.meta[key] == value, key
    assert read.meta[keys.META_MEASUREMENT] == "amplitude"
    assert read.meta[keys.META_CONTRACT_VERSION] == keys.CONTRACT_VERSION
    assert read.meta[keys.META_CONVERSIONS] == []
    assert read.meta[keys.META_SOURCE_FILE] == "roundtrip.npz"
    assert set(read.meta) == set(scan.meta) | RESERVED_META


def small_scan(seed: int = 0, m: int = 16, n: int = 8) -> ScanData:
    rng = np.random.default_rng(seed)
    return ScanData(
        diffraction=np.zeros((m, n, n), np.float32) + rng.random((m, 1, 1), np.float32),
        xcoords=rng.uniform(0, 40, m),
        ycoords=rng.uniform(0, 40, m),
        probe=np.ones((n, n), np.complex64),
        meta={"nphotons": 1e6, "name": "Å-scan"},
    )


def test_written_file_has_canonical_keys_dtypes_and_json_meta(tmp_path):
    scan = small_scan()
    path = write_scan(tmp_path / "scan.npz", scan)
    assert path == tmp_path / "scan.npz"
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(
            [keys.DIFFRACTION, keys.XCOORDS, keys.YCOORDS, keys.PROBE, keys.META])
        assert archive[keys.DIFFRACTION].dtype == np.float32
        assert archive[keys.XCOORDS].dtype == np.float64
        assert archive[keys.PROBE].dtype == np.complex64
        meta_array = archive[keys.META]
        assert meta_array.ndim == 0 and meta_array.dtype.kind == "U"
        meta = json.loads(meta_array.item())
    assert meta == {"nphotons": 1e6, "name": "Å-scan", "measurement": "amplitude",
                    "contract_version": 1}


def test_compression_shrinks_a_compressible_scan_and_reads_back_equal(tmp_path):
    scan = small_scan(m=64, n=16)
    plain = write_scan(tmp_path / "plain.npz", scan)
    packed = write_scan(tmp_path / "packed.npz", scan, compress=True)
    assert packed.stat().st_size < plain.stat().st_size / 4
    assert_bitwise_equal(read_scan(packed), scan)


def test_read_scan_returns_read_only_arrays(tmp_path):
    scan = read_scan(write_scan(tmp_path / "scan.npz", small_scan()))
    assert not scan.diffraction.flags.writeable and not scan.xcoords.flags.writeable


def test_write_scan_refuses_other_objects(tmp_path):
    with pytest.raises(TypeError, match="expected ScanData, received dict"):
        write_scan(tmp_path / "x.npz", {"diffraction": np.zeros((1, 2, 2))})  # type: ignore[arg-type]
    assert not (tmp_path / "x.npz").exists()


def _failing_savez(error: BaseException):
    def savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip archive")  # the body has started writing ...
        raise error  # ... and dies

    return savez


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
@pytest.mark.parametrize("compress", [False, True])
def test_interrupted_write_leaves_an_existing_file_intact(tmp_path, monkeypatch, error, compress):
    path = write_scan(tmp_path / "scan.npz", small_scan(seed=1))
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez_compressed" if compress else "savez", _failing_savez(error))
    with pytest.raises(type(error)):
        write_scan(path, small_scan(seed=2), compress=compress)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["scan.npz"]  # no temporary file left behind
    monkeypatch.undo()
    np.testing.assert_array_equal(read_scan(path).diffraction, small_scan(seed=1).diffraction)


def test_interrupted_write_leaves_no_new_file(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez", _failing_savez(OSError("no space left on device")))
    with pytest.raises(OSError, match="no space left"):
        write_scan(tmp_path / "sub" / "new.npz", small_scan())
    assert os.listdir(tmp_path / "sub") == []


def test_write_creates_parent_folders_and_replaces_atomically(tmp_path):
    path = tmp_path / "a" / "b" / "scan.npz"
    write_scan(path, small_scan(seed=1))
    write_scan(path, small_scan(seed=3))
    np.testing.assert_array_equal(read_scan(path).xcoords, small_scan(seed=3).xcoords)
    assert os.listdir(path.parent) == ["scan.npz"]
