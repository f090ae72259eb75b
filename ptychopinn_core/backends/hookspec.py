"""The hook specification every PtychoPINN backend implements (pluggy).

A backend distribution declares an entry point in the group ``ptychodus.reconstructors``
whose name is the backend's canonical name and whose target is a light plugin module
with ``@hookimpl`` functions at module level::

    # pyproject.toml of ptychopinn-tf
    [project.entry-points."ptychodus.reconstructors"]
    tensorflow = "ptychopinn_tf.plugin"

    # ptychopinn_tf/plugin.py
    from ptychopinn_core.backends import hookimpl

    @hookimpl
    def ptychopinn_backend_info():
        return BackendInfo(name="tensorflow", ...)

Importing the plugin module must not import the framework: the registry imports it to
list backends (``ptychopinn backends``), and listing must stay fast. Heavy imports go
inside the hook functions.

Every hook is a factory into ONE backend: the registry calls it on a single plugin
(:meth:`pluggy.PluginManager.subset_hook_caller`), so every hook is
``firstresult=True`` and the first non-``None`` result wins. All hooks are required.
Hook functions may take any subset of the parameters below, by name (pluggy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from ptychopinn_core.backends.contract import BackendInfo, BackendModel, PhysicsOps, ProgressCallback, Refiner
    from ptychopinn_core.config import Config
    from ptychopinn_core.model.state import History, ModelState
    from ptychopinn_core.refine.problem import RefineProblem
    from ptychopinn_core.training.data import TrainingData

__all__ = ["PROJECT_NAME", "HOOK_NAMES", "BackendHookSpec", "hookimpl", "hookspec"]

#: pluggy project name: the markers only see functions marked for this project.
PROJECT_NAME = "ptychopinn"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class BackendHookSpec:
    """The hooks of a PtychoPINN backend (added to the registry's plugin manager)."""

    @hookspec(firstresult=True)
    def ptychopinn_backend_info(self) -> BackendInfo:
        """Describe the backend.

        Called once per backend at discovery (``BackendRegistry.discover``), i.e. every
        time backends are listed or selected. Must be cheap and must NOT import the
        framework: read versions with :mod:`importlib.metadata`.

        Returns
        -------
        BackendInfo
            Whose ``name`` equals the entry point's name.

        Notes
        -----
        The first result wins (``firstresult=True``). If it raises or returns anything
        else than a :class:`~ptychopinn_core.backends.contract.BackendInfo`, the
        backend is listed as broken with that reason.
        """

    @hookspec(firstresult=True)
    def ptychopinn_devices(self) -> list[str]:
        """List the devices the framework can use now.

        Called only on request (``ptychopinn backends --devices``, ``Backend.devices()``);
        it imports the framework.

        Returns
        -------
        list of str
            Device names as the framework spells them, e.g. ``["cpu", "gpu:0"]``.

        Notes
        -----
        The first result wins (``firstresult=True``).
        """

    @hookspec(firstresult=True)
    def ptychopinn_physics_ops(self) -> PhysicsOps:
        """Return the backend's implementation of each physics step.

        Called by the conformance kit and the parity tests/command (``Backend.physics_ops()``);
        it imports the framework.

        Returns
        -------
        PhysicsOps
            An object whose methods take and return numpy arrays and compute the
            functions of :mod:`ptychopinn_core.physics` with framework code.

        Notes
        -----
        The first result wins (``firstresult=True``).
        """

    @hookspec(firstresult=True)
    def ptychopinn_build_model(
        self, config: Config, state: ModelState, weights: Mapping[str, np.ndarray]
    ) -> BackendModel:
        """Build the network and load canonical weights into it.

        Called whenever a model is needed: before training (with
        ``initial_weights(parameter_specs(config.model), seed)``), when a bundle is
        loaded for inference, and by parity checks (the same weights in every backend).
        The core has already checked ``config`` against the capabilities and
        ``weights`` against ``parameter_specs(config.model)``.

        Parameters
        ----------
        config : Config
            The full configuration; ``config.model`` decides the architecture,
            ``config.execution`` the device and precision.
        state : ModelState
            Probe, intensity scale and normalisation the model runs with.
        weights : Mapping[str, ndarray]
            Canonical weights: names and HWIO layout of
            :func:`ptychopinn_core.model.parameters.parameter_specs`, float32.

        Returns
        -------
        BackendModel
            Whose ``get_weights()`` returns exactly ``weights``.

        Notes
        -----
        The first result wins (``firstresult=True``).
        """

    @hookspec(firstresult=True)
    def ptychopinn_train(
        self, model: BackendModel, data: TrainingData, config: Config, progress: ProgressCallback
    ) -> History:
        """Train a model in place.

        Called by ``ptychopinn train``, the demo and Ptychodus' train action, with a
        model built by this backend's ``ptychopinn_build_model``. The batches are the
        core's: epoch ``e`` uses ``data.epoch_batches(e)`` in that order, gathered with
        ``data.gather`` (``data.gather_truth`` in supervised mode), so every backend sees
        the same numbers in the same order.

        Parameters
        ----------
        model : BackendModel
            Built by this backend; its weights (and ``state``) are updated.
        data : TrainingData
            Prepared by :func:`ptychopinn_core.training.data.prepare_training_data`.
        config : Config
            ``config.training`` sets optimiser, epochs, schedule and losses.
        progress : callable
            Called with a :class:`~ptychopinn_core.backends.contract.ProgressEvent`
            after every step (``stage="batch"``) and every epoch (``stage="epoch"``).

        Returns
        -------
        History
            One :class:`~ptychopinn_core.model.state.EpochRecord` per completed epoch.

        Notes
        -----
        The first result wins (``firstresult=True``).
        """

    @hookspec(firstresult=True)
    def ptychopinn_refiner(self, problem: RefineProblem, config: Config) -> Refiner:
        """Build a refiner: the object (and probe) of a reconstruction fitted to the data.

        Called by ``ptychopinn infer`` (after the network), ``ptychopinn refine``, the demo
        and Ptychodus' reconstructors. The refiner computes
        :mod:`ptychopinn_core.refine.reference` with the framework's autodiff; a backend
        without one may return :class:`~ptychopinn_core.refine.NumpyRefiner`.

        Parameters
        ----------
        problem : RefineProblem
            Patterns, positions on the object frame, scales, settings and the order of
            positions, prepared by the core.
        config : Config
            ``config.execution`` decides the device and precision.

        Returns
        -------
        Refiner

        Notes
        -----
        The first result wins (``firstresult=True``).
        """


#: Names of all hooks; every backend implements all of them.
HOOK_NAMES: tuple[str, ...] = tuple(name for name in vars(BackendHookSpec) if name.startswith("ptychopinn_"))
