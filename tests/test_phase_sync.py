"""Phase-synchronised stitching (physics.md, Stitching; ``Stitcher(phase_sync=True)``).

A far-field pattern does not fix its patch's constant phase, so a network's patches can
disagree by one constant each. The synchronisation must remove exactly that and nothing
else: recover the object from patches given random constant phases, leave consistent
patches alone, commute with a common phase, and not depend on how the patches arrive.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn_core.evaluation.region import scanned_region
from ptychopinn_core.physics.phase_sync import PHASE_SYNC_MAX_STEPS, synchronise_phases
from ptychopinn_core.physics.stitching import (
    ObjectFrame,
    Stitcher,
    default_crop_size,
    stitch,
)
from ptychopinn_core.simulation import make_demo_scan


@pytest.fixture(scope="module")
def integer_scan():
    return make_demo_scan(400, size=64, nphotons=1e6, seed=5, jitter_px=0.0)


@pytest.fixture(scope="module")
def jittered_scan():
    return make_demo_scan(400, size=64, nphotons=1e6, seed=4)


def _region(scan):
    return scanned_region(scan.positions_px, ObjectFrame.for_object(scan.object.shape), default_crop_size(64))


def _common_phase_removed(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    common = np.sum(result * np.conj(reference))
    return result * np.conj(common / abs(common))


def _offsets(n: int, spread: float, seed: int = 0) -> np.ndarray:
    return np.exp(1j * np.random.default_rng(seed).uniform(-spread, spread, n))[:, None, None]


def _synchronised(scan, patches, anchor=None, chunk_size=1024):
    frame = ObjectFrame.for_object(scan.object.shape)
    stitcher = Stitcher(frame, patch_size=64, phase_sync=True,
                        **({} if anchor is None else {"phase_sync_anchor": anchor}))
    for start in range(0, len(patches), chunk_size):
        stitcher.add(patches[start : start + chunk_size], scan.positions_px[start : start + chunk_size])
    return stitcher.result(), stitcher


def test_without_the_anchor_random_patch_phases_are_removed_exactly(integer_scan):
    scan = integer_scan
    rows, cols = _region(scan)
    truth = scan.object[rows, cols]
    scrambled = scan.patches * _offsets(len(scan.patches), np.pi)
    plain = stitch(scrambled, scan.positions_px, ObjectFrame.for_object(scan.object.shape))
    result, stitcher = _synchronised(scan, scrambled, anchor=0.0)
    assert np.max(np.abs(plain[rows, cols] - truth)) > 1.0  # averaging scrambled phases destroys the object
    np.testing.assert_allclose(_common_phase_removed(result[rows, cols], truth), truth, atol=1e-3)
    assert 1 <= stitcher.sync_steps_run < PHASE_SYNC_MAX_STEPS  # it converged


def test_with_the_default_anchor_small_patch_phases_are_mostly_removed(integer_scan):
    """Network-like errors (a few tenths of a radian per patch): the default pulls each
    patch towards its own phase a little, and still removes most of the disagreement."""
    scan = integer_scan
    rows, cols = _region(scan)
    truth = scan.object[rows, cols]
    disturbed = scan.patches * _offsets(len(scan.patches), 0.5, seed=1)
    plain = stitch(disturbed, scan.positions_px, ObjectFrame.for_object(scan.object.shape))
    result, _ = _synchronised(scan, disturbed)

    def error(image):
        return np.sqrt(np.mean(np.abs(_common_phase_removed(image[rows, cols], truth) - truth) ** 2))

    assert error(result) < error(plain) / 5, (error(result), error(plain))


def test_consistent_patches_are_left_as_they_are(jittered_scan):
    scan = jittered_scan
    frame = ObjectFrame.for_object(scan.object.shape)
    plain = stitch(scan.patches, scan.positions_px, frame)
    result, _ = _synchronised(scan, scan.patches)
    # Sub-pixel positions make each window a slightly different interpolation of the
    # object, so the optimal factors are 1 only to that accuracy.
    np.testing.assert_allclose(result, plain, atol=1e-2)
    rows, cols = _region(scan)
    assert np.sqrt(np.mean(np.abs(result - plain)[rows, cols] ** 2)) < 1e-3


def test_a_common_phase_passes_through(jittered_scan):
    scan = jittered_scan
    disturbed = scan.patches * _offsets(len(scan.patches), 0.5, seed=2)
    result, _ = _synchronised(scan, disturbed)
    rotated, _ = _synchronised(scan, disturbed * np.exp(0.7j))
    np.testing.assert_allclose(rotated, result * np.exp(0.7j), atol=1e-5)


def test_chunks_do_not_change_the_result(jittered_scan):
    scan = jittered_scan
    disturbed = scan.patches * _offsets(len(scan.patches), 0.5, seed=3)
    one_shot, _ = _synchronised(scan, disturbed)
    chunked, _ = _synchronised(scan, disturbed, chunk_size=37)
    np.testing.assert_allclose(chunked, one_shot, atol=1e-5)


def test_amplitudes_are_the_networks_and_a_lone_patch_keeps_its_phase(jittered_scan):
    scan = jittered_scan
    patch = scan.patches[:1] * np.exp(1.2j)
    position = scan.positions_px[:1]
    frame = ObjectFrame.for_object(scan.object.shape)
    plain = stitch(patch, position, frame)
    synced = stitch(patch, position, frame, phase_sync=True)
    np.testing.assert_allclose(synced, plain, atol=1e-6)
    disturbed = scan.patches * _offsets(len(scan.patches), 0.5, seed=4)
    result, _ = _synchronised(scan, disturbed)
    # Where one window covers a pixel alone, synchronising changes only its phase.
    weight = Stitcher(frame, patch_size=64)
    weight.add(disturbed, scan.positions_px)
    single = np.isclose(weight.weight, 1.0)
    plain_all = stitch(disturbed, scan.positions_px, frame)
    assert single.sum() > 0
    np.testing.assert_allclose(np.abs(result[single]), np.abs(plain_all[single]), atol=1e-5)


def test_bad_anchor_is_a_clear_error():
    frame = ObjectFrame(0, 0, 32, 32)
    for bad in (-0.1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="phase_sync_anchor"):
            Stitcher(frame, patch_size=16, phase_sync=True, phase_sync_anchor=bad)


def _power_method(gram, anchor, tol=1e-12, rounds=200_000):
    """The reference: the generalised power method (every round raises the objective), run
    to a tight tolerance; slow, but its fixed point is the optimum for network-like input."""
    factors = np.ones(gram.shape[0], dtype=np.complex128)
    for _ in range(rounds):
        target = gram @ factors + anchor
        updated = target / np.abs(target)
        if np.max(np.abs(updated - factors)) <= tol:
            return updated
        factors = updated
    raise AssertionError("the reference did not converge")


def _gram(scan, patches, monkeypatch):
    """The stitcher's own overlap matrix for these patches (its synchronisation's input)."""
    import ptychopinn_core.physics.stitching as stitching

    captured = {}

    def spy(gram, anchor):
        captured["gram"] = gram
        return synchronise_phases(gram, anchor)

    with monkeypatch.context() as patch:
        patch.setattr(stitching, "synchronise_phases", spy)
        _synchronised(scan, patches)
    return captured["gram"]


@pytest.mark.parametrize("anchor", [0.0, 0.03, 0.3])
def test_newton_reaches_the_power_methods_optimum(jittered_scan, anchor, monkeypatch):
    scan = jittered_scan
    gram = _gram(scan, scan.patches * _offsets(len(scan.patches), 0.5, seed=6), monkeypatch)
    weights = anchor * gram.diagonal().real
    factors, steps = synchronise_phases(gram, weights)
    reference = _power_method(gram, weights)
    if anchor == 0.0:  # then only relative phases are defined
        factors = _common_phase_removed(factors, reference)
    np.testing.assert_allclose(factors, reference, atol=1e-6)
    assert steps <= 10


def test_a_rank_one_overlap_is_solved_exactly():
    """``A = z z^H``: without an anchor the optimum is ``u = z / |z|`` up to a common phase."""
    from scipy import sparse

    z = np.random.default_rng(7).normal(size=50) * np.exp(1j * np.linspace(-3.0, 3.0, 50))
    factors, _ = synchronise_phases(sparse.csr_matrix(np.outer(z, np.conj(z))), np.zeros(50))
    np.testing.assert_allclose(_common_phase_removed(factors, z / np.abs(z)), z / np.abs(z), atol=1e-8)


@pytest.mark.parametrize(("spread", "most_steps"), [(np.pi / 2, 20), (np.pi, PHASE_SYNC_MAX_STEPS - 1)])
def test_a_large_scan_is_synchronised(spread, most_steps):
    """2000 patches and no anchor: the power method needs thousands of rounds here (a smooth
    disagreement moves by local averaging only); Newton's steps solve for every angle at
    once, and its step bound keeps it out of local optima even from the whole circle."""
    scan = make_demo_scan(2000, size=64, nphotons=1e6, seed=5, jitter_px=0.0)
    rows, cols = _region(scan)
    truth = scan.object[rows, cols]
    result, stitcher = _synchronised(scan, scan.patches * _offsets(len(scan.patches), spread, seed=8), anchor=0.0)
    np.testing.assert_allclose(_common_phase_removed(result[rows, cols], truth), truth, atol=1e-3)
    assert stitcher.sync_steps_run <= most_steps


def test_a_window_off_the_canvas_changes_nothing(jittered_scan):
    """A patch placed wholly outside the frame has no overlap at all (A_kk = 0)."""
    scan = jittered_scan
    frame = ObjectFrame.for_object(scan.object.shape)
    disturbed = scan.patches[:50] * _offsets(50, 0.5, seed=9)
    inside = stitch(disturbed, scan.positions_px[:50], frame, phase_sync=True)
    far = np.array([[-1000.0, -1000.0]])
    with_outside = stitch(np.concatenate([disturbed, disturbed[:1]]), np.concatenate([scan.positions_px[:50], far]),
                          frame, phase_sync=True)
    assert np.all(np.isfinite(with_outside))
    np.testing.assert_allclose(with_outside, inside, atol=1e-6)
