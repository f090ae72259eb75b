"""Numpy reference of refinement: the loss, its analytic gradient and the Adam step rule.

The oracle both backends are tested against (docs/physics.md §10). The backends differentiate
the forward model with their own autodiff; here every gradient is written out by hand, so
agreement between the two is a real check of the definition, not of one framework against
itself. :class:`NumpyRefiner` also runs a whole refinement, so a backend without autodiff
(or a user without any framework) can still refine, slowly.
"""

from __future__ import annotations

import numpy as np

from ptychopinn_core.physics.forward import far_field
from ptychopinn_core.physics.losses import POISSON_EPS
from ptychopinn_core.physics.translate import _corners, extract_patches
from ptychopinn_core.refine.loop import SteppedRefiner
from ptychopinn_core.refine.problem import RefineProblem

__all__ = [
    "fitted_truth",
    "illumination",
    "ADAM_BETA1",
    "ADAM_BETA2",
    "ADAM_EPSILON",
    "AdamState",
    "NumpyRefiner",
    "adam_step",
    "loss_and_gradients",
    "scatter_patches",
]

#: Adam constants of refinement (physics.md §10); the step sizes come from ``[refine]``.
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
#: Relative: a fraction of the largest ``sqrt(v^)`` of the variable (see :func:`adam_step`).
ADAM_EPSILON = 1e-3


def scatter_patches(patch_gradients: np.ndarray, positions_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Adjoint of :func:`~ptychopinn_core.physics.translate.extract_patches`.

    Each patch pixel is added back to the (up to) four object pixels it was sampled from,
    with the same bilinear weights; samples that fell outside the object add nothing.

    Parameters
    ----------
    patch_gradients : ndarray, complex, shape (B, N, N)
    positions_px : ndarray, float, shape (B, 2)
        ``(x, y)`` in the object's pixels, as given to ``extract_patches``.
    shape : (H, W)
    """
    patch_gradients = np.asarray(patch_gradients)
    size = patch_gradients.shape[-1]
    real = np.finfo(patch_gradients.dtype).dtype
    offsets = np.arange(size) - size // 2
    positions = np.asarray(positions_px, dtype=np.float64).reshape((-1, 2))
    rows = positions[:, 1:2] + offsets[None, :]
    cols = positions[:, 0:1] + offsets[None, :]
    out = np.zeros(shape, dtype=patch_gradients.dtype)
    for r_idx, r_w in _corners(rows, shape[0], real):
        for c_idx, c_w in _corners(cols, shape[1], real):
            weights = r_w[:, :, None] * c_w[:, None, :]
            np.add.at(out, (r_idx[:, :, None], c_idx[:, None, :]), weights * patch_gradients)
    return out


def illumination(problem: RefineProblem, probe: np.ndarray) -> np.ndarray:
    """``sum_m |P|**2`` placed at every position: how much light each object pixel received."""
    intensity = np.abs(np.asarray(probe, dtype=np.complex128)) ** 2
    total = np.zeros(problem.object_shape, dtype=np.float64)
    for start in range(0, problem.n_positions, 256):
        positions = problem.positions_px[start : start + 256]
        stack = np.broadcast_to(intensity, (len(positions),) + intensity.shape).astype(np.complex128)
        total += scatter_patches(stack, positions, problem.object_shape).real
    return total


def fitted_truth(problem: RefineProblem, obj: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """``c * obj`` with the real ``c`` that fits its predicted amplitudes to the data best.

    A simulated truth is known up to the scale the normalisation gives the data
    (physics.md §7); scaled by ``c = sum A X_n / sum A**2`` (least squares of the amplitude
    loss) it is the refinement's minimiser up to the noise: what tests start from.
    """
    obj = np.asarray(obj, dtype=np.complex128)
    probe = np.asarray(probe, dtype=np.complex128)
    cross = power = 0.0
    for start in range(0, problem.n_positions, 256):
        indices = np.arange(start, min(start + 256, problem.n_positions))
        amplitude = np.abs(far_field(extract_patches(obj, problem.positions_px[indices], problem.pattern_size) * probe))
        observed = problem.observed(indices).astype(np.float64)
        cross += float(np.sum(amplitude * observed))
        power += float(np.sum(amplitude**2))
    if power <= 0:
        raise ValueError("invalid object: it predicts no diffraction at any position")
    return (cross / power * obj).astype(np.complex64)


def loss_and_gradients(
    obj: np.ndarray, probe: np.ndarray, problem: RefineProblem, indices: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The refinement loss of the positions ``indices`` and its gradients.

    Gradients follow the convention of real parameters pairs: ``dL/dRe + i dL/dIm``
    (the steepest-ascent direction in the complex plane; what PyTorch's autograd returns).

    Returns
    -------
    (float, ndarray, ndarray)
        ``L``, ``dL/dO`` of shape ``obj.shape`` and ``dL/dP`` of shape ``probe.shape``,
        in the dtype of ``obj``.
    """
    indices = np.asarray(indices)
    complex_dtype = np.result_type(obj, np.complex64)
    real_dtype = np.finfo(complex_dtype).dtype
    positions = problem.positions_px[indices]
    size = problem.pattern_size
    s = real_dtype.type(problem.intensity_scale)
    patches = extract_patches(obj.astype(complex_dtype, copy=False), positions, size)
    probe = probe.astype(complex_dtype, copy=False)
    wave = far_field(patches * probe)
    amplitude = np.abs(wave)
    observed = problem.observed(indices).astype(real_dtype)
    count = amplitude.size
    if problem.settings.loss == "poisson":
        predicted = (s * amplitude) ** 2
        measured = (s * observed) ** 2
        loss = np.mean(predicted - measured * np.log(predicted + real_dtype.type(POISSON_EPS)))
        d_amplitude = 2 * s * s * amplitude * (1 - measured / (predicted + real_dtype.type(POISSON_EPS)))
    else:
        residual = s * amplitude - s * observed
        loss = np.mean(residual**2)
        d_amplitude = 2 * s * residual
    d_amplitude = d_amplitude / real_dtype.type(count)
    # |F| -> F: the gradient points along F; where F = 0 it is 0 (both frameworks agree).
    phase = np.divide(wave, amplitude, out=np.zeros_like(wave), where=amplitude > 0)
    d_wave = d_amplitude * phase
    # F = fftshift(fft2(psi)) / N is unitary up to the factor: its adjoint is N * ifft2(ifftshift(.)).
    d_psi = size * np.fft.ifft2(np.fft.ifftshift(d_wave, axes=(-2, -1)), axes=(-2, -1)).astype(complex_dtype)
    d_patches = d_psi * np.conj(probe)
    d_probe = np.sum(d_psi * np.conj(patches), axis=0)
    d_obj = scatter_patches(d_patches, positions, obj.shape)
    return float(loss), d_obj.astype(complex_dtype), d_probe.astype(complex_dtype)


class AdamState:
    """First and second moments of one complex variable, per real component."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        real = np.finfo(dtype).dtype
        self.m = np.zeros(shape, dtype=dtype)
        self.v_re = np.zeros(shape, dtype=real)
        self.v_im = np.zeros(shape, dtype=real)
        self.steps = 0


def adam_step(value: np.ndarray, gradient: np.ndarray, state: AdamState, step_size: float) -> np.ndarray:
    """One Adam step with a relative epsilon; real and imaginary parts are separate parameters::

        t += 1
        m  = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g**2        (per real component)
        m^ = m / (1 - b1**t)              v^ = v / (1 - b2**t)
        d  = sqrt(v^) + eps * sqrt(max v^)                                 (max over the variable)
        value -= step_size * m^ / d       (0 where d = 0)

    Why a relative epsilon: plain Adam moves every pixel by about the step size whatever
    its gradient's size, so a pixel that the probe's faint tail barely touches moves as
    far as one in the beam, and gradients that are only rounding (1e-16 of the largest)
    are turned into full steps of either sign. ``eps`` relative to the largest gradient
    damps both, like the regularised denominator of rPIE, and keeps two frameworks'
    rounding from growing into different objects.
    """
    real = state.v_re.dtype.type
    state.steps += 1
    t = state.steps
    state.m = real(ADAM_BETA1) * state.m + real(1 - ADAM_BETA1) * gradient
    state.v_re = real(ADAM_BETA2) * state.v_re + real(1 - ADAM_BETA2) * gradient.real**2
    state.v_im = real(ADAM_BETA2) * state.v_im + real(1 - ADAM_BETA2) * gradient.imag**2
    correction1 = real(1 - ADAM_BETA1**t)
    root2 = real(np.sqrt(1 - ADAM_BETA2**t))
    root_re = np.sqrt(state.v_re) / root2
    root_im = np.sqrt(state.v_im) / root2
    floor = real(ADAM_EPSILON) * max(root_re.max(initial=0), root_im.max(initial=0))
    scale = real(step_size) / correction1
    step_re = np.divide(state.m.real, root_re + floor, out=np.zeros_like(root_re), where=root_re + floor > 0)
    step_im = np.divide(state.m.imag, root_im + floor, out=np.zeros_like(root_im), where=root_im + floor > 0)
    return (value - (scale * step_re + 1j * (scale * step_im))).astype(value.dtype)


class NumpyRefiner(SteppedRefiner):
    """Refinement in numpy: the reference every backend's refiner reproduces.

    Parameters
    ----------
    problem : RefineProblem
    precision : {"32", "64"}
        complex64 or complex128 throughout.
    """

    def __init__(self, problem: RefineProblem, precision: str = "32") -> None:
        self.problem = problem
        self.dtype = np.dtype(np.complex128 if precision == "64" else np.complex64)

    def loss_and_gradients(
        self, obj: np.ndarray, probe: np.ndarray, indices: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        return loss_and_gradients(obj.astype(self.dtype), probe.astype(self.dtype), self.problem, indices)

    def steps(self, obj: np.ndarray, probe: np.ndarray) -> _NumpySteps:
        return _NumpySteps(self, obj, probe)

class _NumpySteps:
    """The reference's variables and Adam states (:class:`~ptychopinn_core.refine.loop.Steps`)."""

    def __init__(self, refiner: NumpyRefiner, obj: np.ndarray, probe: np.ndarray) -> None:
        self.refiner = refiner
        self.obj = np.array(obj, dtype=refiner.dtype)
        self.probe = np.array(probe, dtype=refiner.dtype)
        self.object_state = AdamState(self.obj.shape, refiner.dtype)
        self.probe_state = AdamState(self.probe.shape, refiner.dtype)

    def step(self, indices: np.ndarray, object_step: float, probe_step: float | None) -> float:
        loss, d_obj, d_probe = self.refiner.loss_and_gradients(self.obj, self.probe, indices)
        self.obj = adam_step(self.obj, d_obj, self.object_state, object_step)
        if probe_step is not None:
            self.probe = adam_step(self.probe, d_probe, self.probe_state, probe_step)
        return loss

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.obj.copy(), self.probe.copy()
