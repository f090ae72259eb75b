"""Reference reconstruction of the Siemens star by an established iterative code (pty-chi LSQML).

Real data has no ground truth: the PINN's reconstruction of the star is judged against
this one (``ptychopinn evaluate --reference``, ``bench/star_pinn.py``). It is made once,
by this script, and stored in the project as ``data/siemens-star/reference-ptychi.npz``
(a reconstruction file, see ``ptychopinn_core/reconstruction.py``), with how it was made
in its ``meta``. Not run in CI.

Environment: pty-chi (PyPI ``ptychi``) lives in its own virtual environment, so the
project never depends on it. torch is pinned in the same pip call, else pip pulls a
multi-GB CUDA build::

    python3 -m venv .venv-ptychi
    .venv-ptychi/bin/pip install "torch==2.13.0" torchvision ptychi -e .

On PyPI, Linux torchvision wheels are CUDA builds: torchvision 0.28.0 (the release for
torch 2.13) cannot load its compiled operators next to the CPU torch and fails to import
("operator torchvision::nms does not exist"). pty-chi imports one name from it,
``torchvision.transforms.GaussianBlur``, used only to smooth a random initial guess,
which this script does not use: when torchvision does not import, the script stands in
a placeholder that raises if it is ever called (recorded in ``meta``). With PyTorch's
own CPU index reachable, ``pip install "torch==2.13.0" "torchvision==0.28.0" --index-url
https://download.pytorch.org/whl/cpu`` first gives a matching CPU torchvision instead.

Run from the repository root::

    .venv-ptychi/bin/python bench/star_reference.py                       # 150 epochs
    .venv-ptychi/bin/python bench/star_reference.py --epochs 3 --out /tmp/ref.npz  # smoke

Conventions (checked at every run by :func:`check_position_convention`: pty-chi's
patches equal ours pixel for pixel at integer positions):

- pty-chi wants intensities with the zero frequency at the centre when
  ``fft_shift=True`` (it shifts them to the corner itself): ``diffraction ** 2`` of the
  canonical NPZ.
- pty-chi's position is the centre of the probe window, with the window's first pixel at
  ``position - (N - 1) / 2`` from the object's top-left corner when the position origin
  is ``SPECIFIED`` as ``(0, 0)``; ours is the pixel ``N // 2`` of the window (first pixel
  at ``position - N / 2``). So pty-chi's ``origin + (y, x) = (ycoords - 0.5, xcoords - 0.5)``.
- Far field: both use ``fft2`` (pty-chi ``norm="ortho"``, ours ``/ N``: the same).

Prints ONE JSON object: settings, wall time, loss per 10 epochs, position corrections,
machine and versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
from benchlib import machine_info

ROOT = Path(__file__).resolve().parents[1]
STAR = ROOT / "data" / "siemens-star" / "siemens-star-small.npz.bz2"
DEFAULT_OUT = ROOT / "data" / "siemens-star" / "reference-ptychi.npz"


def _stand_in_torchvision() -> bool:
    """Make ``import torchvision.transforms`` work when the installed torchvision cannot.

    Returns True when the placeholder was installed (torchvision failed to import).
    """
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        pass
    else:
        return False
    for name in [name for name in sys.modules if name.split(".")[0] == "torchvision"]:
        del sys.modules[name]

    class GaussianBlur:
        """Placeholder: pty-chi only blurs random initial guesses, which are not used here."""

        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("torchvision is not importable here; GaussianBlur is unavailable")

    package = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.GaussianBlur = GaussianBlur
    package.transforms = transforms
    sys.modules["torchvision"] = package
    sys.modules["torchvision.transforms"] = transforms
    return True


def load_scan(path: Path | None):
    """The canonical scan: ``path`` (a converted NPZ), else the project's star converted in memory."""
    if path is not None:
        from ptychopinn_core.data import read_scan

        return read_scan(path)
    from ptychopinn_core.data.importers import import_scan

    return import_scan(STAR)


def ptychi_positions(scan) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """pty-chi's ``(y, x)`` positions and position origin for the canonical positions.

    The positions are given relative to their mean and the origin (the object pixel of
    position ``(0, 0)``) is that mean, moved by the half pixel of the module docstring:
    ``origin + position = (ycoords - 0.5, xcoords - 0.5)`` from the object's top-left
    corner. Relative positions let pty-chi keep their mean fixed during position
    correction (``constrain_position_mean``), so the object stays on the scan's frame.
    """
    mean_y, mean_x = float(np.mean(scan.ycoords)), float(np.mean(scan.xcoords))
    return scan.ycoords - mean_y, scan.xcoords - mean_x, [mean_y - 0.5, mean_x - 0.5]


def task_data(scan) -> dict[str, np.ndarray]:
    """pty-chi's task arrays for the scan: intensities, initial object and probe, positions."""
    position_y, position_x, _ = ptychi_positions(scan)
    return {
        "diffraction_data": np.square(scan.diffraction, dtype=np.float32),
        "object_data": np.ones((1, *scan.object.shape), np.complex64),
        "probe_data": scan.probe[None, None].astype(np.complex64),
        "probe_position_x_px": position_x.astype(np.float32),
        "probe_position_y_px": position_y.astype(np.float32),
    }


def check_position_convention(task, scan) -> None:
    """Raise unless pty-chi extracts, at integer positions, exactly the windows the core does."""
    import torch

    from ptychopinn_core.physics.translate import extract_patches

    size = scan.pattern_size
    rng = np.random.default_rng(0)
    test = (rng.random(scan.object.shape) + 1j * rng.random(scan.object.shape)).astype(np.complex64)
    positions_xy = np.rint(scan.positions_px[:8])
    _, _, (origin_y, origin_x) = ptychi_positions(scan)
    relative = np.stack([positions_xy[:, 1] - 0.5 - origin_y, positions_xy[:, 0] - 0.5 - origin_x], axis=1)
    theirs = task.object.extract_patches(
        torch.as_tensor(relative, dtype=torch.float32), (size, size), object_array=torch.as_tensor(test)[None]
    )[:, 0].detach().cpu().numpy()
    ours = extract_patches(test, positions_xy, size)
    error = float(np.max(np.abs(theirs - ours)))
    if error > 1e-3:  # float32 rounding of origin + position; a wrong convention gives ~0.5
        raise RuntimeError(
            f"pty-chi's patches differ from the core's at integer positions (max error {error:.3g}): "
            "its position convention has changed; see this module's docstring"
        )


def lsqml_options(scan, args):
    """pty-chi LSQML options: object, probe and positions refined on the CPU."""
    from ptychi import api

    options = api.LSQMLOptions()
    options.data_options.fft_shift = True
    options.object_options.determine_position_origin_coords_by = (
        api.ObjectPosOriginCoordsMethods.SPECIFIED
    )
    options.object_options.position_origin_coords = ptychi_positions(scan)[2]
    options.object_options.optimizable = True
    options.object_options.step_size = 1.0

    options.probe_options.optimizable = True
    # Epoch 0 rescales the probe to the data's intensity; refine it from then on.
    options.probe_options.optimization_plan.start = 1
    options.probe_options.step_size = 1.0

    if args.position_correction_start < args.epochs:
        options.probe_position_options.optimizable = True
        options.probe_position_options.optimization_plan.start = args.position_correction_start
        # Keep the mean position: the reference stays on the converted scan's frame.
        options.probe_position_options.constrain_position_mean = True

    reconstructor = options.reconstructor_options
    reconstructor.num_epochs = args.epochs
    reconstructor.batch_size = args.batch_size
    reconstructor.default_device = api.Devices.CPU
    reconstructor.default_dtype = api.Dtypes.FLOAT32
    reconstructor.random_seed = args.seed
    return options


def _settings(args) -> dict[str, object]:
    return {
        "algorithm": "LSQML",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "batching_mode": "random",
        "noise_model": "gaussian",
        "dtype": "float32",
        "device": "cpu",
        "object_initial_guess": "ones",
        "probe_initial_guess": "the scan's probeGuess (tike zone-plate model), 1 mode",
        "probe_refinement_from_epoch": 1,
        "position_correction_from_epoch": (
            args.position_correction_start if args.position_correction_start < args.epochs else None
        ),
        "position_convention": "ptychi origin + (y, x) = (ycoords - 0.5, xcoords - 0.5); "
        "positions relative to their mean, origin at the mean",
        "seed": args.seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path, default=None,
                        help="converted canonical NPZ [default: convert the project's star in memory]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reconstruction NPZ to write")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--position-correction-start", type=int, default=50,
                        help="first epoch of position correction (>= --epochs: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torchvision_stand_in = _stand_in_torchvision()
    import ptychi
    import torch
    from ptychi.api.task import PtychographyTask

    from ptychopinn_core.physics.stitching import ObjectFrame
    from ptychopinn_core.reconstruction import Reconstruction, write_reconstruction

    logging.getLogger("ptychi").setLevel(logging.WARNING)
    scan = load_scan(args.scan)
    options = lsqml_options(scan, args)

    started, cpu_started = time.perf_counter(), time.process_time()
    task = PtychographyTask(options, **task_data(scan))
    check_position_convention(task, scan)
    task.run()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started  # all threads: less disturbed by other load

    obj = task.get_data_to_cpu("object", as_numpy=True)[0].astype(np.complex64)
    positions = task.probe_positions.data.detach().cpu().numpy().astype(np.float64)
    start_y, start_x, _ = ptychi_positions(scan)
    correction = np.hypot(positions[:, 0] - start_y, positions[:, 1] - start_x)
    losses = task.reconstructor.loss_tracker.table["loss"].to_numpy(dtype=np.float64)
    machine = {
        **machine_info(),
        "ptychi": ptychi.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torchvision_stand_in": torchvision_stand_in,
    }
    made = {
        "generator": "bench/star_reference.py",
        "package": f"ptychi {ptychi.__version__}",
        "settings": _settings(args),
        "reconstruction_s": round(seconds, 2),
        "seconds_per_epoch": round(seconds / args.epochs, 3),
        "reconstruction_cpu_s": round(cpu_seconds, 2),
        "final_loss": float(losses[-1]),
        "position_correction_px": {"mean": float(correction.mean()), "max": float(correction.max())},
        "scan": "data/siemens-star/siemens-star-small.npz.bz2 via ptychopinn convert"
        if args.scan is None else str(args.scan),
        "frame": "the converted scan's objectGuess frame (pixel for pixel)",
        "machine": machine,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    recon = Reconstruction(obj, ObjectFrame.for_object(scan.object.shape), made)
    write_reconstruction(args.out, recon)
    report = {
        "benchmark": "star_reference",
        **{key: made[key] for key in ("package", "settings", "reconstruction_s", "seconds_per_epoch",
                                      "reconstruction_cpu_s", "final_loss", "position_correction_px",
                                      "machine")},
        "loss_every_10_epochs": [float(value) for value in losses[::10]],
        "out": str(args.out),
        "out_bytes": os.path.getsize(args.out),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
