"""The one refinement loop: iterations, the order of positions, step sizes, losses, progress.

Every refiner (the numpy reference and each backend's) runs this loop and supplies only
:class:`Steps`: one optimisation step on a batch, and a copy of its variables. So the
bookkeeping that defines a refinement (physics.md §10: which positions each step sees,
the decayed step sizes, when the probe joins, what loss is reported) exists once, as the
training's epoch policy should (Keras keeps callbacks out of its per-backend trainers).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ptychopinn_core.progress import ProgressCallback, ProgressEvent
from ptychopinn_core.refine.problem import Observer, RefineProblem, RefineResult

__all__ = ["SteppedRefiner", "Steps", "run_refinement"]


class Steps(Protocol):
    """A refiner's variables (object and probe, with their Adam states) and its step."""

    def step(self, indices: np.ndarray, object_step: float, probe_step: float | None) -> float:
        """One step on the positions ``indices``: Adam on the object with ``object_step``,
        and on the probe with ``probe_step`` unless it is ``None``. Returns the batch loss
        before the step."""
        ...

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Numpy copies of the object and the probe as they are now."""
        ...


def run_refinement(
    problem: RefineProblem,
    steps: Steps,
    progress: ProgressCallback | None = None,
    observe: Observer | None = None,
) -> RefineResult:
    """Run ``problem.settings.iterations`` iterations of ``steps`` in the problem's order.

    ``progress`` receives a ``"batch"`` event after every step and an ``"epoch"`` event after
    every iteration (metric ``loss``: the batch's, then the iteration's mean weighted by batch
    size); ``observe(iteration, obj, probe)`` is called after every iteration.
    """
    settings = problem.settings
    losses: list[float] = []
    for iteration in range(settings.iterations):
        batches = problem.batches(iteration)
        scale = problem.step_scale(iteration)
        object_step = settings.step_size * scale
        probe_step = settings.probe_step_size * scale if problem.refines_probe(iteration) else None
        total = 0.0
        for number, indices in enumerate(batches, start=1):
            loss = float(steps.step(indices, object_step, probe_step))
            total += loss * len(indices)
            if progress is not None:
                progress(ProgressEvent("batch", iteration, settings.iterations, number, len(batches), {"loss": loss}))
        losses.append(total / problem.n_positions)
        if progress is not None:
            metrics = {"loss": losses[-1]}
            progress(ProgressEvent("epoch", iteration, settings.iterations, len(batches), len(batches), metrics))
        if observe is not None:
            observe(iteration, *steps.snapshot())
    obj, probe = steps.snapshot()
    return RefineResult(object=obj, probe=probe, losses=tuple(losses))


class SteppedRefiner:
    """Base of a :class:`~ptychopinn_core.backends.Refiner` whose ``run`` is this loop:
    a subclass sets ``problem`` and supplies ``loss_and_gradients`` and :meth:`steps`."""

    problem: RefineProblem

    def steps(self, obj: np.ndarray, probe: np.ndarray) -> Steps:
        """The variables, started from ``obj`` and ``probe``, and their step."""
        raise NotImplementedError

    def run(
        self,
        obj: np.ndarray,
        probe: np.ndarray,
        progress: ProgressCallback | None = None,
        observe: Observer | None = None,
    ) -> RefineResult:
        """Refine for ``problem.settings.iterations`` iterations (:func:`run_refinement`)."""
        self.problem.check_variables(obj, probe)
        return run_refinement(self.problem, self.steps(obj, probe), progress, observe)
