"""Training with Lightning: the core's batches, the core's schedule, Lightning's loop.

What is decided where
---------------------
- The core decides the numbers both backends must agree on: initial weights, the batch
  order of every epoch (``data.epoch_batches(epoch)``), the validation batches, and
  everything between steps: the epoch policy
  (:class:`~ptychopinn_core.training.policy.EpochPolicy`: learning rate per epoch, early
  stopping, ``max_seconds``, the epoch's losses, progress events, metrics logging, and
  the state a checkpoint keeps).
- Lightning runs the loop: devices, precision, DDP, checkpoint files, logger objects.

Per epoch ``e``: the learning rate of all parameter groups is set to the policy's
value; every batch of ``data.epoch_batches(e)`` is gathered (``data.gather``, plus
``data.gather_truth`` in supervised mode) and takes one Adam step
(``Adam(lr, (beta1, beta2), eps=adam_epsilon)``, eps explicit); then the validation
loss over ``data.validation_batches()`` (batch losses weighted by batch size), and the
policy closes the epoch. With ``training.ema_decay`` (docs/physics.md §8) a
:class:`WeightAverage` takes the weights after every step, is in place for the validation
and the epoch's end, out again for the next step and the checkpoint, and kept after ``fit``.

Distributed (DDP): every rank takes ``ids[rank::world_size]`` of each global batch, and
its loss is weighted by ``n_local * world_size / n_global`` before the backward pass;
DDP averages gradients over ranks, so the update is the gradient of the global batch's
mean loss, as in one process. Reported losses are reduced over ranks.

Checkpoints: with ``execution.run_dir`` set, ``run_dir/last.ckpt`` is written after
every epoch (:class:`EpochCheckpoint`): weights, optimiser, loop counters, and the
policy's state via ``on_save_checkpoint``; ``execution.resume`` continues from it
(loaded with ``weights_only=True``) and the returned History holds the earlier epochs
too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset, Sampler

from ptychopinn_core.config import Config, ExecutionConfig, TrainingConfig
from ptychopinn_core.model.state import History
from ptychopinn_core.progress import ProgressCallback, ProgressEvent
from ptychopinn_core.training.averaging import decay_at
from ptychopinn_core.training.data import TrainingData
from ptychopinn_core.training.policy import EpochPolicy, MetricsLogger
from ptychopinn_core.training.run_dir import LOG_FOLDER, checkpoint_to_resume
from ptychopinn_torch.model import PinnModel

__all__ = ["LAST_CHECKPOINT", "train_model"]

#: File name of the checkpoint written after every epoch in ``execution.run_dir``.
LAST_CHECKPOINT = "last.ckpt"
#: Key of the epoch policy's state (history, schedule, early stopping) in a checkpoint.
CHECKPOINT_KEY = "ptychopinn"
#: Key of the weight average (``training.ema_decay``) in a checkpoint.
AVERAGE_KEY = "ptychopinn_weight_average"
#: Lightning precision names of ``execution.precision``.
PRECISIONS = {"32": "32-true", "64": "64-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}
#: Lightning loggers whose packages are optional: logger name -> import name.
_OPTIONAL_LOGGER_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",)}


# -- data: the core's batches as a DataLoader ---------------------------------------------------


class EpochBatchSampler(Sampler):
    """Yields the core's batches of one epoch: this rank's share of each global batch.

    Each item is ``(group_ids, n_global)``: ``ids[rank::world_size]`` of the global batch
    ``ids`` and the global batch size. Lightning calls :meth:`set_epoch` at the start of
    every epoch (also after a resume), so epoch ``e`` yields ``data.epoch_batches(e)``.

    Parameters
    ----------
    data : TrainingData
    stage : {"train", "val"}
        Training batches of the current epoch, or the (fixed) validation batches.
    rank, world_size : int
        This process's global rank and the number of processes.
    """

    def __init__(self, data: TrainingData, stage: str, rank: int = 0, world_size: int = 1) -> None:
        if stage not in ("train", "val"):
            raise ValueError(f"invalid stage: expected 'train' or 'val', received stage={stage!r}")
        self.data = data
        self.stage = stage
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def _global_batches(self) -> list[np.ndarray]:
        if self.stage == "train":
            return self.data.epoch_batches(self.epoch)
        return self.data.validation_batches()

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        for ids in self._global_batches():
            yield ids[self.rank :: self.world_size], len(ids)

    def __len__(self) -> int:
        return self.data.steps_per_epoch if self.stage == "train" else len(self.data.validation_batches())


class _GroupBatches(Dataset):
    """Map-style dataset whose key is a whole batch: ``(group_ids, n_global)`` -> arrays."""

    def __init__(self, data: TrainingData, with_truth: bool) -> None:
        self.data = data
        self.with_truth = with_truth

    def __getitem__(self, key: tuple[np.ndarray, int]) -> dict[str, Any]:
        group_ids, n_global = key
        diffraction, offsets_xy = self.data.gather(group_ids)
        batch = {"diffraction": diffraction, "offsets_xy": offsets_xy, "n_global": int(n_global)}
        if self.with_truth:
            batch["truth"] = self.data.gather_truth(group_ids)
        return batch


class TrainingDataModule(L.LightningDataModule):
    """The core's TrainingData as Lightning dataloaders (one per stage).

    The loaders are built when Lightning asks for them, i.e. after the distributed
    environment is set up, so each rank knows its rank and the world size.

    Parameters
    ----------
    data : TrainingData
    with_truth : bool
        Also gather the ground-truth patches (supervised mode).
    workers : int
        DataLoader worker processes (``execution.workers``); 0 gathers in the main
        process, which is fastest for in-memory arrays.
    """

    def __init__(self, data: TrainingData, with_truth: bool, workers: int = 0) -> None:
        super().__init__()
        self.data = data
        self.with_truth = with_truth
        self.workers = workers

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def _loader(self, stage: str) -> DataLoader:
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochBatchSampler(self.data, stage, rank, world_size)
        # batch_size=None: the sampler yields whole batches, the dataset gathers them.
        return DataLoader(
            _GroupBatches(self.data, self.with_truth),
            sampler=sampler,
            batch_size=None,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
        )


# -- the moving average of the weights ------------------------------------------------------------


class WeightAverage:
    """The moving average of the trained parameters (``training.ema_decay``).

    :mod:`ptychopinn_core.training.averaging` defines it: after step ``t``,
    ``a <- delta_t a + (1 - delta_t) w`` with ``delta_t = decay_at(decay, t)`` (0 at the first
    step). While it is "in", the parameters hold the average and the raw weights wait aside.

    Parameters
    ----------
    parameters : list of torch.nn.Parameter
        The parameters the optimiser steps.
    decay : float
    """

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float) -> None:
        self.parameters = parameters
        self.decay = float(decay)
        self.averages = [torch.zeros_like(parameter, requires_grad=False) for parameter in parameters]
        self.steps = 0
        self._raw: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self) -> None:
        """After an optimiser step: fold the raw weights into the average."""
        self.steps += 1
        delta = decay_at(self.decay, self.steps)
        for average, parameter in zip(self.averages, self.parameters):
            average.mul_(delta).add_(parameter.detach().to(average.device), alpha=1.0 - delta)

    @torch.no_grad()
    def put_in(self) -> None:
        """Parameters := the average (the raw weights kept aside); nothing before the first step."""
        if self._raw is not None or self.steps == 0:
            return
        self._raw = [parameter.detach().clone() for parameter in self.parameters]
        for average, parameter in zip(self.averages, self.parameters):
            parameter.copy_(average)

    @torch.no_grad()
    def take_out(self) -> None:
        """Parameters := the raw weights again, for the next step or a checkpoint."""
        if self._raw is None:
            return
        for raw, parameter in zip(self._raw, self.parameters):
            parameter.copy_(raw)
        self._raw = None

    def keep(self) -> None:
        """Training is over: the parameters keep the average."""
        self.put_in()
        self._raw = None

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "averages": [average.detach().cpu() for average in self.averages]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["averages"]
        if len(saved) != len(self.averages) or any(a.shape != b.shape for a, b in zip(saved, self.averages)):
            raise ValueError("invalid checkpoint: its weight average does not match the model's parameters")
        self.steps = int(state["steps"])
        with torch.no_grad():
            for average, value in zip(self.averages, saved):
                average.copy_(value.to(average.device))


# -- the system -----------------------------------------------------------------------------------


class PinnSystem(L.LightningModule):
    """The training system around a :class:`~ptychopinn_torch.model.PinnModel`.

    The network and the physics live in ``model.module`` (registered here as
    ``self.pinn``); this class adds the optimiser, the Lightning hooks that call the
    core's :class:`~ptychopinn_core.training.policy.EpochPolicy`, and the reduction of
    losses over ranks.

    Parameters
    ----------
    model : PinnModel
        Trained in place.
    data : TrainingData
    training : TrainingConfig
    progress : callable
        Receives :class:`~ptychopinn_core.backends.ProgressEvent` (global rank 0 only).
    loggers : list
        Lightning loggers; the policy writes one row of metrics to each per epoch.
    """

    def __init__(self, model: PinnModel, data: TrainingData, training: TrainingConfig,
                 progress: ProgressCallback, loggers: list[MetricsLogger]) -> None:
        super().__init__()
        self.pinn_model = model
        self.pinn = model.module
        self.training = training
        self._progress = progress
        self.policy = EpochPolicy(data, training, self._report, loggers)
        self.average = (WeightAverage(self._trained_parameters(), training.ema_decay)
                        if training.ema_decay else None)
        self._skip_epoch = False
        self._reset_epoch()

    # -- steps ----------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, n_local = self._common_step(batch, "train")
        n_global = batch["n_global"]
        self._batch_loss = self._global_mean(loss.detach(), n_local, n_global)
        self._batch_groups = n_global
        weight = n_local * self.trainer.world_size / n_global
        return loss if weight == 1 else loss * weight

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, n_local = self._common_step(batch, "val")
        self._val_sum += float(loss) * n_local
        self._val_count += n_local

    def _common_step(self, batch: dict[str, Any], stage: str) -> tuple[torch.Tensor, int]:
        """This rank's mean loss over its share of the batch, and that share's size."""
        diffraction = batch["diffraction"]
        n_local = int(diffraction.shape[0])
        if n_local == 0:
            # More ranks than groups in this (last) batch: no data, zero gradients, and
            # every parameter still takes part in DDP's gradient all-reduce.
            zero = sum(torch.view_as_real(p).sum() if p.is_complex() else p.sum()
                       for p in self.pinn.parameters() if p.requires_grad)
            return zero * 0.0, 0
        loss = self.pinn_model.loss(diffraction, batch["offsets_xy"], batch.get("truth"))
        return loss, n_local

    def _global_mean(self, local_loss: torch.Tensor, n_local: int, n_global: int) -> float:
        """Mean loss of the global batch: ``sum_ranks(loss_r * n_r) / n_global``."""
        if self.trainer.world_size == 1:
            return float(local_loss)
        weighted = local_loss.to(torch.float64) * n_local
        return float(self.trainer.strategy.reduce(weighted, reduce_op="sum")) / n_global

    # -- hooks: the policy around Lightning's loop ---------------------------------------

    def on_train_start(self) -> None:
        self.policy.start()  # the time budget counts this run (also a resumed one)

    def on_train_epoch_start(self) -> None:
        self._reset_epoch()
        self._skip_epoch = self.policy.stopped
        if self.policy.stopped:  # resumed after early stopping: nothing left to do
            self.trainer.should_stop = True
            return
        learning_rate = self.policy.begin_epoch(self.current_epoch)
        # A schedule on the time budget (cosine with max_seconds) reads the clock: rank 0's rate for all.
        learning_rate = float(self.trainer.strategy.broadcast(learning_rate, src=0))
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        return -1 if self._skip_epoch else None  # -1 ends the epoch at once (Lightning)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.average is not None:
            self.average.update()
        self.policy.end_batch(batch_idx + 1, self._batch_loss, self._batch_groups)

    def on_validation_epoch_start(self) -> None:
        if self.average is not None:
            self.average.put_in()  # validation scores the average (taken out at the epoch's end)

    def on_train_epoch_end(self) -> None:
        if self._skip_epoch:
            return
        if self.average is not None:
            self.average.put_in()  # without validation: the epoch's event still sees the average
        self._close_epoch()
        if self.average is not None:
            self.average.take_out()  # the next step, and the checkpoint, take the raw weights

    def _close_epoch(self) -> None:
        val_loss = None
        if self.policy.has_validation:
            sums = torch.tensor([self._val_sum, float(self._val_count)], dtype=torch.float64, device=self.device)
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            val_loss = float(sums[0]) / float(sums[1])
        stop = self.policy.end_epoch(val_loss)
        # Every rank has the same losses; rank 0's clock decides the time budget for all.
        if bool(self.trainer.strategy.broadcast(stop, src=0)):
            self.trainer.should_stop = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain Python values and tensors only: the checkpoint is read back with weights_only=True.
        checkpoint[CHECKPOINT_KEY] = self.policy.state_dict()
        if self.average is not None:
            checkpoint[AVERAGE_KEY] = self.average.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            raise ValueError(
                f"invalid checkpoint: expected the key {CHECKPOINT_KEY!r} written by ptychopinn-torch, "
                "received a checkpoint without it"
            )
        self.policy.load_state_dict(saved)
        if self.average is not None:
            if AVERAGE_KEY not in checkpoint:
                raise ValueError(
                    f"invalid checkpoint: training.ema_decay={self.training.ema_decay} needs the weight average "
                    f"({AVERAGE_KEY!r}), received a checkpoint written without it"
                )
            self.average.load_state_dict(checkpoint[AVERAGE_KEY])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        training = self.training
        return torch.optim.Adam(
            self._trained_parameters(),
            lr=training.learning_rate,
            betas=(training.adam_beta1, training.adam_beta2),
            eps=training.adam_epsilon,  # explicit: torch's default (1e-8) is not Keras' (1e-7)
        )

    # -- helpers --------------------------------------------------------------------------

    def _trained_parameters(self) -> list[torch.nn.Parameter]:
        return [parameter for parameter in self.pinn.parameters() if parameter.requires_grad]

    def _reset_epoch(self) -> None:
        self._val_sum = 0.0
        self._val_count = 0
        self._batch_loss = math.nan
        self._batch_groups = 0

    def _report(self, event: ProgressEvent) -> None:
        if self.trainer.is_global_zero:
            self._progress(event)


# -- the entry point --------------------------------------------------------------------------------


def train_model(model: PinnModel, data: TrainingData, config: Config, progress: ProgressCallback) -> History:
    """Train ``model`` in place on the core's batches; return the per-epoch history.

    Parameters
    ----------
    model : PinnModel
        Built by this backend (its weights are the core's initial weights, or a
        bundle's).
    data : TrainingData
        The core's normalised, grouped and split data.
    config : Config
        ``training`` (optimiser, epochs, schedule, loss) and ``execution`` (device,
        devices/num_nodes/strategy, precision, deterministic, workers, run_dir, resume,
        logger).
    progress : callable
        Receives a :class:`~ptychopinn_core.backends.ProgressEvent` after every step and
        every epoch (global rank 0 only).

    Returns
    -------
    History
        One record per completed epoch, including those before a resume.

    Raises
    ------
    ValueError
        An execution setting that cannot be honoured (e.g. resume without a checkpoint).
    ImportError
        The requested logger's package is not installed.
    """
    if not isinstance(model, PinnModel):
        raise TypeError(f"invalid model: expected a ptychopinn_torch PinnModel, received {type(model).__name__}")
    training, execution = config.training, config.execution
    if training.mode == "supervised" and data.patches is None:
        raise ValueError("supervised training: expected ground-truth patches in the training data, received none")
    checkpoint_path = checkpoint_to_resume(execution, LAST_CHECKPOINT)
    loggers = _loggers(execution)
    system = PinnSystem(model, data, training, progress, loggers or [])
    datamodule = TrainingDataModule(data, with_truth=training.mode == "supervised", workers=execution.workers)
    with _lightning_quiet():
        L.seed_everything(training.seed, verbose=False)
        trainer = L.Trainer(
            **_distribution_settings(execution, training.mode, model),
            precision=PRECISIONS[execution.precision],
            deterministic=execution.deterministic,
            max_epochs=training.epochs,
            logger=loggers,
            callbacks=_callbacks(execution),
            enable_checkpointing=execution.run_dir is not None,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,  # metrics are logged once per epoch (on_train_epoch_end)
            limit_val_batches=1.0 if data.n_validation > 0 else 0,
            use_distributed_sampler=False,  # the core's sampler already splits batches over ranks
            default_root_dir=execution.run_dir,
        )
        try:
            ckpt_path = None if checkpoint_path is None else str(checkpoint_path)
            trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            if system.average is not None:
                system.average.keep()
        finally:  # also when a progress callback stops training by raising
            model.module.to(model.device)  # Lightning's teardown leaves the module on the CPU
            model.module.eval()
    return system.policy.history


def _distribution_settings(execution: ExecutionConfig, mode: str, model: PinnModel) -> dict[str, Any]:
    """Trainer accelerator/devices/num_nodes/strategy from ``execution``.

    ``strategy`` "single" (or "auto" with one device and one node) trains on one
    device; "ddp" (or "auto" with more) runs DistributedDataParallel.
    """
    accelerator = "gpu" if model.device.type == "cuda" else "cpu"
    devices, num_nodes, strategy = execution.devices, execution.num_nodes, execution.strategy
    many = num_nodes > 1 or (isinstance(devices, int) and devices > 1)
    if strategy not in ("auto", "single", "ddp"):
        raise ValueError(
            f"invalid execution.strategy: expected 'auto', 'single' or 'ddp' for the pytorch backend, "
            f"received strategy={strategy!r}"
        )
    if strategy == "single" and many:
        raise ValueError(
            f"execution.strategy='single' trains on one device, received execution.devices={devices!r} and "
            f"execution.num_nodes={num_nodes}; use strategy 'ddp' (or 'auto') for several"
        )
    if strategy == "single" or (strategy == "auto" and not many):
        return {"accelerator": accelerator, "devices": 1, "num_nodes": 1, "strategy": "auto"}
    # Parameters the loss never reaches (a trainable probe or scale in supervised mode)
    # must be declared to DDP, else it waits for their gradients forever.
    unused = mode == "supervised" and (model.config.model.probe_trainable
                                       or model.config.model.intensity_scale_trainable)
    return {
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": DDPStrategy(find_unused_parameters=unused),
    }


def _loggers(execution: ExecutionConfig) -> list | bool:
    """Metrics loggers writing under ``run_dir/logs`` (a new ``version_k`` per run)."""
    if execution.run_dir is None or execution.logger == "none":
        return False
    from lightning.pytorch import loggers

    save_dir = str(Path(execution.run_dir) / LOG_FOLDER)
    if execution.logger == "csv":
        return [loggers.CSVLogger(save_dir=save_dir, name="")]
    modules = _OPTIONAL_LOGGER_MODULES[execution.logger]
    if not any(importlib.util.find_spec(name) is not None for name in modules):
        raise ImportError(
            f"execution.logger={execution.logger!r} needs the {modules[0]} package, which is not installed; "
            f"install it (pip install {modules[0]}) or use logger 'csv'"
        )
    if execution.logger == "tensorboard":
        return [loggers.TensorBoardLogger(save_dir=save_dir, name="")]
    # MLflow: the server named by MLFLOW_TRACKING_URI (MLflow's own convention), else a
    # SQLite store in run_dir/logs (MLflow 3 no longer accepts a plain file store).
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        if importlib.util.find_spec("sqlalchemy") is None:
            raise ImportError(
                "execution.logger='mlflow' without MLFLOW_TRACKING_URI writes an SQLite store in run_dir, "
                "which needs the full mlflow package (pip install mlflow); or set MLFLOW_TRACKING_URI to "
                "an MLflow server, or use logger 'csv'"
            )
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        tracking_uri = "sqlite:///" + str(Path(save_dir).resolve() / "mlflow.db")
    return [loggers.MLFlowLogger(experiment_name="ptychopinn", tracking_uri=tracking_uri)]


class EpochCheckpoint(Checkpoint):
    """Writes ``run_dir/last.ckpt`` at the end of every training epoch.

    A :class:`~lightning.pytorch.callbacks.Checkpoint` runs after the LightningModule's
    ``on_train_epoch_end`` (Lightning calls checkpoint callbacks last), so the file
    holds the epoch's record, schedule and early-stopping state. Lightning's
    ``ModelCheckpoint`` is not used: in Lightning 2.6 it writes ``last.ckpt`` only next
    to a top-k checkpoint and warns at every resume that ``run_dir`` is not empty.
    ``trainer.save_checkpoint`` writes on global rank 0 only and atomically (a
    temporary file, then a rename).

    Parameters
    ----------
    path : str or Path
        The checkpoint file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


def _callbacks(execution: ExecutionConfig) -> list:
    if execution.run_dir is None:
        return []
    return [EpochCheckpoint(Path(execution.run_dir) / LAST_CHECKPOINT)]


@contextlib.contextmanager
def _lightning_quiet() -> Iterator[None]:
    """Lightning's informational chatter off, and two known, harmless warnings filtered.

    - torch 2.13 deprecates ``isinstance(treespec, LeafSpec)``, which Lightning 2.6
      still calls (``lightning/pytorch/utilities/_pytree.py``): a FutureWarning meant
      for Lightning's developers.
    - Lightning suggests DataLoader workers on machines with many cores; batches here
      are numpy fancy-indexing of in-memory arrays, which workers would only slow down
      (``execution.workers`` still sets them).

    Both filters match the message, the category and the emitting module exactly, and
    live only inside this context (``warnings.catch_warnings``). Lightning's INFO logs
    (devices found, seed, tips) are raised to WARNING for the same span.
    """
    names = ("lightning", "lightning.pytorch", "lightning.fabric")
    levels = {name: logging.getLogger(name).level for name in names}
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
            category=FutureWarning,
            module=r"lightning\.pytorch\.utilities\._pytree",
        )
        warnings.filterwarnings(
            "ignore",
            message=r"The '\w+' does not have many workers which may be a bottleneck",
            category=PossibleUserWarning,
            module=r"lightning\.pytorch\.trainer\.connectors\.data_connector",
        )
        try:
            for name in names:
                logging.getLogger(name).setLevel(logging.WARNING)
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
