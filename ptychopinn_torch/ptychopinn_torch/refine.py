"""Refinement in PyTorch: the object (and probe) fitted to the data through the physics layers.

The same definition as :mod:`ptychopinn_core.refine.reference` (docs/physics.md §10): patches
cut from the object by the bilinear rule of physics.md §2 (one gather of each position's
corner block, :class:`_PatchSampling`), the far field of :mod:`ptychopinn_torch.layers`,
the loss of ``[refine]``; autograd gives the gradients and the Adam rule is written out, so
it is the core's to the letter (``torch.optim.Adam`` would be close, not equal).
"""

from __future__ import annotations

import numpy as np
import torch

from ptychopinn_core.config import Config
from ptychopinn_core.physics.losses import POISSON_EPS
from ptychopinn_core.refine.loop import SteppedRefiner
from ptychopinn_core.refine.problem import RefineProblem
from ptychopinn_core.refine.reference import ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON
from ptychopinn_core.model.inputs import compute_dtypes
from ptychopinn_torch import layers
from ptychopinn_torch.model import select_device

__all__ = ["FrameworkRefiner"]

_COMPLEX = {np.dtype(np.complex64): torch.complex64, np.dtype(np.complex128): torch.complex128}


class _Adam:
    """Adam on a complex tensor, real and imaginary parts as separate parameters."""

    def __init__(self, like: torch.Tensor) -> None:
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(torch.view_as_real(like))
        self.steps = 0

    @torch.no_grad()
    def step(self, value: torch.Tensor, gradient: torch.Tensor, step_size: float) -> torch.Tensor:
        self.steps += 1
        t = self.steps
        self.m.mul_(ADAM_BETA1).add_(gradient, alpha=1 - ADAM_BETA1)
        self.v.mul_(ADAM_BETA2).add_(torch.view_as_real(gradient) ** 2, alpha=1 - ADAM_BETA2)
        root = self.v.sqrt() / float(np.sqrt(1 - ADAM_BETA2**t))
        denominator = root + ADAM_EPSILON * root.max()
        step = torch.where(denominator > 0, torch.view_as_real(self.m) / denominator, 0)
        return value - torch.view_as_complex((step_size / (1 - ADAM_BETA1**t)) * step)


class _PatchSampling:
    """``extract_patches`` of a large object as one flat gather of ``(N+1) x (N+1)`` blocks.

    :func:`~ptychopinn_torch.layers.sample_separable` gathers whole rows of the image first,
    fine for patches but ``W / N`` times the work on a wide object, and its advanced-index
    backward is a slow sorted scatter on CPU. Here each position's block of the four
    bilinear corners is gathered with ``index_select`` (backward: ``index_add``) and the
    corners are combined with the reference's weights, in the reference's order. Only the
    integer corner and the fractions of each position are kept; a batch's indices are made
    when it is used, so memory does not grow with ``M * N**2``.
    """

    def __init__(self, problem: RefineProblem, real_dtype: torch.dtype, device: torch.device) -> None:
        self.shape = problem.object_shape
        self.size = problem.pattern_size
        row0, col0, row_fraction, col_fraction = problem.patch_corners()
        real = np.float64 if real_dtype == torch.float64 else np.float32
        self._row0 = torch.from_numpy(row0).to(device)
        self._col0 = torch.from_numpy(col0).to(device)
        self._row_fraction = torch.from_numpy(row_fraction.astype(real)).to(device)
        self._col_fraction = torch.from_numpy(col_fraction.astype(real)).to(device)
        self._steps = torch.arange(self.size + 1, device=device)
        self.real_dtype = real_dtype
        self.device = device

    def patches(self, obj: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
        # In the real view (..., 2): real weights times complex values without promoting
        # every weight array to complex first.
        height, width = self.shape
        index = torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(self.device)
        rows = self._row0[index][:, None] + self._steps[None, :]
        cols = self._col0[index][:, None] + self._steps[None, :]
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
        flat = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
        values = torch.view_as_real(obj).reshape(-1, 2).index_select(0, flat.reshape(-1))
        blocks = values.reshape(flat.shape + (2,)) * inside[..., None].to(self.real_dtype)
        fr = self._row_fraction[index][:, None, None, None]
        fc = self._col_fraction[index][:, None, None, None]
        n = self.size
        out = ((1 - fr) * (1 - fc)) * blocks[:, :n, :n]
        out = out + ((1 - fr) * fc) * blocks[:, :n, 1:]
        out = out + (fr * (1 - fc)) * blocks[:, 1:, :n]
        out = out + (fr * fc) * blocks[:, 1:, 1:]
        return torch.view_as_complex(out.contiguous())


class FrameworkRefiner(SteppedRefiner):
    """The PyTorch implementation of :class:`~ptychopinn_core.backends.Refiner`."""

    def __init__(self, problem: RefineProblem, config: Config) -> None:
        self.problem = problem
        real, complex_ = compute_dtypes(config.execution.precision)
        self.real_dtype = torch.float64 if real == np.float64 else torch.float32
        self.complex_dtype = _COMPLEX[complex_]
        self.numpy_complex = complex_
        self.device = select_device(config.execution)
        self._sampling = _PatchSampling(problem, self.real_dtype, self.device)

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(values, dtype=self.numpy_complex, copy=True)).to(self.device)

    def _loss(self, obj: torch.Tensor, probe: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
        patches = self._sampling.patches(obj, indices)
        amplitude = torch.abs(layers.far_field(layers.illuminate(patches, probe)))
        observed = torch.from_numpy(self.problem.observed(indices)).to(self.device, self.real_dtype)
        s = self.problem.intensity_scale
        if self.problem.settings.loss == "poisson":
            predicted = (s * amplitude) ** 2
            measured = (s * observed) ** 2
            return torch.mean(predicted - measured * torch.log(predicted + POISSON_EPS))
        return torch.mean((s * amplitude - s * observed) ** 2)

    def _gradients(self, obj: torch.Tensor, probe: torch.Tensor, indices: np.ndarray):
        obj = obj.detach().requires_grad_(True)
        probe = probe.detach().requires_grad_(True)
        loss = self._loss(obj, probe, indices)
        d_obj, d_probe = torch.autograd.grad(loss, (obj, probe))
        return loss.detach(), d_obj, d_probe

    def loss_and_gradients(
        self, obj: np.ndarray, probe: np.ndarray, indices: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        loss, d_obj, d_probe = self._gradients(self._tensor(obj), self._tensor(probe), indices)
        return float(loss), d_obj.cpu().numpy().copy(), d_probe.cpu().numpy().copy()

    def steps(self, obj: np.ndarray, probe: np.ndarray) -> _Steps:
        return _Steps(self, obj, probe)

class _Steps:
    """Object, probe and their Adam states as tensors (:class:`~ptychopinn_core.refine.loop.Steps`)."""

    def __init__(self, refiner: FrameworkRefiner, obj: np.ndarray, probe: np.ndarray) -> None:
        self.refiner = refiner
        self.obj, self.probe = refiner._tensor(obj), refiner._tensor(probe)
        self.object_adam, self.probe_adam = _Adam(self.obj), _Adam(self.probe)

    def step(self, indices: np.ndarray, object_step: float, probe_step: float | None) -> float:
        loss, d_obj, d_probe = self.refiner._gradients(self.obj, self.probe, indices)
        self.obj = self.object_adam.step(self.obj, d_obj, object_step)
        if probe_step is not None:
            self.probe = self.probe_adam.step(self.probe, d_probe, probe_step)
        return float(loss)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        return self.obj.cpu().numpy().copy(), self.probe.cpu().numpy().copy()
