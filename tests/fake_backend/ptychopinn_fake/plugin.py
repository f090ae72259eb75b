"""Hook implementations of the numpy fake backend ``numpyfake``.

Light at import, like a real plugin module: only the core's hook markers and contract
types; the model module is imported inside the hooks that need it.
"""

from __future__ import annotations

from ptychopinn_core.backends import BackendInfo, Capabilities, hookimpl

#: Canonical name; equals the entry point's name in tests/fake_backend/pyproject.toml.
BACKEND_NAME = "numpyfake"


@hookimpl
def ptychopinn_backend_info() -> BackendInfo:
    return BackendInfo(
        name=BACKEND_NAME,
        display_name="Numpy fake (tests)",
        framework="numpy",
        framework_distributions=("numpy",),
        framework_module="numpy",
        install_hint="pip install numpy",
        capabilities=Capabilities(
            modes={"pinn"},
            devices={"cpu"},
            strategies={"single"},
            precisions={"32"},
            pattern_sizes=(16, 32, 64),
            gridsizes=(1, 2),
        ),
    )


@hookimpl
def ptychopinn_devices() -> list[str]:
    return ["cpu"]


@hookimpl
def ptychopinn_physics_ops():
    from ptychopinn_fake.model import NumpyPhysicsOps

    return NumpyPhysicsOps()


@hookimpl
def ptychopinn_build_model(config, state, weights):
    from ptychopinn_fake.model import ConstantPatchModel

    return ConstantPatchModel(config, state, weights)


@hookimpl
def ptychopinn_train(model, data, config, progress):
    from ptychopinn_fake.model import train

    return train(model, data, config, progress)


@hookimpl
def ptychopinn_refiner(problem, config):
    # A backend without autodiff refines with the core's numpy reference.
    from ptychopinn_core.refine import NumpyRefiner

    return NumpyRefiner(problem, config.execution.precision)
