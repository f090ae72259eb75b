"""Benchmark worker: measurements of ONE backend in this (fresh) process.

``bench/suite.py`` starts one such process per measurement, so a measurement's peak
memory is its own and one framework never counts against the other (``--quick`` runs a
backend's whole plan in one process). Run by hand::

    .venv/bin/python bench/measure_backend.py --backend pytorch --measure matmul
    .venv/bin/python bench/measure_backend.py --backend tensorflow --measure conv --conv-batch 8
    .venv/bin/python bench/measure_backend.py --backend pytorch --measure inference --pattern-size 128 --gridsize 2
    .venv/bin/python bench/measure_backend.py --backend tensorflow --measure training --epochs 2
    .venv/bin/python bench/measure_backend.py --backend onnx --measure reconstruct --pattern-size 64
    .venv/bin/python bench/measure_backend.py --backend pytorch \
        --plan '[{"measure": "matmul"}, {"measure": "inference", "n_positions": 16}]'

Prints ONE line of JSON (the last line of stdout): the backend, its framework and
device, and ``records``, one per measurement (its :class:`Measurement` fields and
figures):

- ``matmul``: the framework's float32 matmul peak, ``2 n**3`` FLOPs of an ``n x n``
  product, best of ``repeats`` after a warm-up, on the device the model would use (TF32
  off, as in the backends; ONNX Runtime: a one-node ``MatMul`` graph on its CPU provider);
- ``conv``: the framework's float32 peak on the network's own operation, a 3x3
  convolution (stride 1, 'same' padding, ``conv_batch`` images of ``conv_size**2``
  pixels, ``conv_in_channels`` to ``conv_out_channels``; ``2 * 9 * Cin * Cout * H * W * B``
  FLOPs), timed like ``matmul``, in the layout the backend uses (TensorFlow NHWC,
  PyTorch channels-last, ONNX Runtime a one-node ``Conv`` graph): the ceiling that
  matters for a network of 3x3 convolutions, where the matmul peak is a generic one;
- ``inference``: ``BackendModel.predict`` (network and overlap constraint, no
  stitching) on a simulated scan, repeated after one warm-up call; patterns per second
  counts every pattern of every group (``C`` per group);
- ``reconstruct``: :func:`ptychopinn_core.workflow.reconstruct` of a bundle on a scan
  (``Backend.build_model`` from the bundle, prediction in ``inference.chunk_size``
  chunks AND stitching: what ``ptychopinn reconstruct`` does after reading its files),
  repeated like ``inference``; patterns per second as there (every scan position seeds
  one group of ``C`` patterns); ``build_model_s`` is one more timed ``build_model``, to
  tell the model's construction from the rest;
- ``training``: ``Backend.train`` for a few epochs; the first epoch (tracing,
  Lightning's start-up) is reported apart, the throughput is that of the later epochs,
  training patterns of an epoch (validation excluded) over its wall time (validation
  included).

``inference`` and ``reconstruct`` simulate their scan and draw the seeded initial
weights, or, given ``bundle`` and ``scan`` (paths), run that bundle on that scan (so
several processes and backends run the very same model on the very same data;
``bench/inference.py`` does this); the bundle's model must then be the one the
measurement names (``pattern_size``, ``gridsize``, ``n_filters_scale``) and the scan
must hold ``n_positions`` positions.

Every record holds ``peak_rss_bytes`` (this process's peak so far, framework
included), ``setup_rss_bytes`` (inference, reconstruct and training: the peak before
the measured part, i.e. framework, data and model) and ``gpu_peak_bytes`` (peak during the
measurement; ``None`` on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, replace

from benchlib import best_time_s, peak_rss_bytes, timed_training

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _warm_best_s(function, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one untimed call (kernel choice, allocator, thread pool)."""
    function()
    return best_time_s(function, max(repeats, 1))


def conv_flops(batch: int, size: int, in_channels: int, out_channels: int) -> int:
    """FLOPs of a 3x3 'same' convolution (a multiply-add is 2), as :mod:`ptychopinn_core.model.flops` counts."""
    return 2 * 9 * in_channels * out_channels * size * size * batch


class _TorchTools:
    """The framework calls a measurement needs, for torch."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        use_gpu = device != "cpu" and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_gpu else "cpu")

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def matmul_seconds(self, size: int, repeats: int) -> float:
        torch = self.torch
        generator = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(size, size, generator=generator).to(self.device)
        b = torch.randn(size, size, generator=generator).to(self.device)
        return self._best_s(lambda: torch.matmul(a, b), repeats)

    def conv_seconds(self, batch: int, size: int, in_channels: int, out_channels: int, repeats: int) -> float:
        torch = self.torch
        torch.backends.cudnn.allow_tf32 = False  # as the backend does
        generator = torch.Generator(device="cpu").manual_seed(0)
        layout = {"device": self.device, "memory_format": torch.channels_last}  # the network's layout
        x = torch.randn(batch, in_channels, size, size, generator=generator).to(**layout)
        w = torch.randn(out_channels, in_channels, 3, 3, generator=generator).to(**layout)
        return self._best_s(lambda: torch.nn.functional.conv2d(x, w, padding=1), repeats)

    def _best_s(self, function, repeats: int) -> float:
        """:func:`_warm_best_s` of ``function`` without autograd, waiting for the GPU."""
        torch = self.torch

        def call() -> None:
            function()
            if self.on_gpu:
                torch.cuda.synchronize()

        with torch.inference_mode():
            return _warm_best_s(call, repeats)

    def reset_gpu_peak(self) -> None:
        if self.on_gpu:
            self.torch.cuda.reset_peak_memory_stats()

    def gpu_peak_bytes(self) -> int | None:
        return int(self.torch.cuda.max_memory_allocated()) if self.on_gpu else None


class _TensorFlowTools:
    """The framework calls a measurement needs, for TensorFlow."""

    def __init__(self, device: str) -> None:
        import tensorflow as tf

        self.tf = tf
        gpus = tf.config.list_logical_devices("GPU")
        self.device = "/GPU:0" if device != "cpu" and gpus else "/CPU:0"

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("/GPU")

    def matmul_seconds(self, size: int, repeats: int) -> float:
        tf = self.tf
        tf.config.experimental.enable_tensor_float_32_execution(False)  # as the backend does
        with tf.device(self.device):
            a = tf.random.stateless_normal((size, size), seed=(0, 0))
            b = tf.random.stateless_normal((size, size), seed=(0, 1))
            # .numpy() waits for the result; the sum costs ~1/size of the product
            return _warm_best_s(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)).numpy(), repeats)

    def conv_seconds(self, batch: int, size: int, in_channels: int, out_channels: int, repeats: int) -> float:
        tf = self.tf
        tf.config.experimental.enable_tensor_float_32_execution(False)  # as the backend does
        with tf.device(self.device):
            x = tf.random.stateless_normal((batch, size, size, in_channels), seed=(0, 0))  # NHWC, as the backend
            w = tf.random.stateless_normal((3, 3, in_channels, out_channels), seed=(0, 1))
            return _warm_best_s(lambda: tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME")).numpy(), repeats)

    def reset_gpu_peak(self) -> None:
        if self.on_gpu:
            self.tf.config.experimental.reset_memory_stats("GPU:0")

    def gpu_peak_bytes(self) -> int | None:
        return int(self.tf.config.experimental.get_memory_info("GPU:0")["peak"]) if self.on_gpu else None


class _OnnxRuntimeTools:
    """The framework calls a measurement needs, for ONNX Runtime (CPU provider only)."""

    def __init__(self, device: str) -> None:
        import onnx
        import onnxruntime

        self.onnx = onnx
        self.onnxruntime = onnxruntime

    @property
    def on_gpu(self) -> bool:
        return False  # the onnx backend runs on ONNX Runtime's CPU provider only

    def _session(self, graph):
        """A CPU-provider session of a one-node graph."""
        helper = self.onnx.helper
        # Opset 13 and IR version 8: read by every ONNX Runtime the backend accepts.
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        return self.onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def matmul_seconds(self, size: int, repeats: int) -> float:
        import numpy as np
        from onnx import TensorProto, helper

        tensor = helper.make_tensor_value_info
        session = self._session(helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
            [tensor("a", TensorProto.FLOAT, [size, size]), tensor("b", TensorProto.FLOAT, [size, size])],
            [tensor("c", TensorProto.FLOAT, [size, size])],
        ))
        generator = np.random.default_rng(0)
        feeds = {name: generator.standard_normal((size, size), dtype=np.float32) for name in ("a", "b")}
        return _warm_best_s(lambda: session.run(None, feeds), repeats)

    def conv_seconds(self, batch: int, size: int, in_channels: int, out_channels: int, repeats: int) -> float:
        import numpy as np
        from onnx import TensorProto, helper, numpy_helper

        generator = np.random.default_rng(0)
        weights = generator.standard_normal((out_channels, in_channels, 3, 3), dtype=np.float32)
        tensor = helper.make_tensor_value_info
        session = self._session(helper.make_graph(  # ONNX Conv is NCHW; the weights a constant, as in the backend
            [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])],
            "conv", [tensor("x", TensorProto.FLOAT, [batch, in_channels, size, size])],
            [tensor("y", TensorProto.FLOAT, [batch, out_channels, size, size])],
            initializer=[numpy_helper.from_array(weights, "w")],
        ))
        feeds = {"x": generator.standard_normal((batch, in_channels, size, size), dtype=np.float32)}
        return _warm_best_s(lambda: session.run(None, feeds), repeats)

    def reset_gpu_peak(self) -> None:
        pass

    def gpu_peak_bytes(self) -> int | None:
        return None


#: Framework (``BackendInfo.framework``) to its measurement tools.
FRAMEWORK_TOOLS = {"torch": _TorchTools, "tensorflow": _TensorFlowTools, "onnxruntime": _OnnxRuntimeTools}


MEASURES = ("matmul", "conv", "inference", "reconstruct", "training")


@dataclass(frozen=True)
class Measurement:
    """One measurement and its sizes (JSON field names of ``--plan``)."""

    measure: str  # one of MEASURES
    pattern_size: int = 64  # N
    gridsize: int = 1
    n_filters_scale: int = 2
    architecture: str = "encoder_decoder"  # model.architecture
    n_positions: int = 128  # positions of the simulated scan (inference, reconstruct: one group each)
    batch_size: int = 16
    epochs: int = 2  # training; >= 2, the first is set apart
    seconds: float = 2.0  # inference, reconstruct: keep repeating the call for this long
    repeats: int = 2  # least number of timed calls (matmul, conv: the best of them)
    matmul_size: int = 2048
    conv_batch: int = 32  # conv: B images ...
    conv_size: int = 64  # ... of H = W pixels ...
    conv_in_channels: int = 64  # ... from Cin ...
    conv_out_channels: int = 64  # ... to Cout channels
    seed: int = 0
    bundle: str | None = None  # inference, reconstruct: run this bundle (path) ...
    scan: str | None = None  # ... on this scan (path); both or neither

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"invalid measure: expected one of {MEASURES}, received measure={self.measure!r}")
        if (self.bundle is None) != (self.scan is None):
            raise ValueError(f"give both bundle and scan or neither, received bundle={self.bundle!r}, scan={self.scan!r}")


def _config(measurement: Measurement, device: str):
    from ptychopinn_core.config import Config

    return Config.from_dict({
        "model": {"pattern_size": measurement.pattern_size, "gridsize": measurement.gridsize,
                  "n_filters_scale": measurement.n_filters_scale, "architecture": measurement.architecture},
        "training": {"epochs": 10_000, "batch_size": measurement.batch_size, "early_stopping_patience": None,
                     "seed": measurement.seed},
        "execution": {"device": device},
    })


def _build(backend, config, scan, seed: int):
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.model.inputs import prepare_model_state

    state = prepare_model_state(scan, config)
    return backend.build_model(config, state, initial_weights(parameter_specs(config.model), seed)), state


def measure_matmul(backend, tools, measurement: Measurement, device: str) -> dict:
    size = measurement.matmul_size
    seconds = tools.matmul_seconds(size, measurement.repeats)
    return {"matmul_seconds": seconds, "gflops": 2 * size**3 / seconds / 1e9}


def measure_conv(backend, tools, measurement: Measurement, device: str) -> dict:
    shape = (measurement.conv_batch, measurement.conv_size, measurement.conv_in_channels,
             measurement.conv_out_channels)
    seconds = tools.conv_seconds(*shape, measurement.repeats)
    return {"conv_seconds": seconds, "conv_flops": conv_flops(*shape), "gflops": conv_flops(*shape) / seconds / 1e9}


def _bundle_and_scan(backend, measurement: Measurement, device: str):
    """The bundle and scan of an inference measurement: read from its files, or simulated and seeded."""
    from ptychopinn_core.data import read_scan
    from ptychopinn_core.model.bundle import ModelBundle, make_manifest, read_bundle
    from ptychopinn_core.model.inputs import prepare_model_state
    from ptychopinn_core.model.parameters import initial_weights, parameter_specs
    from ptychopinn_core.simulation import make_demo_scan

    if measurement.bundle is None:
        config = _config(measurement, device)
        scan = make_demo_scan(measurement.n_positions, measurement.pattern_size, seed=measurement.seed)
        manifest = make_manifest(mode=config.training.mode, backend=backend.name, framework=backend.info.framework,
                                 framework_version=backend.entry.framework_version or "unknown")
        return ModelBundle(manifest=manifest, config=config, state=prepare_model_state(scan, config),
                           weights=initial_weights(parameter_specs(config.model), measurement.seed)), scan
    bundle, scan = read_bundle(measurement.bundle), read_scan(measurement.scan)
    model = bundle.config.model
    found = (model.pattern_size, model.gridsize, model.n_filters_scale, model.architecture, scan.n_positions)
    expected = (measurement.pattern_size, measurement.gridsize, measurement.n_filters_scale, measurement.architecture,
                measurement.n_positions)
    if found != expected:
        raise ValueError(f"bundle {measurement.bundle} and scan {measurement.scan}: (pattern_size, gridsize, "
                         f"n_filters_scale, architecture, n_positions) = {found}, the measurement names {expected}")
    config = bundle.config.with_overrides({"execution.device": device})
    return replace(bundle, config=config), scan


def _timed_calls(function, measurement: Measurement) -> list[float]:
    """Wall times of ``function()``: one untimed warm-up call, then at least ``repeats`` calls,
    more while under ``seconds`` (at most 50)."""
    function()  # warm-up: tracing, kernel choice, allocator
    timings = []
    started = time.perf_counter()
    while len(timings) < measurement.repeats or (
        time.perf_counter() - started < measurement.seconds and len(timings) < 50
    ):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return timings


def _throughput(timings: list[float], patterns: int) -> dict:
    return {
        "patterns_per_call": patterns,
        "calls": len(timings),
        "seconds_per_call": sum(timings) / len(timings),
        "patterns_per_s": patterns * len(timings) / sum(timings),
        "best_patterns_per_s": patterns / min(timings),
    }


def measure_inference(backend, tools, measurement: Measurement, device: str) -> dict:
    from ptychopinn_core.inference_chunks import prepare_inference_inputs

    bundle, scan = _bundle_and_scan(backend, measurement, device)
    config = bundle.config
    model = backend.build_model(config, bundle.state, bundle.weights)
    channels = config.model.group_size
    (chunk,) = prepare_inference_inputs(scan, config, bundle.state, chunk_size=scan.n_positions * channels)
    setup_rss = peak_rss_bytes()
    timings = _timed_calls(lambda: model.predict(chunk.diffraction, chunk.offsets_xy), measurement)
    groups = int(chunk.diffraction.shape[0])
    return {"groups": groups, **_throughput(timings, groups * channels), "setup_rss_bytes": setup_rss}


def measure_reconstruct(backend, tools, measurement: Measurement, device: str) -> dict:
    from ptychopinn_core.workflow import reconstruct

    bundle, scan = _bundle_and_scan(backend, measurement, device)
    setup_rss = peak_rss_bytes()
    shapes = []
    timings = _timed_calls(lambda: shapes.append(reconstruct(bundle, scan, backend).object.shape), measurement)
    start = time.perf_counter()
    backend.build_model(bundle.config, bundle.state, bundle.weights)
    build_seconds = time.perf_counter() - start
    groups = scan.n_positions  # every position seeds one group
    throughput = _throughput(timings, groups * bundle.config.model.group_size)
    return {"groups": groups, **throughput, "positions_per_s": groups * len(timings) / sum(timings),
            "chunk_size": bundle.config.inference.chunk_size, "object_shape": list(shapes[-1]),
            "build_model_s": build_seconds, "setup_rss_bytes": setup_rss}


def measure_training(backend, tools, measurement: Measurement, device: str) -> dict:
    from ptychopinn_core.simulation import make_demo_scan
    from ptychopinn_core.training.data import prepare_training_data

    config = _config(measurement, device)
    scan = make_demo_scan(measurement.n_positions, measurement.pattern_size, seed=measurement.seed)
    data = prepare_training_data(scan, config)
    model, _ = _build(backend, config, scan, measurement.seed)
    setup_rss = peak_rss_bytes()
    epochs = timed_training(backend, model, data, config, epochs=max(measurement.epochs, 2))
    later = [epoch["seconds"] for epoch in epochs[1:]]
    seconds_per_epoch = sum(later) / len(later)
    patterns_per_epoch = data.n_train * config.model.group_size
    return {
        "train_groups": data.n_train,
        "validation_groups": data.n_validation,
        "batch_size": measurement.batch_size,
        "epochs": len(epochs),
        "first_epoch_s": epochs[0]["seconds"],
        "seconds_per_epoch": seconds_per_epoch,
        "patterns_per_epoch": patterns_per_epoch,
        "patterns_per_s": patterns_per_epoch / seconds_per_epoch,
        "final_train_loss": epochs[-1]["train_loss"],
        "setup_rss_bytes": setup_rss,
    }


#: The fields of a :class:`Measurement` a peak uses (the model measurements: all but the peaks' own).
PEAK_FIELDS = {
    "matmul": ("measure", "matmul_size", "repeats"),
    "conv": ("measure", "conv_batch", "conv_size", "conv_in_channels", "conv_out_channels", "repeats"),
}
MEASURE_FUNCTIONS = {"matmul": measure_matmul, "conv": measure_conv, "inference": measure_inference,
                     "reconstruct": measure_reconstruct, "training": measure_training}


def run_plan(backend_name: str, device: str, plan: list[Measurement]) -> dict:
    """Run ``plan`` in order in this process; the backend's description and one record each.

    ``peak_rss_bytes`` of a record is this process's peak so far: the measurement's own
    peak only for the first one after the framework's import (one measurement per process).
    """
    from ptychopinn_core.backends import BackendRegistry

    backend = BackendRegistry.discover().get(backend_name)
    framework = backend.info.framework
    if framework not in FRAMEWORK_TOOLS:
        raise SystemExit(f"bench: no measurement tools for framework {framework!r} of backend {backend.name!r}")
    tools = FRAMEWORK_TOOLS[framework](device)
    records = []
    for measurement in plan:
        tools.reset_gpu_peak()
        fields = asdict(measurement)
        if measurement.measure in PEAK_FIELDS:
            record = {name: fields[name] for name in PEAK_FIELDS[measurement.measure]}
        else:
            peak_only = {name for names in PEAK_FIELDS.values() for name in names} - {"measure", "repeats"}
            record = {name: value for name, value in fields.items()
                      if name not in peak_only and not (name in ("bundle", "scan") and value is None)}
        record.update(MEASURE_FUNCTIONS[measurement.measure](backend, tools, measurement, device))
        record.update({"peak_rss_bytes": peak_rss_bytes(), "gpu_peak_bytes": tools.gpu_peak_bytes()})
        records.append(record)
    return {"backend": backend.name, "framework": framework, "framework_version": backend.entry.framework_version,
            "device": "gpu" if tools.on_gpu else "cpu", "devices": backend.devices(), "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True, help="backend name (tensorflow, pytorch, ...)")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--plan", help="JSON list of measurements (Measurement fields), run in order")
    parser.add_argument("--measure", choices=MEASURES, help="one measurement (instead of --plan)")
    defaults = Measurement("matmul")
    for name in ("pattern_size", "gridsize", "n_filters_scale", "architecture", "n_positions", "batch_size", "epochs",
                 "seconds",
                 "repeats", "matmul_size", "conv_batch", "conv_size", "conv_in_channels", "conv_out_channels", "seed"):
        default = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--bundle", help="inference, reconstruct: run this bundle (with --scan)")
    parser.add_argument("--scan", help="inference, reconstruct: on this scan (with --bundle)")
    args = parser.parse_args()
    if (args.plan is None) == (args.measure is None):
        parser.error("give either --measure or --plan")
    if args.plan is not None:
        plan = [Measurement(**fields) for fields in json.loads(args.plan)]
    else:
        plan = [Measurement(**{name: value for name, value in vars(args).items()
                               if name not in ("backend", "device", "plan")})]
    print(json.dumps(run_plan(args.backend, args.device, plan), default=float))


if __name__ == "__main__":
    main()
