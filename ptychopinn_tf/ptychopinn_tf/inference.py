"""Compiled, gradient-free prediction of one chunk of groups.

The core streams a scan in chunks (``workflow.reconstruct`` with
``inference_chunks.prepare_inference_inputs``); this module turns one chunk into object
patches. The compiled function has a shape-polymorphic batch axis, so chunks of any
size (the last one is usually smaller) reuse one trace. A chunk is run in slices of
at most :data:`PREDICT_BATCH` groups to bound the activation memory (at N = 64 and the
default width one group needs about 7 MiB of activations per layer). With the ``shared``
group network a slice runs the network once per distinct pattern, not once per group
member (:mod:`ptychopinn_core.model.distinct`).
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


def _distinct_function(model):
    """The model's compiled ``patches`` of a slice given as its distinct patterns (``shared``)."""
    if model._distinct_functions is None:
        size, channels = model.pattern_size, model.group_size
        real = tf.as_dtype(model.real_dtype)

        def patches(patterns: tf.Tensor, index: tf.Tensor, offsets_xy: tf.Tensor) -> tf.Tensor:
            amplitude, phase = model.network(patterns)  # (U, 1, N/2, N/2): one pattern a pass
            return model.patches_from_heads(tf.gather(amplitude[:, 0], index), tf.gather(phase[:, 0], index),
                                            offsets_xy)

        model._distinct_functions = tf.function(patches, input_signature=[
            tf.TensorSpec((None, 1, size, size), real, name="patterns"),
            tf.TensorSpec((None, channels), tf.int64, name="index"),
            tf.TensorSpec((None, channels, 2), real, name="offsets_xy"),
        ])
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
    alone = runs_patterns_alone(model.config.model)
    function = _distinct_function(model) if alone else _prediction_function(model)
    pieces = []
    with model.placement():
        for start in range(0, diffraction.shape[0], PREDICT_BATCH):
            stop = start + PREDICT_BATCH
            if alone:
                distinct = distinct_patterns(diffraction[start:stop])
                patches = function(tf.constant(distinct.patterns[:, None]), tf.constant(distinct.index),
                                   tf.constant(offsets_xy[start:stop]))
            else:
                patches = function(tf.constant(diffraction[start:stop]), tf.constant(offsets_xy[start:stop]))
            pieces.append(patches.numpy())
    if not pieces:
        size, channels = model.pattern_size, model.group_size
        return np.zeros((0, channels, size, size), dtype=np.complex64)
    return np.concatenate(pieces).astype(np.complex64, copy=False)
