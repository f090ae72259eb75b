"""What a refinement works on: measured patterns, positions on an object frame, a probe,
the settings, and the order in which positions are visited (docs/physics.md §10).

The core builds the :class:`RefineProblem` once; every backend (and the numpy
reference) receives the same one, so they see the same numbers in the same order,
exactly as training shares :class:`~ptychopinn_core.training.data.TrainingData`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ptychopinn_core.config import Config, RefineConfig
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.physics.normalization import amplitude_normalisation, intensity_scale
from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.physics.normalization import normalise_amplitudes

__all__ = ["REFINE_SPAWN_KEY", "Observer", "RefineProblem", "RefineResult", "flat_start"]

#: Called after every iteration with ``(iteration, object, probe)`` (numpy copies), e.g.
#: by a benchmark that scores the object against time; refiners skip the copies without one.
Observer = Callable[[int, np.ndarray, np.ndarray], None]

#: First element of the spawn key ``(REFINE_SPAWN_KEY, iteration)`` of an iteration's order.
REFINE_SPAWN_KEY = 3


@dataclass(frozen=True, eq=False)
class RefineProblem:
    """The fixed inputs of a refinement.

    Attributes
    ----------
    diffraction : ndarray, float32, shape (M, N, N)
        Measured amplitudes ``X`` (not normalised; the scan's own read-only array, not
        copied: a large scan is normalised one batch at a time by :meth:`observed`).
    amplitude_normalisation : float
        ``a`` of this scan (physics.md §7): the model compares ``|F(O P)|`` with ``a X``.
    intensity_scale : float
        ``s``: the losses work in photon units, as in training.
    positions_px : ndarray, float64, shape (M, 2)
        Probe-centre positions ``(x, y)`` in CANVAS pixels: object pixels minus the
        frame's origin, so ``obj[r, c]`` is sampled at ``(c, r)``.
    frame : ObjectFrame
        Where the refined object lies; the object has ``frame.shape``.
    settings : RefineConfig
    """

    diffraction: np.ndarray
    amplitude_normalisation: float
    intensity_scale: float
    positions_px: np.ndarray
    frame: ObjectFrame
    settings: RefineConfig = field(default_factory=RefineConfig)

    def __post_init__(self) -> None:
        diffraction = self.diffraction
        if diffraction.ndim != 3 or diffraction.shape[1] != diffraction.shape[2]:
            raise ValueError(
                f"invalid diffraction: expected (M, N, N), received diffraction.shape={diffraction.shape}"
            )
        positions = np.asarray(self.positions_px, dtype=np.float64)
        if positions.shape != (diffraction.shape[0], 2) or not np.all(np.isfinite(positions)):
            raise ValueError(
                f"invalid positions: expected finite (M, 2) = ({diffraction.shape[0]}, 2), "
                f"received positions_px.shape={positions.shape}"
            )
        positions = positions.copy()
        positions.flags.writeable = False
        object.__setattr__(self, "positions_px", positions)
        for name in ("amplitude_normalisation", "intensity_scale"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"invalid {name}: expected a finite number > 0, received {value!r}")
            object.__setattr__(self, name, value)

    @classmethod
    def for_scan(cls, scan: ScanData, frame: ObjectFrame, config: Config) -> RefineProblem:
        """The problem of refining an object on ``frame`` against ``scan``'s patterns.

        ``a`` is the scan's own normalisation and ``s`` the configured photon scale,
        exactly as inference and training use them; ``config.refine`` is the settings.
        """
        origin = np.array([frame.origin_x_px, frame.origin_y_px])
        return cls(
            diffraction=scan.diffraction,
            amplitude_normalisation=amplitude_normalisation(scan.diffraction),
            intensity_scale=intensity_scale(config.data.nphotons, scan.pattern_size),
            positions_px=scan.positions_px - origin[None, :],
            frame=frame,
            settings=config.refine,
        )

    @property
    def n_positions(self) -> int:
        return int(self.diffraction.shape[0])

    @property
    def pattern_size(self) -> int:
        return int(self.diffraction.shape[-1])

    @property
    def object_shape(self) -> tuple[int, int]:
        return self.frame.shape

    def patch_corners(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Where each position's patch is cut (physics.md §2): the integer top-left corner
        ``(row0, col0)`` (int64, ``(M,)``) of its ``(N+1) x (N+1)`` block of bilinear corners
        and the fractions ``(fr, fc)`` (float64, ``(M,)``) that weight them; what a
        backend gathers from the object."""
        top = self.positions_px[:, 1] - self.pattern_size // 2
        left = self.positions_px[:, 0] - self.pattern_size // 2
        row0, col0 = np.floor(top), np.floor(left)
        return row0.astype(np.int64), col0.astype(np.int64), top - row0, left - col0

    def observed(self, indices: np.ndarray) -> np.ndarray:
        """Normalised measured amplitudes ``X_n = a X`` of the positions ``indices``, float32."""
        return normalise_amplitudes(self.diffraction[np.asarray(indices)], self.amplitude_normalisation)

    def batches(self, iteration: int) -> list[np.ndarray]:
        """Position indices of each step of ``iteration``, in order.

        A permutation of ``0..M-1`` drawn from
        ``default_rng(SeedSequence(settings.seed, spawn_key=(3, iteration)))``, cut into
        batches of ``settings.batch_size``; the last, partial batch is kept. Every
        position is visited once per iteration.
        """
        if isinstance(iteration, bool) or not isinstance(iteration, (int, np.integer)) or iteration < 0:
            raise ValueError(f"invalid iteration: expected an int >= 0, received iteration={iteration!r}")
        sequence = np.random.SeedSequence(self.settings.seed, spawn_key=(REFINE_SPAWN_KEY, int(iteration)))
        order = np.random.default_rng(sequence).permutation(self.n_positions).astype(np.int64)
        size = self.settings.batch_size
        return [order[start : start + size] for start in range(0, len(order), size)]

    def steps_per_iteration(self) -> int:
        return -(-self.n_positions // self.settings.batch_size)

    def step_scale(self, iteration: int) -> float:
        """Factor of both step sizes in ``iteration``: ``decay ** iteration``.

        Adam with a constant step size keeps moving by about the step size once the
        mini-batch gradients only disagree (measured in docs/benchmarks.md): the decay
        lets the object settle.
        """
        return float(self.settings.step_decay**iteration)

    def refines_probe(self, iteration: int) -> bool:
        """Whether the probe is updated in ``iteration`` (after ``probe_delay`` object-only ones)."""
        return self.settings.probe and iteration >= self.settings.probe_delay

    def check_variables(self, obj: np.ndarray, probe: np.ndarray) -> None:
        """One clear error when a start object or probe does not fit the problem."""
        if obj.shape != self.object_shape:
            raise ValueError(
                f"invalid start object: expected the frame's shape {self.object_shape}, received {obj.shape}"
            )
        size = self.pattern_size
        if probe.shape != (size, size):
            raise ValueError(
                f"invalid probe: expected shape ({size}, {size}) like the patterns, received {probe.shape}"
            )
        for name, values in (("start object", obj), ("probe", probe)):
            if not np.all(np.isfinite(values)):
                raise ValueError(f"invalid {name}: NaN or inf values")


@dataclass(frozen=True, eq=False)
class RefineResult:
    """What a refinement returns.

    Attributes
    ----------
    object : ndarray, complex, shape frame.shape
    probe : ndarray, complex, shape (N, N)
        The refined probe (the start probe when the probe was not refined).
    losses : tuple of float
        Per iteration, the mean of the step losses (each evaluated before its step,
        weighted by its batch size).
    """

    object: np.ndarray
    probe: np.ndarray
    losses: tuple[float, ...] = ()


def flat_start(problem: RefineProblem, probe: np.ndarray) -> np.ndarray:
    """A constant, real object whose predicted energy matches the data's on average.

    After the amplitude normalisation a pattern holds ``(N/2)**2`` on average
    (physics.md §7) and the far field is unitary, so ``c = (N/2) / sqrt(sum |P|**2)``
    (``1/2`` for a probe normalised by ``normalise_probe``): the baseline iterative codes
    start from, at the scale that leaves the data term nothing to fix but the structure.
    """
    probe_energy = float(np.sum(np.abs(np.asarray(probe, dtype=np.complex128)) ** 2))
    if not math.isfinite(probe_energy) or probe_energy <= 0:
        raise ValueError("invalid probe: zero or non-finite energy")
    level = (problem.pattern_size / 2) / math.sqrt(probe_energy)
    return np.full(problem.object_shape, level, dtype=np.complex64)
