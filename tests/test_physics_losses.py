"""Training losses (docs/physics.md, "Losses")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptychopinn_core.physics.losses import POISSON_EPS, amplitude_mae, pinn_loss, poisson_nll, supervised_mae


def test_poisson_nll_hand_computed():
    predicted = np.array([[1.0, 2.0], [0.5, 0.0]])
    observed = np.array([[1.0, 3.0], [0.0, 2.0]])
    terms = [
        1.0 - 1.0 * math.log(1.0 + POISSON_EPS),
        2.0 - 3.0 * math.log(2.0 + POISSON_EPS),
        0.5 - 0.0,
        0.0 - 2.0 * math.log(0.0 + POISSON_EPS),  # predicted zero: finite thanks to eps
    ]
    assert poisson_nll(predicted, observed) == pytest.approx(sum(terms) / 4, rel=1e-14)


def test_poisson_nll_matches_full_likelihood_up_to_lgamma():
    # -log Poisson(y | I) = I - y log I + lgamma(y + 1); the dropped term does not depend on I.
    from scipy.stats import poisson

    rng = np.random.default_rng(0)
    predicted = rng.uniform(0.5, 20, size=(4, 8, 8))
    observed = rng.poisson(predicted).astype(float)
    full = -poisson.logpmf(observed, predicted)
    lgamma = np.vectorize(math.lgamma)(observed + 1)
    assert poisson_nll(predicted, observed) == pytest.approx(np.mean(full - lgamma), rel=1e-6)


@pytest.mark.parametrize("relative_step", [1e-3, 1e-2, 0.1, 0.5])
def test_poisson_nll_is_minimised_at_the_observation(relative_step):
    rng = np.random.default_rng(1)
    observed = rng.uniform(1, 100, size=(2, 16, 16))
    at_observation = poisson_nll(observed, observed)
    for direction in (-1, 1):
        assert poisson_nll(observed * (1 + direction * relative_step), observed) > at_observation
    # Also against a random perturbation of every pixel.
    perturbed = observed * (1 + relative_step * rng.uniform(-1, 1, size=observed.shape))
    assert poisson_nll(perturbed, observed) > at_observation


def test_poisson_nll_float32_matches_float64():
    rng = np.random.default_rng(2)
    predicted = rng.uniform(0, 1e4, size=(8, 32, 32))
    observed = rng.poisson(predicted).astype(float)
    value64 = poisson_nll(predicted, observed)
    value32 = poisson_nll(predicted.astype(np.float32), observed.astype(np.float32))
    assert value32 == pytest.approx(value64, rel=1e-5)


def test_poisson_nll_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"predicted.shape=\(2, 3\) and observed.shape=\(3, 2\)"):
        poisson_nll(np.ones((2, 3)), np.ones((3, 2)))


def test_amplitude_mae_zero_for_equal_and_linear_in_scale():
    rng = np.random.default_rng(3)
    observed = rng.uniform(0, 2, size=(3, 8, 8))
    predicted = observed + rng.normal(scale=0.1, size=observed.shape)
    assert amplitude_mae(observed, observed, 7.0) == 0.0
    base = amplitude_mae(predicted, observed, 1.0)
    assert base == pytest.approx(np.mean(np.abs(predicted - observed)))
    for scale in (0.5, 3.0, 1e3):
        assert amplitude_mae(predicted, observed, scale) == pytest.approx(scale * base, rel=1e-12)


def test_supervised_mae_wraps_the_phase():
    amplitude = np.array([1.0, 2.0, 0.5, 1.5])
    phase = np.array([0.1, -3.0, 3.0, 1.0])
    truth = amplitude * np.exp(1j * phase)
    # 2 pi jumps are no error.
    amp_err, phase_err = supervised_mae(amplitude * np.exp(1j * (phase + 2 * np.pi)), truth)
    assert amp_err == pytest.approx(0.0, abs=1e-15) and phase_err == pytest.approx(0.0, abs=1e-12)
    # Phases of 3.1 and -3.1 differ by 2 pi - 6.2, not 6.2.
    amp_err, phase_err = supervised_mae(np.exp(1j * np.full(4, 3.1)), np.exp(1j * np.full(4, -3.1)))
    assert phase_err == pytest.approx(2 * np.pi - 6.2, rel=1e-12)
    # Known amplitude and phase errors.
    predicted = (amplitude + np.array([0.1, -0.2, 0.0, 0.3])) * np.exp(1j * (phase + np.array([0.2, -0.1, 0.0, 0.5])))
    amp_err, phase_err = supervised_mae(predicted, truth)
    assert amp_err == pytest.approx(0.6 / 4, rel=1e-12)
    assert phase_err == pytest.approx(0.8 / 4, rel=1e-12)


def test_pinn_loss_combines_weighted_terms():
    rng = np.random.default_rng(4)
    observed = rng.uniform(0, 2, size=(2, 4, 8, 8))
    predicted = np.abs(observed + rng.normal(scale=0.2, size=observed.shape))
    scale = 12.5
    nll = poisson_nll((scale * predicted) ** 2, (scale * observed) ** 2)
    mae = amplitude_mae(predicted, observed, scale)
    assert pinn_loss(predicted, observed, scale) == pytest.approx(nll, rel=1e-14)
    assert pinn_loss(predicted, observed, scale, nll_weight=0.0, mae_weight=1.0) == pytest.approx(mae, rel=1e-14)
    assert pinn_loss(predicted, observed, scale, nll_weight=0.3, mae_weight=2.0) == pytest.approx(
        0.3 * nll + 2.0 * mae, rel=1e-14
    )


def test_pinn_loss_rejects_negative_weight():
    with pytest.raises(ValueError, match="mae_weight=-1"):
        pinn_loss(np.ones(4), np.ones(4), 1.0, mae_weight=-1.0)
