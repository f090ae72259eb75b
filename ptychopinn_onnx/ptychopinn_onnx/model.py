"""``OnnxModel``: a trained model run by ONNX Runtime, the core's BackendModel.

The model is the graph of :func:`ptychopinn_onnx.export.build_model_proto` (network,
overlap constraint, illumination and far field), built in memory from the canonical
weights and run on ONNX Runtime's CPU provider. It runs trained models only: there is no
loss or gradient (train with the TensorFlow or PyTorch backend, then run or export the
bundle here).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from ptychopinn_core.backends.contract import ForwardResult, inference_precision
from ptychopinn_core.config import Config
from ptychopinn_core.model.batching import MAX_INFERENCE_GROUPS
from ptychopinn_core.model.inputs import check_model_inputs
from ptychopinn_core.model.parameters import PARAMETER_DTYPE, parameter_specs, validate_weights
from ptychopinn_core.model.state import ModelState
from ptychopinn_core.model.distinct import distinct_patterns, runs_patterns_alone
from ptychopinn_onnx.export import (
    INPUTS,
    MERGE_INPUTS,
    OUTPUTS,
    build_merge_proto,
    build_model_proto,
    build_network_proto,
    effective_probe,
)

__all__ = ["MAX_BATCH_GROUPS", "BATCH_PIXELS", "OnnxModel", "batch_groups", "new_session"]

#: Most groups per session run: bounds the activations' memory (as TensorFlow's
#: PREDICT_BATCH). Smaller runs that stay near the caches (PyTorch's rule,
#: ptychopinn_core.model.batching) measured the same here (bench/predict_batch.py).
MAX_BATCH_GROUPS = MAX_INFERENCE_GROUPS
#: Pattern pixels per session run (256 patterns of 64 x 64): larger patterns or groups run
#: in fewer groups at a time, so memory stays about that of 256 patterns of 64 x 64 (a
#: few hundred MB of activations) whatever ``N`` and ``C``.
BATCH_PIXELS = 256 * 64 * 64

_MESSAGE_NO_TRAINING = (
    "backend 'onnx' runs trained models only (ONNX Runtime inference): it has no loss or gradients; "
    "train with `ptychopinn train --backend tensorflow|pytorch`, then run the bundle here"
)


def batch_groups(pattern_size: int, group_size: int) -> int:
    """Groups per session run: at most :data:`MAX_BATCH_GROUPS` and :data:`BATCH_PIXELS` pixels, at least 1."""
    return max(1, min(MAX_BATCH_GROUPS, BATCH_PIXELS // (group_size * pattern_size * pattern_size)))


def new_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """An ONNX Runtime session of ``model`` on the CPU provider, every graph optimisation on.

    Threads are left to ONNX Runtime (one per physical core). Warnings are not logged:
    the unused ``log_intensity_scale`` initializer (kept so that the file holds the whole
    bundle) would be reported at every build.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """The ONNX Runtime :class:`~ptychopinn_core.backends.BackendModel` (inference only).

    Parameters
    ----------
    config : Config
        ``config.model`` fixes the graph; ``execution.precision`` must be ``"32"`` and
        ``execution.device`` ``"cpu"`` (or ``"auto"``).
    state : ModelState
        Probe, intensity scale and normalisation.
    weights : Mapping[str, ndarray]
        Canonical weights (:func:`~ptychopinn_core.model.parameters.parameter_specs`).

    Attributes
    ----------
    config : Config
    """

    def __init__(self, config: Config, state: ModelState, weights: Mapping[str, np.ndarray]) -> None:
        execution = config.execution
        if inference_precision(execution.precision) != "32":
            raise ValueError(
                "invalid execution.precision: backend 'onnx' runs float32 only, "
                f"received precision={execution.precision!r}"
            )
        if execution.device not in ("cpu", "auto"):
            raise ValueError(
                f"invalid execution.device: backend 'onnx' runs on the CPU only, received device={execution.device!r}"
            )
        self.config = config
        self._specs = parameter_specs(config.model)
        self._weights = self._checked_copy(weights)
        self._state = state
        self._proto = build_model_proto(config, state, self._weights)  # checked now, run when first asked
        self._session: ort.InferenceSession | None = None
        # A shared group network's predict: the network at gridsize 1 (the same parameters)
        # on a chunk's distinct patterns, then the physics on the gathered heads; built at
        # the first predict.
        self._heads_session: ort.InferenceSession | None = None
        self._merge_session: ort.InferenceSession | None = None

    def _checked_copy(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        checked = validate_weights(weights, self._specs, "OnnxModel weights")
        return {name: np.array(value, dtype=PARAMETER_DTYPE, copy=True, order="C") for name, value in checked.items()}

    # -- weights and state ------------------------------------------------------------

    @property
    def state(self) -> ModelState:
        """The ModelState the model runs with; its probe is the one used (masked when the
        model masks a trainable probe, as the training backends report it)."""
        probe = effective_probe(self.config, self._state)
        if probe is self._state.probe:
            return self._state
        return ModelState(probe=probe, intensity_scale=self._state.intensity_scale,
                          amplitude_normalisation=self._state.amplitude_normalisation,
                          probe_mask=self._state.probe_mask)

    @state.setter
    def state(self, state: ModelState) -> None:
        """A new probe (the graph is rebuilt with it); the scales are fixed at build time."""
        self._state.check_replacement(state)
        self._proto, self._session = build_model_proto(self.config, state, self._weights), None
        self._merge_session = None  # its merge weights are the probe's
        self._state = state

    def get_weights(self) -> dict[str, np.ndarray]:
        """Canonical weights (HWIO kernels, float32), fresh copies."""
        return {name: value.copy() for name, value in self._weights.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load canonical weights and rebuild the graph; ValueError naming the parameter if
        one does not fit (nothing changes then)."""
        checked = self._checked_copy(weights)
        self._proto, self._session = build_model_proto(self.config, self._state, checked), None
        self._heads_session = None
        self._weights = checked

    # -- prediction ---------------------------------------------------------------------

    def _run(self, diffraction: np.ndarray, offsets_xy: np.ndarray, outputs: tuple[str, ...] = OUTPUTS
             ) -> list[np.ndarray]:
        """The graph's ``outputs`` (default all: ``patches_real, patches_imag, amplitude``) of
        checked inputs, in batches."""
        model = self.config.model
        diffraction, offsets_xy = check_model_inputs(diffraction, offsets_xy, model.pattern_size, model.group_size)
        diffraction = np.ascontiguousarray(diffraction)
        offsets_xy = np.ascontiguousarray(offsets_xy)
        step = batch_groups(model.pattern_size, model.group_size)
        parts = [
            self._whole_session().run(list(outputs), {"diffraction": diffraction[start:start + step],
                                              "offsets_xy": offsets_xy[start:start + step]})
            for start in range(0, diffraction.shape[0], step)
        ]
        if not parts:  # an empty chunk
            return [np.zeros(diffraction.shape, dtype=np.float32) for _ in outputs]
        return [np.concatenate(outputs) if len(parts) > 1 else outputs[0] for outputs in zip(*parts)]

    def predict(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        """Object patches after the overlap constraint, complex64 (B, C, N, N).

        Asks the session for the patches only, so the far field is not computed; a shared
        group network runs once per distinct pattern of the chunk (:meth:`_run_distinct`).
        """
        if runs_patterns_alone(self.config.model):
            real, imag = self._run_distinct(diffraction, offsets_xy)
        else:
            real, imag = self._run(diffraction, offsets_xy, OUTPUTS[:2])
        patches = np.empty(real.shape, dtype=np.complex64)
        patches.real, patches.imag = real, imag
        return patches

    def _whole_session(self) -> ort.InferenceSession:
        """The session of the whole graph (built at its first use: a shared group network's
        ``predict`` never needs it)."""
        if self._session is None:
            self._session = new_session(self._proto)
        return self._session

    def _run_distinct(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> list[np.ndarray]:
        """``patches_real, patches_imag`` of checked inputs: the network once per distinct
        pattern of the chunk (:func:`~ptychopinn_core.model.distinct.distinct_patterns`), its
        heads gathered into the groups, then the physics, each in bounded runs."""
        model = self.config.model
        size, group = model.pattern_size, model.group_size
        diffraction, offsets_xy = check_model_inputs(diffraction, offsets_xy, size, group)
        offsets_xy = np.ascontiguousarray(offsets_xy)
        if self._heads_session is None:
            single = model.model_copy(update={"gridsize": 1})  # a shared network's own parameters
            self._heads_session = new_session(build_network_proto(single, self._weights))
        if self._merge_session is None:
            self._merge_session = new_session(build_merge_proto(self.config, self._state))
        distinct = distinct_patterns(diffraction)
        patterns = distinct.patterns[:, None]
        step = batch_groups(size, 1)
        heads = [self._heads_session.run(list(MERGE_INPUTS[:2]), {INPUTS[0]: patterns[start:start + step]})
                 for start in range(0, patterns.shape[0], step)]
        if not heads:  # an empty chunk
            return [np.zeros(diffraction.shape, dtype=np.float32) for _ in range(2)]
        amplitude, phase = (np.concatenate(parts)[:, 0] for parts in zip(*heads))
        step = batch_groups(size, group)
        parts = []
        for start in range(0, diffraction.shape[0], step):
            index = distinct.index[start:start + step]
            feed = dict(zip(MERGE_INPUTS, (amplitude[index], phase[index], offsets_xy[start:start + step])))
            parts.append(self._merge_session.run(list(OUTPUTS[:2]), feed))
        return [np.concatenate(outputs) if len(parts) > 1 else outputs[0] for outputs in zip(*parts)]

    def forward(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> ForwardResult:
        """Patches (complex64) and predicted amplitude ``|F(O' P)|`` (float32), (B, C, N, N) each."""
        real, imag, amplitude = self._run(diffraction, offsets_xy)
        patches = np.empty(real.shape, dtype=np.complex64)
        patches.real, patches.imag = real, imag
        return ForwardResult(patches=patches, amplitude=np.array(amplitude, dtype=np.float32, copy=True))

    def loss_and_gradients(self, diffraction: np.ndarray, offsets_xy: np.ndarray,
                           truth: np.ndarray | None = None) -> tuple[float, dict[str, np.ndarray]]:
        """Not available: this backend runs trained models only (NotImplementedError)."""
        raise NotImplementedError(_MESSAGE_NO_TRAINING)
