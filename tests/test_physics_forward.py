"""Illumination, far field and the model's probe (docs/physics.md, "Forward model", "Probe")."""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn_core.physics.forward import far_field, illuminate, predicted_amplitude, predicted_intensity
from ptychopinn_core.physics.overlap import central_window_mask
from ptychopinn_core.physics.probe_model import circular_probe_mask, normalise_probe


def complex_image(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


@pytest.mark.parametrize("size", [8, 16, 64])
def test_far_field_is_unitary_parseval(size):
    psi = complex_image(np.random.default_rng(size), (3, size, size))
    far = far_field(psi)
    np.testing.assert_allclose(
        np.sum(np.abs(far) ** 2, axis=(-2, -1)), np.sum(np.abs(psi) ** 2, axis=(-2, -1)), rtol=1e-12
    )


@pytest.mark.parametrize("size", [8, 15, 32])
def test_far_field_of_centred_delta_is_flat(size):
    psi = np.zeros((size, size), dtype=complex)
    psi[size // 2, size // 2] = 1.0
    np.testing.assert_allclose(np.abs(far_field(psi)), np.full((size, size), 1.0 / size), rtol=1e-12)


@pytest.mark.parametrize("size", [8, 15, 32])
def test_far_field_of_constant_is_delta_at_centre(size):
    value = 0.3 - 0.4j
    far = far_field(np.full((size, size), value))
    expected = np.zeros((size, size), dtype=complex)
    # sum of N*N copies of the value, divided by N, at the zero frequency pixel N//2.
    expected[size // 2, size // 2] = value * size
    np.testing.assert_allclose(far, expected, rtol=0, atol=1e-12)


def test_far_field_of_plane_wave_is_delta_off_centre():
    # exp(2 pi i (kx c + ky r) / N) lands kx columns right, ky rows down of the centre.
    size, kx, ky = 16, 3, -2
    rows, cols = np.mgrid[0:size, 0:size]
    psi = np.exp(2j * np.pi * (kx * cols + ky * rows) / size)
    intensity = np.abs(far_field(psi)) ** 2
    peak = np.unravel_index(np.argmax(intensity), intensity.shape)
    assert peak == (size // 2 + ky, size // 2 + kx)
    assert intensity[peak] == pytest.approx(size**2)


def test_far_field_amplitude_ignores_object_translation():
    # Shift theorem: a (cyclic) shift of the exit wave changes only the far-field phase.
    psi = complex_image(np.random.default_rng(1), (16, 16))
    shifted = np.roll(psi, (3, -5), axis=(0, 1))
    np.testing.assert_allclose(np.abs(far_field(shifted)), np.abs(far_field(psi)), rtol=1e-10, atol=1e-12)


def test_illuminate_broadcasts_probe_over_batch_and_channels():
    rng = np.random.default_rng(2)
    patches = complex_image(rng, (2, 4, 8, 8))
    probe = complex_image(rng, (8, 8))
    psi = illuminate(patches, probe)
    np.testing.assert_array_equal(psi[1, 3], patches[1, 3] * probe)


def test_predicted_amplitude_and_intensity_chain():
    rng = np.random.default_rng(3)
    patches = complex_image(rng, (2, 1, 8, 8))
    probe = complex_image(rng, (8, 8))
    amplitude = predicted_amplitude(patches, probe)
    np.testing.assert_allclose(amplitude, np.abs(np.fft.fftshift(np.fft.fft2(patches * probe), axes=(-2, -1))) / 8)
    scale = 2.5
    np.testing.assert_allclose(predicted_intensity(amplitude, scale), (scale * amplitude) ** 2)
    # Energy: scaled intensity totals s^2 * sum |O P|^2 (Parseval).
    np.testing.assert_allclose(
        predicted_intensity(amplitude, scale).sum(axis=(-2, -1)),
        scale**2 * np.sum(np.abs(patches * probe) ** 2, axis=(-2, -1)),
        rtol=1e-12,
    )


@pytest.mark.parametrize("size", [8, 16, 64])
def test_circular_probe_mask_is_disk_of_radius_quarter(size):
    mask = circular_probe_mask(size)
    centre = size // 2
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert mask[centre, centre] == 1
    # Pixels exactly N/4 away along an axis are inside; one further is outside.
    assert mask[centre, centre + size // 4] == 1 and mask[centre - size // 4, centre] == 1
    assert mask[centre, centre + size // 4 + 1] == 0
    assert mask[0, 0] == 0
    # Area close to pi (N/4)^2.
    assert abs(mask.sum() - np.pi * (size / 4) ** 2) < 2 * np.pi * size / 4 + 2


def test_circular_probe_mask_fits_the_central_window():
    # The probe disk lies inside the object window: masked probe energy is all seen
    # by a windowed patch (window covers N//4 .. 3N//4 - 1; the disk reaches N//2 + N/4
    # = 3N/4, one pixel further on the high side).
    size = 64
    mask = circular_probe_mask(size)
    window = central_window_mask(size)
    outside = mask * (1 - window)
    # Only the two pixels at distance exactly N/4 on the high side stick out.
    assert outside.sum() == 2
    assert outside[size // 2, 3 * size // 4] == 1 and outside[3 * size // 4, size // 2] == 1


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, np.float32, np.float64])
def test_normalise_probe_energy_is_n_squared(dtype):
    size = 16
    rng = np.random.default_rng(4)
    probe = complex_image(rng, (size, size)) if np.dtype(dtype).kind == "c" else rng.normal(size=(size, size))
    probe = (7.3 * probe).astype(dtype)
    normalised = normalise_probe(probe)
    assert normalised.dtype.kind == "c"
    assert normalised.dtype == (np.complex64 if dtype in (np.complex64, np.float32) else np.complex128)
    rtol = 1e-5 if normalised.dtype == np.complex64 else 1e-12
    np.testing.assert_allclose(np.sum(np.abs(normalised) ** 2), size**2, rtol=rtol)
    # Only the scale changes, not the shape or phase.
    np.testing.assert_allclose(normalised / np.abs(normalised).max(), probe / np.abs(probe).max(), rtol=rtol, atol=rtol)


def test_half_amplitude_object_under_normalised_probe_gives_target_energy():
    # The rule behind N**2: a uniform object of amplitude 1/2 under the normalised probe
    # predicts total energy (N/2)**2, the mean energy of the normalised measurements.
    size = 32
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    probe = np.exp(-(xx**2 + yy**2) / (2 * 4.0**2)) * np.exp(0.3j * xx)
    probe = normalise_probe(circular_probe_mask(size) * probe)
    amplitude = predicted_amplitude(np.full((size, size), 0.5 + 0j), probe)
    assert np.sum(amplitude**2) == pytest.approx((size / 2) ** 2, rel=1e-12)


def test_normalise_probe_rejects_zero_probe():
    with pytest.raises(ValueError, match="sum \\|P\\|\\^2=0"):
        normalise_probe(np.zeros((8, 8), dtype=np.complex64))


def test_normalise_probe_rejects_non_square():
    with pytest.raises(ValueError, match=r"probe.shape=\(8, 6\)"):
        normalise_probe(np.ones((8, 6)))
