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

The hook relies on Ptychodus internals (the module global and the constructor's
parameter list), which is why the distributions pin ``ptychodus>=1.7,<1.8``;
:func:`install` checks both and leaves Ptychodus untouched, with a warning, if they
changed. A failure while building the libraries is logged and never stops Ptychodus.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["EXPECTED_PARAMETERS", "PATCH_MARKER", "install", "is_installed", "uninstall"]

logger = logging.getLogger(__name__)

#: Attribute set on the installed subclass (its value is the original class).
PATCH_MARKER = "_ptychopinn_original"
#: ``ProcessingCore.__init__`` parameters the hook relies on, in order.
EXPECTED_PARAMETERS: tuple[str, ...] = ("task_manager", "settings_registry", "product_api", "algorithm_libraries")


def _core_module() -> Any:
    import ptychodus.model.core as core  # heavy: only when the hook is used

    return core


def is_installed() -> bool:
    """True when ``ptychodus.model.core.ProcessingCore`` is the hook's subclass."""
    return hasattr(_core_module().ProcessingCore, PATCH_MARKER)


def install() -> bool:
    """Make every ``ModelCore`` built from now on include the PtychoPINN libraries.

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
    logger.debug("PtychoPINN hook installed in ptychodus.model.core")
    return True


def uninstall() -> bool:
    """Restore Ptychodus' own ``ProcessingCore``; True if the hook was installed."""
    core = _core_module()
    original = getattr(core.ProcessingCore, PATCH_MARKER, None)
    if original is None:
        return False
    core.ProcessingCore = original
    return True


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
