"""Hook implementations of the ONNX Runtime backend ``onnx``: runs trained models only.

Light at import: only the core's hook markers and contract types. onnx and
onnxruntime are imported inside the hooks that need them, so listing backends
(``ptychopinn backends``) stays fast and works without them installed.
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

#: Canonical name; equals the entry point's name in ptychopinn_onnx/pyproject.toml.
BACKEND_NAME = "onnx"


@hookimpl
def ptychopinn_backend_info() -> BackendInfo:
    """Describe the backend (no onnxruntime import)."""
    return BackendInfo(
        name=BACKEND_NAME,
        display_name="ONNX",
        framework="onnxruntime",
        framework_distributions=("onnxruntime",),
        framework_module="onnxruntime",
        install_hint='pip install "ptychopinn-core[onnx]"',
        capabilities=Capabilities(
            # The modes of the models it runs: a supervised model predicts like a PINN one.
            modes={"pinn", "supervised"},
            devices={"cpu"},
            strategies={"single"},
            precisions={"32"},
            pattern_sizes=(16, 32, 64, 128, 256),
            gridsizes=(1, 2),
            checkpoints=False,
            training=False,
        ),
    )


@hookimpl
def ptychopinn_devices() -> list[str]:
    """``["cpu"]``: ONNX Runtime's CPU execution provider, the one this backend uses."""
    import onnxruntime

    return ["cpu"] if "CPUExecutionProvider" in onnxruntime.get_available_providers() else []


@hookimpl
def ptychopinn_physics_ops() -> PhysicsOps:
    """The physics steps as ONNX graphs, numpy in and numpy out."""
    from ptychopinn_onnx.ops import OnnxPhysicsOps

    return OnnxPhysicsOps()


@hookimpl
def ptychopinn_build_model(config: Config, state: ModelState, weights: Mapping[str, np.ndarray]) -> BackendModel:
    """The model as an ONNX Runtime session (:class:`~ptychopinn_onnx.model.OnnxModel`)."""
    from ptychopinn_onnx.model import OnnxModel

    return OnnxModel(config, state, weights)


@hookimpl
def ptychopinn_train(model: BackendModel, data: TrainingData, config: Config, progress: ProgressCallback) -> History:
    """Refused: this backend runs trained models only (the registry normally refuses first)."""
    raise ValueError(
        "backend 'onnx' does not support training (this backend runs trained models only); "
        "train with another backend: ptychopinn train --backend tensorflow|pytorch"
    )


@hookimpl
def ptychopinn_refiner(problem: RefineProblem, config: Config) -> Refiner:
    """The core's numpy refiner (:class:`~ptychopinn_core.refine.NumpyRefiner`): ONNX Runtime
    has no autodiff, and the reference is exactly physics.md §10."""
    from ptychopinn_core.refine import NumpyRefiner

    return NumpyRefiner(problem, config.execution.precision)
