"""The canonical, framework-neutral parameter list of the PINN network (physics.md §3).

Both backends build their network from :func:`parameter_specs` and exchange weights
as ``{name: float32 ndarray}`` in the layout fixed here; each converts to its native
layout only at its boundary. Initial weights come from :func:`initial_weights`, so
TensorFlow and PyTorch start from identical numbers.

Architecture (``N`` = pattern size, ``C = gridsize**2``, ``k = n_filters_scale``)
----------------------------------------------------------------------------------
- ``L = log2(N / 8)`` encoder blocks, so the bottleneck is ``8 x 8``.
  Block ``i`` (filters ``F_i = 32 * 2**i * k``): conv3x3 'same' + ReLU, conv3x3
  'same' + ReLU, max-pool 2x2. The first conv reads ``c`` channels (below).
- Two decoders, ``amplitude`` and ``phase``, each ``L - 1`` up-blocks. Up-block ``j``
  (filters ``32 * 2**(L-2-j) * k``): conv3x3 + ReLU, conv3x3 + ReLU, nearest
  upsample x2. Their output is ``N/2 x N/2``.
- Heads: conv3x3 to ``c`` channels on each decoder's output; amplitude activation
  ``model.amp_activation`` (default sigmoid), phase ``pi * tanh``.
- ``N = 16`` has ``L = 1`` and no up-blocks: the 8 x 8 bottleneck already is
  ``N/2 x N/2``, so both heads act directly on the encoder output (``32 * k``
  channels).

``model.group_network`` chooses how a group of ``C`` patterns meets the network, hence
``c`` (:func:`network_channels`):

- ``shared`` (``c = 1``): one network reads one pattern and predicts its patch; a group
  is ``C`` passes of it with the same weights (the backends fold the group axis into
  the batch), and only the overlap constraint couples the patterns. The parameter list
  is the gridsize-1 list whatever the gridsize, so gridsize-1 weights load into it.
- ``joint`` (``c = C``): the ``C`` patterns are the input channels of one network and
  its heads predict the ``C`` patches as output channels.

At gridsize 1 both are the same network. Why ``shared`` is the default: the joint
network must learn to route each output channel to its own input, and at equal wall
time it learned less (docs/benchmarks.md, "Network quality").

``model.architecture`` chooses how the decoders see the encoder:

- ``encoder_decoder`` (the list above): the decoders read only the 8 x 8 bottleneck.
- ``unet``: the same blocks plus skip connections. Encoder block ``i``'s features
  before its max-pool (``encoder.{i}.conv1``) have side ``N / 2**i``; after up-block
  ``j``'s upsample the side is ``8 * 2**(j+1)``, that of encoder block ``L-1-j``. The
  upsampled output is concatenated along channels with those encoder features
  (decoder channels first, then encoder channels) in a layer ``decoder_{branch}.{j}.skip``,
  and the concatenation is what up-block ``j+1``'s ``conv0`` (or, after the last
  up-block, the head) reads. Both decoders get the skips from the one shared encoder.
  Encoder block 0 (side ``N``) is never a skip: the decoders end at ``N/2``. Only the
  ``in`` channels of the kernels that read a concatenation grow (``D_j + 2 * D_j``
  with ``D_j`` the up-block's filters, since encoder block ``L-1-j`` has twice as
  many); names and order stay. For ``N = 16`` (no up-blocks) ``unet`` equals
  ``encoder_decoder``. Why: the bottleneck keeps only 8 x 8 positions, and a skip
  gives the decoders the encoder's finer features at each resolution.
- ``space_to_depth``: the ``encoder_decoder`` with its encoder one level lower. A layer
  ``encoder.stem`` rearranges the ``c`` input channels of side ``N`` without loss into
  ``4c`` channels of side ``N/2``: output channel ``4 * k + 2 * dy + dx`` holds pixel
  ``(2 * y + dy, 2 * x + dx)`` of input channel ``k`` (torch's ``pixel_unshuffle`` order).
  The ``L`` encoder blocks then run at sides ``N/2 .. 8`` with the same filters, the last
  one without its max-pool, so the bottleneck is still ``8 x 8`` and the decoders are
  unchanged. Only ``encoder.0.conv0`` reads ``4c`` channels; names and order stay. Why:
  the full-resolution block (``N x N x 32`` activations, memory-bound) is ~45 % of the
  network's time on a CPU; without it training runs ~1.6x faster. Per epoch it learns
  less, so it is not the default (docs/benchmarks.md, "Network quality" §22).

Canonical layout
----------------
- Conv kernels ``(kh, kw, in_channels, out_channels)`` (HWIO, Keras' layout; torch
  transposes to OIHW at its boundary); biases ``(out_channels,)``; all float32.
- Names ``encoder.{i}.conv{0,1}.{kernel,bias}``,
  ``decoder_amplitude.{j}.conv{0,1}.{kernel,bias}``,
  ``decoder_phase.{j}.conv{0,1}.{kernel,bias}``, ``head_amplitude.{kernel,bias}``,
  ``head_phase.{kernel,bias}``, then ``log_intensity_scale`` (shape ``()``) when
  ``model.intensity_scale_trainable``. The tuple order is this forward order.
- ``log_intensity_scale`` is a correction, not ``log(s)`` itself: the scale used in the
  loss is ``s_eff = s * exp(log_intensity_scale)`` with ``s`` the physics.md §2 value
  stored in :class:`~ptychopinn_core.model.state.ModelState`. It starts at 0, i.e. at
  ``s`` exactly (:func:`effective_intensity_scale`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ptychopinn_core.config import ModelConfig

__all__ = [
    "BASE_FILTERS",
    "BOTTLENECK_SIZE",
    "KERNEL_SIZE",
    "SPACE_TO_DEPTH_BLOCK",
    "LOG_INTENSITY_SCALE",
    "PARAMETER_DTYPE",
    "ParameterKind",
    "ParameterSpec",
    "WeightsError",
    "WeightsTypeError",
    "count_parameters",
    "decoder_filters",
    "decoder_skips",
    "describe_architecture",
    "effective_intensity_scale",
    "encoder_filters",
    "encoder_input_channels",
    "encoder_pools",
    "glorot_limit",
    "initial_weights",
    "n_levels",
    "network_channels",
    "parameter_specs",
    "stem_block_side",
    "validate_weights",
]

#: Filters of the first encoder block before ``n_filters_scale``.
BASE_FILTERS = 32
#: Side of the encoder's output in pixels, whatever ``N`` (one level per doubling).
BOTTLENECK_SIZE = 8
#: Side of every convolution kernel.
KERNEL_SIZE = 3
#: Side of the pixel blocks that ``space_to_depth``'s stem turns into channels.
SPACE_TO_DEPTH_BLOCK = 2
#: Name of the optional trainable intensity-scale correction (shape ``()``).
LOG_INTENSITY_SCALE = "log_intensity_scale"
#: dtype of every canonical weight array.
PARAMETER_DTYPE = np.dtype(np.float32)

#: ``conv_kernel``: ``(kh, kw, in, out)``; ``bias``: ``(out,)``; ``scalar``: ``()``.
ParameterKind = Literal["conv_kernel", "bias", "scalar"]
_KINDS = ("conv_kernel", "bias", "scalar")
_KIND_NDIM = {"conv_kernel": 4, "bias": 1, "scalar": 0}

# Head activations, written the way describe_architecture reports them.
_PHASE_ACTIVATION = "pi_tanh"


class WeightsError(ValueError):
    """Weights do not match the canonical parameter list; the message names the parameter."""


class WeightsTypeError(WeightsError, TypeError):
    """A weight has the wrong type or dtype (also a :class:`TypeError`)."""


@dataclass(frozen=True)
class ParameterSpec:
    """One canonical parameter: its name, shape and kind.

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"encoder.0.conv0.kernel"``.
    shape : tuple of int
        ``(kh, kw, in, out)`` for a conv kernel, ``(out,)`` for a bias, ``()`` for a scalar.
    kind : {"conv_kernel", "bias", "scalar"}
    """

    name: str
    shape: tuple[int, ...]
    kind: ParameterKind

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"invalid parameter name: expected a non-empty str, received name={self.name!r}")
        if self.kind not in _KINDS:
            raise ValueError(
                f"invalid kind of parameter {self.name!r}: expected one of {_KINDS}, received kind={self.kind!r}"
            )
        shape = tuple(int(side) for side in self.shape)
        if len(shape) != _KIND_NDIM[self.kind] or any(side < 1 for side in shape):
            raise ValueError(
                f"invalid shape of parameter {self.name!r}: expected {_KIND_NDIM[self.kind]} positive "
                f"sides for kind {self.kind!r}, received shape={self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)

    @property
    def size(self) -> int:
        """Number of scalars in the parameter (1 for a scalar)."""
        return math.prod(self.shape)


def _check_model_config(model_config: Any) -> ModelConfig:
    if not isinstance(model_config, ModelConfig):
        hint = " (pass config.model)" if hasattr(model_config, "model") else ""
        raise TypeError(
            f"invalid model_config: expected a ModelConfig{hint}, received {type(model_config).__name__}"
        )
    return model_config


def n_levels(pattern_size: int) -> int:
    """Number of encoder blocks ``L = log2(N / 8)`` (3 for ``N = 64``).

    Parameters
    ----------
    pattern_size : int
        ``N``, a power of two ``>= 16``.
    """
    if isinstance(pattern_size, bool) or not isinstance(pattern_size, (int, np.integer)):
        raise TypeError(f"invalid pattern_size: expected an int, received pattern_size={pattern_size!r}")
    if pattern_size < 2 * BOTTLENECK_SIZE or pattern_size & (pattern_size - 1):
        raise ValueError(
            f"invalid pattern_size: expected a power of two >= {2 * BOTTLENECK_SIZE}, "
            f"received pattern_size={pattern_size}"
        )
    return int(pattern_size // BOTTLENECK_SIZE).bit_length() - 1


def encoder_filters(model_config: ModelConfig) -> tuple[int, ...]:
    """Filters of encoder blocks ``0..L-1``: ``32 * 2**i * n_filters_scale``."""
    model_config = _check_model_config(model_config)
    levels = n_levels(model_config.pattern_size)
    return tuple(BASE_FILTERS * 2**i * model_config.n_filters_scale for i in range(levels))


def decoder_filters(model_config: ModelConfig) -> tuple[int, ...]:
    """Filters of decoder up-blocks ``0..L-2``: ``32 * 2**(L-2-j) * n_filters_scale``.

    Empty for ``N = 16`` (``L = 1``).
    """
    model_config = _check_model_config(model_config)
    levels = n_levels(model_config.pattern_size)
    return tuple(BASE_FILTERS * 2 ** (levels - 2 - j) * model_config.n_filters_scale for j in range(levels - 1))


def decoder_skips(model_config: ModelConfig) -> tuple[int | None, ...]:
    """Per decoder up-block ``j``: the encoder block whose pre-pool features are
    concatenated to the up-block's upsampled output, or None (no skip).

    ``L - 1 - j`` for every up-block in ``unet`` (the encoder block of the same side),
    all None in ``encoder_decoder``; empty for ``N = 16`` (no up-blocks). One entry per
    :func:`decoder_filters` entry, so the two zip together.
    """
    model_config = _check_model_config(model_config)
    levels = n_levels(model_config.pattern_size)
    unet = model_config.architecture == "unet"
    return tuple(levels - 1 - j if unet else None for j in range(levels - 1))


def stem_block_side(model_config: ModelConfig) -> int:
    """Side of the pixel blocks the encoder's stem turns into channels: 1 (no stem), or
    :data:`SPACE_TO_DEPTH_BLOCK` for ``space_to_depth``.

    The one place that tells the architectures apart by the stem; the channel count, the
    pools, the layer description and the backends' networks read it from here.
    """
    model_config = _check_model_config(model_config)
    return SPACE_TO_DEPTH_BLOCK if model_config.architecture == "space_to_depth" else 1


def encoder_input_channels(model_config: ModelConfig) -> int:
    """Channels that ``encoder.0.conv0`` reads: ``c`` (:func:`network_channels`), or ``4c``
    after ``space_to_depth``'s stem."""
    return stem_block_side(model_config) ** 2 * network_channels(model_config)


def encoder_pools(model_config: ModelConfig) -> tuple[bool, ...]:
    """Per encoder block: whether a 2x2 max-pool follows it.

    Every block, except the last one of ``space_to_depth``, whose encoder starts at ``N/2``
    and so reaches the ``8 x 8`` bottleneck with one pool fewer.
    """
    last_pools = stem_block_side(model_config) == 1
    levels = n_levels(model_config.pattern_size)
    return tuple(block < levels - 1 or last_pools for block in range(levels))


def network_channels(model_config: ModelConfig) -> int:
    """Channels ``c`` of one network pass, in and out: 1 for ``shared``, ``C`` for ``joint``.

    A group of ``C`` patterns is ``C // c`` passes of the network.
    """
    model_config = _check_model_config(model_config)
    return 1 if model_config.group_network == "shared" else model_config.group_size


def _conv_specs(prefix: str, in_channels: int, out_channels: int) -> list[ParameterSpec]:
    return [
        ParameterSpec(f"{prefix}.kernel", (KERNEL_SIZE, KERNEL_SIZE, in_channels, out_channels), "conv_kernel"),
        ParameterSpec(f"{prefix}.bias", (out_channels,), "bias"),
    ]


def parameter_specs(model_config: ModelConfig) -> tuple[ParameterSpec, ...]:
    """The canonical parameter list of the network described by ``model_config``.

    Parameters
    ----------
    model_config : ModelConfig
        ``pattern_size`` N, ``gridsize`` g and ``group_network`` (channels in and out:
        :func:`network_channels`), ``n_filters_scale``, ``architecture`` (``unet`` widens the kernels that read a
        skip concatenation, ``space_to_depth`` the first one), ``intensity_scale_trainable``.

    Returns
    -------
    tuple of ParameterSpec
        In forward order: encoder, amplitude decoder, phase decoder, amplitude head,
        phase head, then ``log_intensity_scale`` if trainable.

    Examples
    --------
    >>> from ptychopinn_core.config import ModelConfig
    >>> specs = parameter_specs(ModelConfig(pattern_size=64, gridsize=1))
    >>> specs[0]
    ParameterSpec(name='encoder.0.conv0.kernel', shape=(3, 3, 1, 64), kind='conv_kernel')
    """
    model_config = _check_model_config(model_config)
    channels = network_channels(model_config)
    specs: list[ParameterSpec] = []
    previous = encoder_input_channels(model_config)
    encoder_widths = encoder_filters(model_config)
    for block, filters in enumerate(encoder_widths):
        specs += _conv_specs(f"encoder.{block}.conv0", previous, filters)
        specs += _conv_specs(f"encoder.{block}.conv1", filters, filters)
        previous = filters
    bottleneck = previous
    for branch in ("amplitude", "phase"):
        previous = bottleneck
        for block, (filters, skip) in enumerate(zip(decoder_filters(model_config), decoder_skips(model_config))):
            specs += _conv_specs(f"decoder_{branch}.{block}.conv0", previous, filters)
            specs += _conv_specs(f"decoder_{branch}.{block}.conv1", filters, filters)
            previous = filters + (0 if skip is None else encoder_widths[skip])
    head_in = previous  # the same for both branches: their decoders are identical in shape
    for branch in ("amplitude", "phase"):
        specs += _conv_specs(f"head_{branch}", head_in, channels)
    if model_config.intensity_scale_trainable:
        specs.append(ParameterSpec(LOG_INTENSITY_SCALE, (), "scalar"))
    return tuple(specs)


def count_parameters(specs: Sequence[ParameterSpec]) -> int:
    """Total number of scalars in ``specs``."""
    return sum(spec.size for spec in specs)


def describe_architecture(model_config: ModelConfig) -> list[dict[str, Any]]:
    """Layer-by-layer description of one pass of the network.

    Shapes are channel-first ``(channels, height, width)`` for ONE pass (no batch
    axis), the core's array convention: ``c = network_channels`` channels in and out,
    which is one group for ``joint`` and one pattern of a group for ``shared`` (a group
    is then ``C`` passes, with the group axis folded into the batch); the backends and the docs compare their
    layer order and shapes against this list. Layers are listed in the order of
    :func:`parameter_specs` (encoder, amplitude decoder, phase decoder, heads), so
    concatenating the ``parameters`` of all layers gives the canonical names in order.
    A layer may read any earlier layer's output, not only the previous one: in
    ``unet`` each ``decoder_{branch}.{j}.skip`` reads its up-block's upsample and the
    pre-pool features ``encoder.{L-1-j}.conv1`` (module docstring), so an interpreter
    keeps every output by name.

    Parameters
    ----------
    model_config : ModelConfig

    Returns
    -------
    list of dict
        One dict per layer with keys

        - ``name`` (str), e.g. ``"encoder.0.conv0"``;
        - ``op``: ``"conv3x3_relu"``, ``"maxpool2x2"``, ``"upsample2x_nearest"``,
          ``"conv3x3_<activation>"`` for a head (activation ``sigmoid``,
          ``softplus``, ``relu``, ``swish`` or ``pi_tanh``), ``"zero_pad"`` (``N/4``
          zeros per side), ``"concat"`` (channel concatenation of its inputs, in
          order; ``unet`` only), ``"space_to_depth2x"`` (each 2 x 2 pixel block to 4
          channels, in the module docstring's order; ``space_to_depth`` only) or
          ``"complex_combine"`` (``A * exp(i * phi)``);
        - ``inputs``: tuple of the layer names whose outputs this layer reads
          (``"diffraction"`` = the network input ``(c, N, N)``);
        - ``input_shape`` (for ``concat`` and ``complex_combine``, which read two
          layers, the pair of their shapes) and ``output_shape``;
        - ``parameters``: the canonical parameter names the layer owns (may be empty).
    """
    model_config = _check_model_config(model_config)
    size = model_config.pattern_size
    channels = network_channels(model_config)
    layers: list[dict[str, Any]] = []
    shapes: dict[str, tuple] = {"diffraction": (channels, size, size)}

    def add(name: str, op: str, source: str | tuple[str, ...], shape_out: tuple,
            parameters: tuple[str, ...] = ()) -> str:
        sources = (source,) if isinstance(source, str) else source
        shape_in = shapes[source] if isinstance(source, str) else tuple(shapes[name] for name in sources)
        layers.append(
            {
                "name": name,
                "op": op,
                "inputs": sources,
                "input_shape": shape_in,
                "output_shape": shape_out,
                "parameters": parameters,
            }
        )
        shapes[name] = shape_out
        return name

    def conv(name: str, op: str, source: str, filters: int) -> str:
        shape_out = (filters,) + shapes[source][1:]
        return add(name, op, source, shape_out, (f"{name}.kernel", f"{name}.bias"))

    def resize(name: str, op: str, source: str, factor: float) -> str:
        channels_in, height, width = shapes[source]
        return add(name, op, source, (channels_in, int(height * factor), int(width * factor)))

    def concat(name: str, sources: tuple[str, ...]) -> str:
        _, height, width = shapes[sources[0]]
        return add(name, "concat", sources, (sum(shapes[source][0] for source in sources), height, width))

    previous = "diffraction"
    block_side = stem_block_side(model_config)
    if block_side > 1:
        add("encoder.stem", "space_to_depth2x", previous,
            (channels * block_side**2, size // block_side, size // block_side))
        previous = "encoder.stem"
    for block, (filters, pools) in enumerate(zip(encoder_filters(model_config), encoder_pools(model_config))):
        previous = conv(f"encoder.{block}.conv0", "conv3x3_relu", previous, filters)
        previous = conv(f"encoder.{block}.conv1", "conv3x3_relu", previous, filters)
        if pools:
            previous = resize(f"encoder.{block}.pool", "maxpool2x2", previous, 0.5)
    bottleneck = previous

    decoded = {}
    for branch in ("amplitude", "phase"):
        previous = bottleneck
        for block, (filters, skip) in enumerate(zip(decoder_filters(model_config), decoder_skips(model_config))):
            previous = conv(f"decoder_{branch}.{block}.conv0", "conv3x3_relu", previous, filters)
            previous = conv(f"decoder_{branch}.{block}.conv1", "conv3x3_relu", previous, filters)
            previous = resize(f"decoder_{branch}.{block}.upsample", "upsample2x_nearest", previous, 2)
            if skip is not None:
                previous = concat(f"decoder_{branch}.{block}.skip", (previous, f"encoder.{skip}.conv1"))
        decoded[branch] = previous

    activations = {"amplitude": model_config.amp_activation, "phase": _PHASE_ACTIVATION}
    for branch in ("amplitude", "phase"):
        conv(f"head_{branch}", f"conv3x3_{activations[branch]}", decoded[branch], channels)
    for branch in ("amplitude", "phase"):
        add(f"pad_{branch}", "zero_pad", f"head_{branch}", (channels, size, size))
    add("combine", "complex_combine", ("pad_amplitude", "pad_phase"), (channels, size, size))
    return layers


def glorot_limit(shape: tuple[int, ...]) -> float:
    """Glorot-uniform bound ``sqrt(6 / (fan_in + fan_out))`` of a conv kernel.

    Keras' definition: for a kernel ``(kh, kw, in, out)``, ``fan_in = kh * kw * in``
    and ``fan_out = kh * kw * out``.
    """
    if len(shape) != 4:
        raise ValueError(f"invalid kernel shape: expected (kh, kw, in, out), received shape={shape!r}")
    receptive_field = shape[0] * shape[1]
    fan_in, fan_out = receptive_field * shape[2], receptive_field * shape[3]
    return math.sqrt(6.0 / (fan_in + fan_out))


def initial_weights(specs: Sequence[ParameterSpec], seed: int) -> dict[str, np.ndarray]:
    """Initial weights, identical for every backend: Glorot-uniform kernels, zero biases.

    Algorithm (reproducible with plain numpy): ``rng = numpy.random.default_rng(seed)``;
    for each conv kernel **in spec order**,
    ``rng.uniform(-limit, limit, size=shape)`` (float64) rounded to float32, with
    ``limit = glorot_limit(shape)``. Biases and ``log_intensity_scale`` are 0 and draw
    nothing from ``rng``.

    Parameters
    ----------
    specs : sequence of ParameterSpec
        Usually ``parameter_specs(config.model)``.
    seed : int
        Seed of the generator (``config.training.seed``).

    Returns
    -------
    dict of str to ndarray, float32
        ``{spec.name: array of spec.shape}`` in spec order.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"invalid seed: expected an int >= 0, received seed={seed!r}")
    rng = np.random.default_rng(int(seed))
    weights: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.kind == "conv_kernel":
            limit = glorot_limit(spec.shape)
            weights[spec.name] = rng.uniform(-limit, limit, size=spec.shape).astype(PARAMETER_DTYPE)
        else:
            weights[spec.name] = np.zeros(spec.shape, dtype=PARAMETER_DTYPE)
    return weights


def validate_weights(
    weights: Mapping[str, np.ndarray], specs: Sequence[ParameterSpec], source: str = "weights"
) -> dict[str, np.ndarray]:
    """Check weights against the canonical parameter list.

    Parameters
    ----------
    weights : mapping of str to ndarray
        Candidate weights.
    specs : sequence of ParameterSpec
        The expected parameter list.
    source : str
        Where the weights come from; starts the error message.

    Returns
    -------
    dict of str to ndarray
        The same arrays (not copied), ordered like ``specs``.

    Raises
    ------
    WeightsError (a ValueError)
        Missing or unexpected names, a wrong shape, non-finite values. The message
        names the parameter, the expected and the received value.
    WeightsTypeError (a ValueError and a TypeError)
        A weight that is not a numpy array of dtype float32.
    """
    if not isinstance(weights, Mapping):
        raise WeightsTypeError(
            f"{source}: expected a mapping of parameter name to array, received {type(weights).__name__}"
        )
    expected_names = [spec.name for spec in specs]
    missing = [name for name in expected_names if name not in weights]
    expected_set = set(expected_names)
    extra = sorted(str(name) for name in weights if name not in expected_set)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} parameter(s) {_preview(missing)}")
        if extra:
            problems.append(f"unexpected {len(extra)} parameter(s) {_preview(extra)}")
        raise WeightsError(
            f"{source}: parameter names do not match the model config ({len(expected_names)} expected, "
            f"{len(weights)} received): " + "; ".join(problems)
        )
    ordered: dict[str, np.ndarray] = {}
    for spec in specs:
        value = weights[spec.name]
        if not isinstance(value, np.ndarray):
            raise WeightsTypeError(
                f"{source}: parameter {spec.name!r}: expected a numpy array, received {type(value).__name__}"
            )
        if value.dtype != PARAMETER_DTYPE:
            raise WeightsTypeError(
                f"{source}: parameter {spec.name!r}: expected dtype float32, received dtype={value.dtype}"
            )
        if value.shape != spec.shape:
            raise WeightsError(
                f"{source}: parameter {spec.name!r}: expected shape {spec.shape}, received shape={value.shape}"
            )
        if not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise WeightsError(
                f"{source}: parameter {spec.name!r}: expected finite values, received {bad} NaN/inf value(s)"
            )
        ordered[spec.name] = value
    return ordered


def effective_intensity_scale(intensity_scale: float, weights: Mapping[str, np.ndarray]) -> float:
    """Intensity scale used in the loss: ``s * exp(log_intensity_scale)``.

    ``s`` is the physics.md §2 value (``ModelState.intensity_scale``); without a
    trainable ``log_intensity_scale`` in ``weights`` it is returned unchanged.
    """
    if LOG_INTENSITY_SCALE not in weights:
        return float(intensity_scale)
    return float(intensity_scale) * math.exp(float(weights[LOG_INTENSITY_SCALE]))


def _preview(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"
