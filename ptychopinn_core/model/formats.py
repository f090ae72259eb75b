"""Model files: the core's bundle zip, and other formats that installed distributions add.

A distribution adds a format with an entry point in the group ``ptychopinn.model_formats``
whose name is the format and the file suffix (``onnx`` for ``model.onnx``) and whose
target is a module with two functions::

    write_model(path, bundle: ModelBundle) -> Path      # atomic
    read_model(path) -> ModelBundle                     # validated; BundleError if not

A file in such a format must hold the whole bundle (config, weights, state, manifest,
history), so that it runs in every backend and converts back. The bundle zip needs no
plugin: it is the format of every other suffix (``.zip``, ``.ptychopinn``). The core
names no format module: :data:`KNOWN_FORMATS` only says how to install the ones this
project publishes, for the error when one is missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Mapping

from ptychopinn_core.model.bundle import BundleError, ModelBundle, read_bundle, write_bundle

__all__ = [
    "BUNDLE_FORMAT_NAME",
    "KNOWN_FORMATS",
    "MODEL_FORMATS_GROUP",
    "format_for_path",
    "installed_formats",
    "read_model",
    "write_model",
]

#: Entry-point group of model file formats.
MODEL_FORMATS_GROUP = "ptychopinn.model_formats"
#: The core's own format, the zip of docs/bundle.md.
BUNDLE_FORMAT_NAME = "bundle"
#: Formats this project publishes -> the pip command that installs each.
KNOWN_FORMATS: Mapping[str, str] = MappingProxyType({"onnx": 'pip install "ptychopinn-core[onnx]"'})


def installed_formats() -> list[str]:
    """Every format that can be read and written here, the bundle first."""
    names = {entry_point.name for entry_point in importlib.metadata.entry_points(group=MODEL_FORMATS_GROUP)}
    return [BUNDLE_FORMAT_NAME, *sorted(names - {BUNDLE_FORMAT_NAME})]


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` by its suffix: an installed or known format's name, else the bundle."""
    suffix = Path(path).suffix.lower().removeprefix(".")
    return suffix if suffix in set(installed_formats()) | set(KNOWN_FORMATS) else BUNDLE_FORMAT_NAME


def _format_module(name: str, path: str | os.PathLike[str]) -> ModuleType:
    entry_points = [ep for ep in importlib.metadata.entry_points(group=MODEL_FORMATS_GROUP) if ep.name == name]
    if not entry_points:
        hint = KNOWN_FORMATS.get(name)
        if hint is not None:
            raise ImportError(f"{os.fspath(path)}: the {name} model format is not installed; install it with: {hint}")
        raise ValueError(
            f"unknown model format: expected one of {', '.join(installed_formats())}, received format={name!r}"
        )
    module = importlib.import_module(entry_points[0].value)
    for function in ("read_model", "write_model"):
        if not callable(getattr(module, function, None)):
            raise TypeError(f"model format {name!r} ({entry_points[0].value}) has no function {function}")
    return module


def read_model(path: str | os.PathLike[str]) -> ModelBundle:
    """Read a model file of any installed format (by suffix) as a :class:`ModelBundle`.

    Raises
    ------
    BundleError
        The file is unreadable, corrupt or inconsistent (the message names the file and part).
    ImportError
        The format is known but not installed (the message says what to install).
    """
    name = format_for_path(path)
    if name == BUNDLE_FORMAT_NAME:
        return read_bundle(path)
    bundle = _format_module(name, path).read_model(path)
    if not isinstance(bundle, ModelBundle):
        raise BundleError(f"the {name} reader returned {type(bundle).__name__}, not a model bundle", file=path)
    return bundle


def write_model(path: str | os.PathLike[str], bundle: ModelBundle, format: str | None = None) -> Path:
    """Write ``bundle`` to ``path`` in ``format`` (default: by the suffix), atomically."""
    name = format or format_for_path(path)
    if name == BUNDLE_FORMAT_NAME:
        return write_bundle(path, bundle)
    return Path(_format_module(name, path).write_model(path, bundle))
