"""Compiled, gradient-free prediction of one chunk of groups.

The core streams a scan in chunks (``workflow.reconstruct`` with
``inference_chunks.prepare_inference_inputs``); this module turns one chunk into object
patches. The compiled function has a shape-polymorphic batch axis, so chunks of any
size (the last one is usually smaller) reuse one trace. A chunk is run in slices of
at most :data:`PREDICT_BATCH` groups to bound the activation memory (at N = 64 and the
default width one group needs about 7 MiB of activations per layer). With the ``shared``
group network the network runs once per distinct pattern of the chunk, not once per
group member (:mod:`ptychopinn_core.model.distinct`), as in the PyTorch backend.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ptychopinn_core.model.batching import MAX_INFERENCE_GROUPS
from ptychopinn_core.model.distinct import distinct_patterns, runs_patterns_alone

__all__ = ["PREDICT_BATCH", "predict_patches"]

#: Groups per network call inside one chunk: its compiled graph is fastest in large slices
#: (smaller ones that stay near the caches measured 9-14 % slower: bench/predict_batch.py).
PREDICT_BATCH = MAX_INFERENCE_GROUPS


def _prediction_function(model):
    """The model's compiled ``patches`` function (built once per model)."""
    if model._prediction_function is None:
        model._prediction_function = tf.function(model.patches, input_signature=model.input_signature())
    return model._prediction_function


def _distinct_functions(model):
    """The model's compiled network on single patterns and its patches from gathered heads
    (a shared group network's predict, :func:`_patches_of_distinct`; built once per model)."""
    if model._distinct_functions is None:
        size, channels, half = model.pattern_size, model.group_size, model.pattern_size // 2
        real, heads = tf.as_dtype(model.real_dtype), model.network.dtype
        model._distinct_functions = (
            tf.function(model.network, input_signature=[tf.TensorSpec((None, 1, size, size), real, name="patterns")]),
            tf.function(model.patches_from_heads, input_signature=[
                tf.TensorSpec((None, channels, half, half), heads, name="amplitude"),
                tf.TensorSpec((None, channels, half, half), heads, name="phase"),
                tf.TensorSpec((None, channels, 2), real, name="offsets_xy"),
            ]),
        )
    return model._distinct_functions


def predict_patches(model, diffraction: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
    """Object patches of one chunk after the overlap constraint, without gradients.

    Parameters
    ----------
    model : PinnModel
        The model that calls this (:meth:`PinnModel.predict`): its checked inputs,
        placement and compiled function. Not imported here, so that the model imports
        this module and not the other way round.
    diffraction : ndarray, float32, shape (B, C, N, N)
        Normalised amplitudes ``X_n``.
    offsets_xy : ndarray, float32, shape (B, C, 2)
        ``(x, y)`` pixel offsets of each channel from its group centre.

    Returns
    -------
    ndarray, complex64, shape (B, C, N, N)
    """
    diffraction, offsets_xy = model.check_inputs(diffraction, offsets_xy)
    with model.placement():
        if runs_patterns_alone(model.config.model):
            pieces = _patches_of_distinct(model, diffraction, offsets_xy)
        else:
            function = _prediction_function(model)
            pieces = [function(tf.constant(diffraction[start:start + PREDICT_BATCH]),
                               tf.constant(offsets_xy[start:start + PREDICT_BATCH])).numpy()
                      for start in range(0, diffraction.shape[0], PREDICT_BATCH)]
    if not pieces:
        size, channels = model.pattern_size, model.group_size
        return np.zeros((0, channels, size, size), dtype=np.complex64)
    return np.concatenate(pieces).astype(np.complex64, copy=False)


def _patches_of_distinct(model, diffraction: np.ndarray, offsets_xy: np.ndarray) -> list[np.ndarray]:
    """The shared network once per distinct pattern of the chunk, then each group's heads
    gathered and merged (ptychopinn_core.model.distinct); :data:`PREDICT_BATCH` groups'
    worth of passes a call."""
    heads_function, merge_function = _distinct_functions(model)
    passes = PREDICT_BATCH * model.group_size
    distinct = distinct_patterns(diffraction)
    patterns = distinct.patterns[:, None]  # groups of one
    heads = [heads_function(tf.constant(patterns[start:start + passes]))
             for start in range(0, patterns.shape[0], passes)]
    if not heads:
        return []
    amplitude = tf.concat([head[0] for head in heads], axis=0)[:, 0]
    phase = tf.concat([head[1] for head in heads], axis=0)[:, 0]
    index = distinct.index
    return [merge_function(tf.gather(amplitude, index[start:start + PREDICT_BATCH]),
                           tf.gather(phase, index[start:start + PREDICT_BATCH]),
                           tf.constant(offsets_xy[start:start + PREDICT_BATCH])).numpy()
            for start in range(0, index.shape[0], PREDICT_BATCH)]
