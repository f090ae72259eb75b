"""Hook implementations of the TensorFlow backend ``tensorflow``.

Imported at discovery (``ptychopinn backends``): only the core's hook markers and
contract types are imported here. TensorFlow is imported inside the hooks that need it.
"""

from __future__ import annotations

from ptychopinn_core.backends import BackendInfo, Capabilities, hookimpl

__all__ = [
    "BACKEND_NAME",
    "ptychopinn_backend_info",
    "ptychopinn_devices",
    "ptychopinn_physics_ops",
    "ptychopinn_build_model",
    "ptychopinn_train",
    "ptychopinn_refiner",
]

#: Canonical name; equals the entry point's name in ptychopinn_tf/pyproject.toml.
BACKEND_NAME = "tensorflow"


@hookimpl
def ptychopinn_backend_info() -> BackendInfo:
    """Describe the backend without importing TensorFlow."""
    return BackendInfo(
        name=BACKEND_NAME,
        display_name="TensorFlow",
        framework="tensorflow",
        framework_distributions=("tensorflow", "tensorflow-cpu"),
        framework_module="tensorflow",
        install_hint='pip install "ptychopinn-core[tf]"',
        capabilities=Capabilities(
            modes={"pinn", "supervised"},
            devices={"cpu", "gpu"},
            strategies={"single", "mirrored"},
            precisions={"32", "64", "bf16-mixed"},
            pattern_sizes=(16, 32, 64, 128, 256),
            gridsizes=(1, 2),
            checkpoints=True,
            loggers={"csv", "tensorboard"},  # MLflow: use the pytorch backend
            data_workers=False,  # batches are numpy gathers in the training loop
            multi_node=False,  # MirroredStrategy is one machine
        ),
    )


@hookimpl
def ptychopinn_devices() -> list[str]:
    """Physical devices TensorFlow sees, e.g. ``["cpu:0", "gpu:0"]``."""
    import tensorflow as tf

    return [device.name.removeprefix("/physical_device:").lower() for device in tf.config.list_physical_devices()]


@hookimpl
def ptychopinn_physics_ops():
    """The TensorFlow physics (:class:`ptychopinn_tf.ops.FrameworkPhysicsOps`)."""
    from ptychopinn_tf.ops import FrameworkPhysicsOps

    return FrameworkPhysicsOps()


@hookimpl
def ptychopinn_build_model(config, state, weights):
    """A :class:`ptychopinn_tf.model.PinnModel` holding ``weights``."""
    from ptychopinn_tf.model import PinnModel

    return PinnModel(config, state, weights)


@hookimpl
def ptychopinn_train(model, data, config, progress):
    """Train with :func:`ptychopinn_tf.training.train_model`."""
    from ptychopinn_tf.training import train_model

    return train_model(model, data, config, progress)


@hookimpl
def ptychopinn_refiner(problem: RefineProblem, config: Config) -> Refiner:
    """Refinement through this backend's physics layers (:class:`~ptychopinn_tf.refine.FrameworkRefiner`)."""
    from ptychopinn_tf.refine import FrameworkRefiner

    return FrameworkRefiner(problem, config)
