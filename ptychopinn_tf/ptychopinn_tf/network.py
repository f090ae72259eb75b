"""The network of docs/physics.md §3 (``encoder_decoder``, ``unet`` or ``space_to_depth``) in TensorFlow.

Built layer by layer from the core's description
(:func:`ptychopinn_core.model.parameters.describe_architecture`) with one plain
``tf.Variable`` per canonical parameter (:func:`~ptychopinn_core.model.parameters.parameter_specs`):
the canonical kernels are HWIO ``(kh, kw, in, out)``, which is ``tf.nn.conv2d``'s own
layout, so weights load and save without any transposition, bit for bit.

Layout at the boundary: the core gives ``(B, C, N, N)`` float32 and receives amplitude
and phase ``(B, C, N/2, N/2)``; inside, TensorFlow convolves NHWC, so the input and
the two head outputs are transposed once. A ``shared`` group network
(``model.group_network``) reads one pattern per pass: the group axis is folded into the
batch, ``(B, C, N, N) -> (B*C, 1, N, N)``, and unfolded after the heads.

Ops (the ``op`` names of ``describe_architecture``):

- ``conv3x3_relu``: ``relu(conv2d(x, K, stride 1, 'SAME' zero padding) + b)``;
- ``maxpool2x2``: max over 2 x 2 windows, stride 2;
- ``upsample2x_nearest``: every pixel repeated 2 x 2 (nearest neighbour);
- ``concat`` (``unet``'s skips): the inputs, in order, concatenated along channels
  (the last axis in NHWC, the first of describe_architecture's channel-first shapes);
- ``space_to_depth2x`` (``space_to_depth``'s stem): each 2 x 2 pixel block to channels,
  channel ``4 * k + 2 * dy + dx`` from input channel ``k`` (a reshape and a transpose:
  ``tf.nn.space_to_depth`` orders the channels the other way round, block offset first);
- heads ``conv3x3_<act>``: conv + bias, then ``sigmoid`` | ``softplus`` | ``relu`` |
  ``swish`` (``x * sigmoid(x)``) for the amplitude, ``pi * tanh`` for the phase.

``zero_pad`` and ``complex_combine`` belong to the model
(:func:`ptychopinn_tf.layers.pad_to_full`, :func:`ptychopinn_tf.layers.complex_combine`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.parameters import (
    LOG_INTENSITY_SCALE,
    describe_architecture,
    network_channels,
    parameter_specs,
    validate_weights,
)

__all__ = ["PinnNetwork", "load_canonical_weights", "canonical_weights"]

#: Ops of describe_architecture that the model, not the network, applies.
_MODEL_OPS = ("zero_pad", "complex_combine")


def _swish(values: tf.Tensor) -> tf.Tensor:
    return values * tf.math.sigmoid(values)


def _pi_tanh(values: tf.Tensor) -> tf.Tensor:
    return tf.constant(math.pi, dtype=values.dtype) * tf.math.tanh(values)


#: Head activations by the suffix of their ``conv3x3_<activation>`` op.
_ACTIVATIONS = {
    "relu": tf.nn.relu,
    "sigmoid": tf.math.sigmoid,
    "softplus": tf.math.softplus,
    "swish": _swish,
    "pi_tanh": _pi_tanh,
}


def _space_to_depth(values: tf.Tensor) -> tf.Tensor:
    """NHWC ``(B, H, W, c) -> (B, H/2, W/2, 4c)``, channel ``4 * k + 2 * dy + dx`` (canonical)."""
    height, width, channels = values.shape[1], values.shape[2], values.shape[3]
    blocks = tf.reshape(values, [-1, height // 2, 2, width // 2, 2, channels])  # (B, y, dy, x, dx, k)
    blocks = tf.transpose(blocks, [0, 1, 3, 5, 2, 4])  # (B, y, x, k, dy, dx)
    return tf.reshape(blocks, [-1, height // 2, width // 2, 4 * channels])


class PinnNetwork(tf.Module):
    """Diffraction amplitudes ``(B, C, N, N)`` to amplitude and phase ``(B, C, N/2, N/2)``.

    Parameters
    ----------
    model_config : ModelConfig
        ``pattern_size``, ``gridsize``, ``group_network``, ``n_filters_scale``,
        ``amp_activation``, ``architecture`` and ``intensity_scale_trainable`` (which adds the scalar
        ``log_intensity_scale``; the network holds it so that :func:`canonical_weights`
        is the complete canonical list, but only the model's loss reads it).
    dtype : tf.DType
        float32 (default) or float64 (``execution.precision = "64"``).

    Attributes
    ----------
    specs : tuple of ParameterSpec
        The canonical parameter list, in forward order.
    variables_by_name : dict of str to tf.Variable
        One ``dtype`` variable per canonical parameter, in the canonical layout;
        created zero, load values with :func:`load_canonical_weights`.
    """

    def __init__(self, model_config: ModelConfig, name: str = "pinn_network", dtype: tf.DType = tf.float32) -> None:
        super().__init__(name=name)
        if not isinstance(model_config, ModelConfig):
            raise TypeError(f"invalid model_config: expected a ModelConfig, received {type(model_config).__name__}")
        self.model_config = model_config
        self.dtype = tf.as_dtype(dtype)
        self.specs = parameter_specs(model_config)
        self._channels = network_channels(model_config)
        self._layers = [layer for layer in describe_architecture(model_config) if layer["op"] not in _MODEL_OPS]
        with self.name_scope:
            self.variables_by_name = {
                spec.name: tf.Variable(tf.zeros(spec.shape, dtype=self.dtype), name=spec.name, trainable=True)
                for spec in self.specs
            }

    @property
    def log_intensity_scale(self) -> tf.Variable | None:
        """The trainable correction ``log(s_eff / s)``, or None when it is fixed."""
        return self.variables_by_name.get(LOG_INTENSITY_SCALE)

    def __call__(self, diffraction: tf.Tensor, compute_dtype: tf.DType | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Run the network.

        Parameters
        ----------
        diffraction : tf.Tensor, shape (B, C, N, N)
            Normalised amplitudes ``X_n`` of each group (channels = the group's patterns),
            cast to the compute dtype.
        compute_dtype : tf.DType, optional
            The dtype of the convolutions, pools and upsamplings (default: the variables'
            own). ``tf.bfloat16`` is ``execution.precision = "bf16-mixed"`` in training, as
            PyTorch's autocast: every kernel and bias is cast at its use (the variables and
            their gradients stay float32) and the heads' activations run on the head
            convolutions' outputs cast back to the variables' dtype.

        Returns
        -------
        amplitude, phase : tf.Tensor, the network's dtype, shape (B, C, N/2, N/2)
            Head outputs after their activations (phase in ``(-pi, pi)``).
        """
        compute_dtype = self.dtype if compute_dtype is None else tf.as_dtype(compute_dtype)
        group_shape = tf.shape(diffraction)
        size = diffraction.shape[-1]
        passes = tf.reshape(diffraction, [-1, self._channels, size, size])  # shared: one pattern a pass
        # Every output is kept by name: a unet skip reads an encoder layer's output later.
        outputs = {"diffraction": tf.transpose(tf.cast(passes, compute_dtype), [0, 2, 3, 1])}
        for layer in self._layers:
            values = outputs[layer["inputs"][0]]
            op = layer["op"]
            if op == "concat":
                values = tf.concat([outputs[name] for name in layer["inputs"]], axis=-1)
            elif op == "space_to_depth2x":
                values = _space_to_depth(values)
            elif op == "maxpool2x2":
                values = tf.nn.max_pool2d(values, ksize=2, strides=2, padding="VALID")
            elif op == "upsample2x_nearest":
                values = tf.repeat(tf.repeat(values, 2, axis=1), 2, axis=2)
            elif op.startswith("conv3x3_"):
                kernel = tf.cast(self.variables_by_name[f"{layer['name']}.kernel"], compute_dtype)
                bias = tf.cast(self.variables_by_name[f"{layer['name']}.bias"], compute_dtype)
                values = tf.nn.bias_add(tf.nn.conv2d(values, kernel, strides=1, padding="SAME"), bias)
                if layer["name"].startswith("head_"):
                    values = tf.cast(values, self.dtype)  # the heads' activations in full precision
                values = _ACTIVATIONS[op.removeprefix("conv3x3_")](values)
            else:  # pragma: no cover - describe_architecture and this file changed apart
                raise ValueError(f"unknown layer op {op!r} of layer {layer['name']!r}")
            outputs[layer["name"]] = values
        half = [group_shape[0], group_shape[1], size // 2, size // 2]
        amplitude = tf.reshape(tf.transpose(outputs["head_amplitude"], [0, 3, 1, 2]), half)
        phase = tf.reshape(tf.transpose(outputs["head_phase"], [0, 3, 1, 2]), half)
        return amplitude, phase


def load_canonical_weights(network: PinnNetwork, weights: Mapping[str, np.ndarray]) -> None:
    """Assign canonical weights to the network's variables (no layout change: HWIO).

    Parameters
    ----------
    network : PinnNetwork
    weights : mapping of str to ndarray, float32
        Exactly the names and shapes of ``network.specs``.

    Raises
    ------
    ValueError
        A missing, unexpected, mis-shaped or non-finite parameter (the message names it).
    """
    checked = validate_weights(weights, network.specs, "PinnNetwork weights")
    for name, value in checked.items():
        variable = network.variables_by_name[name]
        variable.assign(value.astype(variable.dtype.as_numpy_dtype, copy=False))


def canonical_weights(network: PinnNetwork) -> dict[str, np.ndarray]:
    """The network's parameters as canonical float32 arrays (copies), in spec order."""
    return {
        name: np.array(variable.numpy(), dtype=np.float32, copy=True)
        for name, variable in network.variables_by_name.items()
    }
