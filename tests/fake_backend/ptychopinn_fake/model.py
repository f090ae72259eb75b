"""The fake backend's model: a constant-patch "network" trained by finite differences.

The model holds the FULL canonical weight list of ``parameter_specs(config.model)`` (so
get/set and bundle round trips are exact, as for a real backend) but predicts with two
parameters per network channel only, the head biases ``b_a = head_amplitude.bias`` and
``b_p = head_phase.bias`` (shape ``(c,)`` each: ``c = C`` for a joint group network, 1
for a shared one, whose one pair then serves every pattern)::

    A_c    = sigmoid(b_a[c])                       amplitude of channel c
    phi_c  = pi * tanh(b_p[c])                     phase of channel c
    O_c    = pad_to_full(A_c * exp(i * phi_c) * ones(N/2, N/2), N)
    O'     = enforce_overlap(O, offsets)           the core's overlap constraint
    A_hat  = |far_field(O' * P)|                   the core's forward model

It ignores its input: the least a model can be while still being trained through the
real physics. Training minimises the core's ``pinn_loss`` over the ``2 c`` head biases
with Adam; the gradient is a central finite difference in float64, so a few steps
really do lower the loss, around the core's epoch policy (schedule, early stopping, time
budget), as every backend's loop is. The other weights are held but not used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ptychopinn_core.backends import ForwardResult
from ptychopinn_core.model.parameters import effective_intensity_scale, parameter_specs, validate_weights
from ptychopinn_core.model.inputs import overlap_weights
from ptychopinn_core.model.state import History
from ptychopinn_core.physics import (
    amplitude_mae,
    enforce_overlap,
    far_field,
    illuminate,
    merge_patches,
    pad_to_full,
    pinn_loss,
    poisson_nll,
    translate,
)
from ptychopinn_core.model.inputs import check_model_inputs
from ptychopinn_core.training.averaging import decay_at
from ptychopinn_core.training.policy import EpochPolicy

__all__ = ["ConstantPatchModel", "NumpyPhysicsOps", "train"]

AMPLITUDE_BIAS = "head_amplitude.bias"
PHASE_BIAS = "head_phase.bias"
#: Central-difference step of the finite-difference gradient, in bias units: small
#: against the O(1) curvature scale of sigmoid/tanh, large against float64 rounding.
FINITE_DIFFERENCE_STEP = 1e-4


class NumpyPhysicsOps:
    """The fake's physics: the core's numpy reference evaluated in float32/complex64."""

    def translate(self, images: np.ndarray, shifts_xy: np.ndarray) -> np.ndarray:
        return translate(_single(images), np.asarray(shifts_xy, dtype=np.float32))

    def merge_patches(self, patches: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        return merge_patches(_single(patches), np.asarray(offsets_xy, dtype=np.float32))

    def enforce_overlap(self, patches: np.ndarray, offsets_xy: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        return enforce_overlap(_single(patches), np.asarray(offsets_xy, dtype=np.float32), weights)

    def illuminate(self, patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
        return illuminate(_single(patches), _single(probe))

    def far_field(self, psi: np.ndarray) -> np.ndarray:
        return far_field(_single(psi)).astype(np.complex64, copy=False)

    def poisson_nll(self, predicted_intensity: np.ndarray, observed_intensity: np.ndarray) -> float:
        return poisson_nll(_single(predicted_intensity), _single(observed_intensity))

    def amplitude_mae(
        self, predicted_amplitude: np.ndarray, observed_amplitude: np.ndarray, intensity_scale: float
    ) -> float:
        return amplitude_mae(_single(predicted_amplitude), _single(observed_amplitude), np.float32(intensity_scale))


def _single(values: np.ndarray) -> np.ndarray:
    """float32 or complex64 copy of ``values`` (the precision a framework would use)."""
    values = np.asarray(values)
    return values.astype(np.complex64 if values.dtype.kind == "c" else np.float32, copy=False)


class ConstantPatchModel:
    """The fake :class:`~ptychopinn_core.backends.BackendModel` (see the module docstring)."""

    def __init__(self, config, state, weights: Mapping[str, np.ndarray]) -> None:
        self.config = config
        self.state = state
        self._specs = parameter_specs(config.model)
        self._weights: dict[str, np.ndarray] = {}
        self.set_weights(weights)

    # -- weights --------------------------------------------------------------------

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self._weights.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        checked = validate_weights(weights, self._specs, "ConstantPatchModel.set_weights")
        self._weights = {name: np.array(value, dtype=np.float32, copy=True) for name, value in checked.items()}

    def head_biases(self) -> np.ndarray:
        """The trained parameters ``[b_a, b_p]``, float64, shape (2 c,)."""
        return np.concatenate([self._weights[AMPLITUDE_BIAS], self._weights[PHASE_BIAS]]).astype(np.float64)

    def set_head_biases(self, theta: np.ndarray) -> None:
        channels = self._weights[AMPLITUDE_BIAS].shape[0]
        self._weights[AMPLITUDE_BIAS] = np.asarray(theta[:channels], dtype=np.float32)
        self._weights[PHASE_BIAS] = np.asarray(theta[channels:], dtype=np.float32)

    # -- inference ------------------------------------------------------------------

    def predict(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        diffraction, offsets_xy = self._check_inputs(diffraction, offsets_xy)
        weights = overlap_weights(self.config.model, self.state.probe)
        return patches_from_biases(self.head_biases(), diffraction.shape, offsets_xy, weights).astype(np.complex64)

    def forward(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> ForwardResult:
        patches = self.predict(diffraction, offsets_xy)
        amplitude = np.abs(far_field(illuminate(patches, self.state.probe))).astype(np.float32)
        return ForwardResult(patches=patches, amplitude=amplitude)

    def loss_and_gradients(self, diffraction, offsets_xy, truth=None) -> tuple[float, dict[str, np.ndarray]]:
        """PINN loss and its central-difference gradient; only the head biases have one."""
        if self.config.training.mode != "pinn":
            raise ValueError(f"numpyfake supports training.mode='pinn' only, received {self.config.training.mode!r}")
        diffraction, offsets_xy = self._check_inputs(diffraction, offsets_xy)
        scale = effective_intensity_scale(self.state.intensity_scale, self.get_weights())
        training, probe = self.config.training, self.state.probe

        def loss_of(theta):
            return _batch_loss(theta, probe, diffraction, offsets_xy, scale, training, self.config.model)

        theta = self.head_biases()
        gradient = _gradient(theta, loss_of).astype(np.float32)
        gradients = {name: np.zeros_like(value) for name, value in self._weights.items()}
        channels = self._weights[AMPLITUDE_BIAS].shape[0]
        gradients[AMPLITUDE_BIAS], gradients[PHASE_BIAS] = gradient[:channels], gradient[channels:]
        return float(loss_of(theta)), gradients

    def _check_inputs(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = self.config.model
        diffraction, offsets_xy = check_model_inputs(diffraction, offsets_xy, model.pattern_size, model.group_size)
        return diffraction, offsets_xy


def patches_from_biases(
    theta: np.ndarray, shape: tuple[int, ...], offsets_xy: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Object patches ``(B, C, N, N)`` complex128 of the constant-patch rule.

    ``theta`` holds one (amplitude, phase) bias pair per network channel: ``C`` of them
    for a joint group network, one shared by every pattern for a shared one.
    """
    batch, channels, size, _ = shape
    heads = theta.size // 2
    amplitude = 1.0 / (1.0 + np.exp(-theta[:heads]))
    phase = math.pi * np.tanh(theta[heads:])
    values = (amplitude * np.exp(1j * phase))[None, :, None, None]
    head = np.broadcast_to(values, (batch, channels, size // 2, size // 2))
    return enforce_overlap(pad_to_full(head, size), np.asarray(offsets_xy, dtype=np.float64), weights)


def _batch_loss(theta, probe, diffraction, offsets_xy, intensity_scale, training, model_config) -> float:
    patches = patches_from_biases(theta, diffraction.shape, offsets_xy, overlap_weights(model_config, probe))
    amplitude = np.abs(far_field(illuminate(patches, probe.astype(np.complex128))))
    return pinn_loss(
        amplitude, diffraction.astype(np.float64), intensity_scale, training.nll_weight, training.mae_weight
    )


def _gradient(theta, loss_of) -> np.ndarray:
    gradient = np.empty_like(theta)
    for index in range(theta.size):
        step = np.zeros_like(theta)
        step[index] = FINITE_DIFFERENCE_STEP
        gradient[index] = (loss_of(theta + step) - loss_of(theta - step)) / (2 * FINITE_DIFFERENCE_STEP)
    return gradient


def train(model: ConstantPatchModel, data, config, progress) -> History:
    """Adam on the head biases over the core's batches, around the core's epoch policy."""
    training = config.training
    if training.mode != "pinn":
        raise ValueError(f"numpyfake supports training.mode='pinn' only, received {training.mode!r}")
    scale = effective_intensity_scale(model.state.intensity_scale, model.get_weights())
    probe = model.state.probe
    theta = model.head_biases()
    first_moment = np.zeros_like(theta)
    second_moment = np.zeros_like(theta)
    n_updates = 0
    policy = EpochPolicy(data, training, progress)

    def loss_on(group_ids, parameters):
        diffraction, offsets_xy = data.gather(group_ids)
        return _batch_loss(parameters, probe, diffraction, offsets_xy, scale, training, config.model)

    decay = training.ema_decay  # the weight average (ptychopinn_core.training.averaging)
    average = theta

    policy.start()
    for epoch in range(training.epochs):
        learning_rate = policy.begin_epoch(epoch)
        for step, group_ids in enumerate(data.epoch_batches(epoch), start=1):
            loss = loss_on(group_ids, theta)
            gradient = _gradient(theta, lambda parameters: loss_on(group_ids, parameters))
            n_updates += 1
            first_moment = training.adam_beta1 * first_moment + (1 - training.adam_beta1) * gradient
            second_moment = training.adam_beta2 * second_moment + (1 - training.adam_beta2) * gradient**2
            corrected_first = first_moment / (1 - training.adam_beta1**n_updates)
            corrected_second = second_moment / (1 - training.adam_beta2**n_updates)
            theta = theta - learning_rate * corrected_first / (np.sqrt(corrected_second) + training.adam_epsilon)
            delta = decay_at(decay, n_updates)  # 0 for decay 0: the average is then theta
            average = delta * average + (1 - delta) * theta
            model.set_head_biases(theta)
            policy.end_batch(step, loss, len(group_ids))
        scored = average
        model.set_head_biases(scored)  # the epoch's end sees the average
        val_loss = loss_on(data.validation_groups, scored) if len(data.validation_groups) else None
        if policy.end_epoch(val_loss):
            break
        model.set_head_biases(theta)
    return policy.history
