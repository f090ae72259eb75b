"""The backend plugin system: hook specification, contract types and registry.

A backend (TensorFlow, PyTorch, ...) is a separately installed distribution that
declares an entry point in the group ``ptychodus.reconstructors``; see docs/backends.md.
Importing this package imports no framework.
"""

from ptychopinn_core.backends.contract import (
    ALLOWED_DEVICES,
    ALLOWED_MODES,
    ALLOWED_LOGGERS,
    ALLOWED_PRECISIONS,
    BACKEND_NAME_PATTERN,
    BackendInfo,
    BackendModel,
    Capabilities,
    ForwardResult,
    PhysicsOps,
    Refiner,
    ProgressCallback,
    ProgressEvent,
)
from ptychopinn_core.backends.hookspec import HOOK_NAMES, PROJECT_NAME, BackendHookSpec, hookimpl, hookspec
from ptychopinn_core.backends.registry import (
    ALIASES,
    CORE_DISTRIBUTION,
    ENTRY_POINT_GROUP,
    KNOWN_BACKENDS,
    Backend,
    BackendEntry,
    BackendRegistry,
    BackendStatus,
    BackendWarning,
    DuplicateBackendWarning,
    canonical_backend_name,
    depends_on_core,
    install_instructions,
)

__all__ = [
    # hook specification
    "PROJECT_NAME",
    "HOOK_NAMES",
    "BackendHookSpec",
    "hookimpl",
    "hookspec",
    # contract
    "ALLOWED_DEVICES",
    "ALLOWED_MODES",
    "ALLOWED_LOGGERS",
    "ALLOWED_PRECISIONS",
    "BACKEND_NAME_PATTERN",
    "BackendInfo",
    "BackendModel",
    "Capabilities",
    "ForwardResult",
    "PhysicsOps",
    "Refiner",
    "ProgressCallback",
    "ProgressEvent",
    # registry
    "ALIASES",
    "CORE_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "KNOWN_BACKENDS",
    "Backend",
    "BackendEntry",
    "BackendRegistry",
    "BackendStatus",
    "BackendWarning",
    "DuplicateBackendWarning",
    "canonical_backend_name",
    "depends_on_core",
    "install_instructions",
]
