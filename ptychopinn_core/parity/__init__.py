"""Cross-backend checks: the cases, the one table of tolerances, and the parity report.

The conformance kit (:mod:`ptychopinn_core.testing`), ``ptychopinn parity`` and the
backends' own tests hold a backend to the same cases and the same numbers, so those
live here, once, free of pytest and of any framework.

Modules
-------
tolerances
    :data:`TOLERANCES`: every bound, with its reason; :func:`relative_error`, the one
    error measure.
cases
    The physics steps' inputs and numpy references (:func:`physics_case`).
report
    :class:`ParityReport` and :class:`ParityCheck`: what was measured, against what bound.
runner
    :func:`run_parity`: the same weights and data through every installed backend,
    level by level (docs/parity.md).
"""

from ptychopinn_core.parity.report import ParityCheck, ParityReport
from ptychopinn_core.parity.runner import ParityCase, parity_cases, run_parity
from ptychopinn_core.parity.tolerances import TOLERANCES, Tolerance, relative_error

__all__ = [
    "TOLERANCES",
    "ParityCase",
    "ParityCheck",
    "ParityReport",
    "Tolerance",
    "parity_cases",
    "relative_error",
    "run_parity",
]
