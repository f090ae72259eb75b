"""No-gradient prediction of one chunk of object patches.

Chunking is the core's job (:func:`ptychopinn_core.workflow.reconstruct` with
:func:`ptychopinn_core.inference_chunks.prepare_inference_inputs`); this module runs one
chunk through the network and the overlap constraint. It runs eagerly under
:func:`torch.inference_mode` (no autograd bookkeeping); ``torch.compile`` is not used:
its compile time (tens of seconds on a CPU) exceeds the whole prediction of a typical
scan, and the complex-valued overlap step falls back to eager code anyway.
"""

from __future__ import annotations

import numpy as np
import torch

from ptychopinn_core.model.batching import MAX_INFERENCE_GROUPS, inference_groups

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
    was_training = module.training
    module.eval()
    # On a CPU, slices that keep the activations near the caches (ptychopinn_core.model.batching).
    if diffraction_t.device.type == "cpu":
        batch = inference_groups(model.config.model, itemsize=diffraction_t.element_size())
    else:
        batch = PREDICT_BATCH
    parts = []
    try:
        with torch.inference_mode():
            for start in range(0, diffraction_t.shape[0], batch):
                stop = start + batch
                parts.append(module.patches(diffraction_t[start:stop], offsets_t[start:stop]).cpu())
    finally:
        module.train(was_training)
    if not parts:  # an empty chunk
        size = model.config.model.pattern_size
        return np.zeros((0, model.config.model.group_size, size, size), dtype=np.complex64)
    return np.array(torch.cat(parts).numpy(), dtype=np.complex64, copy=True)
