"""Simulation: objects, probes, positions and Poisson far-field scans (physics.md §10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptychopinn_core.data import read_scan, write_scan
from ptychopinn_core.physics.forward import far_field, illuminate
from ptychopinn_core.physics.translate import extract_patches
from ptychopinn_core.simulation import (
    SAMPLE_IMAGES,
    default_probe,
    default_step_px,
    image_object,
    lines_object,
    load_probe,
    make_demo_scan,
    object_shape_for_scan,
    random_positions,
    raster_positions,
    simulate_scan,
    valid_position_range,
)
from ptychopinn_core.simulation.probe import (
    default_probe_radius_px,
    focused_probe,
    focused_probe_parameters,
    make_probe,
    zoneplate_probe,
    zoneplate_probe_parameters,
)


# --------------------------------------------------------------------------- objects


def test_lines_object_ranges_dtype_and_reproducibility():
    obj = lines_object((96, 80), seed=3)
    assert obj.dtype == np.complex64 and obj.shape == (96, 80)
    amplitude, phase = np.abs(obj), np.angle(obj)
    # Documented defaults: amplitude in [0.3, 1], phase in [0, pi/2]; both ends are reached.
    assert amplitude.min() >= 0.3 - 1e-6 and amplitude.max() <= 1.0 + 1e-6
    assert phase.min() >= -1e-6 and phase.max() <= math.pi / 2 + 1e-6
    assert amplitude.min() < 0.31 and amplitude.max() > 0.99
    assert phase.max() > 0.99 * math.pi / 2
    np.testing.assert_array_equal(obj, lines_object((96, 80), seed=3))
    assert not np.array_equal(obj, lines_object((96, 80), seed=4))


def test_lines_object_amplitude_and_phase_are_independent_textures():
    obj = lines_object(128, seed=0)
    correlation = np.corrcoef(np.abs(obj).ravel(), np.angle(obj).ravel())[0, 1]
    assert abs(correlation) < 0.3


def test_lines_object_has_fine_and_coarse_structure():
    """Multi-scale smoothing: power at mid and high frequencies, not only near DC."""
    amplitude = np.abs(lines_object(128, seed=1)).astype(np.float64)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(amplitude - amplitude.mean()))) ** 2
    radius = np.hypot(*np.meshgrid(np.arange(128) - 64, np.arange(128) - 64))
    mid = spectrum[(radius > 8) & (radius <= 24)].sum() / spectrum.sum()
    assert 0.05 < mid < 0.9


def test_lines_object_custom_ranges_and_errors():
    obj = lines_object(48, seed=0, amplitude_range=(0.5, 0.8), phase_range_rad=(-1.0, 1.0))
    assert 0.5 - 1e-6 <= np.abs(obj).min() and np.abs(obj).max() <= 0.8 + 1e-6
    assert -1.0 - 1e-6 <= np.angle(obj).min() and np.angle(obj).max() <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="amplitude_range"):
        lines_object(32, amplitude_range=(0.2, 1.5))
    with pytest.raises(ValueError, match="size_px"):
        lines_object((32, 0))
    with pytest.raises(TypeError, match="size_px"):
        lines_object(None)  # type: ignore[arg-type]


def test_image_object_follows_the_pictures():
    from skimage import data, transform

    obj = image_object((64, 64), "camera", "coins")
    assert obj.dtype == np.complex64 and obj.shape == (64, 64)
    camera = transform.resize(data.camera().astype(float), (64, 64), anti_aliasing=True)
    assert np.corrcoef(np.abs(obj).ravel(), camera.ravel())[0, 1] > 0.99
    assert np.abs(obj).min() == pytest.approx(0.3, abs=1e-6)
    assert np.abs(obj).max() == pytest.approx(1.0, abs=1e-6)
    assert np.angle(obj).min() == pytest.approx(0.0, abs=1e-6)
    assert np.angle(obj).max() == pytest.approx(math.pi / 2, abs=1e-6)


@pytest.mark.parametrize("name", SAMPLE_IMAGES)
def test_every_listed_sample_image_loads_without_network(name):
    obj = image_object((24, 40), name, name)
    assert obj.shape == (24, 40) and np.all(np.isfinite(obj))


def test_image_object_rejects_unknown_pictures():
    with pytest.raises(ValueError, match="amplitude_image"):
        image_object(32, "no_such_picture")
    with pytest.raises(ValueError, match="constant"):
        image_object(32, np.ones((10, 10)))


# --------------------------------------------------------------------------- probe


@pytest.mark.parametrize("size", [32, 64, 128])
def test_default_probe_is_a_centred_soft_disk_filling_the_central_window(size):
    probe = default_probe(size)
    assert probe.dtype == np.complex64 and probe.shape == (size, size)
    amplitude = np.abs(probe).astype(np.float64)
    assert amplitude[size // 2, size // 2] == pytest.approx(1.0, abs=1e-6)
    offsets = np.arange(size) - size // 2
    radius = np.hypot(offsets[:, None], offsets[None, :])
    # Flat top inside, practically nothing beyond N/4 (the probe-mask radius).
    assert amplitude[radius <= default_probe_radius_px(size) - 2 * size / 64].min() > 0.95
    assert amplitude[radius > size / 4 + 1].max() < 0.03
    energy = amplitude**2
    window = slice(size // 4, size // 4 + size // 2)
    assert energy[window, window].sum() / energy.sum() > 0.99
    # Symmetric about the centre pixel: the energy centroid is exactly N//2.
    assert np.sum(energy * offsets[None, :]) / energy.sum() == pytest.approx(0.0, abs=1e-6)
    # Quadratic phase: 0 at the centre, 0.5 rad at the disk edge.
    assert np.angle(probe[size // 2, size // 2]) == pytest.approx(0.0, abs=1e-6)
    edge = int(round(default_probe_radius_px(size)))
    expected = 0.5 * edge**2 / default_probe_radius_px(size) ** 2
    assert np.angle(probe[size // 2, size // 2 + edge]) == pytest.approx(expected, abs=1e-5)


def _radial_phase_curvature(probe: np.ndarray, radius: float) -> float:
    """Mean unwrapped phase at ``radius`` minus at the centre, along the four axes."""
    centre = probe.shape[0] // 2
    arms = [probe[centre, centre:], probe[centre, centre::-1], probe[centre:, centre], probe[centre::-1, centre]]
    steps = int(round(radius))
    return float(np.mean([np.unwrap(np.angle(arm[: steps + 1]))[-1] - np.angle(arm[0]) for arm in arms]))


def test_focused_probe_far_field_is_its_soft_pupil_and_its_footprint_follows_the_defocus():
    size = 64
    parameters = focused_probe_parameters(size)
    assert parameters["pupil_radius_px"] == 16 and parameters["footprint_radius_px"] == pytest.approx(11)
    probe = focused_probe(size)
    assert probe.dtype == np.complex64 and np.abs(probe).max() == pytest.approx(1.0)
    # The bare probe's far field is the pupil: a bright-field disk of radius r_p, soft edge.
    pupil = np.abs(far_field(probe.astype(np.complex128)))
    offsets = np.arange(size) - size // 2
    frequency = np.hypot(offsets[:, None], offsets[None, :])
    assert pupil[frequency <= 12].min() > 0.9 * pupil.max()
    assert pupil[frequency >= 21].max() < 1e-3 * pupil.max()
    # Geometric optics: the footprint radius is 2 N W / r_p; the RMS radius grows with |W|
    # and the same |W| on either side of the focus gives the same intensity.
    intensity = lambda p: np.abs(p.astype(np.complex128)) ** 2  # noqa: E731
    rms = [
        math.sqrt((intensity(p) * frequency**2).sum() / intensity(p).sum())
        for p in (focused_probe(size, defocus_waves=w) for w in (0.0, 1.0, 2.0, 3.0))
    ]
    assert rms == sorted(rms) and rms[0] < 3 and 2 * size * 3.0 / 16 * 0.5 < rms[-1] < 2 * size * 3.0 / 16
    np.testing.assert_allclose(intensity(focused_probe(size, defocus_waves=-2.0)),
                               intensity(focused_probe(size, defocus_waves=2.0)), atol=1e-5)
    # Less than 0.5 % of its energy falls outside the window the network predicts (physics §3).
    window = np.zeros((size, size))
    window[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    assert 1 - (intensity(probe) * window).sum() / intensity(probe).sum() < 5e-3


def test_focused_probe_has_a_curved_phase_front_the_disk_probe_lacks():
    size = 64
    focused, disk = focused_probe(size), default_probe(size)
    # Phase difference between the centre and 8 px out: a defocused beam's wavefront
    # is curved by radians, the idealised disk's by a fraction of one.
    assert abs(_radial_phase_curvature(focused, 8)) > 1.0
    assert abs(_radial_phase_curvature(disk, 8)) < 0.2


def test_make_probe_records_its_parameters_and_rejects_bad_ones():
    probe, record = make_probe("focused", 32, defocus_waves=0.5)
    np.testing.assert_array_equal(probe, focused_probe(32, defocus_waves=0.5))
    assert record == {"probe_kind": "focused", "probe_defocus_waves": 0.5, "probe_pupil_radius_px": 8.0,
                      "probe_pupil_softness_px": 0.75, "probe_footprint_radius_px": 4.0}
    probe, record = make_probe("disk", 32)
    np.testing.assert_array_equal(probe, default_probe(32))
    assert record == {"probe_kind": "disk"}
    with pytest.raises(ValueError, match="expected one of"):
        make_probe("zone", 32)
    with pytest.raises(ValueError, match="only focused and zoneplate probes"):
        make_probe("disk", 32, defocus_waves=1.0)
    with pytest.raises(ValueError, match=r"invalid focused probe parameters \['central_stop'\]"):
        make_probe("focused", 32, central_stop=0.3)
    with pytest.raises(ValueError, match="pupil_radius_px"):
        focused_probe(32, pupil_radius_px=17)


def test_zoneplate_probe_is_a_ring_with_a_central_stop_and_a_strongly_curved_front():
    size = 64
    parameters = zoneplate_probe_parameters(size)
    assert (parameters["pupil_radius_px"], parameters["central_stop"]) == (24.0, 0.45)
    assert parameters["footprint_radius_px"] == pytest.approx(12.0)
    probe = zoneplate_probe(size)
    assert probe.dtype == np.complex64 and np.abs(probe).max() == pytest.approx(1.0)
    offsets = np.arange(size) - size // 2
    frequency = np.hypot(offsets[:, None], offsets[None, :])
    # Far field: a bright-field ring, dark inside the central stop (0.45 x 24 = 10.8 px).
    pupil = np.abs(far_field(probe.astype(np.complex128)))
    assert pupil[frequency <= 7].max() < 0.05 * pupil.max()
    assert pupil[(frequency >= 14) & (frequency <= 21)].min() > 0.9 * pupil.max()
    assert pupil[frequency >= 29].max() < 1e-3 * pupil.max()
    # Real space: the defocused beam is a ring around a dimmer centre, and nearly all of
    # its energy lies in the window the network predicts (physics §3).
    intensity = np.abs(probe.astype(np.complex128)) ** 2
    ring = intensity[(frequency >= 8) & (frequency <= 12)].mean()
    assert intensity[frequency <= 3].mean() < 0.5 * ring
    window = np.zeros((size, size))
    window[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    assert 1 - (intensity * window).sum() / intensity.sum() < 1e-2
    # Its phase front is curved more strongly than the focused probe's (a larger aperture).
    assert abs(_radial_phase_curvature(probe, 8)) > 2 * abs(_radial_phase_curvature(focused_probe(size), 8))
    # No central stop: the focused probe of the same aperture and defocus.
    np.testing.assert_allclose(
        zoneplate_probe(size, central_stop=0.0, pupil_radius_px=16, defocus_waves=1.0),
        focused_probe(size, pupil_radius_px=16, defocus_waves=1.0), atol=1e-6)
    probe, record = make_probe("zoneplate", 32, central_stop=0.3)
    np.testing.assert_array_equal(probe, zoneplate_probe(32, central_stop=0.3))
    assert record["probe_kind"] == "zoneplate" and record["probe_central_stop"] == 0.3
    for bad in ({"central_stop": 1.0}, {"central_stop": -0.1}, {"pupil_radius_px": 17}, {"defocus_waves": math.inf}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            zoneplate_probe(32, **bad)


def test_demo_scan_with_the_focused_probe_records_it_in_meta():
    scan = make_demo_scan(20, 32, nphotons=1e6, seed=2, probe_kind="focused", defocus_waves=0.5)
    np.testing.assert_array_equal(scan.probe, focused_probe(32, defocus_waves=0.5))
    assert scan.meta["probe_kind"] == "focused" and scan.meta["probe_defocus_waves"] == 0.5
    with pytest.raises(ValueError, match="not both"):
        make_demo_scan(20, 32, probe=default_probe(32), probe_kind="focused")


def test_load_probe_npy_and_npz_keys(tmp_path):
    probe = default_probe(32)
    np.save(tmp_path / "p.npy", probe)
    np.savez(tmp_path / "guess.npz", probeGuess=probe, other=np.zeros(3))
    np.savez(tmp_path / "plain.npz", probe=probe.real)
    np.testing.assert_array_equal(load_probe(tmp_path / "p.npy"), probe)
    np.testing.assert_array_equal(load_probe(tmp_path / "guess.npz", size=32), probe)
    loaded = load_probe(tmp_path / "plain.npz")
    assert loaded.dtype == np.complex64
    np.testing.assert_array_equal(loaded, probe.real)


def test_load_probe_errors_name_file_key_and_shape(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_probe(tmp_path / "missing.npy")
    np.savez(tmp_path / "nokey.npz", diffraction=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"nokey\.npz.*probeGuess or probe.*diffraction"):
        load_probe(tmp_path / "nokey.npz")
    np.save(tmp_path / "rect.npy", np.ones((8, 6), np.complex64))
    with pytest.raises(ValueError, match=r"\(8, 6\).*rect\.npy"):
        load_probe(tmp_path / "rect.npy")
    np.save(tmp_path / "p16.npy", np.ones((16, 16), np.complex64))
    with pytest.raises(ValueError, match=r"expected \(32, 32\), received \(16, 16\)"):
        load_probe(tmp_path / "p16.npy", size=32)
    bad = np.ones((8, 8), np.complex64)
    bad[2, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="non-finite"):
        load_probe(tmp_path / "nan.npy")
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        load_probe(tmp_path / "pickled.npy")
    np.savez(tmp_path / "pickled.npz", probeGuess=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match=r"probeGuess"):
        load_probe(tmp_path / "pickled.npz")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="text.npy"):
        load_probe(tmp_path / "text.npy")


# --------------------------------------------------------------------------- positions


def test_raster_positions_integer_grid_centred_in_valid_range():
    size, step = 32, 3
    shape = object_shape_for_scan(25, size, step)
    positions = raster_positions(25, shape, size, step_px=step)
    assert positions.shape == (25, 2) and positions.dtype == np.float64
    np.testing.assert_array_equal(positions, np.round(positions))
    (x_min, x_max), (y_min, y_max) = valid_position_range(shape, size)
    assert positions[:, 0].min() == x_min and positions[:, 0].max() == x_max
    assert positions[:, 1].min() == y_min and positions[:, 1].max() == y_max
    np.testing.assert_array_equal(np.diff(positions[:5, 0]), step)  # row-major, x fastest
    assert positions[5, 1] - positions[0, 1] == step


def test_raster_jitter_is_bounded_seeded_and_inside():
    size = 64
    shape = object_shape_for_scan(100, size, 6, jitter_px=1.0)
    nominal = raster_positions(100, shape, size, 6)
    jittered = raster_positions(100, shape, size, 6, jitter_px=1.0, seed=5)
    assert np.abs(jittered - nominal).max() <= 1.0 + 1e-12
    assert np.abs(jittered - nominal).max() > 0.5
    again = raster_positions(100, shape, size, 6, jitter_px=1.0, seed=5)
    np.testing.assert_array_equal(jittered, again)
    (x_min, x_max), (y_min, y_max) = valid_position_range(shape, size)
    assert x_min <= jittered[:, 0].min() and jittered[:, 0].max() <= x_max
    assert y_min <= jittered[:, 1].min() and jittered[:, 1].max() <= y_max


def test_default_step_gives_strong_overlap():
    for size in (32, 64, 128):
        step = default_step_px(size)
        # About radius / 2.3: strong overlap, and smaller than the stitching crop 5N/16.
        assert 2.0 <= default_probe_radius_px(size) / step <= 3.0
        assert step < size * 5 // 16


def test_raster_that_does_not_fit_names_the_needed_object():
    with pytest.raises(ValueError, match=r"expected an object of at least \(82, 82\)"):
        raster_positions(100, (64, 64), 64, step_px=2)


@settings(max_examples=30, deadline=None)
@given(
    n_positions=st.integers(1, 60),
    size=st.sampled_from([8, 16, 32]),
    extra=st.integers(0, 40),
    seed=st.integers(0, 2**31),
)
def test_random_positions_keep_every_patch_on_the_object(n_positions, size, extra, seed):
    shape = (size + extra, size + extra // 2)
    positions = random_positions(n_positions, shape, size, seed=seed)
    patches = extract_patches(np.ones(shape), positions, size)
    # Full coverage: a patch that left the object would contain zero-filled pixels.
    np.testing.assert_allclose(patches, 1.0, atol=1e-12)


# --------------------------------------------------------------------------- simulate_scan


@pytest.fixture(scope="module")
def small_scan():
    return make_demo_scan(200, size=32, nphotons=1e4, seed=11)


def test_simulated_scan_contents_and_meta(small_scan):
    scan = small_scan
    assert scan.diffraction.dtype == np.float32 and scan.diffraction.shape == (200, 32, 32)
    assert scan.patches.dtype == np.complex64 and scan.object.dtype == np.complex64
    np.testing.assert_array_equal(
        scan.patches, extract_patches(scan.object, scan.positions_px, 32).astype(np.complex64)
    )
    meta = scan.meta
    for key, value in {
        "generator": "ptychopinn_core.simulation",
        "seed": 11,
        "nphotons": 1e4,
        "measurement": "amplitude",
        "object_kind": "lines",
        "probe_kind": "disk",
        "positions_kind": "raster",
    }.items():
        assert meta[key] == value
    from ptychopinn_core import __version__

    assert meta["core_version"] == __version__
    assert meta["created_utc"].endswith("+00:00")


def test_counts_are_integers_with_the_requested_mean_dose(small_scan):
    counts = small_scan.diffraction.astype(np.float64) ** 2
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)
    totals = counts.sum(axis=(1, 2))
    # Mean of M Poisson totals: expectation nphotons exactly, std sqrt(nphotons / M).
    assert abs(totals.mean() - 1e4) < 5 * math.sqrt(1e4 / 200)
    assert small_scan.meta["mean_counts_per_pattern"] == pytest.approx(totals.mean())


def test_counts_follow_poisson_statistics_for_one_pattern():
    """Many draws of one pattern: per pixel mean == expected intensity, variance == mean."""
    size, draws, nphotons = 16, 3000, 5e3
    obj = lines_object(48, seed=2)
    probe = default_probe(size)
    positions = np.tile([[20.0, 21.5]], (draws, 1))  # the same position, many times
    scan = simulate_scan(obj, probe, positions, nphotons, seed=7, chunk_size=512)
    counts = scan.diffraction.astype(np.float64) ** 2
    wave = far_field(illuminate(scan.patches[0].astype(np.complex128), probe.astype(np.complex128)))
    expected = (scan.meta["intensity_scale"] * np.abs(wave)) ** 2
    # Identical patterns: the scale makes the expected total exactly nphotons.
    assert expected.sum() == pytest.approx(nphotons, rel=1e-6)
    bright = expected > 5
    assert bright.sum() > 20
    mean, variance = counts.mean(axis=0), counts.var(axis=0, ddof=1)
    z = (mean - expected)[bright] / np.sqrt(expected[bright] / draws)
    assert abs(z.mean()) < 0.5 and 0.7 < z.std() < 1.3
    ratio = variance[bright] / mean[bright]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    assert np.all(np.abs(ratio - 1) < 0.25)  # 3000 draws: each ratio within ~5 sigma


def test_high_dose_diffraction_matches_the_forward_model():
    scan = make_demo_scan(30, size=32, nphotons=1e12, seed=1)
    patches, probe = scan.patches.astype(np.complex128), scan.probe.astype(np.complex128)
    wave = far_field(illuminate(patches, probe))
    model = scan.meta["intensity_scale"] * np.abs(wave)
    bright = model > 100
    np.testing.assert_allclose(scan.diffraction[bright], model[bright], rtol=0.02)


def test_simulation_is_seeded_and_independent_of_chunk_size():
    obj = lines_object(60, seed=0)
    probe = default_probe(16)
    positions = raster_positions(50, obj.shape, 16, step_px=2, jitter_px=0.4, seed=1)
    first = simulate_scan(obj, probe, positions, 1e5, seed=3, chunk_size=7)
    second = simulate_scan(obj, probe, positions, 1e5, seed=3, chunk_size=1000)
    third = simulate_scan(obj, probe, positions, 1e5, seed=4)
    np.testing.assert_array_equal(first.diffraction, second.diffraction)
    assert not np.array_equal(first.diffraction, third.diffraction)


def test_simulate_scan_rejects_bad_inputs():
    obj = lines_object(40, seed=0)
    probe = default_probe(16)
    with pytest.raises(ValueError, match=r"patches leave the object.*positions_xy\[0\]"):
        simulate_scan(obj, probe, np.array([[5.0, 20.0]]), 1e4)
    with pytest.raises(ValueError, match="nphotons"):
        simulate_scan(obj, probe, np.array([[20.0, 20.0]]), 0.0)
    with pytest.raises(ValueError, match="energy"):
        simulate_scan(np.zeros((40, 40)), probe, np.array([[20.0, 20.0]]), 1e4)
    with pytest.raises(ValueError, match="positions_xy.shape"):
        simulate_scan(obj, probe, np.zeros((3, 3)), 1e4)


@pytest.mark.parametrize("object_kind", ["lines", "image"])
@pytest.mark.parametrize("positions_kind", ["raster", "random"])
def test_demo_scan_kinds_cover_the_object(object_kind, positions_kind):
    scan = make_demo_scan(
        64, size=32, object_kind=object_kind, positions_kind=positions_kind, nphotons=1e5, seed=0
    )
    height, width = scan.object.shape
    (x_min, x_max), (y_min, y_max) = valid_position_range((height, width), 32)
    x, y = scan.xcoords, scan.ycoords
    assert x.min() >= x_min and x.max() <= x_max and y.min() >= y_min and y.max() <= y_max
    # The scan spans most of the range the object allows: the object is sized to it.
    assert (x.max() - x.min()) > 0.7 * (x_max - x_min)
    assert (y.max() - y.min()) > 0.6 * (y_max - y_min)
    assert scan.meta["object_kind"] == object_kind and scan.meta["positions_kind"] == positions_kind


def test_demo_scan_round_trips_through_the_canonical_npz(tmp_path):
    scan = make_demo_scan(40, size=32, nphotons=1e6, seed=2, meta={"gridsize": 2})
    path = write_scan(tmp_path / "scan.npz", scan)
    loaded = read_scan(path)
    np.testing.assert_array_equal(loaded.diffraction, scan.diffraction)
    np.testing.assert_array_equal(loaded.object, scan.object)
    np.testing.assert_array_equal(loaded.patches, scan.patches)
    np.testing.assert_array_equal(loaded.positions_px, scan.positions_px)
    assert loaded.meta["gridsize"] == 2 and loaded.meta["nphotons"] == 1e6


def test_velociprobe_probe_is_the_shipped_beam_resampled_to_any_size():
    from ptychopinn_core.simulation.probe import VELOCIPROBE_SOURCE, velociprobe_probe

    model = velociprobe_probe(128)  # the shipped 128 x 128 model itself, to rounding
    assert model.dtype == np.complex64 and np.abs(model).max() == pytest.approx(1.0)
    for size in (32, 64, 256):
        probe = velociprobe_probe(size)
        intensity = np.abs(probe.astype(np.complex128)) ** 2
        # Band-limit resampling keeps the beam's share of the array: ~97 % of the energy in
        # the central N/2 x N/2 window at every N, as the 128-pixel model has.
        window = slice(size // 4, size // 4 + size // 2)
        assert 0.96 < intensity[window, window].sum() / intensity.sum() < 0.98
        # The same beam: its far field is the model's spectrum, cropped or padded.
        spectrum = np.abs(far_field(probe.astype(np.complex128)))
        reference = np.abs(far_field(model.astype(np.complex128)))
        keep = min(size, 128)
        cut = lambda a, n: a[n // 2 - keep // 2: n // 2 + keep // 2, n // 2 - keep // 2: n // 2 + keep // 2]  # noqa: E731
        a, b = cut(spectrum, size), cut(reference, 128)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    # Not rotationally symmetric, unlike the parametric probes: a real beam.
    amplitude = np.abs(velociprobe_probe(64))
    assert np.abs(amplitude - np.rot90(amplitude)).max() > 0.2
    probe, record = make_probe("velociprobe", 64)
    np.testing.assert_array_equal(probe, velociprobe_probe(64))
    assert record == {"probe_kind": "velociprobe", "probe_source": VELOCIPROBE_SOURCE}
    with pytest.raises(ValueError, match="invalid velociprobe probe parameters"):
        make_probe("velociprobe", 64, defocus_waves=1.0)
    scan = make_demo_scan(20, 32, nphotons=1e6, seed=2, probe_kind="velociprobe")
    np.testing.assert_array_equal(scan.probe, velociprobe_probe(32))
    assert scan.meta["probe_kind"] == "velociprobe"
