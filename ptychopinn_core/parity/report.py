"""The parity report: every number measured, the tolerance it is held to, and its JSON.

:func:`~ptychopinn_core.parity.runner.run_parity` fills a :class:`ParityReport`; the
``ptychopinn parity`` command prints it, writes it as JSON and plots its maps and
curves. Tolerances are looked up by key in the one table,
:data:`ptychopinn_core.parity.tolerances.TOLERANCES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptychopinn_core.parity.tolerances import TOLERANCES, Tolerance

__all__ = ["REPORT_TOLERANCE_KEYS", "ParityCheck", "ParityReport"]

#: The keys of :data:`TOLERANCES` that the report's backend-against-backend levels are
#: held to, written with their reasons into the JSON report (the physics level uses the
#: physics steps' own keys).
REPORT_TOLERANCE_KEYS = (
    "forward:32",
    "forward:64",
    "loss:32",
    "loss:64",
    "gradients:32",
    "gradients:64",
    "training:32",
    "training:64",
    "reconstruction",
    "refinement:32",
    "refinement:64",
    "quality",
)


@dataclass(frozen=True)
class ParityCheck:
    """One number of the report.

    Attributes
    ----------
    level : str
        ``physics``, ``forward``, ``loss``, ``gradients``, ``training``,
        ``refinement``, ``reconstruction`` or ``quality``.
    quantity : str
        What was compared (``"amplitude"``, ``"all parameters"``, ``"loss curve"``...).
    case : str
        The configuration (``"gridsize 2, pinn, unet, float64"``).
    compared : str
        ``"pytorch vs tensorflow"`` or ``"tensorflow vs numpy"``.
    error : float
    tolerance : float or None
        None: reported, not held.
    """

    level: str
    quantity: str
    case: str
    compared: str
    error: float
    tolerance: float | None

    @property
    def passed(self) -> bool | None:
        """True/False against the tolerance; None when there is none."""
        if self.tolerance is None:
            return None
        return bool(np.isfinite(self.error) and self.error <= self.tolerance)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "quantity": self.quantity,
            "case": self.case,
            "compared": self.compared,
            "error": _finite_or_none(self.error),
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


@dataclass
class ParityReport:
    """All checks, the loss curves, per-backend timings and what was run."""

    backends: list[str]
    settings: dict[str, Any]
    checks: list[ParityCheck] = field(default_factory=list)
    #: case label -> backend -> per-step training losses
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: backend -> level -> seconds
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    #: case label -> name -> 2-D float array (difference maps for --plots)
    maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every held check passed (reported-only checks do not count)."""
        return all(check.passed is not False for check in self.checks)

    @property
    def failures(self) -> list[ParityCheck]:
        return [check for check in self.checks if check.passed is False]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "backends": self.backends,
            "settings": self.settings,
            "tolerances": {
                key: {"relative": TOLERANCES[key].relative, "reason": TOLERANCES[key].reason}
                for key in REPORT_TOLERANCE_KEYS
            },
            "checks": [check.to_json() for check in self.checks],
            "curves": self.curves,
            "timings": {name: {k: round(v, 4) for k, v in levels.items()} for name, levels in self.timings.items()},
            "notes": self.notes,
        }

    def _add(self, level: str, quantity: str, case: str, compared: str, error: float,
             tolerance: str | Tolerance) -> None:
        """Record a check held to ``tolerance`` (a :data:`TOLERANCES` key or a Tolerance)."""
        if isinstance(tolerance, str):
            tolerance = TOLERANCES[tolerance]
        self.checks.append(ParityCheck(level, quantity, case, compared, float(error), tolerance.relative))

    def _time(self, backend: str, level: str, seconds: float) -> None:
        levels = self.timings.setdefault(backend, {})
        levels[level] = levels.get(level, 0.0) + seconds


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
