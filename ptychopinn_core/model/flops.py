"""Floating-point operations of the PINN, counted analytically from its architecture.

Benchmarks divide these counts by measured times to report achieved GFLOP/s and the
fraction of the machine's matmul peak (``bench/suite.py``). The network part is read
layer by layer from :func:`~ptychopinn_core.model.parameters.describe_architecture`,
the physics part from the equations of ``docs/physics.md``, so the count follows the
model when either changes.

Conventions
-----------
- One FLOP is one real add, multiply, compare or elementary function (exp, log, tanh,
  sin, cos, sqrt each count 1, although they cost more). A multiply-add is 2 FLOPs.
  Complex: multiply 6, multiply by a real 2, add 2, modulus ``|z|`` 4 (2 mul, add, sqrt).
- conv3x3 'same', ``(Cin, H, W) -> (Cout, H, W)``: ``2 * 9 * Cin * Cout * H * W``
  (the zero border is counted, as frameworks compute it) plus ``Cout * H * W`` for the
  bias and the activation's cost per output element (:data:`ACTIVATION_FLOPS`).
- max-pool 2x2: 3 compares per output element; nearest upsampling, zero padding, the
  ``unet`` skip concatenation (``concat``) and ``space_to_depth``'s stem move data only (0). A skip costs its
  FLOPs in the conv that reads the concatenation, through that conv's wider input.
- Bilinear translation: 4 taps per output pixel, each a weight product (1) and a
  weighted value, accumulated: 11 FLOPs per real pixel, 18 per complex pixel.
- Complex 2-D FFT of ``N x N``: ``5 * N**2 * log2(N**2)`` (the usual radix-2 count);
  ``fftshift`` moves data only.
- Training step: 3 x the forward pass with loss (the backward pass costs about twice
  the forward: one gradient with respect to activations, one with respect to weights;
  the usual rule, e.g. Kaplan et al. 2020). The optimiser update (~10 FLOPs per
  parameter per step, < 0.1 % of a batch of 16 patterns) is left out.

Counts are per group (``C = gridsize**2`` patterns) and reported per pattern (divided
by ``C``), batch-independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.parameters import KERNEL_SIZE, describe_architecture, network_channels

__all__ = [
    "ACTIVATION_FLOPS",
    "BILINEAR_COMPLEX_FLOPS",
    "BILINEAR_REAL_FLOPS",
    "TRAINING_STEP_FACTOR",
    "ModelFlops",
    "far_field_flops",
    "fft2_flops",
    "layer_flops",
    "loss_flops",
    "model_flops",
    "network_flops",
    "overlap_flops",
]

#: FLOPs per element of each activation (the suffix of a ``conv3x3_<activation>`` op).
ACTIVATION_FLOPS = {
    "relu": 1,  # max(x, 0)
    "sigmoid": 3,  # exp, add, divide
    "softplus": 2,  # exp, log1p
    "swish": 4,  # sigmoid, multiply
    "pi_tanh": 2,  # tanh, multiply
}
#: Bilinear sample of a real pixel: 4 weight products, 4 multiplies, 3 adds.
BILINEAR_REAL_FLOPS = 11
#: Bilinear sample of a complex pixel: 4 weight products, 4 x 2 multiplies, 3 x 2 adds.
BILINEAR_COMPLEX_FLOPS = 18
#: A training step costs this many forward passes (forward + backward ~ 2 x forward).
TRAINING_STEP_FACTOR = 3

_CONV_PREFIX = "conv3x3_"


def layer_flops(layer: dict) -> int:
    """FLOPs of one layer of :func:`describe_architecture`, for one group.

    Parameters
    ----------
    layer : dict
        ``op``, ``input_shape`` and ``output_shape`` as ``describe_architecture``
        gives them (channel-first, no batch axis).

    Returns
    -------
    int
    """
    op = layer["op"]
    if op.startswith(_CONV_PREFIX):
        in_channels = layer["input_shape"][0]
        out_channels, height, width = layer["output_shape"]
        outputs = out_channels * height * width
        activation = op.removeprefix(_CONV_PREFIX)
        if activation not in ACTIVATION_FLOPS:
            raise ValueError(
                f"invalid layer {layer['name']!r}: no FLOP count for activation {activation!r} "
                f"(known: {', '.join(sorted(ACTIVATION_FLOPS))})"
            )
        multiply_adds = KERNEL_SIZE * KERNEL_SIZE * in_channels * outputs
        return 2 * multiply_adds + outputs + ACTIVATION_FLOPS[activation] * outputs
    if op == "maxpool2x2":
        return 3 * math.prod(layer["output_shape"])
    if op in ("upsample2x_nearest", "zero_pad", "concat", "space_to_depth2x"):
        return 0
    if op == "complex_combine":
        return 4 * math.prod(layer["output_shape"])  # cos, sin, 2 multiplies
    raise ValueError(f"invalid layer {layer.get('name')!r}: no FLOP count for op {op!r}")


def network_flops(model_config: ModelConfig) -> int:
    """Forward FLOPs of the network for one group: diffraction to complex patches.

    ``describe_architecture`` describes one pass; a ``shared`` group network makes ``C``
    passes per group, a ``joint`` one a single pass.
    """
    passes = model_config.group_size // network_channels(model_config)
    return passes * sum(layer_flops(layer) for layer in describe_architecture(model_config))


def overlap_flops(model_config: ModelConfig) -> int:
    """FLOPs of the overlap constraint for one group (0 for ``C = 1``).

    One merge per channel, in that channel's frame (physics.md §4), each over the ``C``
    patches: weight them (complex x real), translate them and their weights, sum over
    channels, divide where the weight is above threshold (compare, max, divide: 4 per
    pixel). The merge weights (the window or the probe's, once per batch) are not counted.
    """
    channels = model_config.group_size
    if channels == 1:
        return 0
    pixels = model_config.pattern_size**2
    pairs = channels * channels
    weigh = 2 * pairs * pixels
    translate_patches = BILINEAR_COMPLEX_FLOPS * pairs * pixels
    translate_weights = BILINEAR_REAL_FLOPS * pairs * pixels
    sums = 3 * channels * (channels - 1) * pixels  # complex patches (2) and real weights (1)
    divide = 4 * channels * pixels
    return weigh + translate_patches + translate_weights + sums + divide


def fft2_flops(size: int) -> float:
    """``5 * n * log2(n)`` with ``n = size**2``: one complex ``size x size`` FFT."""
    pixels = size * size
    return 5.0 * pixels * math.log2(pixels)


def far_field_flops(model_config: ModelConfig) -> float:
    """FLOPs from patches to predicted amplitude for one group.

    Per channel: illumination ``O * P`` (6 per pixel), FFT, division by ``N`` (2),
    modulus (4).
    """
    size = model_config.pattern_size
    pixels = size * size
    return model_config.group_size * (6 * pixels + fft2_flops(size) + 2 * pixels + 4 * pixels)


def loss_flops(model_config: ModelConfig) -> int:
    """FLOPs of the Poisson NLL for one group (pinn mode).

    Per pixel: ``I_hat = (s A)**2`` (2), ``y = (s X)**2`` (2),
    ``I_hat - y * log(I_hat + eps)`` (4), accumulation of the mean (1).
    """
    return 9 * model_config.group_size * model_config.pattern_size**2


@dataclass(frozen=True)
class ModelFlops:
    """FLOPs per pattern of one model configuration (module docstring: conventions).

    Attributes
    ----------
    network : float
        Network forward (convolutions to the complex patch).
    overlap : float
        Overlap constraint (0 for ``C = 1``).
    far_field : float
        Illumination, FFT and modulus.
    loss : float
        Poisson NLL.
    group_size : int
        ``C``, the patterns per group the per-group counts were divided by.
    """

    network: float
    overlap: float
    far_field: float
    loss: float
    group_size: int

    @property
    def inference(self) -> float:
        """What ``BackendModel.predict`` computes: network and overlap constraint."""
        return self.network + self.overlap

    @property
    def forward(self) -> float:
        """The full forward pass with loss: inference, far field and loss."""
        return self.inference + self.far_field + self.loss

    @property
    def training_step(self) -> float:
        """One optimisation step: :data:`TRAINING_STEP_FACTOR` x :attr:`forward`."""
        return TRAINING_STEP_FACTOR * self.forward

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form, FLOPs per pattern."""
        return {
            "network": self.network,
            "overlap": self.overlap,
            "far_field": self.far_field,
            "loss": self.loss,
            "inference": self.inference,
            "forward": self.forward,
            "training_step": self.training_step,
            "group_size": self.group_size,
        }


def model_flops(model_config: ModelConfig) -> ModelFlops:
    """FLOPs per pattern of the model described by ``model_config``.

    Parameters
    ----------
    model_config : ModelConfig
        ``pattern_size``, ``gridsize``, ``n_filters_scale``, ``amp_activation``.

    Returns
    -------
    ModelFlops

    Examples
    --------
    >>> from ptychopinn_core.config import ModelConfig
    >>> round(model_flops(ModelConfig(pattern_size=64)).inference / 1e9, 2)  # GFLOP per pattern
    0.36
    """
    channels = model_config.group_size
    return ModelFlops(
        network=network_flops(model_config) / channels,
        overlap=overlap_flops(model_config) / channels,
        far_field=far_field_flops(model_config) / channels,
        loss=loss_flops(model_config) / channels,
        group_size=channels,
    )
