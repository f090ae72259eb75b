"""``PinnModel``: the network, the probe and the intensity scale behind the core's BackendModel.

Forward model (docs/physics.md §4-6), for a batch of groups::

    (A, phi) = network(X_n)                               (B, C, N/2, N/2) each
    O        = pad_to_full(A * exp(i * phi), N)           (B, C, N, N)
    O'       = enforce_overlap(O, offsets)                C = 1: O' = O
    A_hat    = |far_field(illuminate(O', P))|             predicted amplitude

Loss, pinn mode (``s`` = ``state.intensity_scale``, FIXED, for the observation;
``s_eff = s * exp(log_intensity_scale)`` when ``model.intensity_scale_trainable``, else
``s``, for the prediction)::

    y     = (s * X_n)**2                                  observed intensity, photons
    I_hat = (s_eff * A_hat)**2                            predicted intensity
    loss  = nll_weight * poisson_nll(I_hat, y)
          + mae_weight * mean(|s_eff * A_hat - s * X_n|)  (= amplitude_mae(A_hat, X_n, s)
                                                            when the scale is fixed)

Loss, supervised mode: ``amplitude_mae + phase_mae`` of
:func:`~ptychopinn_torch.layers.supervised_mae` between the network's pre-overlap
patches ``A * exp(i * phi)`` and the ground truth ``Y``, both cropped to the central
``N/2`` window (outside it the prediction is zero by construction).

The probe is a buffer, or a complex64 ``nn.Parameter`` when ``model.probe_trainable``
(then multiplied by the circular mask in the forward pass when ``state.probe_mask``, so
a trained probe stays inside it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ptychopinn_core.backends.contract import ForwardResult
from ptychopinn_core.config import Config, ExecutionConfig
from ptychopinn_core.model.parameters import parameter_specs
from ptychopinn_core.model.state import ModelState
from ptychopinn_core.physics.probe_model import circular_probe_mask
from ptychopinn_core.model.inputs import check_model_inputs, compute_dtypes
from ptychopinn_torch import layers
from ptychopinn_torch.inference import predict_patches
from ptychopinn_torch.network import PinnNetwork, _torch_name, canonical_weights, load_canonical_weights

__all__ = ["PinnModel", "select_device"]


def _configure_numerics() -> None:
    """Full float32 in matrix products and convolutions on GPUs: no TF32.

    TF32 keeps 10 mantissa bits; the 1e-5 forward-pass parity with the TensorFlow
    backend (design.md §7) needs float32's 23. These are process-wide torch flags.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def select_device(execution: ExecutionConfig) -> torch.device:
    """Torch device for ``execution.device``.

    ``"auto"``: the (current) CUDA GPU when torch sees one, else the CPU. ``"gpu"``: a
    CUDA GPU, an error without one. ``"cpu"``: the CPU, even when a GPU is present.

    Returns
    -------
    torch.device
    """
    device = execution.device
    if device == "cpu":
        return torch.device("cpu")
    if device == "gpu":
        if not torch.cuda.is_available():
            raise ValueError(
                "invalid execution.device: expected a CUDA GPU visible to torch for device='gpu', "
                "received none (torch.cuda.is_available() is False); use device 'cpu' or 'auto'"
            )
        return torch.device("cuda")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise ValueError(f"invalid execution.device: expected 'auto', 'cpu' or 'gpu', received device={device!r}")


class _PinnModule(nn.Module):
    """Every trainable tensor (network, probe, scale correction) and the forward physics."""

    def __init__(self, config: Config, state: ModelState) -> None:
        super().__init__()
        model_config = config.model
        self.size = model_config.pattern_size
        real_dtype, complex_dtype = compute_dtypes(config.execution.precision)
        self.real_dtype = _TORCH_DTYPES[real_dtype]
        self.network = PinnNetwork(model_config, dtype=self.real_dtype)
        probe = torch.from_numpy(np.array(state.probe, dtype=complex_dtype, copy=True))
        if model_config.probe_trainable:
            self.probe = nn.Parameter(probe)
        else:
            self.register_buffer("probe", probe)
        self.group_size = model_config.group_size
        self.overlap_rule = model_config.overlap_weights
        self.mask_probe = bool(model_config.probe_trainable and state.probe_mask)
        if self.mask_probe:
            mask = torch.from_numpy(circular_probe_mask(self.size, dtype=real_dtype))
            self.register_buffer("probe_mask", mask)

    def effective_probe(self) -> torch.Tensor:
        """The probe used in the forward model, complex64 (complex128 at precision "64"), (N, N)."""
        return self.probe * self.probe_mask if self.mask_probe else self.probe

    def scale_correction(self) -> torch.Tensor | None:
        """``exp(log_intensity_scale)`` or None when the scale is fixed."""
        log_scale = self.network.log_intensity_scale
        return None if log_scale is None else torch.exp(log_scale)

    def heads(self, diffraction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network amplitude and phase in the model's real dtype (B, C, N/2, N/2), even under autocast."""
        amplitude, phase = self.network(diffraction.to(self.real_dtype))
        return amplitude.to(self.real_dtype), phase.to(self.real_dtype)

    def patches_from_heads(self, amplitude: torch.Tensor, phase: torch.Tensor,
                           offsets_xy: torch.Tensor) -> torch.Tensor:
        """``enforce_overlap(pad_to_full(A * exp(i * phi), N), offsets)``, complex64."""
        with _no_autocast(amplitude.device):
            patches = layers.pad_to_full(layers.complex_combine(amplitude, phase), self.size)
            return layers.enforce_overlap(patches, offsets_xy, self.overlap_weights())

    def overlap_weights(self) -> torch.Tensor | None:
        """Merge weights of the overlap constraint: None (the window) or the probe's (physics.md §4)."""
        if self.group_size == 1 or self.overlap_rule == "window":
            return None
        return layers.probe_weights(self.effective_probe())

    def patches(self, diffraction: torch.Tensor, offsets_xy: torch.Tensor) -> torch.Tensor:
        """Object patches after the overlap constraint, complex64 (B, C, N, N)."""
        amplitude, phase = self.heads(diffraction)
        return self.patches_from_heads(amplitude, phase, offsets_xy)

    def forward(self, diffraction: torch.Tensor, offsets_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches (complex64) and predicted amplitude ``|F(O' P)|`` (float32), (B, C, N, N) each."""
        patches = self.patches(diffraction, offsets_xy)
        with _no_autocast(patches.device):
            amplitude = torch.abs(layers.far_field(layers.illuminate(patches, self.effective_probe())))
        return patches, amplitude


#: numpy compute dtype -> torch dtype.
_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _no_autocast(device: torch.device):
    """The physics runs in float32/complex64 whatever the precision of the network."""
    return torch.autocast(device_type=device.type, enabled=False)


class PinnModel:
    """The PyTorch :class:`~ptychopinn_core.backends.BackendModel`.

    Parameters
    ----------
    config : Config
        ``config.model`` fixes the architecture, ``config.training`` the loss,
        ``config.execution.device`` where the model lives.
    state : ModelState
        Probe, intensity scale ``s`` and normalisation.
    weights : Mapping[str, ndarray]
        Canonical weights (:func:`~ptychopinn_core.model.parameters.parameter_specs`).

    Attributes
    ----------
    config : Config
    module : torch.nn.Module
        Network, probe and scale correction (what training optimises).
    device : torch.device
        Where the model lives between calls.
    """

    def __init__(self, config: Config, state: ModelState, weights: Mapping[str, np.ndarray]) -> None:
        _configure_numerics()
        if state.pattern_size != config.model.pattern_size:
            raise ValueError(
                f"invalid state: expected a probe of {config.model.pattern_size} x {config.model.pattern_size} "
                f"(model.pattern_size), received probe.shape={state.probe.shape}"
            )
        self.config = config
        self.real_dtype, self.complex_dtype = compute_dtypes(config.execution.precision)
        self._state = state
        self._specs = parameter_specs(config.model)
        self.device = select_device(config.execution)
        self.module = _PinnModule(config, state)
        load_canonical_weights(self.module.network, weights)
        self.module.to(self.device)

    # -- weights and state ------------------------------------------------------------

    @property
    def state(self) -> ModelState:
        """The ModelState with the current (possibly trained) probe."""
        probe = self.module.effective_probe().detach().cpu().numpy()
        return ModelState(
            probe=probe,
            intensity_scale=self._state.intensity_scale,
            amplitude_normalisation=self._state.amplitude_normalisation,
            probe_mask=self._state.probe_mask,
        )

    @state.setter
    def state(self, state: ModelState) -> None:
        """A new probe (used masked when the model masks it); the scales are fixed at build time."""
        self._state.check_replacement(state)
        with torch.no_grad():
            probe = self.module.probe
            probe.copy_(torch.from_numpy(np.asarray(state.probe, dtype=np.complex128)).to(probe.dtype))
        self._state = state

    def get_weights(self) -> dict[str, np.ndarray]:
        """Canonical weights (HWIO kernels, float32), fresh copies."""
        return canonical_weights(self.module.network)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load canonical weights; ValueError naming the parameter if one does not fit."""
        load_canonical_weights(self.module.network, weights)

    # -- prediction ---------------------------------------------------------------------

    def _as_tensors(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked float32 tensors on the model's device.

        Raises
        ------
        ValueError
            ``diffraction`` is not ``(B, C, N, N)`` for this model or ``offsets_xy`` not
            ``(B, C, 2)``.
        """
        model = self.config.model
        diffraction, offsets_xy = check_model_inputs(
            diffraction, offsets_xy, model.pattern_size, model.group_size, self.real_dtype
        )
        device = self._module_device()
        return torch.from_numpy(diffraction.copy()).to(device), torch.from_numpy(offsets_xy.copy()).to(device)

    def predict(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        """Object patches after the overlap constraint, complex64 (B, C, N, N)."""
        return predict_patches(self, diffraction, offsets_xy)

    def forward(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> ForwardResult:
        """Patches and predicted amplitude ``|F(O' P)|``, (B, C, N, N): complex64 and float32
        (complex128 and float64 at precision "64")."""
        diffraction_t, offsets_t = self._as_tensors(diffraction, offsets_xy)
        with torch.inference_mode():
            patches, amplitude = self.module(diffraction_t, offsets_t)
        return ForwardResult(
            patches=np.array(patches.cpu().numpy(), dtype=self.complex_dtype, copy=True),
            amplitude=np.array(amplitude.cpu().numpy(), dtype=self.real_dtype, copy=True),
        )

    # -- training -----------------------------------------------------------------------

    def loss(self, diffraction: torch.Tensor, offsets_xy: torch.Tensor,
             truth: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of one batch (see the module docstring), a float32 scalar tensor.

        Parameters
        ----------
        diffraction : torch.Tensor, float32, shape (B, C, N, N)
            Normalised amplitudes ``X_n``.
        offsets_xy : torch.Tensor, float32, shape (B, C, 2)
        truth : torch.Tensor, complex64, shape (B, C, N, N), optional
            Ground-truth patches ``Y``; required in supervised mode.
        """
        training = self.config.training
        module = self.module
        # The loader's batches are float32/complex64 whatever the precision: compute in ours.
        diffraction, offsets_xy = diffraction.to(module.real_dtype), offsets_xy.to(module.real_dtype)
        if training.mode == "supervised":
            if truth is None:
                raise ValueError("supervised loss: expected ground-truth patches (truth), received None")
            amplitude, phase = module.heads(diffraction)
            size = self.config.model.pattern_size
            window = slice(size // 4, size // 4 + size // 2)
            with _no_autocast(amplitude.device):
                predicted = layers.complex_combine(amplitude, phase)
                truth = truth[..., window, window].to(predicted.dtype)
                amplitude_error, phase_error = layers.supervised_mae(predicted, truth)
                return amplitude_error + phase_error
        _, amplitude = module(diffraction, offsets_xy)
        with _no_autocast(amplitude.device):
            scale = self._state.intensity_scale
            correction = module.scale_correction()
            effective_scale = scale if correction is None else scale * correction
            predicted = effective_scale * amplitude  # sqrt(I_hat), sqrt-photons
            observed = scale * diffraction  # sqrt(y)
            total = torch.zeros((), dtype=amplitude.dtype, device=amplitude.device)
            if training.nll_weight:
                total = total + training.nll_weight * layers.poisson_nll(predicted**2, observed**2)
            if training.mae_weight:
                # == layers.amplitude_mae(amplitude, diffraction, s) when s_eff == s
                total = total + training.mae_weight * torch.mean(torch.abs(predicted - observed))
            return total

    def loss_and_gradients(self, diffraction: np.ndarray, offsets_xy: np.ndarray,
                           truth: np.ndarray | None = None) -> tuple[float, dict[str, np.ndarray]]:
        """Loss of one batch and its gradient with respect to every canonical parameter.

        Parameters
        ----------
        diffraction : ndarray, float32, shape (B, C, N, N)
        offsets_xy : ndarray, float32, shape (B, C, 2)
        truth : ndarray, complex64, shape (B, C, N, N), optional
            Supervised mode only.

        Returns
        -------
        (float, dict of str to ndarray)
            The loss and ``d loss / d parameter`` keyed by canonical name, in canonical
            layout (HWIO kernels), in the model's real dtype (float32; float64 at precision
            "64"). Parameters the loss does not reach get zeros.
        """
        diffraction_t, offsets_t = self._as_tensors(diffraction, offsets_xy)
        truth_t = None
        if truth is not None:
            truth_t = torch.from_numpy(np.array(truth, dtype=self.complex_dtype, copy=True)).to(diffraction_t.device)
        module = self.module
        module.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = self.loss(diffraction_t, offsets_t, truth_t)
            loss.backward()
        parameters = dict(module.network.named_parameters())
        gradients: dict[str, np.ndarray] = {}
        for spec in self._specs:
            parameter = parameters[_torch_name(spec.name)]
            gradient = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
            if spec.kind == "conv_kernel":
                gradient = gradient.permute(2, 3, 1, 0)
            gradients[spec.name] = np.array(gradient.detach().cpu().numpy(), dtype=self.real_dtype, copy=True, order="C")
        module.zero_grad(set_to_none=True)
        return float(loss.detach()), gradients

    def _module_device(self) -> torch.device:
        return self.module.probe.device
