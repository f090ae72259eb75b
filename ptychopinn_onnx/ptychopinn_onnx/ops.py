"""``OnnxPhysicsOps``: each physics step as a tiny ONNX graph run by ONNX Runtime.

Returned by the ``ptychopinn_physics_ops`` hook; the conformance kit and the parity
checks compare every method with the numpy reference of :mod:`ptychopinn_core.physics`.
Each method builds a graph from the same :mod:`ptychopinn_onnx.graph` functions the
exported model is made of (so what is checked here is what a model runs), with
float32 inputs of the call's shapes, and caches its session by op and shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort
from onnx import TensorProto

from ptychopinn_core.physics.overlap import central_window_mask
from ptychopinn_onnx import graph
from ptychopinn_onnx.graph import GraphBuilder
from ptychopinn_onnx.model import new_session

__all__ = ["OnnxPhysicsOps"]

_Build = Callable[[GraphBuilder], list[str]]


def _real(values: np.ndarray) -> np.ndarray:
    return np.array(values, dtype=np.float32, order="C")


def _parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 real and imaginary parts (zeros for a real array)."""
    values = np.asarray(values)
    if values.dtype.kind == "c":
        values = values.astype(np.complex64)
        return _real(values.real), _real(values.imag)
    return _real(values), np.zeros(values.shape, dtype=np.float32)


def _complex(real: np.ndarray, imag: np.ndarray) -> np.ndarray:
    out = np.empty(real.shape, dtype=np.complex64)
    out.real, out.imag = real, imag
    return out


def _check_group_arrays(patches: np.ndarray, offsets_xy: np.ndarray) -> None:
    if patches.ndim != 4 or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(f"invalid patches shape: expected (B, C, N, N), received patches.shape={patches.shape}")
    expected = patches.shape[:2] + (2,)
    if offsets_xy.shape != expected:
        raise ValueError(
            f"invalid offsets shape: expected {expected} for patches of shape {patches.shape}, "
            f"received offsets_xy.shape={offsets_xy.shape}"
        )


class OnnxPhysicsOps:
    """The ONNX implementation of :class:`~ptychopinn_core.backends.PhysicsOps`: numpy in,
    numpy out (float32; complex64 for complex results)."""

    def __init__(self) -> None:
        self._sessions: dict[tuple, ort.InferenceSession] = {}

    def _run(self, key: tuple, feeds: dict[str, np.ndarray], build: _Build,
             output_type: int = TensorProto.FLOAT) -> list[np.ndarray]:
        """Run the graph of ``key`` (built once by ``build`` from the feeds' shapes)."""
        session = self._sessions.get(key)
        if session is None:
            g = GraphBuilder()
            for name, value in feeds.items():
                g.add_input(name, value.shape)
            for index, source in enumerate(build(g)):
                g.add_output(source, f"output_{index}", None, output_type)
            session = new_session(g.model(f"ptychopinn_{key[0]}"))
            self._sessions[key] = session
        return session.run(None, feeds)

    @staticmethod
    def _key(op: str, feeds: dict[str, np.ndarray]) -> tuple:
        return (op,) + tuple((name, value.shape) for name, value in feeds.items())

    def translate(self, images: np.ndarray, shifts_xy: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_core.physics.translate.translate`: (..., H, W), (..., 2) -> (..., H, W)."""
        images = np.asarray(images)
        shifts = _real(shifts_xy)
        lead = images.shape[:-2]
        if images.ndim < 2 or shifts.shape != lead + (2,):
            raise ValueError(
                f"invalid shifts shape: expected {lead + (2,)} for images of shape {images.shape}, "
                f"received shifts_xy.shape={shifts.shape}"
            )
        height, width = images.shape[-2:]
        if images.dtype.kind != "c":
            feeds = {"images": _real(images), "shifts": shifts}
            (out,) = self._run(self._key("translate", feeds), feeds,
                               lambda g: [graph.translate(g, "images", "shifts", height, width)])
            return out
        real, imag = _parts(images)
        feeds = {"images_real": real, "images_imag": imag, "shifts": shifts}
        out = self._run(self._key("translate", feeds), feeds,
                        lambda g: list(graph.translate(g, ("images_real", "images_imag"), "shifts", height, width)))
        return _complex(*out)

    def _merge_like(self, op: str, patches: np.ndarray, offsets_xy: np.ndarray, weights: np.ndarray | None,
                    build: Callable[[GraphBuilder, int, int], tuple[str, str]]) -> np.ndarray:
        patches = np.asarray(patches)
        offsets = _real(offsets_xy)
        _check_group_arrays(patches, offsets)
        size, channels = patches.shape[-1], patches.shape[1]
        if weights is None:
            weights = central_window_mask(size, dtype=np.float32)
        weights = np.asarray(weights)
        if weights.shape != (size, size) or weights.dtype.kind != "f":
            raise ValueError(
                f"invalid merge weights: expected a real ({size}, {size}) array, received "
                f"shape {weights.shape} dtype {weights.dtype}"
            )
        real, imag = _parts(patches)
        feeds = {"patches_real": real, "patches_imag": imag, "offsets": offsets, "weights": _real(weights)}
        out = self._run(self._key(op, feeds), feeds, lambda g: list(build(g, size, channels)))
        return _complex(*out) if patches.dtype.kind == "c" else out[0]

    def merge_patches(self, patches: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_core.physics.overlap.merge_patches` with the window's weights:
        (B, C, N, N), (B, C, 2) -> (B, N, N)."""
        return self._merge_like(
            "merge_patches", patches, offsets_xy, None,
            lambda g, size, _: graph.merge_patches(g, ("patches_real", "patches_imag"), "offsets", "weights", size),
        )

    def enforce_overlap(self, patches: np.ndarray, offsets_xy: np.ndarray,
                        weights: np.ndarray | None = None) -> np.ndarray:
        """:func:`ptychopinn_core.physics.overlap.enforce_overlap`: (B, C, N, N), (B, C, 2),
        merge weights (N, N) or None (the window) -> (B, C, N, N)."""
        patches = np.asarray(patches)
        if patches.ndim == 4 and patches.shape[1] == 1:  # nothing to enforce, as the reference
            _check_group_arrays(patches, _real(offsets_xy))
            return patches.astype(np.complex64 if patches.dtype.kind == "c" else np.float32)
        return self._merge_like(
            "enforce_overlap", patches, offsets_xy, weights,
            lambda g, size, channels: graph.enforce_overlap(
                g, ("patches_real", "patches_imag"), "offsets", "weights", size, channels
            ),
        )

    def illuminate(self, patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_core.physics.forward.illuminate`: (..., N, N) * (N, N) -> complex64."""
        (o_real, o_imag), (p_real, p_imag) = _parts(patches), _parts(probe)
        feeds = {"o_real": o_real, "o_imag": o_imag, "p_real": p_real, "p_imag": p_imag}
        out = self._run(self._key("illuminate", feeds), feeds,
                        lambda g: list(graph.illuminate(g, ("o_real", "o_imag"), ("p_real", "p_imag"))))
        return _complex(*out)

    def far_field(self, psi: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_core.physics.forward.far_field`: ``fftshift(fft2(psi)) / N``, complex64."""
        real, imag = _parts(psi)
        if real.ndim < 2:
            raise ValueError(f"invalid psi shape: expected (..., N, N), received psi.shape={real.shape}")
        height, width = real.shape[-2:]
        feeds = {"psi_real": real, "psi_imag": imag}
        out = self._run(self._key("far_field", feeds), feeds,
                        lambda g: list(graph.far_field(g, ("psi_real", "psi_imag"), height, width)))
        return _complex(*out)

    def poisson_nll(self, predicted_intensity: np.ndarray, observed_intensity: np.ndarray) -> float:
        """:func:`ptychopinn_core.physics.losses.poisson_nll` (a float)."""
        feeds = {"predicted": _real(predicted_intensity), "observed": _real(observed_intensity)}
        _check_same_shape(feeds, "intensity")
        (out,) = self._run(self._key("poisson_nll", feeds), feeds,
                           lambda g: [graph.poisson_nll(g, "predicted", "observed")], TensorProto.DOUBLE)
        return float(out)

    def amplitude_mae(self, predicted_amplitude: np.ndarray, observed_amplitude: np.ndarray,
                      intensity_scale: float) -> float:
        """:func:`ptychopinn_core.physics.losses.amplitude_mae` (a float)."""
        feeds = {"predicted": _real(predicted_amplitude), "observed": _real(observed_amplitude),
                 "scale": np.asarray(intensity_scale, dtype=np.float32)}
        _check_same_shape(feeds, "amplitude")
        (out,) = self._run(self._key("amplitude_mae", feeds), feeds,
                           lambda g: [graph.amplitude_mae(g, "predicted", "observed", "scale")], TensorProto.DOUBLE)
        return float(out)


def _check_same_shape(feeds: dict[str, np.ndarray], what: str) -> None:
    predicted, observed = feeds["predicted"], feeds["observed"]
    if predicted.shape != observed.shape:
        raise ValueError(
            f"invalid {what} shapes: expected equal shapes, received "
            f"predicted.shape={predicted.shape} and observed.shape={observed.shape}"
        )
    if predicted.size == 0:
        raise ValueError(f"invalid {what}: expected non-empty arrays, received shape {predicted.shape}")
