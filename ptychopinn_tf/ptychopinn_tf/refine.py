"""Refinement in TensorFlow: the object (and probe) fitted to the data through the physics layers.

The same definition as :mod:`ptychopinn_core.refine.reference` (docs/physics.md §10): patches
cut from the object by the bilinear rule of physics.md §2 (one gather of each position's
corner block, :class:`_PatchSampling`), the far field of :mod:`ptychopinn_tf.layers`,
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
from ptychopinn_core.model.inputs import compute_dtypes
from ptychopinn_tf import layers
from ptychopinn_tf.model import select_device

__all__ = ["FrameworkRefiner"]


class _Adam:
    """Adam on a complex variable, real and imaginary parts as separate parameters.

    The step count and the bias corrections live in Python (:meth:`coefficients`, computed
    as the numpy reference computes them); :meth:`apply` is graph code, compiled with the
    gradient into one ``tf.function`` per step.
    """

    def __init__(self, like: tf.Variable) -> None:
        self.real = like.dtype.real_dtype
        self.m = tf.Variable(tf.zeros_like(like), trainable=False)
        self.v_re = tf.Variable(tf.zeros(like.shape, self.real), trainable=False)
        self.v_im = tf.Variable(tf.zeros(like.shape, self.real), trainable=False)
        self.steps = 0

    def coefficients(self, step_size: float) -> tuple[tf.Tensor, tf.Tensor]:
        """``step_size / (1 - b1^t)`` and ``sqrt(1 - b2^t)`` of the next step, as tensors."""
        self.steps += 1
        t = self.steps
        return (tf.constant(step_size / (1 - ADAM_BETA1**t), self.real),
                tf.constant(np.sqrt(1 - ADAM_BETA2**t), self.real))

    def apply(self, value: tf.Variable, gradient: tf.Tensor, scale: tf.Tensor, root2: tf.Tensor) -> None:
        # Python scalars, converted to the tensors' dtype: tf.cast(float) would round through float32.
        self.m.assign(ADAM_BETA1 * self.m + (1 - ADAM_BETA1) * gradient)
        self.v_re.assign(ADAM_BETA2 * self.v_re + (1 - ADAM_BETA2) * tf.math.real(gradient) ** 2)
        self.v_im.assign(ADAM_BETA2 * self.v_im + (1 - ADAM_BETA2) * tf.math.imag(gradient) ** 2)
        root_re = tf.sqrt(self.v_re) / root2
        root_im = tf.sqrt(self.v_im) / root2
        floor = ADAM_EPSILON * tf.maximum(tf.reduce_max(root_re), tf.reduce_max(root_im))
        update_re = scale * tf.math.divide_no_nan(tf.math.real(self.m), root_re + floor)
        update_im = scale * tf.math.divide_no_nan(tf.math.imag(self.m), root_im + floor)
        value.assign_sub(tf.complex(update_re, update_im))


class _PatchSampling:
    """``extract_patches`` of a large object as one flat gather of ``(N+1) x (N+1)`` blocks.

    :func:`~ptychopinn_tf.layers.sample_separable` gathers whole rows of the image first,
    ``W / N`` times the work on a wide object. Here each position's block of the four
    bilinear corners is one ``tf.gather`` of the object's real view (its gradient: a
    segment sum into the pixels touched), and the corners are combined with the
    reference's weights, in the reference's order (the PyTorch refiner does the same).
    """

    def __init__(self, problem: RefineProblem, real_dtype: tf.DType) -> None:
        self.shape = problem.object_shape
        self.size = problem.pattern_size
        row0, col0, row_fraction, col_fraction = problem.patch_corners()
        self._row0, self._col0 = tf.constant(row0), tf.constant(col0)
        self._row_fraction = tf.constant(row_fraction, real_dtype)
        self._col_fraction = tf.constant(col_fraction, real_dtype)
        self._steps = tf.range(self.size + 1, dtype=tf.int64)
        self.real_dtype = real_dtype

    def patches(self, obj: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
        height, width = self.shape
        rows = tf.gather(self._row0, index)[:, None] + self._steps[None, :]
        cols = tf.gather(self._col0, index)[:, None] + self._steps[None, :]
        inside = (((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :])
        flat = tf.clip_by_value(rows, 0, height - 1)[:, :, None] * width + tf.clip_by_value(cols, 0, width - 1)[:, None, :]
        values = tf.reshape(tf.stack([tf.math.real(obj), tf.math.imag(obj)], axis=-1), (-1, 2))
        blocks = tf.gather(values, flat) * tf.cast(inside, self.real_dtype)[..., None]
        fr = tf.gather(self._row_fraction, index)[:, None, None, None]
        fc = tf.gather(self._col_fraction, index)[:, None, None, None]
        n = self.size
        out = ((1 - fr) * (1 - fc)) * blocks[:, :n, :n]
        out = out + ((1 - fr) * fc) * blocks[:, :n, 1:]
        out = out + (fr * (1 - fc)) * blocks[:, 1:, :n]
        out = out + (fr * fc) * blocks[:, 1:, 1:]
        return tf.complex(out[..., 0], out[..., 1])


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
        with tf.device(self.device):
            self._sampling = _PatchSampling(problem, self.real_dtype)
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
        patches = self._sampling.patches(obj, index)
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
    """Object, probe and their Adam states as variables (:class:`~ptychopinn_core.refine.loop.Steps`).

    A step (gradients and both Adam updates) is one compiled function: run eagerly, the
    few dozen small ops of the update cost more than the gradient itself on a CPU.
    """

    def __init__(self, refiner: FrameworkRefiner, obj: np.ndarray, probe: np.ndarray) -> None:
        self.refiner = refiner
        with tf.device(refiner.device):
            self.obj = tf.Variable(refiner._tensor(obj), trainable=False)
            self.probe = tf.Variable(refiner._tensor(probe), trainable=False)
            self.object_adam, self.probe_adam = _Adam(self.obj), _Adam(self.probe)
        self._update = {
            flag: tf.function(lambda *args, flag=flag: self._update_graph(*args, with_probe=flag), reduce_retracing=True)
            for flag in (False, True)
        }

    def _update_graph(self, index, observed, object_scale, object_root2, probe_scale, probe_root2, *, with_probe):
        loss, d_obj, d_probe = self.refiner._gradients(self.obj.read_value(), self.probe.read_value(), index, observed)
        self.object_adam.apply(self.obj, d_obj, object_scale, object_root2)
        if with_probe:
            self.probe_adam.apply(self.probe, d_probe, probe_scale, probe_root2)
        return loss

    def step(self, indices: np.ndarray, object_step: float, probe_step: float | None) -> float:
        refiner = self.refiner
        with tf.device(refiner.device):
            observed = tf.constant(refiner.problem.observed(indices), refiner.real_dtype)
            index = tf.constant(np.asarray(indices, dtype=np.int32))
            object_coefficients = self.object_adam.coefficients(object_step)
            probe_coefficients = (self.probe_adam.coefficients(probe_step) if probe_step is not None
                                  else object_coefficients)
            loss = self._update[probe_step is not None](index, observed, *object_coefficients, *probe_coefficients)
        return float(loss)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.obj.numpy().copy(), self.probe.numpy().copy()
