"""Add the PtychoPINN libraries to Ptychodus 1.7 without editing Ptychodus.

Why a hook is needed
--------------------
Ptychodus 1.7 does not read the ``ptychodus.reconstructors`` entry-point group: its
``ModelCore.__init__`` (``ptychodus/model/core.py``) builds the reconstructor libraries
in a literal list and passes it, as the last argument, to
``ProcessingCore(task_manager, settings_registry, product_api, algorithm_libraries)``.
What it does do, first thing in ``ModelCore.__init__``, is
``PluginRegistry.load_plugins()``: import every module of its namespace package
``ptychodus.plugins`` and call its ``register_plugins(registry)``. The registry it
passes has choosers for file readers/writers and the like, but none for reconstructor
libraries.

What the hook does
------------------
:func:`install` replaces the name ``ProcessingCore`` in the module
``ptychodus.model.core`` by a subclass whose ``__init__`` appends our libraries
(:func:`~ptychopinn_core.ptychodus.library.build_libraries`, built with the settings
registry ``ModelCore`` hands it) to the list it receives, then calls the original. As
``ModelCore`` looks ``ProcessingCore`` up in its module globals when it reaches that
line — after the plugins were loaded — every ModelCore built afterwards has the
libraries; nothing else in Ptychodus changes, and :func:`uninstall` restores the
original. The subclass keeps ``isinstance`` checks true.

It is called by the plugin module ``ptychodus/plugins/ptychopinn_reconstructors.py``
(distribution ``ptychopinn-ptychodus-hook``, installed non-editable so that the file
lands inside Ptychodus' installed ``ptychodus/plugins`` folder) and by the launcher
``ptychopinn-ptychodus`` (development installs). Calling it again is a no-op.

The settings panels (GUI)
-------------------------
The Processing page builds the area under its Algorithm box from the list of
``ReconstructorViewControllerFactory`` objects that ``ControllerCore.__init__``
(``ptychodus/controller/core.py``) hands, as the last argument, to
``ProcessingController``; a library without a factory shows "<library> not found!".
The same trick adds ours: ``ProcessingController`` in the module
``ptychodus.controller.core`` is replaced by a subclass that appends a
:class:`~ptychopinn_core.ptychodus.panels.PINNViewControllerFactory` for each of our
libraries (those the ``ProcessingAlgorithmParameter`` it receives holds), then calls the
original. That module imports PyQt5 and exists only when the GUI starts, after
``ModelCore`` (and so the plugin) ran, so :func:`install` does not import it: if it is
not imported yet, a one-shot import finder (``sys.meta_path``) patches it right after
Python executes it and then removes itself. Batch and headless use never import Qt;
:mod:`.panels` is imported only when the GUI builds its Processing page. The subclass
also brings the Infer button up to date when a task ends (Ptychodus updates it only when
the algorithm changes, so after Train it would stay disabled although the trained model
is loaded).

The hook relies on Ptychodus internals (the module globals, the constructors' parameter
lists and ``ProcessingAlgorithmParameter._libraries``), which is why the distributions
pin ``ptychodus>=1.7,<1.8``; :func:`install` checks them and leaves Ptychodus untouched,
with a warning, if they changed. A failure while building the libraries or the panels
is logged and never stops Ptychodus.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = [
    "CONTROLLER_MODULE",
    "EXPECTED_CONTROLLER_PARAMETERS",
    "EXPECTED_PARAMETERS",
    "PATCH_MARKER",
    "install",
    "is_installed",
    "uninstall",
]

logger = logging.getLogger(__name__)

#: Attribute set on the installed subclass (its value is the original class).
PATCH_MARKER = "_ptychopinn_original"
#: ``ProcessingCore.__init__`` parameters the hook relies on, in order.
EXPECTED_PARAMETERS: tuple[str, ...] = ("task_manager", "settings_registry", "product_api", "algorithm_libraries")
#: The GUI module whose ``ProcessingController`` gets our settings panels.
CONTROLLER_MODULE = "ptychodus.controller.core"
#: ``ProcessingController.__init__`` parameters the GUI hook relies on, in order.
EXPECTED_CONTROLLER_PARAMETERS: tuple[str, ...] = (
    "algorithm_parameter", "processing_api", "product_repository", "product_table_model", "globus", "genesis",
    "view", "status_view", "file_dialog_factory", "view_controller_factories",
)


def _core_module() -> Any:
    import ptychodus.model.core as core  # heavy: only when the hook is used

    return core


def is_installed() -> bool:
    """True when ``ptychodus.model.core.ProcessingCore`` is the hook's subclass."""
    return hasattr(_core_module().ProcessingCore, PATCH_MARKER)


def install() -> bool:
    """Make every ``ModelCore`` built from now on include the PtychoPINN libraries, and every window their panels.

    The panels' part patches ``ptychodus.controller.core`` now if it is imported, else
    when the GUI imports it (a one-shot finder in ``sys.meta_path``); it imports no Qt.

    Returns
    -------
    bool
        True if the hook was installed by this call, False if it already was or if
        Ptychodus' structure is not the one expected (then a warning is logged and
        Ptychodus is left as it is).
    """
    core = _core_module()
    original = core.ProcessingCore
    if hasattr(original, PATCH_MARKER):
        return False
    parameters = tuple(inspect.signature(original.__init__).parameters)[1:]
    if parameters != EXPECTED_PARAMETERS:
        logger.warning(
            "PtychoPINN reconstructors not added: ptychodus.model.core.ProcessingCore takes %s, expected %s "
            "(Ptychodus %s is not a supported version; ptychopinn needs ptychodus>=1.7,<1.8)",
            parameters, EXPECTED_PARAMETERS, _ptychodus_version(),
        )
        return False

    class ProcessingCoreWithPtychoPINN(original):  # type: ignore[misc, valid-type]
        """Ptychodus' ProcessingCore with the PtychoPINN libraries appended."""

        def __init__(
            self, task_manager: Any, settings_registry: Any, product_api: Any, algorithm_libraries: Sequence[Any]
        ) -> None:
            libraries = list(algorithm_libraries)
            super().__init__(task_manager, settings_registry, product_api, libraries + _our_libraries(
                settings_registry, [library.name for library in libraries]
            ))

    setattr(ProcessingCoreWithPtychoPINN, PATCH_MARKER, original)
    ProcessingCoreWithPtychoPINN.__qualname__ = ProcessingCoreWithPtychoPINN.__name__
    core.ProcessingCore = ProcessingCoreWithPtychoPINN
    _install_panels()
    logger.debug("PtychoPINN hook installed in ptychodus.model.core")
    return True


def uninstall() -> bool:
    """Restore Ptychodus' own ``ProcessingCore`` (and ``ProcessingController``); True if the hook was installed."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _ControllerFinder)]
    controller = sys.modules.get(CONTROLLER_MODULE)
    original_controller = getattr(getattr(controller, "ProcessingController", None), PATCH_MARKER, None)
    if original_controller is not None:
        controller.ProcessingController = original_controller  # type: ignore[union-attr]
    core = _core_module()
    original = getattr(core.ProcessingCore, PATCH_MARKER, None)
    if original is None:
        return False
    core.ProcessingCore = original
    return True


# -- the settings panels (GUI) ------------------------------------------------------------


def _install_panels() -> None:
    """Patch ``ptychodus.controller.core`` now if the GUI imported it, else right after it is imported."""
    module = sys.modules.get(CONTROLLER_MODULE)
    if module is not None:
        _patch_controller(module)
    elif not any(isinstance(finder, _ControllerFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ControllerFinder())


class _ControllerFinder(importlib.abc.MetaPathFinder):
    """Finds ``ptychodus.controller.core`` like Python would, with a loader that patches it; one shot."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname != CONTROLLER_MODULE:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    """Ptychodus' own loader of the module, then :func:`_patch_controller`."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _patch_controller(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, name)


def _patch_controller(module: Any) -> None:
    """Replace ``module.ProcessingController`` by a subclass that adds our view-controller factories."""
    try:
        original = module.ProcessingController
        if hasattr(original, PATCH_MARKER):
            return
        parameters = tuple(inspect.signature(original.__init__).parameters)[1:]
    except Exception:  # noqa: BLE001 - never stop Ptychodus' GUI
        logger.exception("PtychoPINN settings panels not added")
        return
    if parameters != EXPECTED_CONTROLLER_PARAMETERS:
        logger.warning(
            "PtychoPINN settings panels not added: %s.ProcessingController takes %s, expected %s "
            "(Ptychodus %s is not a supported version; ptychopinn needs ptychodus>=1.7,<1.8)",
            CONTROLLER_MODULE, parameters, EXPECTED_CONTROLLER_PARAMETERS, _ptychodus_version(),
        )
        return

    class ProcessingControllerWithPtychoPINN(original):  # type: ignore[misc, valid-type]
        """Ptychodus' ProcessingController with the PtychoPINN settings panels."""

        def __init__(self, algorithm_parameter: Any, processing_api: Any, *args: Any) -> None:
            *middle, file_dialog_factory, view_controller_factories = args
            factories = list(view_controller_factories)
            factories += _our_panels(algorithm_parameter, file_dialog_factory, processing_api.task_monitor,
                                     [factory.name for factory in factories])
            super().__init__(algorithm_parameter, processing_api, *middle, file_dialog_factory, factories)
            processing_api.task_monitor.add_observer(self)

        def _update(self, observable: Any) -> None:
            super()._update(observable)
            if observable is self._processing_api.task_monitor and not observable.is_processing:
                self._sync_model_to_view()  # a model trained (or loaded) by the task enables Infer

    setattr(ProcessingControllerWithPtychoPINN, PATCH_MARKER, original)
    ProcessingControllerWithPtychoPINN.__qualname__ = ProcessingControllerWithPtychoPINN.__name__
    module.ProcessingController = ProcessingControllerWithPtychoPINN
    logger.debug("PtychoPINN settings panels hooked into %s", CONTROLLER_MODULE)


def _our_panels(algorithm_parameter: Any, file_dialog_factory: Any, task_monitor: Any,
                taken_names: Sequence[str]) -> list[Any]:
    """A view-controller factory per PtychoPINN library, or none if that fails (the GUI must start).

    A panel's refusals go to its library's log; notifying ``task_monitor``'s observers
    shows them in the processing log at once.
    """
    try:
        from ptychopinn_core.ptychodus.panels import view_controller_factories

        libraries = getattr(algorithm_parameter, "_libraries", None)
        if libraries is None:
            logger.warning("PtychoPINN settings panels not added: ProcessingAlgorithmParameter has no _libraries "
                           "(Ptychodus %s is not a supported version)", _ptychodus_version())
            return []
        taken = {name.casefold() for name in taken_names}
        return [factory for factory in view_controller_factories(libraries, file_dialog_factory,
                                                                 task_monitor.notify_observers)
                if factory.name.casefold() not in taken]
    except Exception:  # noqa: BLE001 - a broken plugin must not stop the host
        logger.exception("PtychoPINN settings panels could not be added to Ptychodus")
        return []


def _our_libraries(settings_registry: Any, taken_names: Sequence[str]) -> list[Any]:
    """The libraries, or none if building them fails (Ptychodus must start regardless)."""
    try:
        from ptychopinn_core.ptychodus.library import build_libraries

        libraries = build_libraries(settings_registry, taken_names=taken_names)
    except Exception:  # noqa: BLE001 - a broken plugin must not stop the host
        logger.exception("PtychoPINN reconstructors could not be added to Ptychodus")
        return []
    logger.info(
        "PtychoPINN reconstructors: %s",
        ", ".join(f"{library.name} ({', '.join(r.name for r in library)})" for library in libraries) or "none",
    )
    return libraries


def _ptychodus_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ptychodus")
    except PackageNotFoundError:
        return "unknown"
