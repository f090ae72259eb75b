"""The ONNX backend's graph ops (ptychopinn_onnx.graph) against the numpy reference.

Each physics step is run as the small ONNX graph of ``OnnxPhysicsOps`` (the same graph
functions the exported model is built of) on float32 inputs and compared with
:mod:`ptychopinn_core.physics` in float64 on the same inputs: ``TOLERANCES[op]``
(1e-6), or exactly where the reference is exact (integer shifts). The network is
compared with the numpy oracle of tests/test_network.py (``TOLERANCES["network"]``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from test_network import NETWORK_TOLERANCE, oracle_case  # noqa: E402

from ptychopinn_core.parity.cases import PHYSICS_OPS, physics_case  # noqa: E402
from ptychopinn_core.parity.tolerances import TOLERANCES, relative_error  # noqa: E402
from ptychopinn_core.physics import (  # noqa: E402
    central_window_mask,
    enforce_overlap,
    merge_patches,
    pad_to_full,
    probe_weights,
    translate,
)
from ptychopinn_core.simulation.probe import default_probe  # noqa: E402
from ptychopinn_onnx import graph  # noqa: E402
from ptychopinn_onnx.export import build_network_proto  # noqa: E402
from ptychopinn_onnx.graph import GraphBuilder  # noqa: E402
from ptychopinn_onnx.model import new_session  # noqa: E402
from ptychopinn_onnx.ops import OnnxPhysicsOps  # noqa: E402

TRANSLATE_TOLERANCE = TOLERANCES["translate"].relative


@pytest.fixture(scope="module")
def ops() -> OnnxPhysicsOps:
    return OnnxPhysicsOps()


def smooth_images(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Smooth complex64 images (low-frequency waves), as objects are."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(shape[-2]), np.arange(shape[-1]), indexing="ij")
    result = np.zeros(shape, dtype=np.complex128)
    for _ in range(3):
        ky, kx = rng.uniform(-0.3, 0.3, size=2)
        weight = rng.normal(size=shape[:-2] + (1, 1)) + 1j * rng.normal(size=shape[:-2] + (1, 1))
        result += weight * np.exp(1j * (ky * rows + kx * cols + rng.uniform(0, 2 * math.pi)))
    return result.astype(np.complex64)


# -- each physics op -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 64])
@pytest.mark.parametrize("op", PHYSICS_OPS)
def test_physics_op_matches_the_reference(ops, op: str, size: int) -> None:
    arguments, expected = physics_case(op, size, math.sqrt(1e9) / (size / 2))
    actual = getattr(ops, op)(*arguments)
    if np.ndim(expected):
        assert actual.shape == expected.shape and actual.dtype == np.complex64
    else:
        assert isinstance(actual, float)
    error = relative_error(actual, expected)
    assert error <= TOLERANCES[op].relative, f"{op} N={size}: relative error {error:.2e}"


#: (dx, dy): integer, negative, half out of the frame and entirely out of it.
INTEGER_SHIFTS = [(0, 0), (3, 1), (-2, 0), (0, -5), (-7, 4), (11, -3), (16, 0), (-20, 2), (1, 12)]
#: Fractional shifts: halves, negatives, tiny, large, half and wholly out of the frame.
FRACTIONAL_SHIFTS = [(0.5, 0), (-0.25, 1.75), (-3.6, -2.2), (0.001, -0.001), (-0.999, 0.999), (7.5, 0.3),
                     (-11.25, 5.5), (15.5, -0.5), (-17.25, 0.75), (2.3, -13.7)]


@pytest.mark.parametrize("kind", ["complex", "real"])
def test_translate_integer_shifts_are_exact(ops, kind: str) -> None:
    """Integer shifts are a zero-filled roll, in the reference and here: bit for bit."""
    images = smooth_images((len(INTEGER_SHIFTS), 12, 16), seed=1)  # not square: rows and columns differ
    images = images if kind == "complex" else images.real.copy()
    shifts = np.array(INTEGER_SHIFTS, dtype=np.float32)
    actual = ops.translate(images, shifts)
    expected = translate(images, shifts)
    assert actual.dtype == images.dtype
    np.testing.assert_array_equal(actual, expected)
    assert not np.any(actual[INTEGER_SHIFTS.index((16, 0))]), "content that left the frame must be gone"


@pytest.mark.parametrize("kind", ["complex", "real"])
def test_translate_fractional_negative_and_out_of_frame(ops, kind: str) -> None:
    images = smooth_images((len(FRACTIONAL_SHIFTS), 16, 16), seed=2)
    images = images if kind == "complex" else images.real.copy()
    shifts = np.array(FRACTIONAL_SHIFTS, dtype=np.float32)
    actual = ops.translate(images, shifts)
    expected = translate(images.astype(np.complex128 if kind == "complex" else np.float64), shifts.astype(np.float64))
    error = relative_error(actual, expected)
    assert error <= TRANSLATE_TOLERANCE, f"relative error {error:.2e}"
    assert not np.any(actual[FRACTIONAL_SHIFTS.index((-17.25, 0.75))]), "wholly out of the frame: zero"
    for index in range(len(FRACTIONAL_SHIFTS)):  # each image on its own, so no large one hides a small one
        per_image = relative_error(actual[index], expected[index]) if np.any(expected[index]) else 0.0
        assert per_image <= TRANSLATE_TOLERANCE, f"shift {FRACTIONAL_SHIFTS[index]}: {per_image:.2e}"


def test_translate_worked_example_of_the_docs(ops) -> None:
    """physics.md §2: a bright pixel at row 2, column 1 of a 6 x 6 image."""
    image = np.zeros((3, 6, 6), dtype=np.float32)
    image[:, 2, 1] = 1
    moved = ops.translate(image, np.array([[3, 1], [0.5, 0], [-2, 0]], dtype=np.float32))
    assert moved[0, 3, 4] == 1 and moved[0].sum() == 1
    assert moved[1, 2, 1] == moved[1, 2, 2] == 0.5 and moved[1].sum() == 1
    assert not np.any(moved[2])


@pytest.mark.parametrize("rule", ["window", "probe"])
@pytest.mark.parametrize("gridsize", [2, 3])
def test_enforce_overlap_with_both_merge_weight_rules(ops, rule: str, gridsize: int) -> None:
    size, channels = 32, gridsize * gridsize
    rng = np.random.default_rng(gridsize)
    patches = pad_to_full(smooth_images((3, channels, size // 2, size // 2), seed=3), size)
    offsets = rng.uniform(-5, 5, size=(3, channels, 2))
    offsets[0] = np.round(offsets[0])  # one group of integer positions
    offsets = offsets.astype(np.float32)
    weights = None if rule == "window" else probe_weights(default_probe(size)).astype(np.float32)
    actual = ops.enforce_overlap(patches, offsets, weights)
    expected = enforce_overlap(patches.astype(np.complex128), offsets.astype(np.float64), weights)
    error = relative_error(actual, expected)
    assert error <= TOLERANCES["enforce_overlap"].relative, f"{rule}, C={channels}: relative error {error:.2e}"


def test_enforce_overlap_of_one_channel_is_the_identity(ops) -> None:
    patches = smooth_images((2, 1, 16, 16), seed=4)
    np.testing.assert_array_equal(ops.enforce_overlap(patches, np.ones((2, 1, 2), np.float32)), patches)


def test_merge_patches_leaves_uncovered_pixels_at_zero(ops) -> None:
    size = 16
    patches = pad_to_full(smooth_images((2, 4, size // 2, size // 2), seed=5), size)
    offsets = np.array([[[-3.5, -3.5], [3.5, -3.5], [-3.5, 3.5], [3.5, 3.5]]] * 2, dtype=np.float32)
    actual = ops.merge_patches(patches, offsets)
    expected = merge_patches(patches.astype(np.complex128), offsets.astype(np.float64))
    assert relative_error(actual, expected) <= TOLERANCES["merge_patches"].relative
    np.testing.assert_array_equal(actual == 0, expected == 0)


def test_bad_shapes_are_one_clear_error(ops) -> None:
    with pytest.raises(ValueError, match="invalid shifts shape"):
        ops.translate(np.zeros((2, 8, 8), np.complex64), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="invalid offsets shape"):
        ops.enforce_overlap(np.zeros((2, 4, 8, 8), np.complex64), np.zeros((2, 3, 2), np.float32))
    with pytest.raises(ValueError, match="invalid merge weights"):
        ops.enforce_overlap(np.zeros((2, 4, 8, 8), np.complex64), np.zeros((2, 4, 2), np.float32),
                            np.ones((4, 4), np.float32))


def run_graph(build, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    g = GraphBuilder()
    for name, value in feeds.items():
        g.add_input(name, value.shape)
    for index, source in enumerate(build(g)):
        g.add_output(source, f"out{index}", None)
    return new_session(g.model("test")).run(None, feeds)


def test_pad_and_complex_combine(ops) -> None:
    rng = np.random.default_rng(6)
    amplitude = rng.uniform(0, 1, size=(2, 4, 8, 8)).astype(np.float32)
    phase = rng.uniform(-math.pi, math.pi, size=(2, 4, 8, 8)).astype(np.float32)
    real, imag = run_graph(
        lambda g: list(graph.complex_combine(g, graph.pad_to_full(g, "a", 16), graph.pad_to_full(g, "p", 16))),
        {"a": amplitude, "p": phase},
    )
    expected = pad_to_full(amplitude * np.exp(1j * phase.astype(np.float64)), 16)
    assert relative_error(real + 1j * imag, expected) <= TOLERANCES["layers"].relative
    np.testing.assert_array_equal(real * central_window_mask(16), real)


def test_dft_matrix_is_the_shifted_fft() -> None:
    for size in (6, 16):
        x = np.random.default_rng(size).normal(size=size)
        np.testing.assert_allclose(graph.dft_matrix(size) @ x, np.fft.fftshift(np.fft.fft(x)), atol=1e-12)


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid activation"):
        graph.activate(GraphBuilder(), "x", "gelu")


# -- the network ------------------------------------------------------------------------------

NETWORK_CASES = [
    (16, 2, "sigmoid", "encoder_decoder", "shared"),
    (16, 2, "swish", "unet", "joint"),
    (16, 1, "relu", "encoder_decoder", "shared"),
    (32, 2, "softplus", "unet", "shared"),
    (64, 2, "sigmoid", "encoder_decoder", "joint"),
    (64, 1, "swish", "unet", "shared"),
]


@pytest.mark.parametrize("case", NETWORK_CASES, ids=lambda case: "-".join(map(str, case)))
def test_network_matches_the_numpy_oracle(case) -> None:
    model_config, weights, diffraction, (amplitude, phase) = oracle_case(*case)
    got_amplitude, got_phase = new_session(build_network_proto(model_config, weights)).run(
        None, {"diffraction": diffraction}
    )
    assert got_amplitude.shape == amplitude.shape and got_amplitude.dtype == np.float32
    for name, got, want in (("amplitude", got_amplitude, amplitude), ("phase", got_phase, phase)):
        error = relative_error(got, want)
        assert error <= NETWORK_TOLERANCE, f"{name}: relative error {error:.2e}"
