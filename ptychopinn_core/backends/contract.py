"""What a backend promises: its description, its model and its physics, as plain types.

These types are the contract between the core and every backend (TensorFlow, PyTorch,
a future JAX one). They depend on numpy and the standard library only, so the core can
describe backends without importing any framework.

- :class:`BackendInfo` and :class:`Capabilities` describe a backend; they are returned
  by the ``ptychopinn_backend_info`` hook at discovery.
- :class:`BackendModel` is what ``ptychopinn_build_model`` returns: a network holding the
  core's canonical weights (:mod:`ptychopinn_core.model.parameters`).
- :class:`PhysicsOps` is the backend's own implementation of each physics step, numpy
  in, numpy out, checked against :mod:`ptychopinn_core.physics` by the conformance kit.
- :class:`Refiner` is what ``ptychopinn_refiner`` returns: the object (and probe) of a
  reconstruction fitted to the data (:mod:`ptychopinn_core.refine`), checked against the
  core's numpy reference by the conformance kit.
- :class:`ProgressEvent` (defined in :mod:`ptychopinn_core.progress`) is what ``ptychopinn_train``
  and a refiner report while they work.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from ptychopinn_core.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:  # only for annotations: describing a backend imports nothing heavy (not even numpy)
    import numpy as np

    from ptychopinn_core.config import Config
    from ptychopinn_core.model.state import ModelState
    from ptychopinn_core.refine.problem import Observer, RefineResult

__all__ = [
    "ALLOWED_DEVICES",
    "ALLOWED_MODES",
    "ALLOWED_LOGGERS",
    "ALLOWED_PRECISIONS",
    "MIXED_PRECISIONS",
    "inference_precision",
    "BACKEND_NAME_PATTERN",
    "BackendInfo",
    "BackendModel",
    "Capabilities",
    "ForwardResult",
    "PhysicsOps",
    "ProgressCallback",
    "ProgressEvent",
    "Refiner",
]

#: Training modes a backend may support (``config.training.mode``).
ALLOWED_MODES = frozenset({"pinn", "supervised"})
#: Device kinds a backend may support (``config.execution.device`` without "auto").
ALLOWED_DEVICES = frozenset({"cpu", "gpu"})
#: Numeric precisions a backend may support (``config.execution.precision``).
ALLOWED_PRECISIONS = frozenset({"32", "64", "bf16-mixed", "16-mixed"})
#: Precisions that change the network's arithmetic in training only (inference: float32).
MIXED_PRECISIONS = frozenset({"bf16-mixed", "16-mixed"})


def inference_precision(precision: str) -> str:
    """The ``execution.precision`` a model of ``precision`` predicts in: a mixed precision is
    the training's alone (its weights are float32), so ``"32"``; the others are their own."""
    return "32" if precision in MIXED_PRECISIONS else precision
#: Metrics loggers a backend may offer (``execution.logger``; "none" is always allowed).
ALLOWED_LOGGERS = frozenset({"csv", "tensorboard", "mlflow"})
#: A canonical backend name: lower case letters and digits. No "_" because Ptychodus
#: joins library and reconstructor names with "_" (ptychodus.md), no "-" to keep one
#: spelling per backend.
BACKEND_NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*")


def _as_str_set(values: Iterable[str], what: str) -> frozenset[str]:
    if isinstance(values, str):
        raise TypeError(f"invalid {what}: expected a collection of strings, received {what}={values!r}")
    result = frozenset(values)
    if not result:
        raise ValueError(f"invalid {what}: expected at least one value, received {what}={values!r}")
    wrong = [value for value in result if not isinstance(value, str)]
    if wrong:
        raise TypeError(f"invalid {what}: expected strings, received {wrong[0]!r} in {what}")
    return result


def _as_int_tuple(values: Iterable[int], what: str, minimum: int) -> tuple[int, ...]:
    result = tuple(values)
    if not result:
        raise ValueError(f"invalid {what}: expected at least one value, received {what}={values!r}")
    for value in result:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"invalid {what}: expected ints, received {value!r} in {what}")
        if value < minimum:
            raise ValueError(f"invalid {what}: expected values >= {minimum}, received {value} in {what}")
    return tuple(sorted({int(value) for value in result}))  # numpy ints are Integral too


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the core checks a config against it before running.

    Capabilities replace backend-name checks everywhere (the Keras idea): the CLI, the
    registry and the conformance kit ask "does it support supervised mode?", never
    "is it TensorFlow?".

    Attributes
    ----------
    modes : frozenset of str
        Subset of :data:`ALLOWED_MODES` (``"pinn"``, ``"supervised"``).
    devices : frozenset of str
        Subset of :data:`ALLOWED_DEVICES` (``"cpu"``, ``"gpu"``).
    strategies : frozenset of str
        Distribution strategies, always including ``"single"`` (e.g.
        ``{"single", "mirrored"}`` for TensorFlow, ``{"single", "ddp"}`` for Lightning).
    precisions : frozenset of str
        Subset of :data:`ALLOWED_PRECISIONS`, always including ``"32"``.
    pattern_sizes : tuple of int
        Supported pattern sides ``N`` in pixels, sorted (e.g. ``(64, 128, 256)``).
    gridsizes : tuple of int
        Supported group sides ``g``, sorted, always including 1.
    checkpoints : bool
        Writes a checkpoint to ``execution.run_dir`` after every epoch and continues
        from it with ``execution.resume``.
    loggers : frozenset of str
        Subset of :data:`ALLOWED_LOGGERS` it can write to ``run_dir`` (needs checkpoints'
        run folder); ``"none"`` is always accepted.
    data_workers : bool
        Gathers batches in ``execution.workers`` worker processes.
    multi_node : bool
        Trains across ``execution.num_nodes`` > 1 machines.
    training : bool
        Trains models (``ptychopinn_train``). False: the backend runs trained models only
        (an inference engine such as ONNX Runtime); training with it is refused before
        anything runs, with the installed backends that can train, and ``modes`` then
        names the modes of the models it runs.
    """

    modes: frozenset[str] = field(default_factory=lambda: frozenset({"pinn"}))
    devices: frozenset[str] = field(default_factory=lambda: frozenset({"cpu"}))
    strategies: frozenset[str] = field(default_factory=lambda: frozenset({"single"}))
    precisions: frozenset[str] = field(default_factory=lambda: frozenset({"32"}))
    pattern_sizes: tuple[int, ...] = (64,)
    gridsizes: tuple[int, ...] = (1,)
    checkpoints: bool = False
    loggers: frozenset[str] = frozenset()
    data_workers: bool = False
    multi_node: bool = False
    training: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (("modes", ALLOWED_MODES), ("devices", ALLOWED_DEVICES),
                              ("precisions", ALLOWED_PRECISIONS), ("strategies", None)):
            values = _as_str_set(getattr(self, name), name)
            if allowed is not None and not values <= allowed:
                raise ValueError(
                    f"invalid {name}: expected a subset of {sorted(allowed)}, "
                    f"received {name}={sorted(values)}"
                )
            object.__setattr__(self, name, values)
        if "single" not in self.strategies:
            raise ValueError(
                f"invalid strategies: expected 'single' among them, received strategies={sorted(self.strategies)}"
            )
        if "32" not in self.precisions:
            raise ValueError(
                f"invalid precisions: expected '32' among them, received precisions={sorted(self.precisions)}"
            )
        sizes = _as_int_tuple(self.pattern_sizes, "pattern_sizes", 16)
        odd = [size for size in sizes if size & (size - 1)]
        if odd:
            raise ValueError(f"invalid pattern_sizes: expected powers of two >= 16, received {odd[0]} in pattern_sizes")
        object.__setattr__(self, "pattern_sizes", sizes)
        gridsizes = _as_int_tuple(self.gridsizes, "gridsizes", 1)
        if 1 not in gridsizes:
            raise ValueError(f"invalid gridsizes: expected 1 among them, received gridsizes={gridsizes}")
        object.__setattr__(self, "gridsizes", gridsizes)
        loggers = frozenset(self.loggers) if not isinstance(self.loggers, str) else None
        if loggers is None or not loggers <= ALLOWED_LOGGERS:
            raise ValueError(f"invalid loggers: expected a subset of {sorted(ALLOWED_LOGGERS)}, received {self.loggers!r}")
        if loggers and not self.checkpoints:
            raise ValueError("invalid loggers: a backend without checkpoints has no run folder to log to")
        object.__setattr__(self, "loggers", loggers)
        for name in ("checkpoints", "data_workers", "multi_node", "training"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"invalid {name}: expected a bool, received {name}={getattr(self, name)!r}")

    def unsupported(self, config: Config, *, training: bool = True) -> list[str]:
        """Settings of ``config`` this backend cannot honour, one phrase each.

        Parameters
        ----------
        config : Config
        training : bool
            Also check the training-only settings (mode, strategy); building a model
            for inference needs only the model and device settings.

        Returns
        -------
        list of str
            Empty when everything is supported, e.g.
            ``["model.pattern_size=512 (supported: 64, 128, 256)"]`` otherwise.
        """
        problems = []

        def check(key: str, value: Any, supported: Iterable[Any]) -> None:
            supported = sorted(supported)
            if value not in supported:
                problems.append(f"{key}={value!r} (supported: {', '.join(map(str, supported))})")

        check("model.pattern_size", config.model.pattern_size, self.pattern_sizes)
        check("model.gridsize", config.model.gridsize, self.gridsizes)
        if config.execution.device != "auto":
            check("execution.device", config.execution.device, self.devices)
        precision = config.execution.precision
        check("execution.precision", precision if training else inference_precision(precision), self.precisions)
        if training and not self.training:  # the training settings do not matter then
            problems.append("training (this backend runs trained models only)")
        elif training:
            execution = config.execution
            check("training.mode", config.training.mode, self.modes)
            if execution.strategy != "auto":
                check("execution.strategy", execution.strategy, self.strategies)
            if not self.checkpoints:
                if execution.run_dir is not None:
                    problems.append(f"execution.run_dir={execution.run_dir!r} (no checkpoints or logs)")
                if execution.resume:
                    problems.append("execution.resume=true (no checkpoints to resume from)")
            elif execution.run_dir is not None and execution.logger != "none":
                check("execution.logger", execution.logger, self.loggers | {"none"})
            if execution.workers > 0 and not self.data_workers:
                problems.append(f"execution.workers={execution.workers} (batches are gathered in the training process)")
            if execution.num_nodes > 1 and not self.multi_node:
                problems.append(f"execution.num_nodes={execution.num_nodes} (one machine only)")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (sorted lists, bools)."""
        return {
            "modes": sorted(self.modes),
            "devices": sorted(self.devices),
            "strategies": sorted(self.strategies),
            "precisions": sorted(self.precisions),
            "pattern_sizes": list(self.pattern_sizes),
            "gridsizes": list(self.gridsizes),
            "checkpoints": self.checkpoints,
            "loggers": sorted(self.loggers),
            "data_workers": self.data_workers,
            "multi_node": self.multi_node,
            "training": self.training,
        }


@dataclass(frozen=True)
class BackendInfo:
    """A backend's description, returned by ``ptychopinn_backend_info`` at discovery.

    Building one must not import the framework: versions are read from the installed
    distributions' metadata and availability with :func:`importlib.util.find_spec`.

    Attributes
    ----------
    name : str
        Canonical name, the entry point's name (``"tensorflow"``, ``"pytorch"``);
        matches :data:`BACKEND_NAME_PATTERN`.
    display_name : str
        Human name (``"TensorFlow"``).
    framework : str
        The framework it runs on (``"tensorflow"``, ``"torch"``).
    framework_distributions : tuple of str
        PyPI names whose installed version is the framework version, first found wins
        (``("tensorflow", "tensorflow-cpu")``: both install the same module).
    framework_module : str
        Top-level import name checked for availability (``"tensorflow"``).
    install_hint : str
        The pip command that completes an install whose framework is missing
        (``'pip install "ptychopinn-tf[cpu]"'``).
    capabilities : Capabilities
    """

    name: str
    display_name: str
    framework: str
    framework_distributions: tuple[str, ...]
    framework_module: str
    install_hint: str
    capabilities: Capabilities = field(default_factory=Capabilities)

    def __post_init__(self) -> None:
        for name in ("name", "display_name", "framework", "framework_module", "install_hint"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise TypeError(f"invalid BackendInfo.{name}: expected a non-empty string, received {name}={value!r}")
        if not BACKEND_NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                "invalid BackendInfo.name: expected lower-case letters and digits "
                f"(pattern {BACKEND_NAME_PATTERN.pattern}), received name={self.name!r}"
            )
        if not all(part.isidentifier() for part in self.framework_module.split(".")):
            raise ValueError(
                f"invalid BackendInfo.framework_module: expected an import name, "
                f"received framework_module={self.framework_module!r}"
            )
        distributions = self.framework_distributions
        if isinstance(distributions, str) or not distributions or not all(
            isinstance(item, str) and item for item in distributions
        ):
            raise TypeError(
                "invalid BackendInfo.framework_distributions: expected a non-empty tuple of "
                f"distribution names, received framework_distributions={distributions!r}"
            )
        object.__setattr__(self, "framework_distributions", tuple(distributions))
        if not isinstance(self.capabilities, Capabilities):
            raise TypeError(
                "invalid BackendInfo.capabilities: expected a Capabilities, "
                f"received {type(self.capabilities).__name__}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "framework": self.framework,
            "framework_distributions": list(self.framework_distributions),
            "framework_module": self.framework_module,
            "install_hint": self.install_hint,
            "capabilities": self.capabilities.to_dict(),
        }


class ForwardResult(NamedTuple):
    """Output of :meth:`BackendModel.forward` (unpacks as ``patches, amplitude``).

    Attributes
    ----------
    patches : ndarray, complex64, shape (B, C, N, N)
        Object patches after the overlap constraint.
    amplitude : ndarray, float32, shape (B, C, N, N)
        Predicted diffraction amplitude ``A_hat = |F(patches * P)|`` (normalised units,
        the same units as the network input ``X_n``).
    """

    patches: np.ndarray
    amplitude: np.ndarray


@runtime_checkable
class BackendModel(Protocol):
    """The network a backend builds from canonical weights (``ptychopinn_build_model``).

    Attributes
    ----------
    state : ModelState
        The probe, intensity scale and normalisation the model runs with; after
        training it may hold a trained probe or intensity scale.
    """

    state: ModelState

    def get_weights(self) -> dict[str, np.ndarray]:
        """The canonical weights: names, shapes and HWIO layout of
        :func:`ptychopinn_core.model.parameters.parameter_specs`, float32, copies."""
        ...

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load canonical weights; ValueError naming the parameter if one does not fit."""
        ...

    def predict(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        """Object patches from diffraction.

        Parameters
        ----------
        diffraction : ndarray, float32, shape (B, C, N, N)
            Normalised amplitudes ``X_n``.
        offsets_xy : ndarray, float32, shape (B, C, 2)
            Group offsets ``(x, y)`` in pixels.

        Returns
        -------
        ndarray, complex64, shape (B, C, N, N)
            Object patches after the overlap constraint.
        """
        ...

    def forward(self, diffraction: np.ndarray, offsets_xy: np.ndarray) -> ForwardResult:
        """Patches and predicted amplitude (arguments as :meth:`predict`)."""
        ...

    def loss_and_gradients(
        self, diffraction: np.ndarray, offsets_xy: np.ndarray, truth: np.ndarray | None = None
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The training loss of one batch and its gradient for every canonical parameter.

        What the parity report compares between backends (:mod:`ptychopinn_core.parity`).

        Parameters
        ----------
        diffraction, offsets_xy : ndarray
            As :meth:`predict`.
        truth : ndarray, complex, shape (B, C, N, N), optional
            Ground-truth patches; supervised mode only.

        Returns
        -------
        (float, dict of str to ndarray)
            The loss and ``d loss / d parameter`` keyed by canonical name, in the
            canonical layout, in the model's real dtype; zeros where the loss does not
            depend on a parameter.
        """
        ...


@runtime_checkable
class PhysicsOps(Protocol):
    """A backend's physics steps, numpy in and numpy out (float32/complex64 inside).

    Each method computes the function of the same name in :mod:`ptychopinn_core.physics`
    with the backend's own framework code; the conformance kit compares them.
    """

    def translate(self, images: np.ndarray, shifts_xy: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_core.physics.translate.translate`: images (..., H, W), shifts (..., 2)."""
        ...

    def merge_patches(self, patches: np.ndarray, offsets_xy: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_core.physics.overlap.merge_patches`: (B, C, N, N), (B, C, 2) -> (B, N, N)."""
        ...

    def enforce_overlap(
        self, patches: np.ndarray, offsets_xy: np.ndarray, weights: np.ndarray | None = None
    ) -> np.ndarray:
        """:func:`ptychopinn_core.physics.overlap.enforce_overlap`: (B, C, N, N), (B, C, 2),
        merge weights (N, N) or None (the window) -> (B, C, N, N)."""
        ...

    def illuminate(self, patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_core.physics.forward.illuminate`: (..., N, N) * (N, N)."""
        ...

    def far_field(self, psi: np.ndarray) -> np.ndarray:
        """:func:`ptychopinn_core.physics.forward.far_field`: ``fftshift(fft2(psi)) / N``."""
        ...

    def poisson_nll(self, predicted_intensity: np.ndarray, observed_intensity: np.ndarray) -> float:
        """:func:`ptychopinn_core.physics.losses.poisson_nll` (a float)."""
        ...

    def amplitude_mae(
        self, predicted_amplitude: np.ndarray, observed_amplitude: np.ndarray, intensity_scale: float
    ) -> float:
        """:func:`ptychopinn_core.physics.losses.amplitude_mae` (a float)."""
        ...


@runtime_checkable
class Refiner(Protocol):
    """A backend's refinement of one :class:`~ptychopinn_core.refine.RefineProblem`
    (``ptychopinn_refiner``), numpy in and numpy out.

    It computes exactly :mod:`ptychopinn_core.refine.reference` (docs/physics.md §10): the
    same loss, gradients, Adam rule and order of positions.
    """

    def loss_and_gradients(
        self, obj: np.ndarray, probe: np.ndarray, indices: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """The loss of the positions ``indices`` and ``dL/dRe + i dL/dIm`` of object and probe.

        Parameters
        ----------
        obj : ndarray, complex, shape ``problem.object_shape``
        probe : ndarray, complex, shape (N, N)
        indices : ndarray, int, shape (B,)
            Positions of one step.
        """
        ...

    def run(
        self,
        obj: np.ndarray,
        probe: np.ndarray,
        progress: ProgressCallback | None = None,
        observe: Observer | None = None,
    ) -> RefineResult:
        """Refine from ``obj`` and ``probe`` for ``settings.iterations`` iterations.

        ``progress`` receives a ``"batch"`` event after every step and an ``"epoch"``
        event after every iteration (metric ``loss``); ``observe(iteration, obj, probe)``
        is called after every iteration when given.
        """
        ...
