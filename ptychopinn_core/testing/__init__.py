"""Test helpers shipped with the core, for the core's and the backends' test suites.

:mod:`~ptychopinn_core.testing.conformance` is the backend conformance kit: subclass
:class:`BackendConformanceTests` and provide a ``backend`` fixture. Requires pytest.
"""

from ptychopinn_core.testing.conformance import (
    CONFORMANCE_SEED,
    PHYSICS_OPS,
    TOLERANCES,
    BackendConformanceTests,
    Tolerance,
    bitwise_equal,
    physics_case,
    relative_error,
    small_config,
    small_scan,
)

__all__ = [
    "CONFORMANCE_SEED",
    "PHYSICS_OPS",
    "TOLERANCES",
    "BackendConformanceTests",
    "Tolerance",
    "bitwise_equal",
    "physics_case",
    "relative_error",
    "small_config",
    "small_scan",
]
