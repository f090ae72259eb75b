"""Training losses (docs/physics.md, "Losses").

Every reduction is a plain mean over all elements of the batch (patterns, channels
and pixels alike); the constants and reductions here are part of the definition
both backends implement.
"""

from __future__ import annotations

import numpy as np

from ptychopinn_core.physics import forward

__all__ = ["POISSON_EPS", "poisson_nll", "amplitude_mae", "supervised_mae", "pinn_loss"]

#: Added to the predicted intensity inside the log of the Poisson NLL so that a
#: predicted zero (dark pixels, zero padding) gives a finite loss and gradient. In
#: photon units 1e-6 is far below one count, so it does not bias bright pixels.
POISSON_EPS = 1e-6


def _check_same_shape(predicted: np.ndarray, observed: np.ndarray, what: str) -> None:
    if predicted.shape != observed.shape:
        raise ValueError(
            f"invalid {what} shapes: expected equal shapes, received "
            f"predicted.shape={predicted.shape} and observed.shape={observed.shape}"
        )
    if predicted.size == 0:
        raise ValueError(f"invalid {what}: expected non-empty arrays, received shape {predicted.shape}")


def poisson_nll(predicted_intensity: np.ndarray, observed_intensity: np.ndarray) -> float:
    """Poisson negative log-likelihood per pixel, averaged over the batch.

    Equation: ``mean(I_hat - y * log(I_hat + eps))`` with ``eps = POISSON_EPS``.
    The full NLL also has ``+ lgamma(y + 1)``; it does not depend on the prediction,
    so it is dropped (the loss can therefore be negative).

    Parameters
    ----------
    predicted_intensity : ndarray, float, any shape
        ``I_hat = (s * A_hat)**2`` in photon units, >= 0.
    observed_intensity : ndarray, float, same shape
        ``y = (s * X_n)**2`` in photon units, >= 0.

    Returns
    -------
    float
    """
    predicted = np.asarray(predicted_intensity)
    observed = np.asarray(observed_intensity)
    _check_same_shape(predicted, observed, "intensity")
    return float(np.mean(predicted - observed * np.log(predicted + POISSON_EPS)))


def amplitude_mae(
    predicted_amplitude: np.ndarray, observed_amplitude: np.ndarray, intensity_scale: float
) -> float:
    """Mean absolute error of scaled amplitudes.

    Equation: ``mean(|s * A_hat - s * X_n|)`` (sqrt-photon units).

    Parameters
    ----------
    predicted_amplitude : ndarray, float, any shape
        ``A_hat = |F|``.
    observed_amplitude : ndarray, float, same shape
        Normalised measured amplitude ``X_n``.
    intensity_scale : float
        ``s``.

    Returns
    -------
    float
    """
    predicted = np.asarray(predicted_amplitude)
    observed = np.asarray(observed_amplitude)
    _check_same_shape(predicted, observed, "amplitude")
    return float(np.mean(np.abs(intensity_scale * predicted - intensity_scale * observed)))


def supervised_mae(pred_patches: np.ndarray, true_patches: np.ndarray) -> tuple[float, float]:
    """Amplitude and phase MAE of predicted object patches against ground truth.

    Equations::

        amplitude_mae = mean(| |O_hat| - |Y| |)
        phase_mae     = mean(| angle(O_hat * conj(Y)) |)

    The phase error is the wrapped difference in ``(-pi, pi]``, so phases that differ
    by ``2*pi`` agree. Where either patch is zero the phase error is ``angle(0) = 0``.

    Parameters
    ----------
    pred_patches : ndarray, complex, any shape (e.g. (B, C, N, N))
    true_patches : ndarray, complex, same shape

    Returns
    -------
    (float, float)
        ``(amplitude_mae, phase_mae)``; the phase in radians.
    """
    predicted = np.asarray(pred_patches)
    truth = np.asarray(true_patches)
    _check_same_shape(predicted, truth, "patch")
    amplitude_error = float(np.mean(np.abs(np.abs(predicted) - np.abs(truth))))
    product = predicted * np.conj(truth)
    # np.angle(-0.0 + 0j) is pi, not 0: define the error of an empty pixel explicitly.
    phase_error = float(np.mean(np.abs(np.where(product == 0, 0.0, np.angle(product)))))
    return amplitude_error, phase_error


def pinn_loss(
    predicted_amplitude: np.ndarray,
    observed_amplitude: np.ndarray,
    intensity_scale: float,
    nll_weight: float = 1.0,
    mae_weight: float = 0.0,
) -> float:
    """The unsupervised (PINN) training loss.

    Equation::

        loss = nll_weight * poisson_nll((s * A_hat)**2, (s * X_n)**2)
             + mae_weight * amplitude_mae(A_hat, X_n, s)

    Parameters
    ----------
    predicted_amplitude : ndarray, float, shape (B, C, N, N) or any
        ``A_hat = |F(O * P)|`` from :func:`~ptychopinn_core.physics.forward.predicted_amplitude`.
    observed_amplitude : ndarray, float, same shape
        Normalised measured amplitude ``X_n``.
    intensity_scale : float
        ``s`` (:func:`~ptychopinn_core.physics.normalization.intensity_scale`).
    nll_weight, mae_weight : float
        Non-negative weights (defaults 1 and 0).

    Returns
    -------
    float
    """
    for name, weight in (("nll_weight", nll_weight), ("mae_weight", mae_weight)):
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"invalid loss weight: expected a finite number >= 0, received {name}={weight}")
    predicted = np.asarray(predicted_amplitude)
    observed = np.asarray(observed_amplitude)
    _check_same_shape(predicted, observed, "amplitude")
    nll = poisson_nll(
        forward.predicted_intensity(predicted, intensity_scale),
        forward.predicted_intensity(observed, intensity_scale),
    )
    mae = amplitude_mae(predicted, observed, intensity_scale)
    return nll_weight * nll + mae_weight * mae
