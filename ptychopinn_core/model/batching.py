"""How many groups one inference call of the PyTorch network should take on a CPU.

Eager PyTorch runs each layer over the whole batch before the next, so on a CPU its
speed depends on the batch through the cache: the widest activation (the first encoder
block's, ``32 * n_filters_scale`` channels of ``N x N``) is 512 KiB per pattern at
N = 64, and a batch of 256 patterns streams 128 MiB through memory at every layer, while
16 patterns (8 MiB) stay close to the cores' caches. Measured on the 2-core machine
(``bench/predict_batch.py``, docs/benchmarks.md "PyTorch speed"): PyTorch's ``predict``
1.23-1.65x faster in these slices than in slices of 256 groups across N = 64 and 128,
gridsize 1 and 2, width 1 and 2. TensorFlow's compiled graph is 9-14 % slower in them
and ONNX Runtime the same, so those backends keep their own slices; an accelerator
wants large batches (:data:`MAX_INFERENCE_GROUPS`). The rule lives in the core because
it reads the architecture (:func:`~ptychopinn_core.model.parameters.describe_architecture`).
"""

from __future__ import annotations

import math

from ptychopinn_core.config import ModelConfig
from ptychopinn_core.model.parameters import describe_architecture, network_channels

__all__ = ["ACTIVATION_BUDGET_BYTES", "MAX_INFERENCE_GROUPS", "inference_groups", "widest_activation"]

#: Bytes the widest activation of one call may take (float32): 16 patterns at N = 64.
ACTIVATION_BUDGET_BYTES = 8 * 2**20
#: Most groups per network call in every backend: bounds the activations' memory
#: (a chunk of 1024 groups of 4 x 128 x 128 would need several GiB at once).
MAX_INFERENCE_GROUPS = 256


def widest_activation(model_config: ModelConfig) -> int:
    """Elements of the largest layer output of one group's network passes (``C`` for ``shared``)."""
    passes = model_config.group_size // network_channels(model_config)
    largest = max(math.prod(layer["output_shape"]) for layer in describe_architecture(model_config)
                  if layer["op"] not in ("zero_pad", "complex_combine"))
    return passes * largest


def inference_groups(model_config: ModelConfig, itemsize: int = 4, budget_bytes: int | None = None) -> int:
    """Groups per network call: as many as keep the widest activation within the budget.

    At least 1, at most :data:`MAX_INFERENCE_GROUPS`. ``itemsize`` is 8 at float64;
    ``budget_bytes`` defaults to :data:`ACTIVATION_BUDGET_BYTES`. The padded and complex
    outputs (the physics' ``N x N`` maps) are left out: they are written once and not
    read back by a convolution.
    """
    budget = ACTIVATION_BUDGET_BYTES if budget_bytes is None else budget_bytes
    per_group = widest_activation(model_config) * itemsize
    return max(1, min(MAX_INFERENCE_GROUPS, budget // per_group))

