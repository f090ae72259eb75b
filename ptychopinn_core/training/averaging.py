"""The moving average of the weights (``training.ema_decay``): one definition for every backend.

After optimiser step ``t = 1, 2, ...`` (counted over the whole run, a resumed one included)::

    m_t       = decay * m_{t-1} + (1 - decay) * w_t,        m_0 = 0
    average_t = m_t / (1 - decay**t)

The division is Adam's bias correction: ``average_1 = w_1``, and early averages are not
pulled towards zero (or towards the initial weights). The average is what the validation
loss, and through it the schedule and early stopping, sees, and what the trained model
keeps; the optimiser steps the raw weights ``w``. A backend puts the average in place at
each epoch's end (validation, the epoch's progress event) and takes it out before the next
step and before writing its checkpoint, which keeps ``m`` and ``t`` beside the raw weights.

Averaging damps the step-to-step wander of the weights that a constant learning rate
leaves (docs/benchmarks.md, "Network quality" §15).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["debiasing", "moving_average"]


def debiasing(decay: float, steps: int) -> float:
    """``1 - decay**steps``, in float64: what ``m_t`` is divided by."""
    if steps < 1:
        raise ValueError(f"invalid steps: expected >= 1 optimiser steps before an average, received {steps}")
    return 1.0 - float(decay) ** int(steps)


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
    sums: dict[str, np.ndarray] = {}
    steps = 0
    for weights in weights_per_step:
        steps += 1
        for name, value in weights.items():
            previous = sums.get(name, np.zeros(np.shape(value), np.float64))
            sums[name] = decay * previous + (1.0 - decay) * np.asarray(value, np.float64)
    correction = debiasing(decay, steps)
    return {name: value / correction for name, value in sums.items()}
