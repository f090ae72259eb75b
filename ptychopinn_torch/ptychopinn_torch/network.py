"""The network of docs/physics.md §3 (``encoder_decoder``, ``unet`` or ``space_to_depth``) as a ``torch.nn.Module``.

Built from the core's canonical parameter list
(:func:`ptychopinn_core.model.parameters.parameter_specs`); the module names are the
canonical names, so ``encoder.0.conv0`` holds the parameters ``encoder.0.conv0.kernel``
and ``encoder.0.conv0.bias``. Layouts differ only at the boundary
(:func:`load_canonical_weights`, :func:`canonical_weights`): canonical kernels are HWIO
``(kh, kw, in, out)``, torch's are OIHW ``(out, in, kh, kw)``. Both are
cross-correlations, so the transpose is the whole conversion.

Layers (``N`` pattern side, ``C = gridsize**2``, ``L = log2(N / 8)``):

- encoder block ``i``: conv3x3 'same' (zero padding 1) + bias, ReLU, conv3x3 + ReLU,
  max-pool 2x2 stride 2; ``space_to_depth`` first rearranges each 2 x 2 pixel block into
  channels (``pixel_unshuffle``, whose channel order is the canonical one) and leaves out
  the last block's max-pool (:func:`~ptychopinn_core.model.parameters.encoder_pools`);
- decoders ``amplitude`` and ``phase``, ``L - 1`` up-blocks each: conv3x3 + ReLU,
  conv3x3 + ReLU, nearest-neighbour upsample x2; in ``unet`` the upsampled output of
  up-block ``j`` is then concatenated along channels (``dim=1``; decoder channels
  first) with encoder block ``L-1-j``'s features before its max-pool
  (:func:`~ptychopinn_core.model.parameters.decoder_skips`);
- heads: conv3x3 to ``c`` channels (``c = C`` for a ``joint`` group network, 1 for a
  ``shared`` one: :func:`~ptychopinn_core.model.parameters.network_channels`), amplitude
  activation from
  ``model.amp_activation`` (sigmoid | softplus | relu | swish = ``x * sigmoid(x)``),
  phase ``pi * tanh``.

Input ``(B, C, N, N)`` float32 normalised amplitudes; output amplitude and phase maps
``(B, C, N/2, N/2)`` (the physics pads them to ``N``). Channel-first is torch's own
layout, so no transpose is needed at the input or output. A ``shared`` group network
reads one pattern per pass: the group axis is folded into the batch,
``(B, C, N, N) -> (B*C, 1, N, N)``, and unfolded after the heads.

Speed (docs/benchmarks.md, "PyTorch inference"): the kernels and activations are held
channels-last (``torch.channels_last``, NHWC in memory, the shapes unchanged), the
layout oneDNN's CPU convolutions and max-pool run natively; in NCHW every convolution
reordered its input and output, and the max-pool ran a slow generic kernel. The ReLUs
act in place (a convolution's output is read by nothing else) and the upsample is one
``interpolate`` (nearest, factor 2: every pixel repeated 2 x 2, exactly). Together 1.8x
on the 2-core CPU; the numbers are those of NCHW to float32 rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.parameters import (
    KERNEL_SIZE,
    PARAMETER_DTYPE,
    decoder_filters,
    decoder_skips,
    encoder_filters,
    encoder_input_channels,
    encoder_pools,
    network_channels,
    parameter_specs,
    stem_block_side,
    validate_weights,
)

__all__ = ["PinnNetwork", "load_canonical_weights", "canonical_weights"]

#: Canonical suffix of a conv kernel and its torch attribute.
_KERNEL_SUFFIX, _TORCH_KERNEL = "kernel", "weight"
#: HWIO (canonical) -> OIHW (torch), and back.
_TO_TORCH, _TO_CANONICAL = (3, 2, 0, 1), (2, 3, 1, 0)


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    # 'same' for a 3x3 kernel: one zero pixel on each side, as Keras' padding="same".
    return nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, padding=KERNEL_SIZE // 2, bias=True)


def _amplitude_activation(name: str):
    activations = {
        "sigmoid": torch.sigmoid,
        "softplus": nn.functional.softplus,
        "relu": torch.relu,
        "swish": lambda values: values * torch.sigmoid(values),
    }
    if name not in activations:
        raise ValueError(
            f"invalid amp_activation: expected one of {sorted(activations)}, received amp_activation={name!r}"
        )
    return activations[name]


class _Block(nn.Module):
    """Two conv3x3 + ReLU layers (``conv0``, ``conv1``); the caller resamples.

    The resampling is left to :class:`PinnNetwork` because ``unet`` needs an encoder
    block's features before its max-pool.
    """

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.conv0 = _conv(in_channels, filters)
        self.conv1 = _conv(filters, filters)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        # In place: a convolution's output is read by its ReLU only (and autograd keeps
        # the ReLU's output, which is what its backward needs).
        values = torch.relu_(self.conv0(values))
        return torch.relu_(self.conv1(values))


def _max_pool(values: torch.Tensor) -> torch.Tensor:
    return nn.functional.max_pool2d(values, kernel_size=2, stride=2)


def _upsample(values: torch.Tensor) -> torch.Tensor:
    # Nearest neighbour by an integer factor: out[i, j] = in[i // 2, j // 2], every pixel
    # repeated 2 x 2, exactly (one kernel, keeps the channels-last layout).
    return nn.functional.interpolate(values, scale_factor=2, mode="nearest")


class PinnNetwork(nn.Module):
    """Encoder, two decoders and two heads (docs/physics.md §3).

    Parameters
    ----------
    model_config : ModelConfig
        ``pattern_size``, ``gridsize``, ``group_network``, ``n_filters_scale``, ``amp_activation``,
        ``architecture`` (``unet`` adds the skip concatenations, ``space_to_depth`` the stem);
        ``intensity_scale_trainable`` adds the scalar parameter ``log_intensity_scale``
        (a canonical parameter, used by the physics, not by :meth:`forward`).
    name : str
        A label for the module (as ``ptychopinn_tf``'s ``tf.Module`` name).
    dtype : torch.dtype
        float32 (default) or float64 (``execution.precision = "64"``).

    Attributes
    ----------
    encoder : nn.ModuleList of encoder blocks
    decoder_amplitude, decoder_phase : nn.ModuleList of up-blocks (empty for N = 16)
    head_amplitude, head_phase : nn.Conv2d
    log_intensity_scale : nn.Parameter, shape (), or None
    """

    def __init__(self, model_config: ModelConfig, name: str = "pinn_network", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.name = name
        self.model_config = model_config
        channels = network_channels(model_config)
        self._channels = channels
        previous = encoder_input_channels(model_config)
        self._stem_block_side = stem_block_side(model_config)
        self._pools = encoder_pools(model_config)
        encoder = []
        encoder_widths = encoder_filters(model_config)
        for filters in encoder_widths:
            encoder.append(_Block(previous, filters))
            previous = filters
        self.encoder = nn.ModuleList(encoder)
        bottleneck = previous
        # Per up-block: the encoder block concatenated after its upsample, or None.
        self._skips = decoder_skips(model_config)
        decoders = {}
        for branch in ("amplitude", "phase"):
            previous = bottleneck
            blocks = []
            for filters, skip in zip(decoder_filters(model_config), self._skips):
                blocks.append(_Block(previous, filters))
                previous = filters + (0 if skip is None else encoder_widths[skip])
            decoders[branch] = nn.ModuleList(blocks)
        self.decoder_amplitude = decoders["amplitude"]
        self.decoder_phase = decoders["phase"]
        self.head_amplitude = _conv(previous, channels)
        self.head_phase = _conv(previous, channels)
        if model_config.intensity_scale_trainable:
            self.log_intensity_scale = nn.Parameter(torch.zeros((), dtype=torch.float32))
        else:
            self.log_intensity_scale = None
        self.to(dtype)
        self.to(memory_format=torch.channels_last)  # the convolutions' kernels: see the module docstring
        self._amplitude_activation = _amplitude_activation(model_config.amp_activation)

    def forward(self, diffraction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Amplitude and phase maps of the central window.

        Parameters
        ----------
        diffraction : torch.Tensor, float32, shape (B, C, N, N)
            Normalised amplitudes ``X_n``.

        Returns
        -------
        amplitude, phase : torch.Tensor, float32, shape (B, C, N/2, N/2)
            ``A = activation(head_amplitude(...))`` and ``phi = pi * tanh(head_phase(...))``.
        """
        batch, group, size = diffraction.shape[0], diffraction.shape[1], diffraction.shape[-1]
        features = diffraction.reshape(-1, self._channels, size, size)  # shared: one pattern a pass
        if self._stem_block_side > 1:
            features = nn.functional.pixel_unshuffle(features, self._stem_block_side)
        features = features.contiguous(memory_format=torch.channels_last)
        skipped = {}  # pre-pool features of the encoder blocks a skip reads (unet only)
        for index, (block, pools) in enumerate(zip(self.encoder, self._pools)):
            features = block(features)
            if index in self._skips:
                skipped[index] = features
            if pools:
                features = _max_pool(features)
        amplitude = self._decode(self.decoder_amplitude, features, skipped)
        phase = self._decode(self.decoder_phase, features, skipped)
        # The heads' activations in the parameters' dtype: under bf16 autocast the head
        # convolutions' outputs are cast back to float32 first (as the TensorFlow network).
        dtype = self.head_phase.weight.dtype
        amplitude = self._amplitude_activation(self.head_amplitude(amplitude).to(dtype))
        phase = math.pi * torch.tanh(self.head_phase(phase).to(dtype))
        half = (batch, group, size // 2, size // 2)
        return amplitude.reshape(half), phase.reshape(half)

    def _decode(self, blocks: nn.ModuleList, features: torch.Tensor,
                skipped: dict[int, torch.Tensor]) -> torch.Tensor:
        """One decoder: each up-block, upsampled, then concatenated with its skip if any."""
        for block, skip in zip(blocks, self._skips):
            features = _upsample(block(features))
            if skip is not None:
                features = torch.cat((features, skipped[skip]), dim=1)
        return features


def _torch_name(canonical_name: str) -> str:
    """Torch parameter name of a canonical parameter (``.kernel`` -> ``.weight``)."""
    prefix, _, suffix = canonical_name.rpartition(".")
    return f"{prefix}.{_TORCH_KERNEL}" if suffix == _KERNEL_SUFFIX else canonical_name


def load_canonical_weights(network: PinnNetwork, weights: Mapping[str, np.ndarray]) -> None:
    """Copy canonical weights into ``network`` (kernels HWIO -> OIHW).

    Parameters
    ----------
    network : PinnNetwork
    weights : Mapping[str, ndarray]
        Exactly the names, shapes and float32 dtype of
        ``parameter_specs(network.model_config)``.

    Raises
    ------
    ValueError
        (:class:`~ptychopinn_core.model.parameters.WeightsError`) naming the parameter
        that does not fit; nothing is copied then.
    """
    specs = parameter_specs(network.model_config)
    checked = validate_weights(weights, specs, "PinnNetwork weights")
    parameters = dict(network.named_parameters())
    with torch.no_grad():
        for spec in specs:
            value = torch.from_numpy(np.array(checked[spec.name], dtype=PARAMETER_DTYPE, copy=True))
            if spec.kind == "conv_kernel":
                value = value.permute(_TO_TORCH)
            parameters[_torch_name(spec.name)].copy_(value)


def canonical_weights(network: PinnNetwork) -> dict[str, np.ndarray]:
    """The network's weights in canonical names and layout (kernels OIHW -> HWIO).

    Parameters
    ----------
    network : PinnNetwork

    Returns
    -------
    dict of str to ndarray, float32
        In the order of ``parameter_specs(network.model_config)``; fresh copies
        (changing them does not change the network).
    """
    parameters = dict(network.named_parameters())
    weights: dict[str, np.ndarray] = {}
    for spec in parameter_specs(network.model_config):
        value = parameters[_torch_name(spec.name)].detach()
        if spec.kind == "conv_kernel":
            value = value.permute(_TO_CANONICAL)
        weights[spec.name] = np.array(value.cpu().numpy(), dtype=PARAMETER_DTYPE, copy=True, order="C")
    return weights

