"""The data contract in memory: ScanData validation, errors, and the scan summary."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from ptychopinn_core.data import (
    DataContractError,
    DataContractTypeError,
    ScanData,
    read_scan,
    summarize_scan,
    validate_scan,
)
from ptychopinn_core.data import keys, validate
from ptychopinn_core.data.summary import LOW_DOSE_COUNTS

M, N = 6, 8


def scan_fields(rng: np.random.Generator, m: int = M, n: int = N) -> dict:
    """Valid ScanData keyword arguments (every optional field present)."""
    return {
        "diffraction": (rng.random((m, n, n)) + 0.1).astype(np.float32),
        "xcoords": rng.uniform(10, 20, m),
        "ycoords": rng.uniform(10, 20, m),
        "probe": (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))).astype(np.complex64),
        "object": np.exp(1j * rng.random((32, 32))).astype(np.complex64),
        "scan_index": np.zeros(m, dtype=np.int64),
        "patches": np.ones((m, n, n), dtype=np.complex64),
        "meta": {"nphotons": 1e6},
    }


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# -- the error type ---------------------------------------------------------------------


def test_error_message_is_one_line_naming_file_key_and_problem():
    error = DataContractError(
        "expected (M, N, N) with equal last two axes,\n received shape (512, 64, 32)",
        key="diffraction",
        file="scan.npz",
    )
    assert str(error) == (
        "scan.npz: key 'diffraction': expected (M, N, N) with equal last two axes, "
        "received shape (512, 64, 32)"
    )
    assert (error.file, error.key) == ("scan.npz", "diffraction")
    assert isinstance(error, ValueError)
    assert str(DataContractError("file is empty", file="a.npz")) == "a.npz: file is empty"
    assert str(error.with_file("b.npz")).startswith("b.npz: key 'diffraction': ")


def test_type_error_is_both_value_and_type_error_and_pickles():
    error = DataContractTypeError("expected dtype float32", key="xcoords", file="s.npz")
    assert isinstance(error, TypeError) and isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is DataContractTypeError and str(clone) == str(error)


# -- a valid scan -----------------------------------------------------------------------


def test_valid_scan_properties(rng):
    fields = scan_fields(rng)
    scan = ScanData(**fields)
    assert scan.n_positions == M and scan.pattern_size == N
    np.testing.assert_array_equal(scan.positions_px[:, 0], fields["xcoords"])
    np.testing.assert_array_equal(scan.positions_px[:, 1], fields["ycoords"])
    assert scan.positions_px.shape == (M, 2)
    assert "M=6" in repr(scan) and "N=8" in repr(scan) and len(repr(scan)) < 200


def test_arrays_are_read_only_copies_and_callers_arrays_stay_writeable(rng):
    fields = scan_fields(rng)
    scan = ScanData(**fields)
    for name in ("diffraction", "xcoords", "ycoords", "probe", "object", "scan_index", "patches"):
        stored = getattr(scan, name)
        assert not stored.flags.writeable, name
        assert stored.flags.c_contiguous, name
        assert fields[name].flags.writeable, name
        assert not np.shares_memory(stored, fields[name]), name
        with pytest.raises(ValueError, match="read-only"):
            stored[...] = 0
    before = scan.diffraction.copy()
    fields["diffraction"][...] = 99.0  # the caller changes its own array
    np.testing.assert_array_equal(scan.diffraction, before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scan.diffraction = before  # type: ignore[misc]


def test_meta_is_a_json_normalised_private_copy(rng):
    fields = scan_fields(rng)
    fields["meta"] = {"seed": np.int64(3), "shape": (1, 2), "nested": {"a": [np.float32(0.5)]}}
    scan = ScanData(**fields)
    assert scan.meta == {"seed": 3, "shape": [1, 2], "nested": {"a": [0.5]}}
    assert type(scan.meta["seed"]) is int
    fields["meta"]["nested"]["a"].append(1)
    assert scan.meta["nested"]["a"] == [0.5]


def test_replace_revalidates(rng):
    scan = ScanData(**scan_fields(rng))
    with pytest.raises(DataContractError, match="key 'xcoords'"):
        dataclasses.replace(scan, xcoords=np.zeros(M + 1))
    updated = dataclasses.replace(scan, meta={"note": "x"})
    assert updated.meta == {"note": "x"}


def test_optional_fields_may_be_absent(rng):
    fields = scan_fields(rng)
    for name in ("object", "scan_index", "patches"):
        fields.pop(name)
    fields.pop("meta")
    scan = ScanData(**fields)
    assert scan.object is None and scan.scan_index is None and scan.patches is None
    assert scan.meta == {}


# -- invalid scans in memory ------------------------------------------------------------


def _set(name, value_fn):
    def mutate(fields, rng):
        fields[name] = value_fn(fields, rng)

    return mutate


INVALID_CASES = {
    # case: (mutation, error type, NPZ key, fragment of the problem)
    "diffraction float64": (
        _set("diffraction", lambda f, r: f["diffraction"].astype(np.float64)),
        DataContractTypeError, "diffraction", "expected dtype float32, received dtype float64"),
    "diffraction complex": (
        _set("diffraction", lambda f, r: f["diffraction"].astype(np.complex64)),
        DataContractTypeError, "diffraction", "received dtype complex64"),
    "diffraction list": (
        _set("diffraction", lambda f, r: f["diffraction"].tolist()),
        DataContractTypeError, "diffraction", "received list"),
    "xcoords float32": (
        _set("xcoords", lambda f, r: f["xcoords"].astype(np.float32)),
        DataContractTypeError, "xcoords", "expected dtype float64"),
    "probe complex128": (
        _set("probe", lambda f, r: f["probe"].astype(np.complex128)),
        DataContractTypeError, "probeGuess", "expected dtype complex64"),
    "scan_index int32": (
        _set("scan_index", lambda f, r: f["scan_index"].astype(np.int32)),
        DataContractTypeError, "scan_index", "expected dtype int64"),
    "non-square patterns": (
        _set("diffraction", lambda f, r: np.ones((M, N, N - 2), np.float32)),
        DataContractError, "diffraction", "received shape (6, 8, 6)"),
    "2-D diffraction": (
        _set("diffraction", lambda f, r: np.ones((N, N), np.float32)),
        DataContractError, "diffraction", "expected (M, N, N)"),
    "no patterns": (
        _set("diffraction", lambda f, r: np.ones((0, N, N), np.float32)),
        DataContractError, "diffraction", "at least one pattern"),
    "xcoords too short": (
        _set("xcoords", lambda f, r: f["xcoords"][:-1]),
        DataContractError, "xcoords", "received shape (5,)"),
    "ycoords too long": (
        _set("ycoords", lambda f, r: np.zeros(M + 1)),
        DataContractError, "ycoords", "received shape (7,)"),
    "scan_index length": (
        _set("scan_index", lambda f, r: np.zeros(M - 2, np.int64)),
        DataContractError, "scan_index", "received shape (4,)"),
    "probe size": (
        _set("probe", lambda f, r: np.ones((N + 2, N + 2), np.complex64)),
        DataContractError, "probeGuess", "expected shape (N, N) with N = diffraction.shape[-1] = (8, 8)"),
    "patches shape": (
        _set("patches", lambda f, r: np.ones((M, N, N + 1), np.complex64)),
        DataContractError, "Y", "received shape (6, 8, 9)"),
    "object 1-D": (
        _set("object", lambda f, r: np.ones(5, np.complex64)),
        DataContractError, "objectGuess", "2-D (H, W)"),
    "NaN and inf amplitudes": (
        _set("diffraction", lambda f, r: _poke(f["diffraction"], [np.nan, np.nan, np.inf])),
        DataContractError, "diffraction", "received 2 NaN and 1 inf among 384 values"),
    "inf coordinate": (
        _set("ycoords", lambda f, r: _poke(f["ycoords"], [-np.inf])),
        DataContractError, "ycoords", "1 inf"),
    "NaN probe": (
        _set("probe", lambda f, r: _poke(f["probe"], [complex(0, np.nan)])),
        DataContractError, "probeGuess", "1 NaN"),
    "NaN patches": (
        _set("patches", lambda f, r: _poke(f["patches"], [np.nan])),
        DataContractError, "Y", "1 NaN"),
    "inf object": (
        _set("object", lambda f, r: _poke(f["object"], [np.inf])),
        DataContractError, "objectGuess", "1 inf"),
    "negative amplitudes": (
        _set("diffraction", lambda f, r: _poke(f["diffraction"], [-0.5, -2.0])),
        DataContractError, "diffraction", "received 2 negative values (minimum -2)"),
    "meta not a dict": (
        _set("meta", lambda f, r: [1, 2]), DataContractTypeError, "meta", "received list"),
    "meta NaN": (
        _set("meta", lambda f, r: {"x": float("nan")}), DataContractError, "meta", "NaN"),
    "meta object": (
        _set("meta", lambda f, r: {"x": object()}), DataContractError, "meta", "JSON-serialisable"),
    "meta int key": (
        _set("meta", lambda f, r: {"a": {1: 2}}), DataContractTypeError, "meta", "received key 1"),
    "meta says counts": (
        _set("meta", lambda f, r: {"measurement": "counts"}), DataContractError, "meta",
        "received 'counts'"),
}


def _poke(values: np.ndarray, bad: list) -> np.ndarray:
    poked = values.copy()
    flat = poked.reshape(-1)
    flat[1 : 1 + len(bad)] = bad
    return poked


@pytest.mark.parametrize("case", list(INVALID_CASES))
def test_invalid_scans_are_refused_naming_the_key(case, rng):
    mutate, error_type, key, fragment = INVALID_CASES[case]
    fields = scan_fields(rng)
    mutate(fields, rng)
    with pytest.raises(error_type) as caught:
        ScanData(**fields)
    error = caught.value
    assert error.key == key
    assert error.file == "<memory>"
    assert fragment in str(error)
    assert "\n" not in str(error)
    assert str(error).startswith(f"<memory>: key '{key}': ")


def test_first_nonfinite_index_is_reported(rng):
    fields = scan_fields(rng)
    fields["diffraction"][3, 2, 5] = np.nan
    with pytest.raises(DataContractError, match=r"first at index \(3, 2, 5\)"):
        ScanData(**fields)


def test_validate_scan_names_the_source(rng):
    fields = scan_fields(rng)
    scan = ScanData(**fields)
    validate_scan(scan, source="run.npz")  # a valid scan passes
    broken = dataclasses.make_dataclass("Fake", list(fields))(**{**fields, "probe": None})
    with pytest.raises(DataContractError, match=r"^run\.npz: key 'probeGuess': required"):
        validate_scan(broken, source="run.npz")


def test_value_scans_count_correctly_across_chunks(monkeypatch, rng):
    monkeypatch.setattr(validate, "_CHUNK_ELEMENTS", 7)
    values = rng.random((5, 4, 4)).astype(np.float32)
    values[0, 0, 3] = np.inf
    values[2, 1, 1] = np.nan
    values[4, 3, 3] = -np.inf
    assert validate.count_nonfinite(values) == (1, 2, (0, 0, 3))
    values = np.nan_to_num(values, posinf=1.0, neginf=1.0)
    values[1, 2, 2], values[4, 0, 0] = -3.0, -1.0
    assert validate.count_negative(values) == (2, -3.0)
    assert validate.count_negative(np.arange(5, dtype=np.uint8)) == (0, 0.0)


# -- errors from files carry the file -----------------------------------------------------


def test_read_errors_carry_file_and_key(tmp_path, rng):
    fields = scan_fields(rng)
    path = tmp_path / "short.npz"
    np.savez(path, diffraction=fields["diffraction"], xcoords=fields["xcoords"][:-1],
             ycoords=fields["ycoords"][:-1], probeGuess=fields["probe"])
    with pytest.raises(DataContractError) as caught:
        read_scan(path)
    assert caught.value.file == str(path) and caught.value.key == keys.XCOORDS
    assert str(caught.value).startswith(f"{path}: key 'xcoords': ")


def test_read_scan_rejects_unknown_measurement(tmp_path):
    with pytest.raises(ValueError, match="measurement='intensity'"):
        read_scan(tmp_path / "x.npz", measurement="intensity")  # type: ignore[arg-type]


# -- summary ----------------------------------------------------------------------------


def _grid_scan(step: float, amplitude: float, n: int = N, object_size: int = 64,
               offset: float = 20.0) -> ScanData:
    xs, ys = np.meshgrid(np.arange(4) * step + offset, np.arange(3) * step + offset)
    m = xs.size
    return ScanData(
        diffraction=np.full((m, n, n), amplitude, np.float32),
        xcoords=xs.ravel().astype(np.float64),
        ycoords=ys.ravel().astype(np.float64),
        probe=np.full((n, n), 0.5 + 0.5j, np.complex64),
        object=np.ones((object_size, object_size), np.complex64),
        scan_index=np.repeat(np.arange(3), 4).astype(np.int64),
        meta={"nphotons": 1e4},
    )


def test_summary_numbers_match_the_scan():
    scan = _grid_scan(step=3.0, amplitude=2.0)
    summary = summarize_scan(scan)
    assert summary["n_positions"] == 12 and summary["pattern_size"] == N
    assert summary["positions"]["x_range_px"] == [20.0, 29.0]
    assert summary["positions"]["y_range_px"] == [20.0, 26.0]
    assert summary["positions"]["mean_step_px"] == pytest.approx(3.0)
    assert summary["positions"]["min_step_px"] == pytest.approx(3.0)
    # dose: sum over the pattern of amplitude^2 = 2^2 * N^2 counts
    assert summary["dose"]["mean_counts_per_pattern"] == pytest.approx(4.0 * N * N)
    assert summary["dose"]["total_counts"] == pytest.approx(12 * 4.0 * N * N)
    assert summary["dose"]["nphotons_declared"] == 1e4
    assert summary["probe"]["power"] == pytest.approx(N * N * 0.5)  # |0.5+0.5j|^2 = 0.5
    assert summary["object"] == {"key": "objectGuess", "present": True, "shape": [64, 64]}
    assert summary["patches"]["present"] is False
    assert summary["scan_index"]["n_scans"] == 3
    assert summary["warnings"] == []


def test_summary_warns_about_low_dose_and_positions_off_the_object():
    amplitude = np.sqrt(LOW_DOSE_COUNTS / 2) / N  # half the low-dose threshold per pattern
    scan = _grid_scan(step=3.0, amplitude=amplitude, object_size=28, offset=1.0)
    warnings = summarize_scan(scan)["warnings"]
    assert any(w.startswith("very low dose: 50 counts per pattern") for w in warnings)
    # object 28 x 28, centres x in {1, 4, 7, 10}, y in {1, 4, 7}: all inside; the window of
    # a centre at 1 starts at 1 - N//2 = -3 < 0 (3 + 4 - 1 = 6 such positions), at 4 it starts at 0
    assert any("6 of 12 probe windows (8 x 8) extend past the objectGuess edge" in w
               for w in warnings)
    far = dataclasses.replace(scan, xcoords=scan.xcoords + 30)
    assert any("12 of 12 positions lie outside the objectGuess frame (28 x 28 px)" in w
               for w in summarize_scan(far)["warnings"])


def test_summary_warns_about_duplicates_empty_patterns_and_no_overlap():
    scan = _grid_scan(step=3.0, amplitude=1.0)
    diffraction = scan.diffraction.copy()
    diffraction[0] = 0
    xcoords = scan.xcoords.copy()
    xcoords[1] = xcoords[0]
    warnings = summarize_scan(dataclasses.replace(scan, diffraction=diffraction,
                                                  xcoords=xcoords))["warnings"]
    assert "1 of 12 patterns are all zero" in warnings
    assert any(w.startswith("2 positions coincide") for w in warnings)
    sparse = _grid_scan(step=float(N + 1), amplitude=1.0, object_size=200)
    assert any("do not overlap" in w for w in summarize_scan(sparse)["warnings"])


def test_summary_of_a_single_position_has_no_step(rng):
    scan = ScanData(**scan_fields(rng, m=1))
    assert summarize_scan(scan)["positions"]["mean_step_px"] is None
