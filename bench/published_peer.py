"""The published PtychoPINN (TensorFlow, hoidn/PtychoPINN) as a peer in our benchmarks.

Runs under the published code's own interpreter (its venv, never ours) and imports its
modules from ``--source`` at run time; nothing of it is copied here. It reads OUR
canonical scans (numpy only: this file must not import ``ptychopinn_core``), so the peer
and our backends time the very same scan. Two commands::

    PEER=/path/to/peer   # holds venv-tf/ and PtychoPINN/ (docs/benchmarks.md, "PyTorch speed")
    $PEER/venv-tf/bin/python bench/published_peer.py train --source $PEER/PtychoPINN \\
        --scan train.npz --gridsize 1 --out $PEER/models/g1
    $PEER/venv-tf/bin/python bench/published_peer.py measure --source $PEER/PtychoPINN \\
        --model $PEER/models/g1 --scan scan.npz --seconds 2 --calls 2

``train`` runs its own training script (``scripts/training/train.py``, its defaults: the
network at its default width, about 2.33 M parameters) for ``--epochs`` on the scan, to
have a model to time; the weights do not change the timing. ``measure`` loads the model
once, as its ``scripts/inference/inference.py`` does, then times, each after one untimed
call and repeated for at least ``--calls`` calls and ``--seconds``:

- **predict**: ``diffraction_to_obj.predict([X * intensity_scale, local_offsets])`` on
  the prepared inputs, the call its ``nbutils.reconstruct_image`` makes;
- **reconstruct**: its whole inference path after reading the file: grouping
  (``generate_grouped_data``, K = 4) and ``loader.load``, that predict call, and
  stitching (``tf_helper.reassemble_position``, M = 20), the magnitude and phase.

It prints ONE line of JSON, shaped as a case of ``bench/inference.py`` (``predict`` and
``reconstruct`` with ``patterns_per_s``, ``calls``, ``seconds_per_call``;
``build_model_s``: the model's load; peak memories), plus ``n_parameters``,
``n_filters_scale``, ``gridsize``, ``N`` as the peer reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def published_npz(scan: Path, out: Path) -> int:
    """Our canonical scan in the published loader's keys; the number of positions.

    The diffraction is the same amplitude (sqrt of counts, DC centred) and the
    coordinates the same probe centres in object pixels; the published loader also wants
    ``xcoords_start`` / ``ycoords_start`` (the same values for a simulated scan).
    """
    import numpy as np

    with np.load(scan, allow_pickle=False) as data:
        arrays = {key: data[key] for key in ("diffraction", "xcoords", "ycoords", "probeGuess") if key in data}
        if "objectGuess" in data:
            arrays["objectGuess"] = data["objectGuess"]
    missing = {"diffraction", "xcoords", "ycoords", "probeGuess"} - set(arrays)
    if missing:
        raise SystemExit(f"{scan}: not a canonical scan, missing {sorted(missing)}")
    arrays["xcoords"] = arrays["xcoords"].astype(np.float64)
    arrays["ycoords"] = arrays["ycoords"].astype(np.float64)
    arrays["xcoords_start"] = arrays["xcoords"].copy()
    arrays["ycoords_start"] = arrays["ycoords"].copy()
    np.savez(out, **arrays)
    return int(arrays["xcoords"].shape[0])


def train(args: argparse.Namespace) -> dict:
    """The published training script on our scan: a model folder to time."""
    with tempfile.TemporaryDirectory(prefix="published-peer-") as temporary:
        data = Path(temporary) / "train.npz"
        n_positions = published_npz(args.scan, data)
        command = [sys.executable, str(args.source / "scripts" / "training" / "train.py"),
                   "--train_data_file", str(data), "--test_data_file", str(data),
                   "--gridsize", str(args.gridsize), "--nepochs", str(args.epochs),
                   "--n_groups", str(n_positions), "--nphotons", str(args.nphotons),
                   "--output_dir", str(args.out)]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=temporary, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"published training failed ({result.returncode}): {result.stderr[-2000:]}")
    return {"model": str(args.out), "gridsize": args.gridsize, "epochs": args.epochs,
            "n_positions": n_positions, "train_s": time.perf_counter() - started}


def _timed(function, calls: int, seconds: float) -> list[float]:
    """Wall times of ``function`` after one untimed call: at least ``calls``, for ``seconds``."""
    function()
    timings: list[float] = []
    started = time.perf_counter()
    while len(timings) < calls or time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        function()
        timings.append(time.perf_counter() - begin)
    return timings


def _figures(timings: list[float], patterns: int) -> dict:
    median = statistics.median(timings)
    return {"patterns_per_s": patterns / median, "best_patterns_per_s": patterns / min(timings),
            "calls": len(timings), "seconds_per_call": median}


def measure(args: argparse.Namespace) -> dict:
    """Load the peer's model once and time its predict and its whole inference path."""
    sys.path[:0] = [str(args.source), str(args.source / "scripts")]
    import numpy as np
    import tensorflow as tf
    from dataclasses import fields

    from ptycho import loader, params
    from ptycho.config.config import InferenceConfig, ModelConfig, validate_inference_config
    from ptycho.nbutils import reconstruct_image
    from ptycho.tf_helper import reassemble_position
    from ptycho.workflows.backend_selector import load_inference_bundle_with_backend
    from ptycho.workflows.components import load_data

    with tempfile.TemporaryDirectory(prefix="published-peer-") as temporary:
        data_path = Path(temporary) / "scan.npz"
        n_positions = published_npz(args.scan, data_path)
        model_config = ModelConfig(**{field.name: field.default for field in fields(ModelConfig)})
        config = InferenceConfig(model=model_config, model_path=args.model, test_data_file=data_path,
                                 n_images=None, n_subsample=None, subsample_seed=None, debug=False,
                                 output_dir=Path(temporary) / "out", backend="tensorflow")
        validate_inference_config(config)
        started = time.perf_counter()
        model, _ = load_inference_bundle_with_backend(config.model_path, config)
        load_s = time.perf_counter() - started
        scan = load_data(str(data_path), n_images=None, n_subsample=None, subsample_seed=None)
    cfg = params.cfg
    gridsize = int(cfg.get("gridsize", 1))

    def container():
        tf.random.set_seed(45)
        np.random.seed(45)
        grouped = scan.generate_grouped_data(cfg["N"], K=4, nsamples=n_positions, gridsize=gridsize)
        return loader.load(lambda: grouped, scan.probeGuess, which=None, create_split=False)

    inputs = container()
    x_in = inputs.X * params.params()["intensity_scale"]
    offsets = inputs.local_offsets
    patterns = int(x_in.shape[0]) * int(x_in.shape[-1])  # groups x C
    setup_rss = peak_rss_bytes()

    def predict() -> None:
        model.predict([x_in, offsets], verbose=0)

    def reconstruct() -> None:
        patches, global_offsets = reconstruct_image(container(), diffraction_to_obj=model)
        image = reassemble_position(patches, global_offsets, M=20)
        np.abs(image), np.angle(image)

    return {
        "framework": "tensorflow (published PtychoPINN)", "framework_version": tf.__version__, "device": "cpu",
        "predict": _figures(_timed(predict, args.calls, args.seconds), patterns),
        "reconstruct": {**_figures(_timed(reconstruct, args.calls, args.seconds), patterns), "build_model_s": load_s},
        "peak_rss_bytes": peak_rss_bytes(), "setup_rss_bytes": setup_rss,
        "n_parameters": int(sum(int(np.prod(weight.shape)) for weight in model.weights)),
        "n_filters_scale": cfg.get("n_filters_scale"), "gridsize": gridsize, "N": cfg.get("N"),
        "n_positions": n_positions, "patterns": patterns,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "measure"):
        command = commands.add_parser(name)
        command.add_argument("--source", type=Path, required=True, help="the published code's checkout")
        command.add_argument("--scan", type=Path, required=True, help="our canonical scan (NPZ)")
    training = commands.choices["train"]
    training.add_argument("--gridsize", type=int, default=1)
    training.add_argument("--epochs", type=int, default=1)
    training.add_argument("--nphotons", type=float, default=1e9)
    training.add_argument("--out", type=Path, required=True, help="the model folder to write")
    measuring = commands.choices["measure"]
    measuring.add_argument("--model", type=Path, required=True, help="a model folder of its training script")
    measuring.add_argument("--seconds", type=float, default=2.0)
    measuring.add_argument("--calls", type=int, default=2)
    args = parser.parse_args(argv)
    args.source, args.scan = args.source.resolve(), args.scan.resolve()
    if args.command == "train":
        args.out = args.out.resolve()
    else:
        args.model = args.model.resolve()
    result = train(args) if args.command == "train" else measure(args)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
