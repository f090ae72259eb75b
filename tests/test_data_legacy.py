"""Legacy inputs: what read_scan converts (with a note), and what it refuses as ambiguous."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ptychopinn_core.data import DataContractError, DataContractTypeError, read_scan, write_scan
from ptychopinn_core.data import keys

M, N = 5, 8
NOTES_LOGGER = "ptychopinn_core.data.npz"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def notes(caplog):
    caplog.set_level(logging.INFO, logger=NOTES_LOGGER)
    return caplog


def base_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Canonical arrays with non-integral amplitudes (unambiguous as amplitude)."""
    return {
        keys.DIFFRACTION: (rng.random((M, N, N)) + 0.25).astype(np.float32),
        keys.XCOORDS: rng.uniform(8, 24, M),
        keys.YCOORDS: rng.uniform(8, 24, M),
        keys.PROBE: (rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))).astype(np.complex64),
    }


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


def logged(caplog) -> str:
    return "\n".join(record.getMessage() for record in caplog.records
                     if record.name == NOTES_LOGGER)


def test_canonical_file_needs_no_conversion(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    scan = read_scan(save(tmp_path / "canonical.npz", **arrays))
    assert scan.meta == {"measurement": "amplitude", "conversions": [],
                         "source_file": "canonical.npz"}
    np.testing.assert_array_equal(scan.diffraction, arrays[keys.DIFFRACTION])
    assert logged(notes) == ""


def test_diff3d_is_renamed(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    arrays[keys.LEGACY_DIFFRACTION] = arrays.pop(keys.DIFFRACTION)
    scan = read_scan(save(tmp_path / "legacy.npz", **arrays))
    np.testing.assert_array_equal(scan.diffraction, arrays[keys.LEGACY_DIFFRACTION])
    assert "renamed legacy key 'diff3d' to 'diffraction'" in scan.meta["conversions"]
    assert "renamed legacy key 'diff3d' to 'diffraction'" in logged(notes)
    assert all(record.levelno == logging.INFO for record in notes.records)


def test_both_diffraction_keys_prefers_the_canonical_one_with_a_warning(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    other = np.zeros((M, N, N), np.float32)
    scan = read_scan(save(tmp_path / "both.npz", diff3d=other, **arrays))
    np.testing.assert_array_equal(scan.diffraction, arrays[keys.DIFFRACTION])
    assert any(record.levelno == logging.WARNING and "ignoring 'diff3d'" in record.getMessage()
               for record in notes.records)


def test_nnm_layout_is_transposed(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    canonical = arrays[keys.DIFFRACTION]
    arrays[keys.DIFFRACTION] = np.transpose(canonical, (1, 2, 0))  # (N, N, M)
    scan = read_scan(save(tmp_path / "nnm.npz", **arrays))
    assert scan.diffraction.shape == (M, N, N)
    np.testing.assert_array_equal(scan.diffraction, canonical)
    assert scan.diffraction.flags.c_contiguous
    assert "transposed 'diffraction' from legacy (N, N, M) layout (8, 8, 5) to (M, N, N)" in (
        scan.meta["conversions"])
    assert "(N, N, M)" in logged(notes)


def test_nnm_layout_needs_the_last_axis_to_match_the_coordinates(tmp_path, rng):
    arrays = base_arrays(rng)
    arrays[keys.DIFFRACTION] = np.ones((N, N, M + 1), np.float32) * 0.5
    with pytest.raises(DataContractError, match=r"key 'diffraction': expected \(M, N, N\) "
                       r"with equal last two axes, received shape \(8, 8, 6\)"):
        read_scan(save(tmp_path / "nnm_bad.npz", **arrays))


def test_a_cube_is_read_in_the_canonical_layout(tmp_path, rng):
    arrays = base_arrays(rng)
    cube = (rng.random((N, N, N)) + 0.25).astype(np.float32)
    arrays.update({keys.DIFFRACTION: cube, keys.XCOORDS: np.arange(N, dtype=np.float64),
                   keys.YCOORDS: np.arange(N, dtype=np.float64)})
    scan = read_scan(save(tmp_path / "cube.npz", **arrays))
    np.testing.assert_array_equal(scan.diffraction, cube)
    assert scan.meta["conversions"] == []


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.uint8])
def test_integer_counts_become_sqrt_amplitudes(tmp_path, rng, notes, dtype):
    arrays = base_arrays(rng)
    counts = rng.poisson(40.0, (M, N, N)).astype(dtype)
    counts[0, 0, 0] = np.iinfo(dtype).max  # the largest count of the dtype stays exact
    arrays[keys.DIFFRACTION] = counts
    scan = read_scan(save(tmp_path / "counts.npz", **arrays))
    assert scan.diffraction.dtype == np.float32
    expected = np.sqrt(counts.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(scan.diffraction, expected)
    # sqrt(counts)^2 recovers the counts to float32 rounding
    np.testing.assert_allclose(scan.diffraction.astype(np.float64) ** 2, counts, rtol=2e-7)
    assert any("sqrt applied to photon counts" in c for c in scan.meta["conversions"])
    assert f"holds integers ({np.dtype(dtype)}): read as photon counts" in logged(notes)


def test_negative_integer_counts_are_refused(tmp_path, rng):
    arrays = base_arrays(rng)
    counts = rng.poisson(4.0, (M, N, N))
    counts[1, 2, 3] = -3
    arrays[keys.DIFFRACTION] = counts
    with pytest.raises(DataContractError, match="expected photon counts >= 0, received 1 "
                       r"negative value \(minimum -3\)"):
        read_scan(save(tmp_path / "neg_counts.npz", **arrays))


def float_counts(rng) -> np.ndarray:
    return rng.poisson(30.0, (M, N, N)).astype(np.float32)


def test_float_counts_are_ambiguous_and_the_error_names_the_flag(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    arrays[keys.DIFFRACTION] = float_counts(rng)
    path = save(tmp_path / "ambiguous.npz", **arrays)
    with pytest.raises(DataContractError) as caught:
        read_scan(path)
    message = str(caught.value)
    assert caught.value.key == keys.DIFFRACTION
    assert "ambiguous measurement" in message
    assert "--measurement counts" in message and "--measurement amplitude" in message
    assert "measurement='counts'" in message
    assert logged(notes) == ""  # no notes before a failure: the error stays the only line


def test_float_counts_are_resolved_by_the_measurement_argument(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    counts = float_counts(rng)
    arrays[keys.DIFFRACTION] = counts
    path = save(tmp_path / "ambiguous.npz", **arrays)

    as_counts = read_scan(path, measurement="counts")
    np.testing.assert_array_equal(as_counts.diffraction, np.sqrt(counts.astype(np.float64))
                                  .astype(np.float32))
    assert as_counts.meta["measurement"] == "amplitude"
    assert "'diffraction': sqrt applied to photon counts (float32) -> float32 amplitude" in (
        as_counts.meta["conversions"])

    as_amplitude = read_scan(path, measurement="amplitude")
    np.testing.assert_array_equal(as_amplitude.diffraction, counts)
    assert as_amplitude.meta["conversions"] == []


def test_negative_float_data_are_refused_as_negative_not_ambiguous(tmp_path, rng):
    arrays = base_arrays(rng)
    data = float_counts(rng)
    data[0, 1, 1] = -2.0
    arrays[keys.DIFFRACTION] = data
    with pytest.raises(DataContractError, match=r"expected amplitudes >= 0, received 1 negative"):
        read_scan(save(tmp_path / "neg.npz", **arrays))
    with pytest.raises(DataContractError, match=r"expected photon counts >= 0"):
        read_scan(tmp_path / "neg.npz", measurement="counts")


def test_whole_numbers_up_to_one_are_amplitudes(tmp_path, rng):
    arrays = base_arrays(rng)
    binary = (rng.random((M, N, N)) > 0.5).astype(np.float32)
    arrays[keys.DIFFRACTION] = binary
    scan = read_scan(save(tmp_path / "binary.npz", **arrays))
    np.testing.assert_array_equal(scan.diffraction, binary)


@pytest.mark.parametrize("declared, expect_sqrt", [("counts", True), ("amplitude", False)])
def test_meta_declaration_resolves_the_domain(tmp_path, rng, declared, expect_sqrt):
    arrays = base_arrays(rng)
    counts = float_counts(rng)
    arrays[keys.DIFFRACTION] = counts
    meta = np.array(json.dumps({"measurement": declared, "nphotons": 1e5}))
    scan = read_scan(save(tmp_path / "declared.npz", meta=meta, **arrays))
    expected = np.sqrt(counts.astype(np.float64)).astype(np.float32) if expect_sqrt else counts
    np.testing.assert_array_equal(scan.diffraction, expected)
    assert scan.meta["measurement"] == "amplitude" and scan.meta["nphotons"] == 1e5


def test_explicit_measurement_overrides_meta_with_a_warning(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    counts = float_counts(rng)
    arrays[keys.DIFFRACTION] = counts
    meta = np.array(json.dumps({"measurement": "counts"}))
    scan = read_scan(save(tmp_path / "conflict.npz", meta=meta, **arrays),
                     measurement="amplitude")
    np.testing.assert_array_equal(scan.diffraction, counts)
    assert any(record.levelno == logging.WARNING
               and "measurement='amplitude' overrides the file's meta measurement='counts'"
               in record.getMessage() for record in notes.records)


def test_integer_data_declared_amplitude_are_cast_not_square_rooted(tmp_path, rng):
    arrays = base_arrays(rng)
    levels = rng.integers(0, 9, (M, N, N))
    arrays[keys.DIFFRACTION] = levels
    scan = read_scan(save(tmp_path / "int_amp.npz", **arrays), measurement="amplitude")
    np.testing.assert_array_equal(scan.diffraction, levels.astype(np.float32))
    assert "'diffraction': int64 -> float32" in scan.meta["conversions"]


def test_precision_and_real_probe_conversions(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    amplitude64 = rng.random((M, N, N)) + 0.1
    probe128 = rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))
    real_object = rng.random((20, 30))
    arrays.update({
        keys.DIFFRACTION: amplitude64,
        keys.PROBE: probe128,
        keys.OBJECT: real_object,
        keys.PATCHES: np.ones((M, N, N), np.complex128),
        keys.XCOORDS: np.arange(M, dtype=np.int32),
        keys.YCOORDS: arrays[keys.YCOORDS].astype(np.float32),
        keys.SCAN_INDEX: np.arange(M, dtype=np.uint8),
    })
    scan = read_scan(save(tmp_path / "precision.npz", **arrays))
    np.testing.assert_array_equal(scan.diffraction, amplitude64.astype(np.float32))
    np.testing.assert_array_equal(scan.probe, probe128.astype(np.complex64))
    np.testing.assert_array_equal(scan.object.real, real_object.astype(np.float32))
    assert not scan.object.imag.any()
    np.testing.assert_array_equal(scan.xcoords, np.arange(M, dtype=np.float64))
    np.testing.assert_array_equal(scan.scan_index, np.arange(M))
    assert [scan.diffraction.dtype, scan.probe.dtype, scan.object.dtype, scan.patches.dtype,
            scan.xcoords.dtype, scan.ycoords.dtype, scan.scan_index.dtype] == [
        np.float32, np.complex64, np.complex64, np.complex64, np.float64, np.float64, np.int64]
    assert scan.meta["conversions"] == [
        "'xcoords': int32 -> float64",
        "'ycoords': float32 -> float64",
        "'diffraction': float64 -> float32",
        "'probeGuess': complex128 -> complex64",
        "'objectGuess': real float64 -> complex64 (zero phase)",
        "'Y': complex128 -> complex64",
        "'scan_index': uint8 -> int64",
    ]
    assert logged(notes).count("\n") == len(scan.meta["conversions"]) - 1


@pytest.mark.parametrize("key, value, error_type, fragment", [
    (keys.SCAN_INDEX, np.arange(M, dtype=np.float64), DataContractTypeError, "expected integers"),
    (keys.SCAN_INDEX, np.full(M, 2**63, dtype=np.uint64), DataContractError, "exceed the int64"),
    (keys.XCOORDS, np.array(["a"] * M), DataContractTypeError, "received dtype <U1"),
    (keys.XCOORDS, np.zeros(M, dtype=np.complex64), DataContractTypeError, "complex64"),
    (keys.XCOORDS, np.zeros((M, 1)), DataContractError, "received shape (5, 1)"),
    (keys.YCOORDS, np.zeros(M - 1), DataContractError, "equal to xcoords.shape = (5,)"),
    (keys.DIFFRACTION, np.ones((M, N, N), dtype=bool), DataContractTypeError, "dtype bool"),
    (keys.DIFFRACTION, np.array(2.5, dtype=np.float32), DataContractError, "received shape ()"),
    (keys.DIFFRACTION, np.ones((M, N * N), np.float32), DataContractError, "shape (5, 64)"),
    (keys.PROBE, np.array(["p"]), DataContractTypeError, "expected complex64"),
])
def test_unconvertible_dtypes_and_shapes_are_refused(tmp_path, rng, key, value, error_type,
                                                     fragment):
    arrays = base_arrays(rng)
    arrays[key] = value
    with pytest.raises(error_type) as caught:
        read_scan(save(tmp_path / "bad.npz", **arrays))
    assert caught.value.key == key and fragment in str(caught.value)


def test_unknown_keys_are_noted_and_ignored(tmp_path, rng, notes):
    arrays = base_arrays(rng)
    scan = read_scan(save(tmp_path / "extra.npz", xcoords_start=np.zeros(M), comment=np.array("x"),
                          **arrays))
    assert scan.n_positions == M
    assert "ignored unknown keys: comment, xcoords_start" in logged(notes)


@pytest.mark.parametrize("meta, fragment", [
    (np.array("{not json"), "invalid JSON (Expecting property name"),
    (np.array("[1, 2]"), "expected a JSON object, received a JSON list"),
    (np.array(["{}"]), "expected JSON text in a 0-d string array"),
    (np.array(3.0), "received dtype float64"),
    (np.array('{"measurement": "intensity"}'), "received 'intensity'"),
    (np.array('{"contract_version": 2}'), "contract version 2, newer than the supported version 1"),
    (np.array('{"contract_version": "1"}'), "positive integer"),
    (np.array('{"conversions": "none"}'), "list of strings"),
])
def test_bad_meta_is_refused_naming_the_meta_key(tmp_path, rng, meta, fragment):
    arrays = base_arrays(rng)
    with pytest.raises(DataContractError) as caught:
        read_scan(save(tmp_path / "meta.npz", meta=meta, **arrays))
    assert caught.value.key == keys.META
    assert fragment in str(caught.value)


def test_bytes_meta_is_decoded(tmp_path, rng):
    arrays = base_arrays(rng)
    scan = read_scan(save(tmp_path / "bytes_meta.npz", meta=np.array(b'{"nphotons": 10}'),
                          **arrays))
    assert scan.meta["nphotons"] == 10


def test_conversion_history_survives_write_and_reread(tmp_path, rng):
    arrays = base_arrays(rng)
    arrays[keys.LEGACY_DIFFRACTION] = rng.poisson(9.0, (M, N, N))
    del arrays[keys.DIFFRACTION]
    first = read_scan(save(tmp_path / "old.npz", **arrays))
    write_scan(tmp_path / "new.npz", first)
    second = read_scan(tmp_path / "new.npz")
    assert second.meta["conversions"] == first.meta["conversions"]
    assert len(first.meta["conversions"]) == 3  # rename, integer -> counts, sqrt
    assert second.meta["source_file"] == "new.npz"
    assert second.meta["contract_version"] == 1
    np.testing.assert_array_equal(second.diffraction, first.diffraction)
