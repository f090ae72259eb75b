"""``ptychopinn inspect``: summaries, and one clear error line for every malformed file."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ptychopinn_core.cli.main import main
from ptychopinn_core.data import DataContractError, ScanData, write_scan
from ptychopinn_core.data import keys

M, N = 6, 8
CLI = Path(sys.prefix) / "bin" / "ptychopinn"  # the installed console script of this venv


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """main() points the root logger at the (captured) stderr; undo that after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def canonical_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        keys.DIFFRACTION: (rng.random((M, N, N)) * 3 + 0.5).astype(np.float32),
        keys.XCOORDS: rng.uniform(8, 24, M),
        keys.YCOORDS: rng.uniform(8, 24, M),
        keys.PROBE: np.full((N, N), 1 + 1j, np.complex64),
        keys.OBJECT: np.ones((32, 32), np.complex64),
    }


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["inspect", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err: str, path: Path, key: str | None, fragment: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: "), line
    assert str(path) in line, line
    if key is not None:
        assert f"key '{key}'" in line, line
    assert fragment in line, line
    return line


# -- malformed files: each one a case, each one exit 1 and one line ----------------------


def _with(**changes):
    def build(path: Path) -> Path:
        arrays = canonical_arrays()
        for key, value in changes.items():
            if value is None:
                arrays.pop(key)
            else:
                arrays[key] = value(arrays) if callable(value) else value
        np.savez(path, **arrays)
        return path

    return build


def _poked(key, index, value):
    def change(arrays):
        array = arrays[key].copy()
        array[index] = value
        return array

    return change


def _truncated(path: Path) -> Path:
    np.savez(path, **canonical_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("x,y\n1,2\n")
    return path


def _npy(path: Path) -> Path:
    with open(path, "wb") as handle:
        np.save(handle, canonical_arrays()[keys.DIFFRACTION])
    return path


def _hdf5(path: Path) -> Path:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    return path


def _corrupt_member(path: Path) -> Path:
    """A zip whose central directory is intact but whose diffraction bytes are damaged."""
    np.savez_compressed(path, **canonical_arrays())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("diffraction.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 40
    data[start : start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return path


MALFORMED = {
    # case: (builder, key named in the error or None for file-level, problem fragment)
    "missing probeGuess": (_with(probeGuess=None), "probeGuess", "required key missing"),
    "missing diffraction": (_with(diffraction=None), "diffraction", "required key missing"),
    "complex diffraction": (
        _with(diffraction=lambda a: a[keys.DIFFRACTION].astype(np.complex64)),
        "diffraction", "received dtype complex64"),
    "string coordinates": (
        _with(xcoords=np.array(["12.5"] * M)), "xcoords", "expected real numbers"),
    "NaN in diffraction": (
        _with(diffraction=_poked(keys.DIFFRACTION, (2, 3, 4), np.nan)),
        "diffraction", "received 1 NaN among 384 values (first at index (2, 3, 4))"),
    "inf in probe": (
        _with(probeGuess=_poked(keys.PROBE, (0, 1), np.inf)), "probeGuess", "1 inf"),
    "inf coordinate": (
        _with(ycoords=_poked(keys.YCOORDS, 3, -np.inf)), "ycoords", "1 inf"),
    "negative amplitudes": (
        _with(diffraction=_poked(keys.DIFFRACTION, (1, 0, 0), -0.75)),
        "diffraction", "expected amplitudes >= 0, received 1 negative value (minimum -0.75)"),
    "coordinates shorter than the patterns": (
        _with(xcoords=lambda a: a[keys.XCOORDS][:-2], ycoords=lambda a: a[keys.YCOORDS][:-2]),
        "xcoords", "received shape (4,)"),
    "ycoords length differs from xcoords": (
        _with(ycoords=lambda a: a[keys.YCOORDS][:-1]), "ycoords", "received shape (5,)"),
    "xcoords length differs from ycoords": (
        _with(xcoords=lambda a: a[keys.XCOORDS][:-1]), "xcoords",
        "equal to ycoords.shape = (6,), received shape (5,) ('diffraction' has shape (6, 8, 8))"),
    "non-square patterns": (
        _with(diffraction=lambda a: a[keys.DIFFRACTION][:, :, : N - 2]),
        "diffraction", "expected (M, N, N) with equal last two axes, received shape (6, 8, 6)"),
    "probe size mismatch": (
        _with(probeGuess=np.ones((N * 2, N * 2), np.complex64)),
        "probeGuess", "(N, N) with N = diffraction.shape[-1] = (8, 8), received shape (16, 16)"),
    "patches size mismatch": (
        _with(Y=np.ones((M, N, N + 1), np.complex64)), "Y", "received shape (6, 8, 9)"),
    "invalid meta JSON": (_with(meta=np.array("{'single': 'quotes'}")), "meta", "invalid JSON"),
    "truncated zip": (_truncated, None, "truncated or corrupt NPZ (zip) archive"),
    "corrupt zip member": (_corrupt_member, "diffraction", "unreadable"),
    "empty file": (_empty, None, "file is empty (0 bytes)"),
    "text file": (_text, None, "not an NPZ (zip) archive: it starts with b'x,y\\n'"),
    "npy instead of npz": (_npy, None, "is a single .npy array, not an NPZ archive"),
    "hdf5 file": (_hdf5, None, "is an HDF5 file"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file_gives_one_line_naming_file_key_and_problem(case, tmp_path, capsys):
    build, key, fragment = MALFORMED[case]
    path = build(tmp_path / "scan.npz")
    code, out, err = run_cli(capsys, path)
    assert code == 1
    assert out == ""
    assert_one_error_line(err, path, key, fragment)


def test_missing_file(tmp_path, capsys):
    path = tmp_path / "nowhere" / "scan.npz"
    code, out, err = run_cli(capsys, path)
    assert code == 1 and out == ""
    assert_one_error_line(err, path, None, "no such scan file")


def test_directory_instead_of_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path)
    assert code == 1
    assert_one_error_line(err, tmp_path, None, "is a directory")


class _Payload:
    """Unpickling this object runs ``os.system(command)``: the attack a pickle allows."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _pickled_scan(path: Path, marker: Path) -> Path:
    arrays = canonical_arrays()
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(f"touch {shlex.quote(str(marker))}")
    arrays[keys.DIFFRACTION] = payload
    np.savez(path, **arrays)  # numpy pickles object arrays on save
    return path


def test_pickled_object_array_is_refused_and_never_executed(tmp_path, capsys):
    # The payload is live: loading it the unsafe way does run it.
    proof_marker = tmp_path / "proof-marker"
    with np.load(_pickled_scan(tmp_path / "proof.npz", proof_marker), allow_pickle=True) as f:
        f[keys.DIFFRACTION]
    assert proof_marker.exists()

    marker = tmp_path / "pwned-marker"
    path = _pickled_scan(tmp_path / "scan.npz", marker)
    code, out, err = run_cli(capsys, path)
    assert code == 1 and out == ""
    line = assert_one_error_line(err, path, "diffraction", "Python object array (pickle)")
    assert "nothing from the file was executed" in line
    assert not marker.exists()


def test_pickle_refused_through_the_installed_command(tmp_path):
    marker = tmp_path / "pwned-marker"
    path = _pickled_scan(tmp_path / "scan.npz", marker)
    result = subprocess.run([str(CLI), "inspect", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stdout == ""
    assert_one_error_line(result.stderr, path, "diffraction", "pickle")
    assert not marker.exists()


@pytest.mark.parametrize("case", ["NaN in diffraction", "truncated zip", "probe size mismatch"])
def test_malformed_file_through_the_installed_command(case, tmp_path):
    build, key, fragment = MALFORMED[case]
    path = build(tmp_path / "scan.npz")
    result = subprocess.run([str(CLI), "inspect", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert_one_error_line(result.stderr, path, key, fragment)


def test_debug_shows_the_traceback(tmp_path):
    path = _with(probeGuess=None)(tmp_path / "scan.npz")
    with pytest.raises(DataContractError, match="key 'probeGuess'"):
        main(["--debug", "inspect", str(path)])


# -- valid and legacy files ---------------------------------------------------------------


def test_json_summary_of_a_valid_file(tmp_path, capsys):
    arrays = canonical_arrays()
    path = tmp_path / "scan.npz"
    np.savez(path, **arrays)
    code, out, err = run_cli(capsys, path, "--json")
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert summary["file"] == str(path)
    assert summary["n_positions"] == M and summary["pattern_size"] == N
    expected_dose = float(np.mean(np.sum(arrays[keys.DIFFRACTION].astype(np.float64) ** 2,
                                         axis=(1, 2))))
    assert summary["dose"]["mean_counts_per_pattern"] == pytest.approx(expected_dose)
    assert summary["probe"]["power"] == pytest.approx(2.0 * N * N)
    assert summary["object"]["shape"] == [32, 32]
    assert summary["positions"]["x_range_px"] == [arrays[keys.XCOORDS].min(),
                                                  arrays[keys.XCOORDS].max()]
    assert summary["meta"]["measurement"] == "amplitude"


def test_readable_summary_of_a_written_scan(tmp_path, capsys):
    arrays = canonical_arrays()
    scan = ScanData(diffraction=arrays[keys.DIFFRACTION], xcoords=arrays[keys.XCOORDS],
                    ycoords=arrays[keys.YCOORDS], probe=arrays[keys.PROBE],
                    object=np.ones((12, 12), np.complex64), meta={"nphotons": 1e9})
    path = write_scan(tmp_path / "scan.npz", scan)
    code, out, err = run_cli(capsys, path)
    assert code == 0 and err == ""
    assert str(path) in out
    assert "positions M" in out and " 6 " in out
    assert "objectGuess" in out and "12 x 12" in out
    assert "nphotons" in out
    # the object is 12 x 12 while positions reach 24 px: the summary says so
    assert "warning:" in out and "outside the objectGuess frame" in out


def test_legacy_file_is_converted_with_notes_on_stderr(tmp_path, capsys):
    arrays = canonical_arrays()
    rng = np.random.default_rng(3)
    counts = rng.poisson(50.0, (N, N, M))  # integer counts in (N, N, M) layout
    del arrays[keys.DIFFRACTION]
    path = tmp_path / "legacy.npz"
    np.savez(path, diff3d=counts, **arrays)
    code, out, err = run_cli(capsys, path, "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["n_positions"] == M
    expected_dose = counts.sum(axis=(0, 1)).mean()
    assert summary["dose"]["mean_counts_per_pattern"] == pytest.approx(expected_dose, rel=1e-6)
    assert "renamed legacy key 'diff3d'" in err and "(N, N, M)" in err and "sqrt" in err
    assert all(line.startswith("INFO: ") for line in err.strip().splitlines())
    assert main(["--quiet", "inspect", str(path), "--json"]) == 0
    assert capsys.readouterr().err == ""  # --quiet silences the notes


def test_ambiguous_float_counts_name_the_flag_that_resolves_them(tmp_path, capsys):
    arrays = canonical_arrays()
    counts = np.random.default_rng(4).poisson(20.0, (M, N, N)).astype(np.float32)
    arrays[keys.DIFFRACTION] = counts
    path = tmp_path / "float_counts.npz"
    np.savez(path, **arrays)

    code, out, err = run_cli(capsys, path)
    assert code == 1 and out == ""
    line = assert_one_error_line(err, path, "diffraction", "ambiguous measurement")
    assert "--measurement counts" in line and "--measurement amplitude" in line

    code, out, err = run_cli(capsys, path, "--measurement", "counts", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["dose"]["mean_counts_per_pattern"] == pytest.approx(
        counts.sum(axis=(1, 2)).mean(), rel=1e-6)
    assert "sqrt applied" in err

    code, out, _ = run_cli(capsys, path, "--measurement", "amplitude", "--json")
    assert code == 0
    assert json.loads(out)["diffraction"]["max_amplitude"] == float(counts.max())


def test_valid_file_through_the_installed_command(tmp_path):
    path = tmp_path / "scan.npz"
    np.savez(path, **canonical_arrays())
    result = subprocess.run([str(CLI), "inspect", str(path), "--json"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_positions"] == M


def test_help_has_examples(capsys):
    assert main(["inspect", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples:" in out
    assert "\n    ptychopinn inspect scan.npz\n" in out  # \b keeps the example lines as written
    assert "--measurement [auto|amplitude|counts]" in out
