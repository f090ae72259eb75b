"""Benchmark worker: measurements of ONE backend in this (fresh) process.

``bench/suite.py`` starts one such process per measurement, so a measurement's peak
memory is its own and one framework never counts against the other (``--quick`` runs a
backend's whole plan in one process). Run by hand::

    .venv/bin/python bench/measure_backend.py --backend pytorch --measure matmul
    .venv/bin/python bench/measure_backend.py --backend pytorch --measure inference --pattern-size 128 --gridsize 2
    .venv/bin/python bench/measure_backend.py --backend tensorflow --measure training --epochs 2
    .venv/bin/python bench/measure_backend.py --backend pytorch \
        --plan '[{"measure": "matmul"}, {"measure": "inference", "n_positions": 16}]'

Prints ONE line of JSON (the last line of stdout): the backend, its framework and
device, and ``records``, one per measurement (its :class:`Measurement` fields and
figures):

- ``matmul``: the framework's float32 matmul peak, ``2 n**3`` FLOPs of an ``n x n``
  product, best of several, on the device the model would use (TF32 off, as in the
  backends);
- ``inference``: ``BackendModel.predict`` (network and overlap constraint, no
  stitching) on a simulated scan, repeated after one warm-up call; patterns per second
  counts every pattern of every group (``C`` per group);
- ``training``: ``Backend.train`` for a few epochs; the first epoch (tracing,
  Lightning's start-up) is reported apart, the throughput is that of the later epochs,
  training patterns of an epoch (validation excluded) over its wall time (validation
  included).

Every record holds ``peak_rss_bytes`` (this process's peak so far, framework
included), ``setup_rss_bytes`` (inference and training: the peak before the measured
part, i.e. framework, data and model) and ``gpu_peak_bytes`` (peak during the
measurement; ``None`` on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass

from benchlib import peak_rss_bytes, timed_training

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
        best = float("inf")
        with torch.inference_mode():
            for _ in range(repeats + 1):  # the first call warms up (kernel choice, allocator)
                start = time.perf_counter()
                torch.matmul(a, b)
                if self.on_gpu:
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
        return best

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
            best = float("inf")
            for _ in range(repeats + 1):
                start = time.perf_counter()
                tf.reduce_sum(tf.linalg.matmul(a, b)).numpy()  # .numpy() waits for the result
                best = min(best, time.perf_counter() - start)
        return best

    def reset_gpu_peak(self) -> None:
        if self.on_gpu:
            self.tf.config.experimental.reset_memory_stats("GPU:0")

    def gpu_peak_bytes(self) -> int | None:
        return int(self.tf.config.experimental.get_memory_info("GPU:0")["peak"]) if self.on_gpu else None


#: Framework (``BackendInfo.framework``) to its measurement tools.
FRAMEWORK_TOOLS = {"torch": _TorchTools, "tensorflow": _TensorFlowTools}


MEASURES = ("matmul", "inference", "training")


@dataclass(frozen=True)
class Measurement:
    """One measurement and its sizes (JSON field names of ``--plan``)."""

    measure: str  # "matmul", "inference" or "training"
    pattern_size: int = 64  # N
    gridsize: int = 1
    n_filters_scale: int = 2
    n_positions: int = 128  # positions of the simulated scan (inference: one group each)
    batch_size: int = 16
    epochs: int = 2  # training; >= 2, the first is set apart
    seconds: float = 2.0  # inference: keep repeating predict for this long
    repeats: int = 2  # least number of timed calls (matmul: the best of them)
    matmul_size: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"invalid measure: expected one of {MEASURES}, received measure={self.measure!r}")


def _config(measurement: Measurement, device: str):
    from ptychopinn_core.config import Config

    return Config.from_dict({
        "model": {"pattern_size": measurement.pattern_size, "gridsize": measurement.gridsize,
                  "n_filters_scale": measurement.n_filters_scale},
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


def measure_inference(backend, tools, measurement: Measurement, device: str) -> dict:
    from ptychopinn_core.simulation import make_demo_scan
    from ptychopinn_core.inference_chunks import prepare_inference_inputs

    config = _config(measurement, device)
    scan = make_demo_scan(measurement.n_positions, measurement.pattern_size, seed=measurement.seed)
    model, state = _build(backend, config, scan, measurement.seed)
    channels = config.model.group_size
    (chunk,) = prepare_inference_inputs(scan, config, state, chunk_size=scan.n_positions * channels)
    setup_rss = peak_rss_bytes()
    model.predict(chunk.diffraction, chunk.offsets_xy)  # warm-up: tracing, kernel choice, allocator
    timings = []
    started = time.perf_counter()
    while len(timings) < measurement.repeats or (
        time.perf_counter() - started < measurement.seconds and len(timings) < 50
    ):
        start = time.perf_counter()
        model.predict(chunk.diffraction, chunk.offsets_xy)
        timings.append(time.perf_counter() - start)
    patterns = chunk.diffraction.shape[0] * channels
    return {
        "groups": int(chunk.diffraction.shape[0]),
        "patterns_per_call": patterns,
        "calls": len(timings),
        "seconds_per_call": sum(timings) / len(timings),
        "patterns_per_s": patterns * len(timings) / sum(timings),
        "best_patterns_per_s": patterns / min(timings),
        "setup_rss_bytes": setup_rss,
    }


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


#: The fields of a :class:`Measurement` a matmul uses (inference and training: all but matmul_size).
MATMUL_FIELDS = ("measure", "matmul_size", "repeats")
MEASURE_FUNCTIONS = {"matmul": measure_matmul, "inference": measure_inference, "training": measure_training}


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
        if measurement.measure == "matmul":
            record = {name: fields[name] for name in MATMUL_FIELDS}
        else:
            record = {name: value for name, value in fields.items() if name != "matmul_size"}
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
    for name in ("pattern_size", "gridsize", "n_filters_scale", "n_positions", "batch_size", "epochs", "seconds",
                 "repeats", "matmul_size", "seed"):
        default = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
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
