"""The moving average of the weights (``training.ema_decay``): one definition for every backend.

After optimiser step ``t = 1, 2, ...`` (counted over the whole run, a resumed one included)::

    delta_t   = min(decay, (t - 1) / (t + 8))
    average_t = delta_t * average_{t-1} + (1 - delta_t) * w_t

``delta_1 = 0``: the average starts at the first step's weights. Until ``delta_t`` reaches
``decay`` (``t ~ 9 / (1 - decay)``: about 9000 steps for 0.999) the average spans about the
last ninth of the steps taken, so one ``decay`` suits a demo of a thousand steps and a run
of twenty-five thousand alike: a short run is not dragged towards its early weights.

The average is what the validation loss, and through it the schedule and early stopping,
sees, and what the trained model keeps; the optimiser steps the raw weights ``w``. A
backend puts the average in place at each epoch's end (validation, the epoch's progress
event) and takes it out before the next step and before writing its checkpoint, which
keeps the average and ``t`` beside the raw weights. Averaging removes the step-to-step
wander that a constant learning rate leaves in the weights (docs/benchmarks.md, "Network
quality" §16).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["decay_at", "moving_average"]


def decay_at(decay: float, step: int) -> float:
    """``delta_t = min(decay, (t - 1) / (t + 8))`` in float64, for optimiser step ``t >= 1``."""
    if step < 1:
        raise ValueError(f"invalid step: expected an optimiser step t >= 1, received {step}")
    return min(float(decay), (step - 1.0) / (step + 8.0))


def moving_average(weights_per_step: Iterable[Mapping[str, np.ndarray]], decay: float) -> dict[str, np.ndarray]:
    """The numpy reference: the average after the steps whose weights are given, in order.

    Parameters
    ----------
    weights_per_step : iterable of mapping of str to ndarray
        ``w_1, w_2, ...``: every parameter after each optimiser step.
    decay : float
        ``training.ema_decay``, in ``(0, 1)``.

    Returns
    -------
    dict of str to ndarray, float64
    """
    average: dict[str, np.ndarray] = {}
    for step, weights in enumerate(weights_per_step, start=1):
        delta = decay_at(decay, step)
        for name, value in weights.items():
            value = np.asarray(value, np.float64)
            average[name] = delta * average.get(name, value) + (1.0 - delta) * value
    return average
