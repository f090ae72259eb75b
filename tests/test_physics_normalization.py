"""Data normalisation and intensity scale (docs/physics.md, "Normalisation")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptychopinn_core.physics.forward import predicted_intensity
from ptychopinn_core.physics.normalization import amplitude_normalisation, intensity_scale


@pytest.mark.parametrize("size", [8, 32, 64])
@pytest.mark.parametrize("photons", [1e2, 1e6, 1e9])
def test_normalised_patterns_have_mean_energy_half_n_squared(size, photons):
    rng = np.random.default_rng(size)
    # Poisson counts of a bright centre, as measured: amplitude = sqrt(counts).
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    expected = np.exp(-(xx**2 + yy**2) / (2 * (size / 8) ** 2))
    expected *= photons / expected.sum()
    diffraction = np.sqrt(rng.poisson(expected, size=(20, size, size))).astype(np.float32)
    a = amplitude_normalisation(diffraction)
    energy = np.sum((a * diffraction.astype(np.float64)) ** 2, axis=(1, 2))
    assert energy.mean() == pytest.approx((size / 2) ** 2, rel=1e-9)
    # It is a mean over patterns, not per pattern: individual energies keep their spread.
    assert np.std(energy) > 0


def test_normalisation_is_scale_invariant():
    rng = np.random.default_rng(0)
    diffraction = rng.uniform(0, 3, size=(5, 16, 16))
    a = amplitude_normalisation(diffraction)
    assert amplitude_normalisation(7.0 * diffraction) == pytest.approx(a / 7.0, rel=1e-12)


def test_normalisation_hand_computed():
    diffraction = np.zeros((2, 4, 4))
    diffraction[0, 0, 0] = 2.0  # energy 4
    diffraction[1, 1, :] = 1.0  # energy 4
    # a = sqrt((4/2)^2 / 4) = 1
    assert amplitude_normalisation(diffraction) == pytest.approx(1.0)
    assert amplitude_normalisation(diffraction * 0.5) == pytest.approx(2.0)


@pytest.mark.parametrize("size", [16, 64])
def test_intensity_scale_brings_mean_total_to_nphotons(size):
    rng = np.random.default_rng(size)
    diffraction = rng.uniform(0, 1, size=(10, size, size))
    normalised = amplitude_normalisation(diffraction) * diffraction
    nphotons = 1e9
    s = intensity_scale(nphotons, size)
    assert s == pytest.approx(math.sqrt(nphotons) / (size / 2))
    totals = predicted_intensity(normalised, s).sum(axis=(1, 2))
    assert totals.mean() == pytest.approx(nphotons, rel=1e-9)


@pytest.mark.parametrize(
    "diffraction, message",
    [
        (np.zeros((0, 8, 8)), r"diffraction.shape=\(0, 8, 8\)"),
        (np.zeros((3, 8, 8)), "non-zero mean total energy"),
        (np.zeros((8, 8)), r"expected \(M, N, N\)"),
        (np.ones((2, 8, 6)), r"diffraction.shape=\(2, 8, 6\)"),
        (np.full((2, 4, 4), np.inf), "received inf"),
    ],
)
def test_normalisation_rejects_bad_input(diffraction, message):
    with pytest.raises(ValueError, match=message):
        amplitude_normalisation(diffraction)


def test_normalisation_rejects_complex_input():
    with pytest.raises(TypeError, match="complex128"):
        amplitude_normalisation(np.ones((2, 4, 4), dtype=complex))


@pytest.mark.parametrize("nphotons", [0, -1e6, float("nan"), float("inf")])
def test_intensity_scale_rejects_bad_photon_counts(nphotons):
    with pytest.raises(ValueError, match="nphotons"):
        intensity_scale(nphotons, 64)


def test_intensity_scale_rejects_bad_size():
    with pytest.raises(ValueError, match="size=0"):
        intensity_scale(1e9, 0)
    with pytest.raises(TypeError, match="size=64.0"):
        intensity_scale(1e9, 64.0)
