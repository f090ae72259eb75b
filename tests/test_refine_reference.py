"""The numpy reference of refinement (docs/physics.md §10): the definition the backends are held to."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ptychopinn_core.config import Config, ConfigError
from ptychopinn_core.physics import extract_patches, normalise_probe
from ptychopinn_core.parity.tolerances import relative_error
from ptychopinn_core.refine import (
    NumpyRefiner,
    RefineProblem,
    adam_step,
    fitted_truth,
    flat_start,
    loss_and_gradients,
    scatter_patches,
)
from ptychopinn_core.refine.reference import AdamState
from ptychopinn_core.simulation.scan import make_demo_scan
from ptychopinn_core.workflow import object_frame_for


@pytest.fixture(scope="module")
def scan():
    return make_demo_scan(36, size=32, seed=5)


@pytest.fixture(scope="module")
def noiseless(scan):
    """The same scan with exact amplitudes: the truth then fits the data to rounding."""
    exact = np.abs(np.fft.fft2(scan.patches.astype(np.complex128) * scan.probe))
    return dataclasses.replace(scan, diffraction=np.fft.fftshift(exact, axes=(-2, -1)).astype(np.float32))


def problem_for(scan, **refine) -> RefineProblem:
    config = Config().with_overrides({f"refine.{key}": value for key, value in refine.items()})
    return RefineProblem.for_scan(scan, object_frame_for(scan), config)


def test_scatter_is_the_adjoint_of_extract(scan):
    """<E x, y> == <x, E^T y> for sub-pixel positions, edges included."""
    rng = np.random.default_rng(0)
    shape = (40, 44)
    positions = rng.uniform(-6, 46, size=(7, 2))
    x = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    y = rng.normal(size=(7, 16, 16)) + 1j * rng.normal(size=(7, 16, 16))
    left = np.vdot(extract_patches(x, positions, 16), y)
    right = np.vdot(x, scatter_patches(y, positions, shape))
    assert abs(left - right) <= 1e-12 * abs(left)


@pytest.mark.parametrize("loss", ["amplitude", "poisson"])
def test_analytic_gradient_matches_finite_differences(scan, loss):
    """dL/dRe + i dL/dIm, checked along random directions in float64."""
    problem = problem_for(scan, loss=loss)
    probe = normalise_probe(scan.probe).astype(np.complex128)
    obj = fitted_truth(problem, scan.object, probe).astype(np.complex128) * 0.9 + 0.05
    indices = problem.batches(0)[0]
    _, d_obj, d_probe = loss_and_gradients(obj, probe, problem, indices)
    rng = np.random.default_rng(1)
    for which, gradient in (("object", d_obj), ("probe", d_probe)):
        base = obj if which == "object" else probe
        direction = rng.normal(size=base.shape) + 1j * rng.normal(size=base.shape)
        step = 1e-6 * np.linalg.norm(base) / np.linalg.norm(direction)

        def value(t):
            moved = base + t * direction
            args = (moved, probe) if which == "object" else (obj, moved)
            return loss_and_gradients(*args, problem, indices)[0]

        numeric = (value(step) - value(-step)) / (2 * step)
        analytic = np.real(np.vdot(gradient, direction))  # Re<g, d> = dRe.dRe + dIm.dIm
        assert numeric == pytest.approx(analytic, rel=1e-5), which


@pytest.mark.parametrize("loss", ["amplitude", "poisson"])
def test_the_truth_is_a_stationary_point(noiseless, loss):
    """On exact data the scaled truth has (almost) no gradient; a perturbed object has."""
    problem = problem_for(noiseless, loss=loss)
    probe = normalise_probe(noiseless.probe).astype(np.complex128)
    truth = fitted_truth(problem, noiseless.object, probe).astype(np.complex128)
    indices = np.arange(problem.n_positions)
    _, at_truth, _ = loss_and_gradients(truth, probe, problem, indices)
    perturbed = truth * (1 + 0.01 * np.random.default_rng(2).normal(size=truth.shape))
    _, away, _ = loss_and_gradients(perturbed, probe, problem, indices)
    assert np.linalg.norm(at_truth) <= 1e-4 * np.linalg.norm(away)


def test_refining_the_truth_keeps_it(noiseless):
    """Adam normalises every gradient, rounding too, so the truth is kept only to about its
    step size (1 % here), and the decay of the step size lets it settle there."""
    problem = problem_for(noiseless, iterations=10, batch_size=12)
    probe = normalise_probe(noiseless.probe).astype(np.complex64)
    truth = fitted_truth(problem, noiseless.object, probe)
    result = NumpyRefiner(problem).run(truth, probe)
    assert relative_error(result.object, truth) < 2e-2
    assert result.losses[-1] < 1e-2 * NumpyRefiner(problem).run(flat_start(problem, probe), probe).losses[0]


def test_refining_a_flat_start_approaches_the_truth(noiseless):
    problem = problem_for(noiseless, iterations=30, batch_size=6)
    probe = normalise_probe(noiseless.probe).astype(np.complex64)
    start = flat_start(problem, probe)
    result = NumpyRefiner(problem).run(start, probe)
    assert result.losses[-1] < 1e-3 * result.losses[0]


def test_flat_start_matches_the_data_energy(scan):
    problem = problem_for(scan)
    probe = normalise_probe(scan.probe)
    level = flat_start(problem, probe)
    assert np.allclose(level, 0.5) and level.dtype == np.complex64


def test_adam_step_rule_by_hand():
    state = AdamState((2,), np.dtype(np.complex128))
    value = np.array([1 + 1j, 2 - 1j])
    gradient = np.array([0.5 - 2j, 0.0 + 0j])
    moved = adam_step(value, gradient, state, 0.1)
    # First step: m^ = g, v^ = g**2 per component, so each component moves by step * sign(g),
    # less the relative epsilon (1e-3 of the largest |g| = 2) in the denominator.
    expected = value - 0.1 * np.array([0.5 / (0.5 + 2e-3) - 1j * 2 / (2 + 2e-3), 0])
    assert np.allclose(moved, expected, rtol=0, atol=1e-15)
    assert state.steps == 1


def test_batches_visit_every_position_once_in_a_seeded_order(scan):
    problem = problem_for(scan, batch_size=5, seed=3)
    first = problem.batches(0)
    assert [len(batch) for batch in first] == [5] * 7 + [1]
    assert sorted(np.concatenate(first).tolist()) == list(range(36))
    assert all(np.array_equal(a, b) for a, b in zip(first, problem.batches(0)))
    assert not np.array_equal(np.concatenate(first), np.concatenate(problem.batches(1)))


def test_probe_refinement_waits_for_its_delay(scan):
    problem = problem_for(scan, probe=True, probe_delay=2)
    assert [problem.refines_probe(i) for i in range(4)] == [False, False, True, True]
    assert not problem_for(scan, probe=False).refines_probe(5)


def test_probe_is_untouched_without_probe_refinement(scan):
    problem = problem_for(scan, iterations=2, batch_size=12)
    probe = normalise_probe(scan.probe).astype(np.complex64)
    result = NumpyRefiner(problem).run(flat_start(problem, probe), probe)
    assert np.array_equal(result.probe, probe)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("refine.iterations", -1, "refine.iterations"),
        ("refine.batch_size", 0, "refine.batch_size"),
        ("refine.step_size", 0, "refine.step_size"),
        ("refine.step_decay", 1.5, "refine.step_decay"),
        ("refine.loss", "l1", "refine.loss"),
        ("refine.probe_delay", -2, "refine.probe_delay"),
    ],
)
def test_bad_settings_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        Config().with_overrides({key: value})


def test_a_start_that_does_not_fit_is_refused(scan):
    problem = problem_for(scan)
    probe = normalise_probe(scan.probe)
    refiner = NumpyRefiner(problem)
    with pytest.raises(ValueError, match=r"start object: expected the frame's shape"):
        refiner.run(np.ones((3, 3), np.complex64), probe)
    with pytest.raises(ValueError, match=r"probe: expected shape \(32, 32\)"):
        refiner.run(flat_start(problem, probe), np.ones((16, 16), np.complex64))
    bad = flat_start(problem, probe)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        refiner.run(bad, probe)
