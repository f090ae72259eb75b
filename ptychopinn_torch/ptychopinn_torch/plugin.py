"""Hook implementations of the PyTorch + Lightning backend ``pytorch``.

Light at import: only the core's hook markers and contract types. torch and
Lightning are imported inside the hooks that need them, so listing backends
(``ptychopinn backends``) stays fast and works without the framework installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptychopinn_core.backends import BackendInfo, Capabilities, hookimpl

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from ptychopinn_core.backends import BackendModel, PhysicsOps, ProgressCallback, Refiner
    from ptychopinn_core.config import Config
    from ptychopinn_core.model.state import History, ModelState
    from ptychopinn_core.refine import RefineProblem
    from ptychopinn_core.training.data import TrainingData

__all__ = [
    "BACKEND_NAME",
    "ptychopinn_backend_info",
    "ptychopinn_devices",
    "ptychopinn_physics_ops",
    "ptychopinn_build_model",
    "ptychopinn_train",
    "ptychopinn_refiner",
]

#: Canonical name; equals the entry point's name in ptychopinn_torch/pyproject.toml.
BACKEND_NAME = "pytorch"


@hookimpl
def ptychopinn_backend_info() -> BackendInfo:
    """Describe the backend (no framework import)."""
    return BackendInfo(
        name=BACKEND_NAME,
        display_name="PyTorch + Lightning",
        framework="torch",
        framework_distributions=("torch",),
        framework_module="torch",
        install_hint='pip install "ptychopinn-core[torch]"',
        capabilities=Capabilities(
            modes={"pinn", "supervised"},
            devices={"cpu", "gpu"},
            strategies={"single", "ddp"},
            # bf16 autocast covers the network only; the physics stays float32/complex64.
            # "16-mixed" is not offered: it needs a GPU and a gradient scaler, untested here.
            precisions={"32", "64", "bf16-mixed"},
            pattern_sizes=(16, 32, 64, 128, 256),
            gridsizes=(1, 2),
            checkpoints=True,
            loggers={"csv", "tensorboard", "mlflow"},
            data_workers=True,
            multi_node=True,
        ),
    )


@hookimpl
def ptychopinn_devices() -> list[str]:
    """``["cpu", "cuda:0", ...]``: the CPU and every CUDA device torch sees."""
    import torch

    return ["cpu"] + [f"cuda:{index}" for index in range(torch.cuda.device_count())]


@hookimpl
def ptychopinn_physics_ops() -> PhysicsOps:
    """The torch physics steps, numpy in and numpy out."""
    from ptychopinn_torch.ops import FrameworkPhysicsOps

    return FrameworkPhysicsOps()


@hookimpl
def ptychopinn_build_model(config: Config, state: ModelState, weights: Mapping[str, np.ndarray]) -> BackendModel:
    """Build the network from canonical weights (:class:`~ptychopinn_torch.model.PinnModel`)."""
    from ptychopinn_torch.model import PinnModel

    return PinnModel(config, state, weights)


@hookimpl
def ptychopinn_train(model: BackendModel, data: TrainingData, config: Config, progress: ProgressCallback) -> History:
    """Train in place with Lightning (:func:`~ptychopinn_torch.training.train_model`)."""
    from ptychopinn_torch.training import train_model

    return train_model(model, data, config, progress)


@hookimpl
def ptychopinn_refiner(problem: RefineProblem, config: Config) -> Refiner:
    """Refinement through this backend's physics layers (:class:`~ptychopinn_torch.refine.FrameworkRefiner`)."""
    from ptychopinn_torch.refine import FrameworkRefiner

    return FrameworkRefiner(problem, config)
