"""Refinement: a reconstruction's object (and probe) fitted to the measured patterns by the
same far-field physics, after the network (docs/physics.md §10).

- :mod:`~ptychopinn_core.refine.problem`: what is refined and in which order;
- :mod:`~ptychopinn_core.refine.loop`: the one loop (order, step sizes, losses, progress)
  every refiner runs, the framework supplying only the step;
- :mod:`~ptychopinn_core.refine.reference`: the numpy loss, analytic gradients and Adam
  rule every backend is tested against.
"""

from ptychopinn_core.refine.loop import SteppedRefiner, Steps, run_refinement
from ptychopinn_core.refine.problem import Observer, RefineProblem, RefineResult, flat_start
from ptychopinn_core.refine.reference import (
    NumpyRefiner,
    adam_step,
    fitted_truth,
    illumination,
    loss_and_gradients,
    scatter_patches,
)

__all__ = [
    "NumpyRefiner",
    "Observer",
    "RefineProblem",
    "RefineResult",
    "SteppedRefiner",
    "Steps",
    "adam_step",
    "fitted_truth",
    "flat_start",
    "illumination",
    "loss_and_gradients",
    "run_refinement",
    "scatter_patches",
]
