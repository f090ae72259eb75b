"""Refinement in TensorFlow: the object (and probe) fitted to the data through the physics layers.

The same definition as :mod:`ptychopinn_core.refine.reference` (docs/physics.md §10): patches
cut from the object with :func:`~ptychopinn_tf.layers.sample_separable`, the far field,
the loss of ``[refine]``; ``tf.GradientTape`` gives the gradients (``dL/dRe + i dL/dIm``
for a real loss, PyTorch's convention too) and the Adam rule is written out, so it is the
core's to the letter (Keras' Adam places epsilon differently).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ptychopinn_core.config import Config
from ptychopinn_core.physics.losses import POISSON_EPS
from ptychopinn_core.refine.loop import SteppedRefiner
from ptychopinn_core.refine.problem import RefineProblem
from ptychopinn_core.refine.reference import ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON
from ptychopinn_core.training_data import compute_dtypes
from ptychopinn_tf import layers
from ptychopinn_tf.model import select_device

__all__ = ["FrameworkRefiner"]


class _Adam:
    """Adam on a complex variable, real and imaginary parts as separate parameters."""

    def __init__(self, like: tf.Variable) -> None:
        real = like.dtype.real_dtype
        self.m = tf.Variable(tf.zeros_like(like), trainable=False)
        self.v_re = tf.Variable(tf.zeros(like.shape, real), trainable=False)
        self.v_im = tf.Variable(tf.zeros(like.shape, real), trainable=False)
        self.steps = 0

    def step(self, value: tf.Variable, gradient: tf.Tensor, step_size: float) -> None:
        self.steps += 1
        t = self.steps
        real = self.v_re.dtype
        # Python scalars, converted to the tensors' dtype: tf.cast(float) would round through float32.
        self.m.assign(ADAM_BETA1 * self.m + (1 - ADAM_BETA1) * gradient)
        self.v_re.assign(ADAM_BETA2 * self.v_re + (1 - ADAM_BETA2) * tf.math.real(gradient) ** 2)
        self.v_im.assign(ADAM_BETA2 * self.v_im + (1 - ADAM_BETA2) * tf.math.imag(gradient) ** 2)
        root2 = tf.constant(np.sqrt(1 - ADAM_BETA2**t), real)
        root_re = tf.sqrt(self.v_re) / root2
        root_im = tf.sqrt(self.v_im) / root2
        floor = ADAM_EPSILON * tf.maximum(tf.reduce_max(root_re), tf.reduce_max(root_im))
        scale = tf.constant(step_size / (1 - ADAM_BETA1**t), real)
        update_re = scale * tf.math.divide_no_nan(tf.math.real(self.m), root_re + floor)
        update_im = scale * tf.math.divide_no_nan(tf.math.imag(self.m), root_im + floor)
        value.assign_sub(tf.complex(update_re, update_im))


class FrameworkRefiner(SteppedRefiner):
    """The TensorFlow implementation of :class:`~ptychopinn_core.backends.Refiner`."""

    def __init__(self, problem: RefineProblem, config: Config) -> None:
        self.problem = problem
        real, complex_ = compute_dtypes(config.execution.precision)
        self.real_dtype = tf.as_dtype(real)
        self.complex_dtype = tf.as_dtype(complex_)
        self.numpy_complex = complex_
        self.device = select_device(config.execution)
        size = problem.pattern_size
        offsets = np.arange(size, dtype=np.float64) - size // 2
        positions = np.asarray(problem.positions_px, dtype=np.float64)
        with tf.device(self.device):
            self._rows = tf.constant(positions[:, 1:2] + offsets[None, :], layers.COORDINATE_DTYPE)
            self._cols = tf.constant(positions[:, 0:1] + offsets[None, :], layers.COORDINATE_DTYPE)
        self._compiled = tf.function(
            self._gradients,
            input_signature=[
                tf.TensorSpec(problem.object_shape, self.complex_dtype),
                tf.TensorSpec((size, size), self.complex_dtype),
                tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((None, size, size), self.real_dtype),
            ],
            reduce_retracing=True,
        )

    def _loss(self, obj: tf.Tensor, probe: tf.Tensor, index: tf.Tensor, observed: tf.Tensor) -> tf.Tensor:
        rows = tf.gather(self._rows, index)
        cols = tf.gather(self._cols, index)
        patches = layers.sample_separable(obj, rows, cols)
        amplitude = tf.abs(layers.far_field(layers.illuminate(patches, probe)))
        s = tf.constant(self.problem.intensity_scale, self.real_dtype)
        if self.problem.settings.loss == "poisson":
            predicted = (s * amplitude) ** 2
            measured = (s * observed) ** 2
            return tf.reduce_mean(predicted - measured * tf.math.log(predicted + POISSON_EPS))
        return tf.reduce_mean((s * amplitude - s * observed) ** 2)

    def _gradients(self, obj: tf.Tensor, probe: tf.Tensor, index: tf.Tensor, observed: tf.Tensor):
        with tf.GradientTape() as tape:
            tape.watch([obj, probe])
            loss = self._loss(obj, probe, index, observed)
        d_obj, d_probe = tape.gradient(loss, [obj, probe])
        return loss, tf.convert_to_tensor(d_obj), tf.convert_to_tensor(d_probe)

    def _step(self, obj, probe, indices: np.ndarray):
        with tf.device(self.device):
            observed = tf.constant(self.problem.observed(indices), self.real_dtype)
            index = tf.constant(np.asarray(indices, dtype=np.int32))
            return self._compiled(tf.convert_to_tensor(obj), tf.convert_to_tensor(probe), index, observed)

    def _tensor(self, values: np.ndarray) -> tf.Tensor:
        with tf.device(self.device):
            return tf.constant(np.asarray(values, dtype=self.numpy_complex))

    def loss_and_gradients(
        self, obj: np.ndarray, probe: np.ndarray, indices: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        loss, d_obj, d_probe = self._step(self._tensor(obj), self._tensor(probe), indices)
        return float(loss), d_obj.numpy().copy(), d_probe.numpy().copy()

    def steps(self, obj: np.ndarray, probe: np.ndarray) -> _Steps:
        return _Steps(self, obj, probe)

class _Steps:
    """Object, probe and their Adam states as variables (:class:`~ptychopinn_core.refine.loop.Steps`)."""

    def __init__(self, refiner: FrameworkRefiner, obj: np.ndarray, probe: np.ndarray) -> None:
        self.refiner = refiner
        with tf.device(refiner.device):
            self.obj = tf.Variable(refiner._tensor(obj), trainable=False)
            self.probe = tf.Variable(refiner._tensor(probe), trainable=False)
            self.object_adam, self.probe_adam = _Adam(self.obj), _Adam(self.probe)

    def step(self, indices: np.ndarray, object_step: float, probe_step: float | None) -> float:
        loss, d_obj, d_probe = self.refiner._step(self.obj, self.probe, indices)
        with tf.device(self.refiner.device):
            self.object_adam.step(self.obj, d_obj, object_step)
            if probe_step is not None:
                self.probe_adam.step(self.probe, d_probe, probe_step)
        return float(loss)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.obj.numpy().copy(), self.probe.numpy().copy()
