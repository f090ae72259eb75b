"""``ptychopinn convert``: foreign scans (tike, Ptychodus, legacy) into the canonical NPZ.

The real APS Siemens-star scan (data/siemens-star, tike layout) flows through the
importer; small synthetic files exercise the errors. The Ptychodus files are written
with Ptychodus 1.7's own writers (``ptychodus.api.io``).
"""

from __future__ import annotations

import bz2
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptychopinn_core.cli.main import main
from ptychopinn_core.data import DataContractError, read_scan
from ptychopinn_core.data.importers import FORMATS, MEASUREMENTS, detect_format, import_scan
from ptychopinn_core.data.importers.conventions import DEFAULT_MARGIN_PX, detect_fft_order
from ptychopinn_core.simulation.scan import make_demo_scan

STAR = Path(__file__).resolve().parents[1] / "data" / "siemens-star" / "siemens-star-small.npz.bz2"
CLI = Path(sys.executable).with_name("ptychopinn")
N_STAR, M_STAR = 128, 516


@pytest.fixture(scope="module")
def star_raw() -> dict[str, np.ndarray]:
    """The source arrays of the star file, read independently of the importer."""
    with bz2.open(STAR, "rb") as handle:
        archive = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def star_npz(tmp_path_factory) -> Path:
    """The star converted by the command line."""
    out = tmp_path_factory.mktemp("star") / "star.npz"
    assert main(["--quiet", "convert", str(STAR), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def star(star_npz):
    return read_scan(star_npz)


def _peak_distance_to_centre(patterns: np.ndarray) -> float:
    mean = patterns.astype(np.float64).mean(axis=0)
    row, col = np.unravel_index(np.argmax(mean), mean.shape)
    n = mean.shape[-1]
    return float(np.hypot(row - n // 2, col - n // 2))


def test_star_patterns_are_centred_amplitudes(star, star_raw):
    counts = star_raw["data"][0]
    assert star.diffraction.shape == (M_STAR, N_STAR, N_STAR)
    assert star.diffraction.dtype == np.float32
    expected = np.fft.fftshift(np.sqrt(counts.astype(np.float64)), axes=(-2, -1)).astype(np.float32)
    np.testing.assert_array_equal(star.diffraction, expected)
    # The raw patterns peak near a corner (numpy FFT order), the converted ones near the
    # centre (on the bright ring of the zone-plate focus, ~16 px out).
    assert _peak_distance_to_centre(counts) > N_STAR / 2
    assert _peak_distance_to_centre(star.diffraction) < N_STAR / 4


def test_star_positions_follow_tike_axes_inside_the_frame(star, star_raw):
    scan = star_raw["scan"][0].astype(np.float64)
    shift_x, shift_y = star.meta["import"]["position_shift_px"]
    # x comes from scan[..., 1] (columns), y from scan[..., 0] (rows), by one common shift.
    np.testing.assert_allclose(star.xcoords, scan[:, 1] + shift_x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(star.ycoords, scan[:, 0] + shift_y, rtol=0, atol=1e-9)
    assert float(shift_x).is_integer() and float(shift_y).is_integer()
    height, width = star.object.shape
    half = N_STAR // 2
    # Every probe window (plus the bilinear neighbour) lies inside, DEFAULT_MARGIN_PX from the edge.
    assert star.xcoords.min() - half >= DEFAULT_MARGIN_PX
    assert star.ycoords.min() - half >= DEFAULT_MARGIN_PX
    assert np.ceil(star.xcoords.max() - half + N_STAR - 1) <= width - 1 - DEFAULT_MARGIN_PX
    assert np.ceil(star.ycoords.max() - half + N_STAR - 1) <= height - 1 - DEFAULT_MARGIN_PX
    # ... and the frame is the smallest such one: the margin is met exactly on the low side.
    assert np.floor(star.xcoords.min() - half) == DEFAULT_MARGIN_PX
    assert np.floor(star.ycoords.min() - half) == DEFAULT_MARGIN_PX


def test_star_probe_object_and_meta(star, star_raw):
    np.testing.assert_array_equal(star.probe, star_raw["probe"].reshape(N_STAR, N_STAR))
    np.testing.assert_array_equal(star.object, np.ones_like(star.object))
    record = star.meta["import"]
    assert star.meta["source"] == "tike" and star.meta["object_role"] == "frame"
    assert record["format"] == "tike" and record["files"] == [STAR.name]
    assert (record["fft_order"], record["fft_order_from"], record["fftshift_applied"]) == (
        "corner", "detected", True)
    assert (record["measurement"], record["measurement_from"]) == ("counts", "format")
    assert record["probe"] == "mode 0 of 1"
    assert record["object_frame"] == {"kind": "sized", "margin_px": DEFAULT_MARGIN_PX,
                                      "height_px": star.object.shape[0],
                                      "width_px": star.object.shape[1]}
    assert record["details"]["centre_to_corner_energy_ratio"] < 0.1
    assert any("fftshift applied" in note for note in star.meta["conversions"])


def test_star_in_memory_import_equals_the_written_file(star):
    scan = import_scan(STAR, source_format="tike", fft_order="corner")
    np.testing.assert_array_equal(scan.diffraction, star.diffraction)
    np.testing.assert_array_equal(scan.xcoords, star.xcoords)
    assert scan.meta["import"]["fft_order_from"] == "--fft-order"


# -- errors -----------------------------------------------------------------------------

M, N = 12, 16


def _tike_arrays(rng: np.random.Generator, *, peaked: bool = True) -> dict[str, np.ndarray]:
    """A small tike-layout scan: counts peaked at the corner (numpy FFT order), or flat."""
    rows, cols = np.indices((N, N))
    corner = np.exp(-(np.minimum(rows, N - rows) ** 2 + np.minimum(cols, N - cols) ** 2) / 4.0)
    mean = 500 * corner if peaked else np.full((N, N), 20.0)
    data = rng.poisson(mean, size=(1, M, N, N)).astype(np.float32)
    scan = rng.uniform(-10, 10, size=(1, M, 2)).astype(np.float32)
    probe = (rng.normal(size=(1, 1, 1, 2, N, N)) + 1j).astype(np.complex64)
    return {"data": data, "scan": scan, "probe": probe}


def _error_line(args: list[str]) -> str:
    result = subprocess.run([CLI, *args], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr


def test_small_tike_file_first_probe_mode_and_bz2(tmp_path):
    arrays = _tike_arrays(np.random.default_rng(0))
    plain = tmp_path / "scan.npz"
    np.savez(plain, **arrays)
    packed = tmp_path / "scan.npz.bz2"
    packed.write_bytes(bz2.compress(plain.read_bytes()))
    assert detect_format(plain) == detect_format(packed) == "tike"
    from_plain, from_packed = import_scan(plain), import_scan(packed)
    np.testing.assert_array_equal(from_plain.diffraction, from_packed.diffraction)
    np.testing.assert_array_equal(from_plain.probe, arrays["probe"][0, 0, 0, 0])
    assert from_plain.meta["import"]["probe"] == "mode 0 of 2"


def test_missing_key_names_it(tmp_path):
    arrays = _tike_arrays(np.random.default_rng(1))
    del arrays["probe"]
    path = tmp_path / "noprobe.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataContractError, match="key 'probe': required key missing"):
        import_scan(path, source_format="tike")
    line = _error_line(["convert", str(path), "--from", "tike", "--out", str(tmp_path / "o.npz")])
    assert "noprobe.npz" in line and "'probe'" in line
    assert not (tmp_path / "o.npz").exists()


def test_wrong_shape_names_key_and_shape(tmp_path):
    arrays = _tike_arrays(np.random.default_rng(2))
    arrays["scan"] = np.zeros((1, M, 3), np.float32)
    path = tmp_path / "badscan.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataContractError, match=r"key 'scan': expected \(1, M, 2\).*\(1, 12, 3\)"):
        import_scan(path)


def test_ambiguous_fft_order_names_the_flag(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, **_tike_arrays(np.random.default_rng(3), peaked=False))
    with pytest.raises(DataContractError, match="cannot tell the FFT order"):
        import_scan(path)
    line = _error_line(["convert", str(path), "--out", str(tmp_path / "o.npz")])
    assert "--fft-order corner" in line and "--fft-order centered" in line
    out = tmp_path / "declared.npz"
    assert main(["--quiet", "convert", str(path), "--fft-order", "centered", "--out", str(out)]) == 0
    record = read_scan(out).meta["import"]
    assert (record["fft_order"], record["fft_order_from"], record["fftshift_applied"]) == (
        "centered", "--fft-order", False)


def test_fft_order_detection_on_both_orders():
    arrays = _tike_arrays(np.random.default_rng(4))
    counts = arrays["data"][0]
    assert detect_fft_order(counts)[0] == "corner"
    assert detect_fft_order(np.fft.fftshift(counts, axes=(-2, -1)))[0] == "centered"
    assert detect_fft_order(np.sqrt(counts), amplitude=True)[0] == "corner"


def test_pickled_array_is_refused_without_unpickling(tmp_path):
    arrays = _tike_arrays(np.random.default_rng(5))
    arrays["probe"] = np.array([{"not": "an array"}], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)
    packed = tmp_path / "pickled.npz.bz2"
    packed.write_bytes(bz2.compress(path.read_bytes()))
    for file in (path, packed):
        with pytest.raises(DataContractError, match="key 'probe'.*pickle"):
            import_scan(file, source_format="tike")


def test_unknown_format_names_from(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, images=np.zeros((2, 4, 4)))
    with pytest.raises(DataContractError, match="--from tike"):
        import_scan(path)
    with pytest.raises(ValueError, match="--diffraction: only used with --from ptychodus"):
        import_scan(STAR, diffraction_path=path)


def test_detection_asks_every_importer_and_names_what_it_saw(tmp_path):
    both = tmp_path / "both.npz"
    np.savez(both, data=np.zeros(2), scan=np.zeros(2), diffraction=np.zeros(2), xcoords=np.zeros(2))
    with pytest.raises(DataContractError, match=r"both\.npz: cannot tell the format: .*keys: data, "
                       r"diffraction, scan, xcoords, claimed by tike and ptychopinn-legacy; "
                       r"pass --from tike\|ptychopinn-legacy"):
        detect_format(both)
    folder = ("is a folder; tried tike .*, ptychodus .*product.h5.*, ptychopinn-legacy .*; "
              "name a scan file")
    with pytest.raises(DataContractError, match=folder):
        detect_format(tmp_path)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"abcdefgh")
    with pytest.raises(DataContractError, match=r"junk\.bin: .*starting with b'abcd'.*--from tike"):
        detect_format(junk)


def test_cli_choices_are_the_importer_table():
    from ptychopinn_core.cli.convert import _FORMATS, _MEASUREMENTS

    assert (_FORMATS, _MEASUREMENTS) == (FORMATS, MEASUREMENTS)

# -- legacy PtychoPINN files ----------------------------------------------------------------

@pytest.fixture(scope="module")
def simulated():
    return make_demo_scan(20, size=16, nphotons=1e5, seed=4)


def test_legacy_file_through_convert_equals_read_scan(tmp_path, simulated):
    counts = np.rint(simulated.diffraction.astype(np.float64) ** 2).astype(np.int32)
    path = tmp_path / "legacy.npz"
    np.savez(path, diff3d=np.moveaxis(counts, 0, -1), xcoords=simulated.xcoords,
             ycoords=simulated.ycoords, probeGuess=simulated.probe, objectGuess=simulated.object)
    direct = read_scan(path)
    out = tmp_path / "converted.npz"
    assert main(["--quiet", "convert", str(path), "--out", str(out)]) == 0
    converted = read_scan(out)
    for name in ("diffraction", "xcoords", "ycoords", "probe", "object"):
        np.testing.assert_array_equal(getattr(converted, name), getattr(direct, name))
    record = converted.meta["import"]
    assert record["format"] == "ptychopinn-legacy" and record["measurement"] == "counts"
    assert record["object_frame"]["kind"] == "objectGuess" and not record["fftshift_applied"]
    assert set(direct.meta["conversions"]) <= set(converted.meta["conversions"])


def test_legacy_without_object_gets_a_frame_and_declared_corner_order(tmp_path, simulated):
    path = tmp_path / "noobject.npz"
    np.savez(path, diffraction=simulated.diffraction, xcoords=simulated.xcoords - 100.0,
             ycoords=simulated.ycoords + 50.5, probeGuess=simulated.probe)
    scan = import_scan(path, fft_order="corner", margin_px=3)
    np.testing.assert_array_equal(scan.diffraction,
                                  np.fft.fftshift(simulated.diffraction, axes=(-2, -1)))
    shift_x, shift_y = scan.meta["import"]["position_shift_px"]
    np.testing.assert_allclose(scan.xcoords, simulated.xcoords - 100.0 + shift_x)
    np.testing.assert_allclose(scan.ycoords, simulated.ycoords + 50.5 + shift_y)
    assert np.floor(min(scan.xcoords.min(), scan.ycoords.min()) - 8) == 3
    assert scan.meta["object_role"] == "frame"


def test_legacy_ambiguous_measurement_names_the_flag(tmp_path, simulated):
    path = tmp_path / "floatcounts.npz"
    counts = np.rint(simulated.diffraction.astype(np.float64) ** 2).astype(np.float32)
    np.savez(path, diffraction=counts, xcoords=simulated.xcoords, ycoords=simulated.ycoords,
             probeGuess=simulated.probe)
    line = _error_line(["convert", str(path), "--out", str(tmp_path / "o.npz")])
    assert "--measurement counts" in line
    scan = import_scan(path, measurement="counts")
    np.testing.assert_allclose(scan.diffraction, simulated.diffraction, rtol=1e-3, atol=1e-3)


# -- the same scan from a Ptychodus export ------------------------------------------------------

def _write_ptychodus_star(directory: Path, star, star_raw) -> None:
    """The raw star as Ptychodus' diffraction + product HDF5 files, with Ptychodus' writers."""
    from ptychodus.api.assemble import AssembledDiffractionData
    from ptychodus.api.constants import energy_eV_to_wavelength_m
    from ptychodus.api.geometry import ImageExtent, PixelGeometry
    from ptychodus.api.io import save_diffraction_data, save_product
    from ptychodus.api.object import Object, ObjectCenter, ObjectGeometry
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.product import Product, ProductMetadata
    from ptychodus.api.propagate import compute_far_field_pixel_geometry

    from ptychopinn_core.ptychodus.convert import positions_to_metres

    energy_eV, distance_m, detector_pixel_m = 8800.0, 2.0, 75e-6  # a plausible geometry
    detector_pixel = PixelGeometry(width_m=detector_pixel_m, height_m=detector_pixel_m)
    object_pixel = compute_far_field_pixel_geometry(
        detector_pixel, ImageExtent(width_px=N_STAR, height_px=N_STAR),
        wavelength_m=energy_eV_to_wavelength_m(energy_eV), propagation_distance_m=distance_m,
    )
    height, width = star.object.shape
    geometry = ObjectGeometry(width_px=width, height_px=height, pixel_width_m=object_pixel.width_m,
                              pixel_height_m=object_pixel.height_m, center_x_m=0.0, center_y_m=0.0)
    counts = np.fft.fftshift(star_raw["data"][0], axes=(-2, -1))  # Ptychodus: centred counts
    save_diffraction_data(directory / "diffraction.h5", AssembledDiffractionData(
        indexes=np.arange(M_STAR), patterns=counts, pixel_geometry=detector_pixel,
        bad_pixels=np.zeros((N_STAR, N_STAR), dtype=bool)))
    metadata = ProductMetadata(
        name="siemens-star", comments="", detector_distance_m=distance_m,
        photon_energy_eV=energy_eV, probe_photon_count=0.0, exposure_time_s=0.0,
        mass_attenuation_m2_per_kg=0.0, tomography_angle_deg=0.0)
    save_product(directory / "product.h5", Product(
        metadata=metadata,
        probe_positions=positions_to_metres(star.positions_px, geometry, N_STAR),
        probes=ProbeSequence(array=star_raw["probe"].reshape(1, 1, N_STAR, N_STAR),
                             opr_weights=None, pixel_geometry=object_pixel.copy()),
        object_=Object(array=np.ones((1, height, width), np.complex64),
                       pixel_geometry=object_pixel.copy(), center=ObjectCenter(x_m=0.0, y_m=0.0),
                       layer_spacing_m=[]),
        losses=[]))


def test_tike_and_ptychodus_exports_give_the_same_canonical_npz(tmp_path, star, star_raw):
    pytest.importorskip("ptychodus.api.io", reason="ptychodus is not installed")
    export = tmp_path / "export"
    export.mkdir()
    _write_ptychodus_star(export, star, star_raw)
    assert detect_format(export / "product.h5") == detect_format(export) == "ptychodus"
    out = tmp_path / "from-ptychodus.npz"
    assert main(["--quiet", "convert", str(export / "product.h5"), "--diffraction",
                 str(export / "diffraction.h5"), "--out", str(out)]) == 0
    other = read_scan(out)
    np.testing.assert_array_equal(other.diffraction, star.diffraction)
    np.testing.assert_array_equal(other.probe, star.probe)
    np.testing.assert_array_equal(other.object, star.object)
    # Positions went through metres (float64): equal to float32 rounding of ~400 px.
    np.testing.assert_allclose(other.xcoords, star.xcoords, rtol=0, atol=1e-4)
    np.testing.assert_allclose(other.ycoords, star.ycoords, rtol=0, atol=1e-4)
    record = other.meta["import"]
    assert record["format"] == "ptychodus" and record["files"] == ["product.h5", "diffraction.h5"]
    assert (record["fft_order"], record["fft_order_from"]) == ("centered", "format")
    assert record["details"]["paired"] == M_STAR
    # The folder form (Ptychodus' batch layout) reads the same files.
    folder = import_scan(export)
    np.testing.assert_array_equal(folder.xcoords, other.xcoords)


def test_ptychodus_files_swapped_or_missing(tmp_path, star, star_raw):
    pytest.importorskip("ptychodus.api.io", reason="ptychodus is not installed")
    _write_ptychodus_star(tmp_path, star, star_raw)
    with pytest.raises(DataContractError, match="diffraction file, not a product file"):
        import_scan(tmp_path / "diffraction.h5", diffraction_path=tmp_path / "product.h5")
    (tmp_path / "diffraction.h5").unlink()
    with pytest.raises(FileNotFoundError, match="--diffraction"):
        import_scan(tmp_path / "product.h5")
    with pytest.raises(ValueError, match="--margin-px"):
        import_scan(tmp_path / "product.h5", margin_px=2)


def test_meta_is_json_in_the_written_file(star_npz):
    with np.load(star_npz, allow_pickle=False) as archive:
        meta = json.loads(archive["meta"].item())
    assert meta["import"]["format"] == "tike" and meta["contract_version"] == 1
