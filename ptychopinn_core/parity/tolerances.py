"""Every tolerance a backend is held to, with its reason, and the one error measure.

One table (:data:`TOLERANCES`) for the conformance kit, the parity report and the
backends' own tests, so that a bound is argued once and read everywhere: a test that
holds a backend to a number names its key here instead of writing the number.

Relative errors are norm-wise, ``||actual - expected|| / ||expected||``
(:func:`relative_error`); where the expected value is a float64 reference, it is
computed from the same float32 inputs. Kept free of pytest so that ``ptychopinn
parity`` runs in a user install.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["TOLERANCES", "Tolerance", "relative_error"]


@dataclass(frozen=True)
class Tolerance:
    """A relative-error bound (None: reported, not held) and why it is that value."""

    relative: float | None
    reason: str


#: Every tolerance, by key. Groups: each physics step of a backend against the numpy
#: reference (keys are the :data:`~ptychopinn_core.parity.cases.PHYSICS_OPS`), the rest
#: of the conformance kit, the levels of the parity report (``level:bits``), and the
#: backends' own tests.
TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {
        # -- physics steps, backend (float32) against numpy (float64): conformance kit, parity
        "translate": Tolerance(
            1e-6,
            "bilinear weights from float32 coordinates: a few float32 roundings (eps 6e-8) per "
            "output; inputs are smooth, as images are, so coordinate rounding is not amplified",
        ),
        "merge_patches": Tolerance(
            1e-6,
            "two translations, a channel sum and one division in float32; the division is "
            "only taken where the window weight exceeds MERGE_MASK_THRESHOLD, never amplified",
        ),
        "enforce_overlap": Tolerance(
            1e-6, "a merge in each channel's frame, as 'merge_patches'; relative offsets in float64"
        ),
        "illuminate": Tolerance(1e-6, "one complex64 product per pixel: a single rounding"),
        "far_field": Tolerance(
            1e-6, "float32 FFT: error grows like eps * log2(N) ~ 3e-7 for N <= 64, norm-wise"
        ),
        "poisson_nll": Tolerance(
            1e-6, "float32 log and a mean over all pixels; tree reductions keep it near eps"
        ),
        "amplitude_mae": Tolerance(1e-6, "float32 absolute difference and a mean, as 'poisson_nll'"),
        # -- the rest of the conformance kit
        "forward_amplitude": Tolerance(
            1e-5,
            "the backend's whole forward model in float32 (illumination, FFT, modulus) against "
            "numpy in float64 on the backend's own patches: a few 1e-7 steps chained (design.md §7)",
        ),
        "refine_gradient": Tolerance(
            1e-5,
            "one refinement gradient in float32 (sampling, FFT, modulus, adjoints) against the "
            "hand-written numpy gradient: a few 1e-7 steps chained, measured ~5e-7 (amplitude loss)",
        ),
        "refine_gradient_poisson": Tolerance(
            1e-3,
            "the Poisson gradient 2 s^2 A (1 - y / (I + eps)) cancels where the prediction fits: "
            "float32 keeps ~7 digits of each term, so the difference keeps fewer; measured ~7e-5",
        ),
        "refine_gradient_64": Tolerance(1e-10, "the same gradient in float64: measured ~1e-15 (amplitude), ~1e-13 (Poisson)"),
        "refine_run": Tolerance(
            1e-4,
            "the refined object after a few iterations in float32 (amplitude loss, probe refined): "
            "Adam divides by sqrt(v), so rounding is carried into every step; measured ~3e-7 after 3",
        ),
        "refine_run_64": Tolerance(1e-8, "the same in float64: measured ~5e-16"),
        "weight_average": Tolerance(
            1e-5,
            "a backend's moving average of its weights (training.ema_decay) against the numpy one of the "
            "raw weights it reported after each step: float32 sums, one rounding per step",
        ),
        "prediction_repeat": Tolerance(
            1e-6,
            "the same weights and inputs run twice, or in batches of another size: frameworks may "
            "pick other kernels for other batch sizes, which reorders float32 sums",
        ),
        # -- parity report levels, backend against backend (docs/parity.md); errors of a loss
        #    curve are its largest per-step |a - b| / |b - floor|
        "forward:32": Tolerance(
            1e-5, "float32 rounding through ~10 convolutions, bilinear shifts and an FFT (design.md §7)"
        ),
        "forward:64": Tolerance(1e-10, "the same chain in float64: eps 1e-16 times the same growth"),
        "loss:32": Tolerance(1e-4, "a mean over B*C*N*N pixels, reduced in another order by each framework"),
        "loss:64": Tolerance(1e-10, "the same mean in float64"),
        "gradients:32": Tolerance(
            None,
            "reported only: a pre-activation within float32 rounding of a ReLU kink takes either "
            "side in each framework, so one element's gradient is routed or not (docs/parity.md)",
        ),
        "gradients:64": Tolerance(
            1e-8,
            "every parameter in float64; nearly-cancelling sums (e.g. the phase-head bias, whose "
            "gradient vanishes for a constant phase) amplify eps 1e-16 by up to ~1e5",
        ),
        "training:32": Tolerance(
            3e-2,
            "loss curves of the first steps, relative to the loss above its floor: float32 differences "
            "(and kink flips) grow ~1.5x per step; measured <= 8.4e-3 after 20 steps (N = 64, every case)",
        ),
        "training:bf16": Tolerance(
            1e-1,
            "the same steps with the network in bfloat16 (8 significant bits): both frameworks round "
            "the same values at the same places (the forward pass agrees to ~1e-7), but a rounding "
            "that falls the other way moves an element by 4e-3 and later steps grow it; measured "
            "<= 3e-2 after 20 steps, as far as one backend's own bfloat16 and float32 curves part",
        ),
        "training:64": Tolerance(
            1e-4,
            "the same steps in float64: early training amplifies any difference ~5x per step (a 1e-7 "
            "change of the initial weights within ONE backend moves step 15 by 5e-6), so 1e-16 grows too",
        ),
        "reconstruction": Tolerance(
            1e-4, "one bundle run by two backends: the float32 forward difference, stitched"
        ),
        "refinement:32": Tolerance(
            1e-4,
            "the refined object after 10 iterations in float32: Adam divides every step by the "
            "root of its second moment, so rounding differences are carried, not damped",
        ),
        "refinement:64": Tolerance(1e-8, "the same iterations in float64"),
        "quality": Tolerance(
            0.02,
            "SSIM (amplitude, phase) of each backend's own short training against the truth: "
            "absolute difference, the trajectories having drifted apart by float32 rounding",
        ),
        # -- the backends' own tests (tests/test_{tf,torch}_*.py)
        "layers": Tolerance(
            1e-6,
            "each framework layer (translate, merge/extract, overlap, illuminate, FFT, losses) in "
            "float32 against the numpy reference in float64 on the same inputs: a few float32 "
            "roundings per output, the physics steps' bound",
        ),
        "network": Tolerance(
            1e-5,
            "the network's heads in float32 against a float64 numpy forward pass of the same "
            "canonical weights: sums of a few hundred products per convolution output, chained "
            "over a few layers",
        ),
        "model_loss": Tolerance(
            1e-5,
            "the backend's float32 training loss (PINN or supervised) of its own forward pass "
            "against the core's loss of the same outputs in float64: only the loss's own float32 "
            "rounding (squares, logs, a mean over every pixel), not the network's",
        ),
        "mirrored_loss": Tolerance(
            1e-5,
            "TensorFlow MirroredStrategy on two devices against one device, loss per step: the "
            "same float32 computation with the gradient sum split in two, so only reordered sums "
            "(~1e-7) differ, and Adam carries them into the next steps",
        ),
        "mirrored_weights": Tolerance(
            1e-4,
            "the weights and probe after the same mirrored run: each weight accumulates the "
            "per-step differences of 'mirrored_loss' through every Adam update",
        ),
        "ddp": Tolerance(
            1e-6,
            "PyTorch DDP on two processes against one process, weights and losses after 8 Adam "
            "steps: the same float32 function, only the order of the sums differs (each rank's "
            "share, then the all-reduce), a few ulp per step; measured ~5e-8",
        ),
        "resume": Tolerance(
            1e-6,
            "a training run killed and resumed from its checkpoint against an uninterrupted one: "
            "the same float32 operations in the same order, measured equal to the last bit on a "
            "CPU; the bound leaves room for another BLAS thread split",
        ),
    }
)


def relative_error(actual: Any, expected: Any) -> float:
    """Norm-wise relative error ``||actual - expected||_2 / ||expected||_2``.

    Parameters
    ----------
    actual, expected : array-like or float, same shape
        Compared in complex128/float64.

    Returns
    -------
    float
        The absolute error norm when ``expected`` is all zeros.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise ValueError(
            f"cannot compare: expected shape {expected.shape}, received actual.shape={actual.shape}"
        )
    dtype = np.complex128 if (actual.dtype.kind == "c" or expected.dtype.kind == "c") else np.float64
    difference = np.linalg.norm((actual.astype(dtype) - expected.astype(dtype)).ravel())
    scale = np.linalg.norm(expected.astype(dtype).ravel())
    return float(difference / scale) if scale > 0 else float(difference)
