"""A small ONNX graph builder and the network and physics ops of docs/physics.md as ONNX nodes.

Why write ONNX by hand: the model and its physics are built from the core's canonical
description (:func:`~ptychopinn_core.model.parameters.describe_architecture` and
:mod:`ptychopinn_core.physics`), so neither exporting nor running a model needs a
deep-learning framework, and the graph is the reference's arithmetic, op for op.

Conventions
-----------
- Every op is a function of a :class:`GraphBuilder` and tensor names; it adds nodes and
  returns the name(s) of its output(s).
- ONNX Runtime's CPU kernels have no complex FFT or complex matrix products in the default
  domain, so a complex tensor is carried as a ``(real, imag)`` pair of float32 tensors
  (:data:`Complex`).
- Default domain, opset :data:`OPSET` (17) and IR version :data:`IR_VERSION` (8): the
  files run in older runtimes (ONNX Runtime >= 1.12) and in TensorRT. No op here needs
  a newer opset: the translation is two matrix products with "hat" matrices built from
  the shifts in the graph, the far field two complex matrix products with the DFT matrix.
- Layout is the core's: batch first, channels, then ``(rows, cols)``; shifts ``(x, y)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ptychopinn_core.physics.losses import POISSON_EPS
from ptychopinn_core.physics.overlap import MERGE_MASK_THRESHOLD

__all__ = [
    "ACTIVATIONS",
    "IR_VERSION",
    "OPSET",
    "Complex",
    "GraphBuilder",
    "activate",
    "amplitude_mae",
    "complex_abs",
    "complex_combine",
    "concat",
    "conv3x3",
    "dft_matrix",
    "enforce_overlap",
    "far_field",
    "hat_matrices",
    "illuminate",
    "maxpool2x2",
    "merge_patches",
    "pad_to_full",
    "poisson_nll",
    "space_to_depth2x",
    "translate",
    "upsample2x",
]

#: Default-domain opset of every graph written here.
OPSET = 17
#: ONNX IR version of opset 17 (onnx 1.12): newer readers take older IR, not the reverse.
IR_VERSION = 8
#: Head activations of describe_architecture (``conv3x3_<activation>``).
ACTIVATIONS = ("relu", "sigmoid", "softplus", "swish", "pi_tanh")

#: A complex tensor: the names of its real and imaginary float32 parts.
Complex = tuple[str, str]

_ONNX_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
               np.dtype(np.float64): TensorProto.DOUBLE}


class GraphBuilder:
    """Nodes, initializers, inputs and outputs of one graph, with unique tensor names.

    Constants made with :meth:`constant` are shared by value (one ``1.0`` for the whole
    graph); parameters added with :meth:`initializer` keep the exact name given.
    """

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()
        self._constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    # -- names and tensors --------------------------------------------------------------

    def _free(self, hint: str) -> str:
        name, count = hint, 0
        while name in self._names:
            count += 1
            name = f"{hint}#{count}"
        return name

    def unique(self, hint: str) -> str:
        """A new tensor name, now taken: ``hint`` itself, else ``hint#1``, ``hint#2``, ..."""
        return self._claim(self._free(hint))

    def _claim(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"invalid tensor name: expected a new name, received {name!r} (already in the graph)")
        self._names.add(name)
        return name

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as an initializer called exactly ``name`` (its bytes as given)."""
        array = np.asarray(array)
        if array.dtype not in _ONNX_TYPES:
            raise TypeError(f"invalid initializer {name!r}: expected float32, float64 or int64, received {array.dtype}")
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), self._claim(name)))
        return name

    def constant(self, array: Any, hint: str = "const", dtype: Any = np.float32) -> str:
        """An initializer holding ``array`` (as ``dtype``), shared with every equal constant."""
        array = np.array(array, dtype=dtype, order="C")  # keeps 0-d arrays 0-d
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = self.initializer(self._free(hint), array)
        return self._constants[key]

    def ints(self, *values: int) -> str:
        """A 1-D int64 constant (axes, pads, shapes, slice bounds)."""
        return self.constant(np.array(values, dtype=np.int64), "ints", np.int64)

    def add_input(self, name: str, shape: Sequence[int | str], elem_type: int = TensorProto.FLOAT) -> str:
        """A graph input; ``str`` sides are symbolic (e.g. ``"batch"``)."""
        self.inputs.append(helper.make_tensor_value_info(self._claim(name), elem_type, list(shape)))
        return name

    def add_output(self, source: str, name: str, shape: Sequence[int | str] | None,
                   elem_type: int = TensorProto.FLOAT) -> str:
        """Expose ``source`` as the graph output ``name`` (through an Identity node); ``shape``
        None leaves it to the runtime."""
        self.nodes.append(helper.make_node("Identity", [source], [self._claim(name)], name=name))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, None if shape is None else list(shape)))
        return name

    # -- nodes ---------------------------------------------------------------------------

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attributes: Any) -> str:
        """Add one node with one output; returns the output's name."""
        return self.op_n(op_type, inputs, 1, hint=hint, **attributes)[0]

    def op_n(self, op_type: str, inputs: Sequence[str], n_outputs: int, hint: str | None = None,
             **attributes: Any) -> list[str]:
        """Add one node with ``n_outputs`` outputs; returns their names."""
        base = hint or op_type.lower()
        outputs = [self.unique(base if n_outputs == 1 else f"{base}:{index}") for index in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=outputs[0], **attributes))
        return outputs

    # -- the result ----------------------------------------------------------------------

    def graph(self, name: str, doc_string: str = "") -> onnx.GraphProto:
        """The nodes (in the order added, which is topological), initializers and signature."""
        return helper.make_graph(self.nodes, name, self.inputs, self.outputs, initializer=self.initializers,
                                 doc_string=doc_string)

    def model(self, name: str, doc_string: str = "", producer_name: str = "ptychopinn-onnx",
              producer_version: str = "") -> onnx.ModelProto:
        """The graph as a model of :data:`OPSET` and :data:`IR_VERSION`."""
        model = helper.make_model(
            self.graph(name),
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=producer_name,
            producer_version=producer_version,
            doc_string=doc_string,
        )
        model.ir_version = IR_VERSION
        return model


# -- the network ------------------------------------------------------------------------


def activate(g: GraphBuilder, x: str, activation: str, hint: str | None = None) -> str:
    """A head or block activation: relu, sigmoid, softplus, swish ``x * sigmoid(x)``, pi_tanh ``pi * tanh(x)``."""
    hint = hint or activation
    if activation == "relu":
        return g.op("Relu", x, hint=hint)
    if activation == "sigmoid":
        return g.op("Sigmoid", x, hint=hint)
    if activation == "softplus":
        return g.op("Softplus", x, hint=hint)
    if activation == "swish":
        return g.op("Mul", x, g.op("Sigmoid", x, hint=f"{hint}.sigmoid"), hint=hint)
    if activation == "pi_tanh":
        return g.op("Mul", g.op("Tanh", x, hint=f"{hint}.tanh"), g.constant(math.pi, "pi"), hint=hint)
    raise ValueError(f"invalid activation: expected one of {ACTIVATIONS}, received activation={activation!r}")


def conv3x3(g: GraphBuilder, x: str, kernel: str, bias: str, activation: str, hint: str) -> str:
    """Cross-correlation 3x3 'same' (one zero pixel each side, as Keras and torch) + bias, then
    ``activation``. ``kernel`` is an OIHW tensor (ONNX's layout)."""
    convolved = g.op("Conv", x, kernel, bias, hint=f"{hint}.conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                     strides=[1, 1], dilations=[1, 1], group=1)
    return activate(g, convolved, activation, hint)


def maxpool2x2(g: GraphBuilder, x: str, hint: str = "maxpool") -> str:
    """Max-pool 2x2, stride 2 (sides are even, so no padding rule matters)."""
    return g.op("MaxPool", x, hint=hint, kernel_shape=[2, 2], strides=[2, 2])


def upsample2x(g: GraphBuilder, x: str, hint: str = "upsample") -> str:
    """Nearest 2x upsample: ``out[i, j] = in[floor(i/2), floor(j/2)]``, every pixel repeated 2 x 2.

    ``asymmetric`` coordinates with ``floor`` make Resize exactly this (the default
    ``half_pixel``/``round_prefer_floor`` happen to agree at factor 2, but spelled out
    there is no rule left to a runtime).
    """
    scales = g.constant([1.0, 1.0, 2.0, 2.0], "upsample_scales")
    return g.op("Resize", x, "", scales, hint=hint, mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def space_to_depth2x(g: GraphBuilder, x: str, channels: int, height: int, width: int,
                     hint: str = "space_to_depth") -> str:
    """``(B, c, H, W) -> (B, 4c, H/2, W/2)``, channel ``4 * k + 2 * dy + dx`` holding pixel
    ``(2y + dy, 2x + dx)`` of channel ``k`` (the canonical order). A reshape and a transpose:
    ONNX's ``SpaceToDepth`` puts the block offset first (``(2 * dy + dx) * c + k``)."""
    blocks = g.op("Reshape", x, g.ints(-1, channels, height // 2, 2, width // 2, 2), hint=f"{hint}.blocks")
    moved = g.op("Transpose", blocks, hint=f"{hint}.transpose", perm=[0, 1, 3, 5, 2, 4])  # (B, k, dy, dx, y, x)
    return g.op("Reshape", moved, g.ints(-1, 4 * channels, height // 2, width // 2), hint=hint)


def concat(g: GraphBuilder, xs: Sequence[str], hint: str = "concat", axis: int = 1) -> str:
    """Concatenation along channels (``axis=1``), in the order of ``xs``."""
    return g.op("Concat", *xs, hint=hint, axis=axis)


def pad_to_full(g: GraphBuilder, x: str, size: int, hint: str = "pad", rank: int = 4) -> str:
    """:func:`ptychopinn_core.physics.overlap.pad_to_full`: ``N/4`` zeros on every side of the
    last two axes, ``(..., N/2, N/2) -> (..., N, N)``."""
    if size % 4:
        raise ValueError(f"invalid patch size: expected a multiple of 4, received size={size}")
    quarter = size // 4
    pads = [0] * (rank - 2) + [quarter, quarter] + [0] * (rank - 2) + [quarter, quarter]
    return g.op("Pad", x, g.ints(*pads), hint=hint, mode="constant")


def complex_combine(g: GraphBuilder, amplitude: str, phase: str, hint: str = "combine") -> Complex:
    """``A * exp(i * phi)`` as ``(A cos(phi), A sin(phi))``."""
    real = g.op("Mul", amplitude, g.op("Cos", phase, hint=f"{hint}.cos"), hint=f"{hint}.real")
    imag = g.op("Mul", amplitude, g.op("Sin", phase, hint=f"{hint}.sin"), hint=f"{hint}.imag")
    return real, imag


# -- translation and the overlap constraint --------------------------------------------


def _difference(size: int, rows_first: bool) -> np.ndarray:
    """``j - i`` (``rows_first``) or ``i - j`` over an ``(size, size)`` grid: exact small integers."""
    index = np.arange(size, dtype=np.float64)
    difference = index[None, :] - index[:, None]
    return (difference if rows_first else -difference).astype(np.float32)


def _hat(g: GraphBuilder, base: str, shift: str, hint: str) -> str:
    """``relu(1 - |base + shift|)``: the bilinear weight of every (output, input) pixel pair."""
    distance = g.op("Abs", g.op("Add", base, shift, hint=f"{hint}.offset"), hint=f"{hint}.distance")
    return g.op("Relu", g.op("Sub", g.constant(1.0, "one"), distance, hint=f"{hint}.linear"), hint=hint)


def hat_matrices(g: GraphBuilder, shifts: str, height: int, width: int, hint: str = "hat") -> tuple[str, str]:
    """Row and (transposed) column interpolation matrices of shifts ``(..., 2)``.

    ``rows[..., r, r'] = relu(1 - |r' - r + dy|)`` ``(..., H, H)`` and
    ``cols_t[..., c', c] = relu(1 - |c' - c + dx|)`` ``(..., W, W)``, so that
    ``rows @ I @ cols_t`` is :func:`ptychopinn_core.physics.translate.translate`: each
    output pixel is the bilinear interpolant of ``I`` at ``(r - dy, c - dx)``, and an input
    pixel outside ``0..H-1`` simply has no column in the matrix (zero fill). The weights
    equal the reference's: with ``u = r - dy``, ``r0 = floor(u)``, ``f = u - r0``, the row
    ``r0`` gets ``1 - f`` and ``r0 + 1`` gets ``f`` (``1 - (1 - f)`` in float32: within
    2**-24 of the reference's ``f``), every other row 0; integer shifts give exact 0/1.
    """
    dx = g.op("Unsqueeze", g.op("Slice", shifts, g.ints(0), g.ints(1), g.ints(-1), hint=f"{hint}.dx"),
              g.ints(-1), hint=f"{hint}.dx")
    dy = g.op("Unsqueeze", g.op("Slice", shifts, g.ints(1), g.ints(2), g.ints(-1), hint=f"{hint}.dy"),
              g.ints(-1), hint=f"{hint}.dy")
    rows = _hat(g, g.constant(_difference(height, True), f"row_difference_{height}"), dy, f"{hint}.rows")
    cols_t = _hat(g, g.constant(_difference(width, False), f"col_difference_{width}"), dx, f"{hint}.cols")
    return rows, cols_t


def _move(g: GraphBuilder, x: str, rows: str, cols_t: str, hint: str) -> str:
    return g.op("MatMul", g.op("MatMul", rows, x, hint=f"{hint}.rows"), cols_t, hint=hint)


def translate(g: GraphBuilder, images: str | Complex, shifts: str, height: int, width: int,
              hint: str = "translate") -> str | Complex:
    """:func:`ptychopinn_core.physics.translate.translate` of real or complex images
    ``(..., H, W)`` by shifts ``(..., 2)``: ``out[..., r, c] = I(r - dy, c - dx)``, bilinear,
    zero fill (:func:`hat_matrices`)."""
    rows, cols_t = hat_matrices(g, shifts, height, width, f"{hint}.hat")
    if isinstance(images, str):
        return _move(g, images, rows, cols_t, hint)
    return tuple(_move(g, part, rows, cols_t, f"{hint}.{label}") for part, label in zip(images, ("real", "imag")))


def _merge(g: GraphBuilder, values: Complex, shifts: str, weights: str, size: int, hint: str) -> Complex:
    """``where(W > t, S / max(W, t), 0)`` with ``S = sum_k T_k(w O_k)``, ``W = sum_k T_k(w)``.

    ``values`` broadcast against ``(..., K, N, N)``, ``shifts`` ``(..., K, 2)``; the sum runs
    over ``K``. Real and imaginary parts are stacked on a new axis so that each shift's
    pair of matrix products moves both at once.
    """
    rows, cols_t = hat_matrices(g, shifts, size, size, f"{hint}.hat")
    parts = [g.op("Unsqueeze", g.op("Mul", part, weights, hint=f"{hint}.windowed"), g.ints(-3), hint=f"{hint}.part")
             for part in values]
    stacked = g.op("Concat", *parts, hint=f"{hint}.stacked", axis=-3)  # (..., K, 2, N, N)
    moved = _move(g, stacked, g.op("Unsqueeze", rows, g.ints(-3), hint=f"{hint}.rows"),
                  g.op("Unsqueeze", cols_t, g.ints(-3), hint=f"{hint}.cols"), f"{hint}.moved")
    summed = g.op("ReduceSum", moved, g.ints(-4), hint=f"{hint}.sum", keepdims=0)  # (..., 2, N, N)
    coverage = g.op("ReduceSum", _move(g, weights, rows, cols_t, f"{hint}.weights"), g.ints(-3),
                    hint=f"{hint}.coverage", keepdims=0)  # (..., N, N)
    threshold = g.constant(MERGE_MASK_THRESHOLD, "merge_threshold")
    defined = g.op("Greater", coverage, threshold, hint=f"{hint}.defined")
    # S / max(W, t) inside the where, as the reference: the untaken branch stays finite.
    denominator = g.op("Max", coverage, threshold, hint=f"{hint}.denominator")
    zero = g.constant(0.0, "zero")
    merged = []
    for index, label in enumerate(("real", "imag")):
        part = g.op("Gather", summed, g.constant(index, "index", np.int64), hint=f"{hint}.sum_{label}", axis=-3)
        ratio = g.op("Div", part, denominator, hint=f"{hint}.ratio_{label}")
        merged.append(g.op("Where", defined, ratio, zero, hint=f"{hint}.{label}"))
    return merged[0], merged[1]


def merge_patches(g: GraphBuilder, patches: Complex, offsets: str, weights: str, size: int,
                  hint: str = "merge") -> Complex:
    """:func:`ptychopinn_core.physics.overlap.merge_patches`: patches ``(B, C, N, N)`` moved by
    ``+offset_c`` ``(B, C, 2)`` into the group frame and averaged with merge weights
    ``weights`` ``(N, N)``; returns ``(B, N, N)``."""
    return _merge(g, patches, offsets, weights, size, hint)


def enforce_overlap(g: GraphBuilder, patches: Complex, offsets: str, weights: str, size: int, channels: int,
                    hint: str = "overlap") -> Complex:
    """:func:`ptychopinn_core.physics.overlap.enforce_overlap`: every channel ``c`` of
    ``(B, C, N, N)`` becomes the merge of its group in its own frame, channel ``k`` moved
    by ``offset_k - offset_c`` (``C**2`` translations per group, physics.md §4); ``C = 1``
    returns the patches unchanged.

    The differences are formed in float32 (the reference: float64), off by at most half a
    float32 ulp of the difference (~5e-7 px at 16 px); measured against the reference
    ~1e-7 relative, as the other steps.
    """
    if channels == 1:
        return patches
    # relative[b, c, k] = offset_k - offset_c: (B, 1, C, 2) - (B, C, 1, 2).
    relative = g.op("Sub", g.op("Unsqueeze", offsets, g.ints(1), hint=f"{hint}.others"),
                    g.op("Unsqueeze", offsets, g.ints(2), hint=f"{hint}.own"), hint=f"{hint}.relative")
    spread = tuple(g.op("Unsqueeze", part, g.ints(1), hint=f"{hint}.patches") for part in patches)  # (B, 1, C, N, N)
    return _merge(g, spread, relative, weights, size, hint)


# -- illumination, far field, losses ------------------------------------------------------


def illuminate(g: GraphBuilder, patches: Complex, probe: Complex, hint: str = "illuminate") -> Complex:
    """:func:`ptychopinn_core.physics.forward.illuminate`: ``psi = O * P``, ``P`` broadcast."""
    (o_real, o_imag), (p_real, p_imag) = patches, probe
    real = g.op("Sub", g.op("Mul", o_real, p_real, hint=f"{hint}.rr"), g.op("Mul", o_imag, p_imag, hint=f"{hint}.ii"),
                hint=f"{hint}.real")
    imag = g.op("Add", g.op("Mul", o_real, p_imag, hint=f"{hint}.ri"), g.op("Mul", o_imag, p_real, hint=f"{hint}.ir"),
                hint=f"{hint}.imag")
    return real, imag


def dft_matrix(size: int) -> np.ndarray:
    """``D[k, n] = exp(-2 pi i (k - N//2) n / N)`` in complex128: ``D @ x = fftshift(fft(x))``.

    For even ``N`` this is ``exp(-2 pi i (k + N/2) n / N)``. The exponent is reduced mod
    ``N`` in integers first, so every entry is a correctly rounded float64 value.
    """
    index = np.arange(size)
    exponent = np.mod(np.outer(index - size // 2, index), size)
    return np.exp(-2j * np.pi * exponent / size)


def _complex_matmul(g: GraphBuilder, left: Complex, right: Complex, hint: str) -> Complex:
    (a, b), (c, d) = left, right
    real = g.op("Sub", g.op("MatMul", a, c, hint=f"{hint}.rr"), g.op("MatMul", b, d, hint=f"{hint}.ii"),
                hint=f"{hint}.real")
    imag = g.op("Add", g.op("MatMul", a, d, hint=f"{hint}.ri"), g.op("MatMul", b, c, hint=f"{hint}.ir"),
                hint=f"{hint}.imag")
    return real, imag


def far_field(g: GraphBuilder, psi: Complex, height: int, width: int, hint: str = "far_field") -> Complex:
    """:func:`ptychopinn_core.physics.forward.far_field`: ``fftshift(fft2(psi)) / N`` as
    ``D_H psi D_W^T / N`` (``N`` = ``width``, as the reference), four real matrix products
    per side. The DFT matrices are computed in float64 and rounded once to float32; the
    ``1/N`` is folded into the left one."""
    left = dft_matrix(height) / width
    right = dft_matrix(width).T
    left_pair = (g.constant(left.real, f"dft_left_real_{height}"), g.constant(left.imag, f"dft_left_imag_{height}"))
    right_pair = (g.constant(right.real, f"dft_right_real_{width}"), g.constant(right.imag, f"dft_right_imag_{width}"))
    rows = _complex_matmul(g, left_pair, psi, f"{hint}.rows")
    return _complex_matmul(g, rows, right_pair, hint)


def complex_abs(g: GraphBuilder, values: Complex, hint: str = "abs") -> str:
    """``|z| = sqrt(re^2 + im^2)``."""
    real, imag = values
    energy = g.op("Add", g.op("Mul", real, real, hint=f"{hint}.rr"), g.op("Mul", imag, imag, hint=f"{hint}.ii"),
                  hint=f"{hint}.energy")
    return g.op("Sqrt", energy, hint=hint)


def poisson_nll(g: GraphBuilder, predicted: str, observed: str, hint: str = "poisson_nll") -> str:
    """:func:`ptychopinn_core.physics.losses.poisson_nll`: ``mean(I - y log(I + eps))``, a float64 scalar."""
    log = g.op("Log", g.op("Add", predicted, g.constant(POISSON_EPS, "poisson_eps"), hint=f"{hint}.shifted"),
               hint=f"{hint}.log")
    terms = g.op("Sub", predicted, g.op("Mul", observed, log, hint=f"{hint}.ylog"), hint=f"{hint}.terms")
    return _mean(g, terms, hint)


def amplitude_mae(g: GraphBuilder, predicted: str, observed: str, scale: str, hint: str = "amplitude_mae") -> str:
    """:func:`ptychopinn_core.physics.losses.amplitude_mae`: ``mean(|s A - s X|)``, a float64 scalar."""
    difference = g.op("Sub", g.op("Mul", scale, predicted, hint=f"{hint}.predicted"),
                      g.op("Mul", scale, observed, hint=f"{hint}.observed"), hint=f"{hint}.difference")
    return _mean(g, g.op("Abs", difference, hint=f"{hint}.abs"), hint)


def _mean(g: GraphBuilder, values: str, hint: str) -> str:
    """Mean over every element, accumulated in float64 (a float64 scalar).

    Why: ONNX Runtime's ReduceMean sums float32 in order, so its error grows with the
    element count (measured 7e-5 relative for 786 432 pixels, N = 256); the losses are
    plain means over whole batches. Only the physics ops' loss graphs use this, not the
    exported model.
    """
    wide = g.op("Cast", values, hint=f"{hint}.float64", to=TensorProto.DOUBLE)
    return g.op("ReduceMean", wide, hint=hint, keepdims=0)
