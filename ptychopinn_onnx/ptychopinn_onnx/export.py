"""The ONNX model file: the whole bundle in one ``.onnx`` that any ONNX runtime can run.

Entry point of the model format ``onnx`` (group ``ptychopinn.model_formats``,
:mod:`ptychopinn_core.model.formats`): :func:`write_model` and :func:`read_model`. The
graph is written with ``onnx.helper`` from the core's canonical description
(:func:`~ptychopinn_core.model.parameters.describe_architecture`), so exporting needs
no deep-learning framework.

The graph (:func:`build_model_proto`)
-------------------------------------
- Inputs: ``diffraction`` float32 ``(batch, C, N, N)`` (normalised amplitudes ``X_n``)
  and ``offsets_xy`` float32 ``(batch, C, 2)`` (group offsets in pixels; present, and
  unused, when ``C = 1``). ``batch`` is symbolic.
- Outputs: ``patches_real``, ``patches_imag`` ``(batch, C, N, N)``, the object patches
  after the overlap constraint, and ``amplitude`` ``(batch, C, N, N)``, the predicted
  diffraction amplitude ``|far_field(patches * P)|`` (docs/physics.md §3-6).
- Initializers: every canonical parameter under its canonical name
  (``encoder.0.conv0.kernel``, ...). Conv kernels are stored **OIHW** (ONNX's layout):
  the canonical HWIO kernel transposed by ``(3, 2, 0, 1)``; biases and
  ``log_intensity_scale`` (kept, though inference does not read it) as they are. The
  probe ``state.probe`` exactly, as ``probe_real`` and ``probe_imag``.

Metadata (``model.metadata_props``, JSON strings where structured)
------------------------------------------------------------------
``ptychopinn.format`` = ``"ptychopinn-onnx"``, ``ptychopinn.format_version`` = ``"1"``,
``ptychopinn.manifest`` (the bundle's manifest: the backend and framework stay those
that trained the model), ``ptychopinn.config``, ``ptychopinn.state``,
``ptychopinn.history`` and ``ptychopinn.bundle_sha256``
(:func:`~ptychopinn_core.model.bundle.bundle_digest` of config, weights and state), so
:func:`read_model` gives back the bundle bit for bit and notices a file edited since.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ptychopinn_core.atomic import atomic_write
from ptychopinn_core.config import Config, ConfigError, ModelConfig
from ptychopinn_core.model.bundle import BundleError, ModelBundle, bundle_digest, require_model_file
from ptychopinn_core.model.distinct import runs_patterns_alone
from ptychopinn_core.model.parameters import (
    ParameterSpec,
    describe_architecture,
    network_channels,
    parameter_specs,
    validate_weights,
)
from ptychopinn_core.model.state import PROBE_KEY, History, ModelState
from ptychopinn_core.physics.overlap import central_window_mask, probe_weights
from ptychopinn_core.physics.probe_model import circular_probe_mask
from ptychopinn_onnx import __version__, graph
from ptychopinn_onnx.graph import Complex, GraphBuilder

__all__ = [
    "MERGE_INPUTS",
    "FORMAT",
    "FORMAT_VERSION",
    "INPUTS",
    "METADATA_KEYS",
    "OUTPUTS",
    "SUFFIXES",
    "build_merge_proto",
    "build_model_proto",
    "build_network_proto",
    "bundle_proto",
    "effective_probe",
    "merge_weights",
    "read_model",
    "write_model",
]

#: Value of the metadata ``ptychopinn.format``: tells our files from other ONNX models.
FORMAT = "ptychopinn-onnx"
#: Layout version written here; readers refuse newer ones.
FORMAT_VERSION = "1"
#: File suffixes of this format.
SUFFIXES = (".onnx",)
#: Graph inputs and outputs, in order.
INPUTS = ("diffraction", "offsets_xy")
OUTPUTS = ("patches_real", "patches_imag", "amplitude")
#: Inputs of the in-memory graph of the physics after gathered heads (build_merge_proto).
MERGE_INPUTS = ("amplitude_head", "phase_head", "offsets_xy")
#: Initializers of the probe (``state.probe`` as stored, not masked).
PROBE_REAL, PROBE_IMAG = "probe_real", "probe_imag"
#: Metadata keys, in the order they are written.
METADATA_KEYS = tuple(
    f"ptychopinn.{key}" for key in ("format", "format_version", "manifest", "config", "state", "history",
                                    "bundle_sha256")
)
#: Canonical HWIO kernel -> ONNX OIHW, and back.
_TO_ONNX, _TO_CANONICAL = (3, 2, 0, 1), (2, 3, 1, 0)
_BATCH = "batch"
_DOC = (
    "PtychoPINN: far-field ptychography diffraction amplitudes (diffraction, offsets_xy) to object patches "
    "after the overlap constraint (patches_real, patches_imag) and their predicted diffraction amplitude "
    "(amplitude). Written by ptychopinn-onnx; metadata ptychopinn.* holds the whole model bundle."
)


# -- the model's probe and merge weights ------------------------------------------------


def effective_probe(config: Config, state: ModelState) -> np.ndarray:
    """The probe the forward model uses, complex64 ``(N, N)``: ``state.probe`` times the
    circular mask when the probe was trainable and masked (as the training backends'),
    else ``state.probe`` itself."""
    if config.model.probe_trainable and state.probe_mask:
        return (state.probe * circular_probe_mask(state.pattern_size, dtype=np.float32)).astype(np.complex64)
    return state.probe


def merge_weights(config: Config, probe: np.ndarray) -> np.ndarray:
    """Merge weights of the overlap constraint, float32 ``(N, N)`` (physics.md §4): the
    probe's (``model.overlap_weights = "probe"``) or the central window."""
    size = config.model.pattern_size
    if config.model.overlap_weights == "probe":
        return probe_weights(probe).astype(np.float32)
    return central_window_mask(size, dtype=np.float32)


# -- building -------------------------------------------------------------------------------


def _network(g: GraphBuilder, model_config: ModelConfig, diffraction: str) -> tuple[Complex, tuple[str, str]]:
    """The layers of ``describe_architecture`` in order.

    Returns the complex patches ``(B, C, N, N)`` and the heads' amplitude and phase
    ``(B, C, N/2, N/2)``. A shared group network (``c = 1 < C``) folds the group into the
    batch before the first layer, ``(B, C, N, N) -> (B*C, 1, N, N)``, and unfolds the
    heads' outputs.
    """
    size, group = model_config.pattern_size, model_config.group_size
    channels = network_channels(model_config)
    folded = channels != group
    source = diffraction
    if folded:
        source = g.op("Reshape", diffraction, g.ints(-1, channels, size, size), hint="fold_group")
    outputs: dict[str, Any] = {"diffraction": source}
    heads: list[str] = []
    layer: dict[str, Any] = {}
    for layer in describe_architecture(model_config):
        name, op = layer["name"], layer["op"]
        inputs = [outputs[source] for source in layer["inputs"]]
        if op.startswith("conv3x3_"):
            value = graph.conv3x3(g, inputs[0], f"{name}.kernel", f"{name}.bias", op.removeprefix("conv3x3_"), name)
        elif op == "maxpool2x2":
            value = graph.maxpool2x2(g, inputs[0], name)
        elif op == "upsample2x_nearest":
            value = graph.upsample2x(g, inputs[0], name)
        elif op == "concat":
            value = graph.concat(g, inputs, name)
        elif op == "space_to_depth2x":
            value = graph.space_to_depth2x(g, inputs[0], *layer["input_shape"], hint=name)
        elif op == "zero_pad":  # reads a head: unfold the group first
            head = inputs[0]
            if folded:
                head = g.op("Reshape", head, g.ints(-1, group, size // 2, size // 2), hint=f"{name}.unfold")
            heads.append(head)
            value = graph.pad_to_full(g, head, size, name)
        elif op == "complex_combine":
            value = graph.complex_combine(g, inputs[0], inputs[1], name)
        else:
            raise ValueError(
                f"unknown layer op {op!r} (layer {name!r}) in the core's describe_architecture: "
                f"ptychopinn-onnx {__version__} cannot write it; upgrade ptychopinn-onnx"
            )
        outputs[name] = value
    patches = outputs.get(layer.get("name"))
    if not isinstance(patches, tuple) or len(heads) != 2:
        raise ValueError("invalid architecture: expected two padded heads and a final complex_combine layer")
    return patches, (heads[0], heads[1])


def build_network_proto(model_config: ModelConfig, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The network alone: ``diffraction`` ``(batch, C, N, N)`` to the heads' ``amplitude_head``
    and ``phase_head`` ``(batch, C, N/2, N/2)`` (what the numpy oracle of the tests computes).

    Weights as :func:`build_model_proto`; no metadata. For checks of the network apart
    from the physics.
    """
    specs = parameter_specs(model_config)
    weights = validate_weights(weights, specs, "weights")
    size, group = model_config.pattern_size, model_config.group_size
    g = GraphBuilder()
    diffraction = g.add_input(INPUTS[0], [_BATCH, group, size, size])
    _add_weights(g, specs, weights)
    _, heads = _network(g, model_config, diffraction)
    for source, name in zip(heads, ("amplitude_head", "phase_head")):
        g.add_output(source, name, [_BATCH, group, size // 2, size // 2])
    return g.model("ptychopinn_network", doc_string="PtychoPINN network heads", producer_version=__version__)


def _add_weights(g: GraphBuilder, specs: Sequence[ParameterSpec], weights: Mapping[str, np.ndarray]) -> None:
    """Every canonical parameter as an initializer of its name; kernels HWIO -> OIHW."""
    for spec in specs:
        value = weights[spec.name]
        g.initializer(spec.name, value.transpose(_TO_ONNX) if spec.kind == "conv_kernel" else value)


def build_model_proto(config: Config, state: ModelState, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The ONNX model of ``config.model`` with ``weights`` and ``state`` (module docstring).

    Parameters
    ----------
    config : Config
        Any architecture, group network, amplitude activation, ``N`` and gridsize the core
        describes.
    state : ModelState
        Its probe is stored as ``probe_real``/``probe_imag``; the forward model uses
        :func:`effective_probe`, the overlap constraint :func:`merge_weights`.
    weights : Mapping[str, ndarray]
        Canonical weights (``parameter_specs(config.model)``, HWIO kernels, float32).
        Stored as initializers named by their canonical names; conv kernels transposed
        to OIHW (``kernel.transpose(3, 2, 0, 1)``).

    Returns
    -------
    onnx.ModelProto
        Opset 17, IR version 8; metadata ``ptychopinn.format``, ``ptychopinn.format_version``,
        ``ptychopinn.config`` and ``ptychopinn.state`` (:func:`bundle_proto` adds the rest).

    Raises
    ------
    ValueError
        Weights that do not match the config (naming the parameter), a probe of another size.
    """
    if not isinstance(config, Config):
        raise TypeError(f"invalid config: expected a Config, received {type(config).__name__}")
    if not isinstance(state, ModelState):
        raise TypeError(f"invalid state: expected a ModelState, received {type(state).__name__}")
    model_config = config.model
    size, group = model_config.pattern_size, model_config.group_size
    if state.pattern_size != size:
        raise ValueError(
            f"invalid state: expected a probe of {size} x {size} (model.pattern_size), "
            f"received probe.shape={state.probe.shape}"
        )
    specs = parameter_specs(model_config)
    weights = validate_weights(weights, specs, "weights")

    g = GraphBuilder()
    diffraction = g.add_input(INPUTS[0], [_BATCH, group, size, size])
    offsets = g.add_input(INPUTS[1], [_BATCH, group, 2])
    _add_weights(g, specs, weights)
    probe = (g.initializer(PROBE_REAL, state.probe.real.copy()), g.initializer(PROBE_IMAG, state.probe.imag.copy()))
    used_probe = effective_probe(config, state)

    patches, _ = _network(g, model_config, diffraction)
    if group > 1:
        weights_name = g.initializer("overlap_weights", merge_weights(config, used_probe))
        patches = graph.enforce_overlap(g, patches, offsets, weights_name, size, group)
    if used_probe is not state.probe:  # masked: multiply in the graph, keep the stored probe as given
        mask = g.constant(circular_probe_mask(size, dtype=np.float32), "circular_probe_mask")
        probe = tuple(g.op("Mul", part, mask, hint=f"{part}.masked") for part in probe)
    psi = graph.illuminate(g, patches, probe)
    amplitude = graph.complex_abs(g, graph.far_field(g, psi, size, size), "amplitude_value")
    shape = [_BATCH, group, size, size]
    for source, name in zip((*patches, amplitude), OUTPUTS):
        g.add_output(source, name, shape)

    model = g.model("ptychopinn", doc_string=_DOC, producer_version=__version__)
    _set_metadata(model, {
        "ptychopinn.format": FORMAT,
        "ptychopinn.format_version": FORMAT_VERSION,
        "ptychopinn.config": _json(config.to_dict()),
        "ptychopinn.state": _json(state.to_json()),
    })
    return model


def build_merge_proto(config: Config, state: ModelState) -> onnx.ModelProto:
    """The physics after the heads, for a shared group network at inference (in memory only).

    Inputs ``amplitude_head`` and ``phase_head`` ``(B, C, N/2, N/2)`` (the heads of each
    group's patterns, gathered from a chunk's distinct patterns, which the network of
    :func:`build_network_proto` at gridsize 1 runs once each: the same parameters,
    :mod:`ptychopinn_core.model.distinct`) and ``offsets_xy``; outputs ``patches_real``,
    ``patches_imag`` ``(B, C, N, N)``: pad, combine and the overlap constraint with the
    merge weights of :func:`build_model_proto`. Files hold the whole graph.
    """
    model_config = config.model
    if not runs_patterns_alone(model_config):
        raise ValueError("build_merge_proto: needs a shared group network with gridsize > 1 "
                         f"(model.group_network={model_config.group_network!r}, gridsize={model_config.gridsize})")
    size, group = model_config.pattern_size, model_config.group_size
    g = GraphBuilder()
    heads = [g.add_input(name, [_BATCH, group, size // 2, size // 2]) for name in MERGE_INPUTS[:2]]
    offsets = g.add_input(MERGE_INPUTS[2], [_BATCH, group, 2])
    padded = [graph.pad_to_full(g, head, size, f"{head}.pad") for head in heads]
    patches = graph.complex_combine(g, padded[0], padded[1], "patches")
    weights_name = g.initializer("overlap_weights", merge_weights(config, effective_probe(config, state)))
    patches = graph.enforce_overlap(g, patches, offsets, weights_name, size, group)
    for source, name in zip(patches, OUTPUTS[:2]):
        g.add_output(source, name, [_BATCH, group, size, size])
    return g.model("ptychopinn_merge", doc_string="PtychoPINN patches from gathered heads",
                   producer_version=__version__)


def bundle_proto(bundle: ModelBundle) -> onnx.ModelProto:
    """:func:`build_model_proto` of a bundle, with its manifest, history and digest in the metadata."""
    if not isinstance(bundle, ModelBundle):
        raise TypeError(f"invalid bundle: expected a ModelBundle, received {type(bundle).__name__}")
    model = build_model_proto(bundle.config, bundle.state, bundle.weights)
    values = {prop.key: prop.value for prop in model.metadata_props}
    values.update({
        "ptychopinn.manifest": _json(bundle.manifest),
        # A diverged loss is NaN; Python's json writes and reads it as the NaN token.
        "ptychopinn.history": _json(bundle.history.to_json(), allow_nan=True),
        "ptychopinn.bundle_sha256": bundle_digest(bundle),
    })
    _set_metadata(model, values)
    return model


def _json(values: Any, *, allow_nan: bool = False) -> str:
    return json.dumps(values, allow_nan=allow_nan)


def _set_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    """Replace the metadata with ``values`` in the order of :data:`METADATA_KEYS`."""
    del model.metadata_props[:]
    for key in METADATA_KEYS:
        if key in values:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, values[key]


# -- writing and reading ----------------------------------------------------------------


def write_model(path: str | os.PathLike[str], bundle: ModelBundle) -> Path:
    """Write ``bundle`` as an ONNX model to ``path``, atomically (temporary file, then rename).

    The same bundle always gives the same bytes. Returns ``path``.
    """
    data = bundle_proto(bundle).SerializeToString()  # before the file is touched
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return path


def _member(key: str) -> str:
    return f"metadata 'ptychopinn.{key}'"


def read_model(path: str | os.PathLike[str]) -> ModelBundle:
    """Read a file written by :func:`write_model` back as the bundle it was written from.

    Parsed with ``onnx.load`` (protobuf: nothing is unpickled, no external data files
    are followed). Weights come from the initializers (OIHW -> HWIO), the probe from
    ``probe_real``/``probe_imag``, the rest from the metadata; then the digest is
    recomputed and compared with the recorded one.

    Raises
    ------
    BundleError
        One per problem, naming the file and the metadata key or initializer: a missing,
        empty, truncated or non-ONNX file; an ONNX model that is not ours (no
        ``ptychopinn.format``); a newer format version; a missing key or bad JSON; weights
        or a probe that do not fit the config; a digest that does not match (the file was
        changed after export).
    """
    file, size = require_model_file(path, "an ONNX model")
    try:
        model = onnx.load(file, load_external_data=False)
    except OSError as error:
        raise BundleError(f"cannot read: {error.strerror or error}", file=file) from None
    except Exception as error:  # protobuf's DecodeError and onnx's own parse errors
        raise BundleError(
            f"not an ONNX model ({size} bytes): cannot parse it ({type(error).__name__}); "
            "truncated, damaged or another kind of file",
            file=file,
        ) from None
    return _Reader(model, file).bundle()


class _Reader:
    """Decodes one parsed model; every error names the file and the part."""

    def __init__(self, model: onnx.ModelProto, file: str) -> None:
        self.model = model
        self.file = file

    def error(self, problem: str, member: str | None = None) -> BundleError:
        return BundleError(problem, file=self.file, member=member)

    def metadata(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for prop in self.model.metadata_props:
            if prop.key in values:
                raise self.error(f"duplicate metadata key {prop.key!r}: the file is damaged or was edited")
            values[prop.key] = prop.value
        return values

    def value(self, metadata: Mapping[str, str], key: str) -> str:
        full = f"ptychopinn.{key}"
        if full not in metadata:
            raise self.error("missing metadata key (written by ptychopinn-onnx); the file is incomplete or was edited",
                             _member(key))
        return metadata[full]

    def json(self, metadata: Mapping[str, str], key: str, kind: type = dict) -> Any:
        text = self.value(metadata, key)
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise self.error(f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}",
                             _member(key)) from None
        if not isinstance(values, kind):
            raise self.error(f"invalid JSON: expected an object {{...}}, received {type(values).__name__}",
                             _member(key))
        return values

    def array(self, tensors: Mapping[str, onnx.TensorProto], name: str, shape: tuple[int, ...]) -> np.ndarray:
        tensor = tensors.get(name)
        member = f"initializer '{name}'"
        if tensor is None:
            raise self.error("missing initializer: the file does not hold this model's parameters", member)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise self.error("refused: data in an external file (this format keeps every array inside)", member)
        try:
            array = numpy_helper.to_array(tensor)
        except Exception as error:  # a malformed tensor: wrong byte count, unknown type
            raise self.error(f"invalid tensor data ({error})", member) from None
        if array.dtype != np.float32 or array.shape != shape:
            raise self.error(
                f"expected float32 of shape {shape}, received {array.dtype} of shape {array.shape}", member
            )
        return array

    def bundle(self) -> ModelBundle:
        metadata = self.metadata()
        name = metadata.get("ptychopinn.format")
        if name != FORMAT:
            producer = self.model.producer_name or "unknown"
            raise self.error(
                f"not a PtychoPINN ONNX model: expected metadata ptychopinn.format={FORMAT!r}, "
                f"received {name!r} (producer {producer!r})"
            )
        version = self.value(metadata, "format_version")
        if not version.isdigit() or int(version) < 1:
            raise self.error(f"invalid format version: expected an integer >= 1, received {version!r}",
                             _member("format_version"))
        if int(version) > int(FORMAT_VERSION):
            raise self.error(
                f"format version {version} is newer than this ptychopinn-onnx {__version__} can read (up to "
                f"version {FORMAT_VERSION}): upgrade it (pip install --upgrade ptychopinn-onnx)",
                _member("format_version"),
            )
        recorded = self.value(metadata, "bundle_sha256")
        manifest = self.json(metadata, "manifest")
        try:
            config = Config.from_dict(self.json(metadata, "config"), source="config")
        except ConfigError as error:
            raise self.error(f"invalid config: {str(error).removeprefix('config: ')}", _member("config")) from None
        state_values = self.json(metadata, "state")
        history_values = self.json(metadata, "history")

        tensors = {tensor.name: tensor for tensor in self.model.graph.initializer}
        specs = parameter_specs(config.model)
        weights = {}
        for spec in specs:
            onnx_shape = tuple(spec.shape[axis] for axis in _TO_ONNX) if spec.kind == "conv_kernel" else spec.shape
            value = self.array(tensors, spec.name, onnx_shape)
            weights[spec.name] = np.ascontiguousarray(value.transpose(_TO_CANONICAL)) if spec.kind == "conv_kernel" \
                else value
        try:
            weights = validate_weights(weights, specs, "weights")
        except ValueError as error:
            raise self.error(str(error).removeprefix("weights: "), "initializers") from None

        size = config.model.pattern_size
        probe = np.empty((size, size), dtype=np.complex64)
        probe.real = self.array(tensors, PROBE_REAL, (size, size))
        probe.imag = self.array(tensors, PROBE_IMAG, (size, size))
        try:
            state = ModelState.from_json(state_values, {PROBE_KEY: probe})
        except (ValueError, TypeError) as error:
            raise self.error(str(error), _member("state")) from None
        if state.probe_mask != config.model.probe_mask:
            raise self.error(
                f"probe_mask does not match the config: expected {config.model.probe_mask} (model.probe_mask), "
                f"received probe_mask={state.probe_mask}",
                _member("state"),
            )
        try:
            history = History.from_json(history_values)
        except (ValueError, TypeError) as error:
            raise self.error(str(error), _member("history")) from None
        try:
            bundle = ModelBundle(manifest=manifest, config=config, weights=weights, state=state, history=history)
        except (ValueError, TypeError) as error:
            raise self.error(str(error), _member("manifest")) from None

        computed = bundle_digest(bundle)
        if computed != recorded:
            raise self.error(
                f"digest mismatch: recorded sha256 {recorded[:16]}..., computed {computed[:16]}... from the "
                "file's config, weights and probe: the file was changed after it was written; export it again "
                "from the bundle",
                _member("bundle_sha256"),
            )
        return bundle
