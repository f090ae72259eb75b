"""``PinnModel``: the TensorFlow :class:`~ptychopinn_core.backends.BackendModel`.

The model is the network (:class:`~ptychopinn_tf.network.PinnNetwork`) plus the
physics around it (docs/physics.md §3-6)::

    A, phi   = network(X_n)                               (B, C, N/2, N/2)
    O        = pad_to_full(A * exp(i phi), N)             (B, C, N, N)
    O'       = enforce_overlap(O, offsets)                (C = 1: O' = O)
    A_hat    = |far_field(illuminate(O', P))|
    s_eff    = s * exp(log_intensity_scale)   if model.intensity_scale_trainable, else s
    loss     = nll_weight * poisson_nll((s_eff A_hat)**2, (s X_n)**2)
             + mae_weight * mean(|s_eff A_hat - s X_n|)               (pinn)
    loss     = amplitude_mae + phase_mae of A exp(i phi) against the central
               N/2 x N/2 window of the ground truth Y                  (supervised)

``s`` is the FIXED ``state.intensity_scale`` for the observation; only the prediction
uses the trainable ``s_eff``. With a fixed scale the MAE term is exactly the core's
``amplitude_mae(A_hat, X_n, s)``.

The probe ``P`` is ``state.probe`` (complex64), held as two float32 variables (real
and imaginary part) so that a trainable probe is optimised like two real tensors, as
``torch.optim.Adam`` treats a complex parameter. With ``model.probe_trainable`` and
``model.probe_mask`` the probe used (and reported in :attr:`PinnModel.state`) is
``circular_probe_mask(N) * P``, so training cannot grow it outside the mask.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from ptychopinn_core.backends.contract import ForwardResult
from ptychopinn_core.config import Config, ExecutionConfig
from ptychopinn_core.model.state import ModelState
from ptychopinn_core.physics.probe_model import circular_probe_mask
from ptychopinn_core.model.inputs import check_model_inputs, compute_dtypes
from ptychopinn_tf import layers
from ptychopinn_tf.inference import predict_patches
from ptychopinn_tf.network import PinnNetwork, canonical_weights, load_canonical_weights

__all__ = ["PinnModel", "select_device"]


def select_device(execution: ExecutionConfig) -> str:
    """TensorFlow device name for ``execution.device``.

    ``"auto"``: the first GPU when TensorFlow sees one, else the CPU. ``"gpu"``: the
    first GPU, an error without one. ``"cpu"``: the CPU, even when a GPU is present
    (every variable and op of the model is placed there).

    Returns
    -------
    str
        ``"/CPU:0"`` or ``"/GPU:0"``.

    Raises
    ------
    ValueError
        ``execution.device == "gpu"`` but TensorFlow sees no GPU.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if execution.device == "cpu":
        return "/CPU:0"
    if execution.device == "gpu" and not gpus:
        raise ValueError(
            "invalid execution.device: expected a GPU visible to TensorFlow for device='gpu', "
            "received none (install tensorflow[and-cuda] or set execution.device='cpu')"
        )
    return "/GPU:0" if gpus else "/CPU:0"


class PinnModel:
    """Network + probe + intensity scale of one configuration (see the module docstring).

    Parameters
    ----------
    config : Config
        The model's configuration (``model``, ``training`` loss weights and mode,
        ``execution.device``).
    state : ModelState
        Probe (complex64 ``(N, N)``), intensity scale ``s``, normalisation.
    weights : mapping of str to ndarray
        Canonical weights (``parameter_specs(config.model)``).

    Notes
    -----
    Built inside a ``tf.distribute`` strategy scope, the variables are the strategy's
    (mirrored) and no device is forced; otherwise everything is placed on
    :func:`select_device`.
    """

    def __init__(self, config: Config, state: ModelState, weights: Mapping[str, np.ndarray]) -> None:
        if not isinstance(config, Config):
            raise TypeError(f"invalid config: expected a Config, received {type(config).__name__}")
        if not isinstance(state, ModelState):
            raise TypeError(f"invalid state: expected a ModelState, received {type(state).__name__}")
        size = config.model.pattern_size
        if state.pattern_size != size:
            raise ValueError(
                f"invalid probe: expected shape ({size}, {size}) for model.pattern_size={size}, "
                f"received state.probe.shape={state.probe.shape}"
            )
        # Exact float32 matrix products on GPUs (no TF32 rounding of conv inputs).
        tf.config.experimental.enable_tensor_float_32_execution(False)
        self.config = config
        self.real_dtype, self.complex_dtype = compute_dtypes(config.execution.precision)
        # The network's dtype in the training loop (training_loss): bfloat16 for "bf16-mixed".
        self.training_network_dtype = (
            tf.bfloat16 if config.execution.precision == "bf16-mixed" else tf.as_dtype(self.real_dtype)
        )
        self.pattern_size = size
        self.group_size = config.model.group_size
        self.device = None if tf.distribute.has_strategy() else select_device(config.execution)
        probe_trainable = config.model.probe_trainable
        with self.placement():
            self.network = PinnNetwork(config.model, dtype=tf.as_dtype(self.real_dtype))
            load_canonical_weights(self.network, weights)
            probe = np.asarray(state.probe, dtype=self.complex_dtype)
            self._probe_real = tf.Variable(probe.real, trainable=probe_trainable, name="probe_real")
            self._probe_imag = tf.Variable(probe.imag, trainable=probe_trainable, name="probe_imag")
            self._intensity_scale = tf.constant(state.intensity_scale, dtype=tf.as_dtype(self.real_dtype))
        mask = circular_probe_mask(size, dtype=self.real_dtype) if (probe_trainable and state.probe_mask) else None
        self._probe_mask = mask
        self._state = state
        self._forward_function = None
        self._prediction_function = None  # built by ptychopinn_tf.inference
        self._distinct_functions = None  # built by ptychopinn_tf.inference (shared group network)

    # -- placement and variables ----------------------------------------------------

    def placement(self) -> contextlib.AbstractContextManager:
        """Context that places ops and variables on the model's device."""
        return tf.device(self.device) if self.device else contextlib.nullcontext()

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        """Canonical parameters in spec order, then the probe's real and imaginary parts if trainable."""
        variables = list(self.network.variables_by_name.values())
        if self.config.model.probe_trainable:
            variables += [self._probe_real, self._probe_imag]
        return variables

    def get_weights(self) -> dict[str, np.ndarray]:
        """Canonical weights: float32 copies in the HWIO layout, in spec order."""
        return canonical_weights(self.network)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load canonical weights (ValueError naming the parameter if one does not fit)."""
        with self.placement():
            load_canonical_weights(self.network, weights)

    @property
    def state(self) -> ModelState:
        """The probe actually used and the scales; a trained probe when it is trainable."""
        if not self.config.model.probe_trainable:
            return self._state
        return dataclasses.replace(self._state, probe=self.probe().numpy())

    @state.setter
    def state(self, state: ModelState) -> None:
        """A new probe (used masked when the model masks it); the scales are fixed at build time."""
        self._state.check_replacement(state)
        probe = np.asarray(state.probe, dtype=self.complex_dtype)
        self._probe_real.assign(probe.real)
        self._probe_imag.assign(probe.imag)
        self._state = state

    # -- the function ----------------------------------------------------------------

    def probe(self) -> tf.Tensor:
        """The probe used, complex64 ``(N, N)`` (masked if trainable and masked)."""
        probe = tf.complex(self._probe_real, self._probe_imag)
        if self._probe_mask is not None:
            mask = tf.constant(self._probe_mask)
            probe = tf.complex(mask * tf.math.real(probe), mask * tf.math.imag(probe))
        return probe

    def intensity_scale(self) -> tf.Tensor:
        """``s_eff = s * exp(log_intensity_scale)`` (or ``s``), float32 scalar."""
        log_scale = self.network.log_intensity_scale
        if log_scale is None:
            return self._intensity_scale
        return self._intensity_scale * tf.exp(log_scale)

    def patches(self, diffraction: tf.Tensor, offsets_xy: tf.Tensor,
                network_dtype: tf.DType | None = None) -> tf.Tensor:
        """Object patches after the overlap constraint, complex64 (B, C, N, N) (differentiable).

        ``network_dtype``: the network's compute dtype (default: its own, float32); the
        physics stays in the model's dtypes.
        """
        amplitude, phase = self.network(diffraction, network_dtype)
        return self.patches_from_heads(amplitude, phase, offsets_xy)

    def patches_from_heads(self, amplitude: tf.Tensor, phase: tf.Tensor, offsets_xy: tf.Tensor) -> tf.Tensor:
        """``enforce_overlap(pad_to_full(A * exp(i * phi), N), offsets)``, complex64 (B, C, N, N)."""
        objects = layers.pad_to_full(layers.complex_combine(amplitude, phase), self.pattern_size)
        return layers.enforce_overlap(objects, offsets_xy, self.overlap_weights())

    def overlap_weights(self) -> tf.Tensor | None:
        """Merge weights of the overlap constraint: None (the window) or the probe's (physics.md §4)."""
        if self.group_size == 1 or self.config.model.overlap_weights == "window":
            return None
        return layers.probe_weights(self.probe())

    def forward_tensors(self, diffraction: tf.Tensor, offsets_xy: tf.Tensor,
                        network_dtype: tf.DType | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """``(patches complex64, A_hat float32)``, both (B, C, N, N) (differentiable)."""
        patches = self.patches(diffraction, offsets_xy, network_dtype)
        amplitude = tf.abs(layers.far_field(layers.illuminate(patches, self.probe())))
        return patches, amplitude

    def loss(self, diffraction: tf.Tensor, offsets_xy: tf.Tensor, truth: tf.Tensor | None = None) -> tf.Tensor:
        """The training loss of one batch (module docstring), float32 scalar, the network in float32.

        Parameters
        ----------
        diffraction : tf.Tensor, float32, (B, C, N, N)
            ``X_n``.
        offsets_xy : tf.Tensor, float32, (B, C, 2)
        truth : tf.Tensor, complex64, (B, C, N, N), optional
            Ground-truth patches ``Y``; required in supervised mode, ignored otherwise.
        """
        return self._loss(diffraction, offsets_xy, truth, None)

    def training_loss(self, diffraction: tf.Tensor, offsets_xy: tf.Tensor, truth: tf.Tensor | None = None) -> tf.Tensor:
        """:meth:`loss` with the network in the training precision (bfloat16 for "bf16-mixed")."""
        return self._loss(diffraction, offsets_xy, truth, self.training_network_dtype)

    def _loss(self, diffraction: tf.Tensor, offsets_xy: tf.Tensor, truth: tf.Tensor | None,
              network_dtype: tf.DType | None) -> tf.Tensor:
        training = self.config.training
        if training.mode == "supervised":
            if truth is None:
                raise ValueError("missing truth: training.mode='supervised' needs the ground-truth patches Y")
            amplitude, phase = self.network(diffraction, network_dtype)
            quarter, half = self.pattern_size // 4, self.pattern_size // 2
            window = tf.convert_to_tensor(truth)[..., quarter:quarter + half, quarter:quarter + half]
            amplitude_error, phase_error = layers.supervised_mae(layers.complex_combine(amplitude, phase), window)
            return amplitude_error + phase_error
        _, amplitude = self.forward_tensors(diffraction, offsets_xy, network_dtype)
        observed = self._intensity_scale * diffraction
        predicted = self.intensity_scale() * amplitude
        total = tf.constant(0.0, dtype=amplitude.dtype)
        if training.nll_weight:
            total += training.nll_weight * layers.poisson_nll(tf.square(predicted), tf.square(observed))
        if training.mae_weight:
            # == layers.amplitude_mae(amplitude, diffraction, s) when s_eff == s
            total += training.mae_weight * tf.reduce_mean(tf.abs(predicted - observed))
        return total

    # -- numpy interface (BackendModel) ----------------------------------------------

    def check_inputs(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the inputs in the model's real dtype after checking ``(B, C, N, N)`` and ``(B, C, 2)``."""
        diffraction, offsets_xy = check_model_inputs(
            diffraction, offsets_xy, self.pattern_size, self.group_size, self.real_dtype
        )
        return diffraction, offsets_xy

    def input_signature(self) -> list[tf.TensorSpec]:
        """Shape-polymorphic (any batch size) signature of ``(diffraction, offsets_xy)``."""
        size, channels = self.pattern_size, self.group_size
        return [
            tf.TensorSpec((None, channels, size, size), tf.as_dtype(self.real_dtype), name="diffraction"),
            tf.TensorSpec((None, channels, 2), tf.as_dtype(self.real_dtype), name="offsets_xy"),
        ]

    def predict(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        """Object patches after the overlap constraint, complex64 (B, C, N, N), no gradients."""
        return predict_patches(self, diffraction, offsets_xy)

    def forward(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> ForwardResult:
        """``ForwardResult(patches complex64, amplitude float32)``, (B, C, N, N) each, no gradients."""
        diffraction, offsets_xy = self.check_inputs(diffraction, offsets_xy)
        if self._forward_function is None:
            self._forward_function = tf.function(self.forward_tensors, input_signature=self.input_signature())
        with self.placement():
            patches, amplitude = self._forward_function(tf.constant(diffraction), tf.constant(offsets_xy))
        return ForwardResult(patches=patches.numpy(), amplitude=amplitude.numpy())

    def loss_and_gradients(
        self, diffraction: np.ndarray, offsets_xy: np.ndarray, truth: np.ndarray | None = None
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Loss of one batch and its gradient with respect to every canonical parameter.

        Returns
        -------
        loss : float
        gradients : dict of str to ndarray, the model's real dtype (float32; float64 at precision "64")
            Keyed by canonical name, canonical (HWIO) layout, in spec order; zeros for a
            parameter the loss does not depend on (e.g. ``log_intensity_scale`` in
            supervised mode).
        """
        diffraction, offsets_xy = self.check_inputs(diffraction, offsets_xy)
        truth_tensor = None if truth is None else tf.constant(np.asarray(truth, dtype=self.complex_dtype))
        variables = self.network.variables_by_name
        with self.placement():
            with tf.GradientTape() as tape:
                loss = self.loss(tf.constant(diffraction), tf.constant(offsets_xy), truth_tensor)
            gradients = tape.gradient(loss, list(variables.values()))
        return float(loss.numpy()), {
            name: (np.zeros(variable.shape, self.real_dtype) if gradient is None else gradient.numpy().astype(self.real_dtype))
            for (name, variable), gradient in zip(variables.items(), gradients)
        }
