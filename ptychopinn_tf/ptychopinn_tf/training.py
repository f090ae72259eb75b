"""Training loop: the core's batches, a compiled step, the core's schedule and early stopping.

What is decided here (and mirrored in ``ptychopinn_torch.training``):

- **Data order**: epoch ``e`` runs ``data.epoch_batches(e)`` in order, gathered with
  ``data.gather`` (and ``data.gather_truth`` in supervised mode). Nothing is shuffled
  here.
- **Optimiser**: Adam with ``learning_rate``, ``adam_beta1``, ``adam_beta2`` and
  ``adam_epsilon`` of ``config.training``, in the form of Kingma & Ba's Algorithm 1 and
  ``torch.optim.Adam``::

      m <- m + (1 - b1) (g - m);      v <- b2 v + (1 - b2) g**2
      theta <- theta - (lr / (1 - b1**t)) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)

  Keras' own Adam adds ``eps`` to ``sqrt(v)`` before the bias correction (an ``eps``
  larger by ``1 / sqrt(1 - b2**t)``, 30x at the first step), which would make the two
  backends differ wherever gradients are small; hence :class:`_KingmaBaAdam`. The
  bias corrections are computed in float64, as torch does in Python.
- **The epoch policy** (:class:`ptychopinn_core.training.policy.EpochPolicy`, shared with
  every backend): the learning rate of each epoch (plateau schedule), early stopping,
  ``max_seconds``, the epoch's losses (training: batch losses weighted by batch size;
  validation: the loss over all validation groups after the epoch's updates), the
  progress events and the metrics loggers. The weights of the last epoch are kept.
- **Weight average** (``training.ema_decay``, docs/physics.md §8): :class:`WeightAverage`
  folds the weights into its average in the compiled step, after the update; it is in place
  for the validation loss and the epoch's end, out again for the next step and the
  checkpoint, and kept after the last epoch.
- **Checkpoints** (``execution.run_dir``): ``run_dir/last.npz`` after every epoch, written
  atomically, pickle-free: every trainable variable, every optimiser variable (moments,
  step count) and the policy's state as JSON. ``execution.resume`` continues from it and
  the loss history continues exactly (docs/backend-tensorflow.md). Metrics loggers:
  ``csv`` (the core's, Lightning's columns) and ``tensorboard`` (``tf.summary``), in
  ``run_dir/logs/version_k``; MLflow is not offered (capabilities).
- **Compiled step**: one ``tf.function`` with a shape-polymorphic batch axis, so the
  last, partial batch reuses the trace. Not XLA-compiled (``jit_compile``): measured
  slower on CPU for this model (docs/backend-tensorflow.md).
- **MirroredStrategy** (``execution.strategy = "mirrored"``, or ``"auto"`` with
  ``execution.devices`` > 1): the global batch is the
  core's batch, split into contiguous, near-equal parts, one per replica; each replica's
  loss is its mean loss times ``B_replica / B`` and the replicas' gradients are summed,
  so the update equals the single-device update of the same batch. A replica with an
  empty part (a last batch smaller than the number of replicas) contributes exactly zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ptychopinn_core.atomic import atomic_write
from ptychopinn_core.config import Config, ExecutionConfig, TrainingConfig
from ptychopinn_core.model.state import History
from ptychopinn_core.progress import ProgressCallback
from ptychopinn_core.training.data import TrainingData
from ptychopinn_core.training.policy import EpochPolicy, MetricsLogger
from ptychopinn_core.training.run_dir import CsvMetricsLogger, checkpoint_to_resume, new_log_version
from ptychopinn_tf.model import PinnModel

__all__ = ["LAST_CHECKPOINT", "train_model"]

#: File name of the checkpoint written after every epoch in ``execution.run_dir``.
LAST_CHECKPOINT = "last.npz"
#: Format tag stored in the checkpoint, checked on resume.
CHECKPOINT_FORMAT = "ptychopinn-tf-checkpoint/1"
#: Key of the weight average's step count in the checkpoint (its values are ``average_<i>``).
AVERAGE_STEPS_KEY = "weight_average_steps"


class _KingmaBaAdam(keras.optimizers.Adam):
    """Adam with ``eps`` added to the bias-corrected ``sqrt(v_hat)`` (torch's placement)."""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = tf.cast(gradient, dtype)
        step = tf.cast(self.iterations + 1, tf.float64)
        bias_correction1 = 1.0 - tf.pow(tf.constant(self.beta_1, tf.float64), step)
        bias_correction2 = 1.0 - tf.pow(tf.constant(self.beta_2, tf.float64), step)
        step_size = tf.cast(tf.cast(learning_rate, tf.float64) / bias_correction1, dtype)
        bias_correction2_sqrt = tf.cast(tf.sqrt(bias_correction2), dtype)
        index = self._get_variable_index(variable)
        first_moment = self._momentums[index]
        second_moment = self._velocities[index]
        self.assign_add(first_moment, (gradient - first_moment) * (1 - self.beta_1))
        self.assign(second_moment, second_moment * self.beta_2 + (1 - self.beta_2) * tf.square(gradient))
        denominator = tf.sqrt(second_moment) / bias_correction2_sqrt + tf.cast(self.epsilon, dtype)
        self.assign_sub(variable, step_size * (first_moment / denominator))


def _make_optimizer(training: TrainingConfig) -> keras.optimizers.Optimizer:
    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "the TensorFlow backend trains with Keras' TensorFlow optimizer, but Keras runs on "
            f"{keras.backend.backend()!r}: unset KERAS_BACKEND or set KERAS_BACKEND=tensorflow"
        )
    return _KingmaBaAdam(
        learning_rate=training.learning_rate,
        beta_1=training.adam_beta1,
        beta_2=training.adam_beta2,
        epsilon=training.adam_epsilon,
        name="adam",
    )


def _make_strategy(execution: ExecutionConfig) -> tf.distribute.Strategy | None:
    """MirroredStrategy for ``strategy="mirrored"`` (or ``"auto"`` with several devices), else None.

    GPUs when TensorFlow sees any and ``execution.device`` is not ``"cpu"``, else the
    (logical) CPUs; ``execution.devices`` (an int) keeps the first that many.
    """
    several = isinstance(execution.devices, int) and execution.devices > 1
    if execution.strategy == "single" and several:
        raise ValueError(
            f"execution.strategy='single' trains on one device, received execution.devices={execution.devices}; "
            "use strategy 'mirrored' (or 'auto') for several"
        )
    if execution.strategy != "mirrored" and not (execution.strategy == "auto" and several):
        return None
    kind = "GPU" if execution.device != "cpu" and tf.config.list_logical_devices("GPU") else "CPU"
    if execution.device == "gpu" and kind != "GPU":
        raise ValueError(
            "invalid execution.device: expected a GPU visible to TensorFlow for device='gpu', received none"
        )
    devices = [device.name for device in tf.config.list_logical_devices(kind)]
    if execution.devices != "auto":
        if execution.devices > len(devices):
            raise ValueError(
                f"invalid execution.devices: expected at most the {len(devices)} visible {kind} device(s), "
                f"received devices={execution.devices}"
            )
        devices = devices[: execution.devices]
    return tf.distribute.MirroredStrategy(devices=devices)


class WeightAverage:
    """The moving average of the trained variables (``training.ema_decay``).

    :mod:`ptychopinn_core.training.averaging` defines it: after step ``t``,
    ``a <- delta_t a + (1 - delta_t) w`` with ``delta_t = min(decay, (t - 1) / (t + 8))``
    (0 at the first step; computed in float64 like the core's ``decay_at``), traced into
    the compiled step by :meth:`update`. While it is "in", the variables hold the average
    and the raw weights wait aside. Under a MirroredStrategy the averages are mirrored like
    the weights (every replica holds the same weights after the update; the first
    replica's average is kept).

    Parameters
    ----------
    variables : list of tf.Variable
        The variables the optimiser steps.
    decay : float
    """

    def __init__(self, variables: list[tf.Variable], decay: float) -> None:
        self.variables = variables
        self.decay = float(decay)
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.averages = [tf.Variable(tf.zeros_like(variable), trainable=False, aggregation=first,
                                     name=f"average_{index}") for index, variable in enumerate(variables)]
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=first, name="average_steps")
        self._raw: list[np.ndarray] | None = None

    def update(self) -> None:
        """After an optimiser step: fold the raw weights into the average."""
        self.steps.assign_add(1)
        step = tf.cast(self.steps, tf.float64)
        delta = tf.minimum(tf.constant(self.decay, tf.float64), (step - 1.0) / (step + 8.0))
        for average, variable in zip(self.averages, self.variables):
            dtype = variable.dtype
            average.assign(average * tf.cast(delta, dtype) + variable * tf.cast(1.0 - delta, dtype))

    def put_in(self) -> None:
        """Variables := the average (the raw weights kept aside); nothing before the first step."""
        if self._raw is not None or int(self.steps.numpy()) == 0:
            return
        self._raw = [variable.numpy() for variable in self.variables]
        for average, variable in zip(self.averages, self.variables):
            variable.assign(average)

    def take_out(self) -> None:
        """Variables := the raw weights again, for the next step or a checkpoint."""
        if self._raw is None:
            return
        for raw, variable in zip(self._raw, self.variables):
            variable.assign(raw)
        self._raw = None

    def keep(self) -> None:
        """Training is over: the variables keep the average."""
        self.put_in()
        self._raw = None


def _nonzero_gradients(gradients, variables):
    """Zeros instead of None for variables the loss does not use (e.g. the scale, supervised)."""
    return [
        tf.zeros_like(variable) if gradient is None else gradient
        for gradient, variable in zip(gradients, variables)
    ]


def _single_device_step(worker: PinnModel, optimizer, average: WeightAverage | None, supervised: bool):
    variables = worker.trainable_variables
    optimizer.build(variables)  # before tracing: variables created in a trace force a retrace

    def step(diffraction, offsets_xy, truth=None):
        with tf.GradientTape() as tape:
            loss = worker.training_loss(diffraction, offsets_xy, truth)
        gradients = _nonzero_gradients(tape.gradient(loss, variables), variables)
        optimizer.apply_gradients(zip(gradients, variables))
        if average is not None:
            average.update()
        return loss

    return tf.function(step, input_signature=_signature(worker, supervised))


def _mirrored_step(worker: PinnModel, optimizer, average: WeightAverage | None, strategy: tf.distribute.Strategy,
                   supervised: bool):
    variables = worker.trainable_variables
    optimizer.build(variables)

    def replica_step(global_batch, diffraction, offsets_xy, truth=None):
        local_batch = tf.shape(diffraction)[0]
        dtype = tf.as_dtype(worker.real_dtype)
        share = tf.cast(local_batch, dtype) / tf.cast(global_batch, dtype)
        with tf.GradientTape() as tape:
            # A replica whose part is empty (batch < replicas) contributes exactly 0; the
            # network is not run on it (convolutions of an empty batch are not safe on CPU).
            loss = tf.cond(
                local_batch > 0,
                lambda: worker.training_loss(diffraction, offsets_xy, truth) * share,
                lambda: tf.constant(0.0, dtype),
            )
        gradients = _nonzero_gradients(tape.gradient(loss, variables), variables)
        optimizer.apply_gradients(zip(gradients, variables))  # sums the replicas' gradients
        if average is not None:
            average.update()
        return loss

    @tf.function(reduce_retracing=True)
    def step(global_batch, *inputs):
        losses = strategy.run(replica_step, args=(global_batch, *inputs))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def run(*arrays: np.ndarray) -> tf.Tensor:
        global_batch = tf.constant(arrays[0].shape[0], tf.int32)
        return step(global_batch, *(_split(strategy, array) for array in arrays))

    return run


def _split(strategy: tf.distribute.Strategy, array: np.ndarray):
    """Per-replica contiguous parts of a batch (``numpy.array_split``: sizes differ by <= 1)."""
    parts = np.array_split(array, strategy.num_replicas_in_sync)
    return strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(parts[context.replica_id_in_sync_group])
    )


def _signature(worker: PinnModel, supervised: bool) -> list[tf.TensorSpec]:
    signature = worker.input_signature()
    if supervised:
        size, channels = worker.pattern_size, worker.group_size
        signature.append(tf.TensorSpec((None, channels, size, size), tf.as_dtype(worker.complex_dtype), name="truth"))
    return signature


def _batch_inputs(worker: PinnModel, data, group_ids: np.ndarray, supervised: bool) -> tuple[np.ndarray, ...]:
    """One batch as the model's dtypes (float32/complex64, or float64/complex128 at precision "64")."""
    diffraction, offsets_xy = data.gather(group_ids)
    inputs = [diffraction.astype(worker.real_dtype, copy=False), offsets_xy.astype(worker.real_dtype, copy=False)]
    if supervised:
        inputs.append(data.gather_truth(group_ids).astype(worker.complex_dtype, copy=False))
    return tuple(inputs)


def train_model(model: PinnModel, data: TrainingData, config: Config, progress: ProgressCallback) -> History:
    """Train ``model`` in place on the core's batches; return the per-epoch history.

    Parameters
    ----------
    model : PinnModel
        Built by ``ptychopinn_build_model``; its weights (and a trainable probe) are
        updated in place.
    data : TrainingData
        The core's normalised, grouped and split data (``epoch_batches``, ``gather``).
    config : Config
        ``training`` (optimiser, epochs, schedule, loss, seed) and ``execution``
        (``strategy``, ``devices``, ``deterministic``, ``run_dir``, ``resume``, ``logger``).
    progress : callable
        Receives a ProgressEvent after every step and every epoch.

    Returns
    -------
    History
        One EpochRecord per completed epoch, including those before a resume (fewer
        than ``training.epochs`` when early stopping or ``max_seconds`` ends the run).

    Raises
    ------
    ValueError
        An execution setting that cannot be honoured (e.g. resume without a checkpoint).
    """
    training, execution = config.training, config.execution
    supervised = training.mode == "supervised"
    if supervised and data.patches is None:
        raise ValueError("supervised training: expected ground-truth patches in the training data, received none")
    resume_from = checkpoint_to_resume(execution, LAST_CHECKPOINT)
    tf.random.set_seed(training.seed)
    if execution.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = _make_strategy(execution)
    if strategy is None:
        worker = model
        scope = model.placement
    else:
        scope = strategy.scope
        with scope():
            worker = PinnModel(config, model.state, model.get_weights())

    policy = EpochPolicy(data, training, progress, _loggers(execution))
    with scope():
        optimizer = _make_optimizer(training)
        average = WeightAverage(worker.trainable_variables, training.ema_decay) if training.ema_decay else None
        if strategy is None:
            compiled_step = _single_device_step(worker, optimizer, average, supervised)

            def train_step(*arrays: np.ndarray) -> tf.Tensor:
                return compiled_step(*(tf.constant(array) for array in arrays))
        else:
            train_step = _mirrored_step(worker, optimizer, average, strategy, supervised)
        evaluate = tf.function(worker.training_loss, input_signature=_signature(worker, supervised))
        if resume_from is not None:
            _restore_checkpoint(resume_from, worker, optimizer, average, policy)
        checkpoint = None if execution.run_dir is None else Path(execution.run_dir) / LAST_CHECKPOINT
        _fit(worker, data, train_step, evaluate, optimizer, average, supervised, policy, checkpoint)
        if average is not None:
            average.keep()

    if worker is not model:
        model.set_weights(worker.get_weights())
        model.state = worker.state
    return policy.history


def _fit(worker, data: TrainingData, train_step, evaluate, optimizer, average: WeightAverage | None,
         supervised: bool, policy: EpochPolicy, checkpoint: Path | None) -> None:
    policy.start()
    for epoch in range(policy.next_epoch, policy.n_epochs):
        if policy.stopped:
            break
        optimizer.learning_rate = policy.begin_epoch(epoch)
        for step, group_ids in enumerate(data.epoch_batches(epoch), start=1):
            loss = train_step(*_batch_inputs(worker, data, group_ids, supervised))
            policy.end_batch(step, float(loss), len(group_ids))
        if average is not None:
            average.put_in()  # validation and the epoch's event see the average
        val_loss = _validation_loss(worker, data, evaluate, supervised) if data.n_validation else None
        stop = policy.end_epoch(val_loss)
        if average is not None:
            average.take_out()  # the next step, and the checkpoint, take the raw weights
        if checkpoint is not None:
            _save_checkpoint(checkpoint, worker, optimizer, average, policy)
        if stop:
            break


def _validation_loss(worker, data: TrainingData, evaluate, supervised: bool) -> float:
    total, count = 0.0, 0
    for group_ids in data.validation_batches():
        inputs = _batch_inputs(worker, data, group_ids, supervised)
        total += float(evaluate(*(tf.constant(array) for array in inputs))) * len(group_ids)
        count += len(group_ids)
    return total / count


# -- run folder: checkpoints and loggers -------------------------------------------------------


def _save_checkpoint(path: Path, worker: PinnModel, optimizer, average: WeightAverage | None,
                     policy: EpochPolicy) -> None:
    """Every trainable and optimiser variable, the weight average and the policy's state,
    atomically, no pickle."""
    arrays = {"format": np.array(CHECKPOINT_FORMAT), "policy": np.array(json.dumps(policy.state_dict()))}
    arrays.update({f"variable_{i}": variable.numpy() for i, variable in enumerate(worker.trainable_variables)})
    arrays.update({f"optimizer_{i}": variable.numpy() for i, variable in enumerate(optimizer.variables)})
    if average is not None:
        arrays.update({f"average_{i}": value.numpy() for i, value in enumerate(average.averages)})
        arrays[AVERAGE_STEPS_KEY] = average.steps.numpy()
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def _restore_checkpoint(path: Path, worker: PinnModel, optimizer, average: WeightAverage | None,
                        policy: EpochPolicy) -> None:
    with np.load(path, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    if str(arrays.get("format", "")) != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a ptychopinn-tf checkpoint (key 'format' is not {CHECKPOINT_FORMAT!r})")
    groups = [("variable", worker.trainable_variables), ("optimizer", optimizer.variables)]
    if average is not None:
        if AVERAGE_STEPS_KEY not in arrays:
            raise ValueError(f"{path}: training.ema_decay needs the weight average (key {AVERAGE_STEPS_KEY!r}), "
                             "received a checkpoint written without it")
        average.steps.assign(int(arrays[AVERAGE_STEPS_KEY]))
        groups.append(("average", average.averages))
    for prefix, variables in groups:
        names = sorted((name for name in arrays if name.startswith(prefix + "_")), key=lambda n: int(n.split("_")[1]))
        if len(names) != len(variables):
            raise ValueError(
                f"{path}: holds {len(names)} {prefix} variables, this model has {len(variables)}; "
                "was it written for another configuration?"
            )
        for name, variable in zip(names, variables):
            if arrays[name].shape != tuple(variable.shape):
                raise ValueError(
                    f"{path}: key {name!r} has shape {arrays[name].shape}, the model's variable "
                    f"{variable.name!r} has {tuple(variable.shape)}; was it written for another configuration?"
                )
            variable.assign(arrays[name])
    policy.load_state_dict(json.loads(str(arrays["policy"])), source=str(path))


class _TensorBoardLogger:
    """Epoch metrics as TensorBoard scalars, through TensorFlow's own summary writer.

    ``tf.summary.write`` with the scalars plugin's metadata is what ``tf.summary.scalar``
    does, without needing the ``tensorboard`` package (not a dependency of TensorFlow).
    """

    def __init__(self, folder: Path) -> None:
        self._writer = tf.summary.create_file_writer(str(folder))
        plugin = tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
        self._metadata = tf.compat.v1.SummaryMetadata(plugin_data=plugin).SerializeToString()

    def log_metrics(self, metrics, step: int) -> None:
        with self._writer.as_default():
            for name, value in metrics.items():
                if name != "epoch":
                    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=self._metadata)

    def save(self) -> None:
        self._writer.flush()


def _loggers(execution: ExecutionConfig) -> list[MetricsLogger]:
    """The metrics logger of ``execution.logger`` in a new ``run_dir/logs/version_k``."""
    if execution.run_dir is None or execution.logger == "none":
        return []
    if execution.logger not in ("csv", "tensorboard"):
        raise ValueError(
            f"execution.logger={execution.logger!r} is not offered by the tensorflow backend "
            "(supported: csv, tensorboard, none)"
        )
    folder = new_log_version(execution.run_dir)
    return [CsvMetricsLogger(folder) if execution.logger == "csv" else _TensorBoardLogger(folder)]
