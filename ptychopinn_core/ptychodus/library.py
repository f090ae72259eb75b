"""One Ptychodus ``ReconstructorLibrary`` per installed PtychoPINN backend.

Names
-----
A library is named ``PINN-<Backend>``: the backend's display name when it is one word
of letters and digits (``PINN-TensorFlow``), else its canonical name (``PINN-pytorch``,
whose display name is "PyTorch + Lightning"; ``PINN-numpyfake``). Ptychodus selects a
reconstructor by ``'{library}_{reconstructor}'`` casefolded, so a library name must not
contain ``_`` (canonical backend names cannot) and must differ, casefolded, from every
library already present; Ptychodus 1.7's own are ``pty-chi``, ``PtychoNN``, ``PtychoPINN``,
``PtychoPINN-Torch`` and ``PtychoFM``. The reconstructors are ``PINN`` and
``Supervised``, those of the backend's ``capabilities.modes``. Keys therefore look like
``pinn-tensorflow_pinn`` and ``pinn-pytorch_supervised``. A backend that runs trained
models only (``capabilities.training`` False: ``PINN-ONNX``) offers one reconstructor,
``PINN``, which loads and runs a model of either mode and refuses to train.

Each library owns one settings group named like itself (:mod:`.settings`); in the GUI,
:mod:`.panels` shows it under the Algorithm box.
Backends that are broken or incomplete are not offered; a warning says why.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Iterator

from ptychodus.api.reconstruct import Reconstructor, ReconstructorLibrary
from ptychodus.api.settings import SettingsRegistry

from ptychopinn_core.backends import Backend, BackendEntry, BackendRegistry
from ptychopinn_core.ptychodus.reconstructor import MODE_NAMES, PINNReconstructor
from ptychopinn_core.ptychodus.settings import PINNSettings

__all__ = [
    "LIBRARY_PREFIX",
    "LOGGER_PREFIX",
    "PTYCHODUS_BUILTIN_LIBRARIES",
    "PINNReconstructorLibrary",
    "build_libraries",
    "library_name",
]

#: Prefix of every library name.
LIBRARY_PREFIX = "PINN-"
#: Libraries log under ``<prefix>.<backend>``; Ptychodus shows these records in its log.
LOGGER_PREFIX = "ptychopinn_core.ptychodus"
#: Library names Ptychodus 1.7 builds in (``ptychodus.model.core.ModelCore``); ours differ.
PTYCHODUS_BUILTIN_LIBRARIES: tuple[str, ...] = ("pty-chi", "PtychoNN", "PtychoPINN", "PtychoPINN-Torch", "PtychoFM")
_ONE_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")

logger = logging.getLogger(__name__)


def library_name(entry: BackendEntry) -> str:
    """``PINN-<display name>`` for one-word display names, else ``PINN-<canonical name>``."""
    display = entry.info.display_name if entry.info is not None else ""
    return LIBRARY_PREFIX + (display if _ONE_WORD.fullmatch(display) else entry.name)


class PINNReconstructorLibrary(ReconstructorLibrary):
    """The reconstructors of one backend (``PINN`` and/or ``Supervised``).

    Parameters
    ----------
    settings_registry : SettingsRegistry
        Where the library's settings group is created (group name = ``name``).
    backend : Backend
        A selected, usable backend.
    name : str
        Library name; no ``_``.
    """

    def __init__(self, settings_registry: SettingsRegistry, backend: Backend, name: str) -> None:
        if "_" in name:
            raise ValueError(f"invalid library name: Ptychodus splits keys at '_', received name={name!r}")
        super().__init__(f"{LOGGER_PREFIX}.{backend.name}")
        self._name = name
        self.backend = backend
        self.settings = PINNSettings(settings_registry, name)
        capabilities = backend.info.capabilities
        # Inference is the same network whatever the mode it was trained in.
        modes = capabilities.modes if capabilities.training else {"pinn"}
        self._reconstructors = [
            PINNReconstructor(name, mode, backend, self.settings, self.get_logger())
            for mode in MODE_NAMES
            if mode in modes
        ]

    @property
    def name(self) -> str:
        return self._name

    def __iter__(self) -> Iterator[Reconstructor]:
        return iter(self._reconstructors)


def build_libraries(
    settings_registry: SettingsRegistry,
    *,
    taken_names: Iterable[str] = PTYCHODUS_BUILTIN_LIBRARIES,
    registry: BackendRegistry | None = None,
) -> list[PINNReconstructorLibrary]:
    """A library for every usable backend of the ``ptychodus.reconstructors`` group.

    Parameters
    ----------
    settings_registry : SettingsRegistry
        Ptychodus' settings registry.
    taken_names : iterable of str
        Library names already present (compared casefolded); a backend whose name
        collides is skipped with a warning.
    registry : BackendRegistry, optional
        Default: ``BackendRegistry.discover()``.

    Returns
    -------
    list of PINNReconstructorLibrary
        Sorted by backend name. Broken or incomplete backends are logged and left out.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = registry or BackendRegistry.discover()
    for warning in caught:  # Ptychodus shows log records, not Python warnings
        logger.warning("%s", warning.message)
    taken = {name.casefold() for name in taken_names}
    libraries = []
    for entry in registry.entries():
        if not entry.ok:
            logger.warning("PtychoPINN backend %r is not offered in Ptychodus: %s: %s",
                           entry.name, entry.status, entry.reason)
            continue
        name = library_name(entry)
        if name.casefold() in taken:
            logger.warning("PtychoPINN backend %r is not offered in Ptychodus: library name %r is taken",
                           entry.name, name)
            continue
        try:
            library = PINNReconstructorLibrary(settings_registry, registry.get(entry.name), name)
        except (ImportError, ValueError) as error:  # e.g. a settings group of that name exists
            logger.warning("PtychoPINN backend %r is not offered in Ptychodus: %s", entry.name, error)
            continue
        taken.add(name.casefold())
        libraries.append(library)
    return libraries
