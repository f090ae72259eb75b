"""No-gradient prediction of one chunk of object patches.

Chunking is the core's job (:func:`ptychopinn_core.workflow.reconstruct` with
:func:`ptychopinn_core.inference_chunks.prepare_inference_inputs`); this module runs one
chunk through the network and the overlap constraint; with the ``shared`` group network
the network runs once per distinct pattern of the chunk, not once per group member
(:mod:`ptychopinn_core.model.distinct`). It runs eagerly under
:func:`torch.inference_mode` (no autograd bookkeeping); ``torch.compile`` is not used:
its compile time (tens of seconds on a CPU) exceeds the whole prediction of a typical
scan, and the complex-valued overlap step falls back to eager code anyway.
"""

from __future__ import annotations

import numpy as np
import torch

from ptychopinn_core.model.batching import MAX_INFERENCE_GROUPS, inference_groups
from ptychopinn_core.model.distinct import distinct_patterns, runs_patterns_alone

__all__ = ["PREDICT_BATCH", "predict_patches"]

#: Groups per network call on an accelerator, which wants large batches (on a CPU the
#: cache rule of ptychopinn_core.model.batching decides).
PREDICT_BATCH = MAX_INFERENCE_GROUPS


def predict_patches(model, diffraction: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
    """Object patches after the overlap constraint for one chunk.

    ``patches = enforce_overlap(pad_to_full(A * exp(i * phi), N), offsets)`` with
    ``(A, phi)`` the network's heads (``C = 1``: no overlap step).

    Parameters
    ----------
    model : PinnModel
        The model that calls this (:meth:`PinnModel.predict`): its module, device and
        checked inputs. Not imported here, so that the model imports this module and
        not the other way round.
    diffraction : ndarray, float32, shape (B, C, N, N)
        Normalised amplitudes ``X_n``.
    offsets_xy : ndarray, float32, shape (B, C, 2)
        Group offsets ``(x, y)`` in pixels.

    Returns
    -------
    ndarray, complex64, shape (B, C, N, N)
    """
    diffraction_t, offsets_t = model._as_tensors(diffraction, offsets_xy)
    module = model.module
    model_config = model.config.model
    # On a CPU, slices that keep the activations near the caches (ptychopinn_core.model.batching).
    if diffraction_t.device.type == "cpu":
        batch = inference_groups(model_config, itemsize=diffraction_t.element_size())
    else:
        batch = PREDICT_BATCH
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            if runs_patterns_alone(model_config):
                parts = _patches_of_distinct(module, diffraction_t, offsets_t, batch, model_config.group_size)
            else:
                parts = [module.patches(diffraction_t[start:start + batch], offsets_t[start:start + batch]).cpu()
                         for start in range(0, diffraction_t.shape[0], batch)]
    finally:
        module.train(was_training)
    if not parts:  # an empty chunk
        size = model_config.pattern_size
        return np.zeros((0, model_config.group_size, size, size), dtype=np.complex64)
    return np.array(torch.cat(parts).numpy(), dtype=np.complex64, copy=True)


def _patches_of_distinct(module, diffraction: torch.Tensor, offsets_xy: torch.Tensor, batch: int,
                         group_size: int) -> list[torch.Tensor]:
    """The shared network once per distinct pattern, then each group's heads gathered and
    merged (ptychopinn_core.model.distinct); ``batch`` groups' worth of passes a call."""
    passes = batch * group_size
    distinct = distinct_patterns(diffraction.cpu().numpy())
    patterns = torch.from_numpy(distinct.patterns).to(diffraction.device)[:, None]  # groups of one
    heads = [module.heads(patterns[start:start + passes]) for start in range(0, patterns.shape[0], passes)]
    if not heads:
        return []
    amplitude = torch.cat([head[0] for head in heads])[:, 0]
    phase = torch.cat([head[1] for head in heads])[:, 0]
    index = torch.from_numpy(distinct.index).to(diffraction.device)
    return [module.patches_from_heads(amplitude[index[start:start + batch]], phase[index[start:start + batch]],
                                      offsets_xy[start:start + batch]).cpu()
            for start in range(0, index.shape[0], batch)]
