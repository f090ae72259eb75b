"""Cross-backend parity: the same weights and the same data through every installed backend.

The two backends are worth having side by side only because they agree. This module
measures how closely, level by level (design.md §7), and says which tolerance each
number is held to and why (:data:`~ptychopinn_core.parity.tolerances.TOLERANCES`, the
one table of tolerances):

``physics``
    Each backend's physics steps (:class:`~ptychopinn_core.backends.PhysicsOps`) against
    the numpy reference, float32 in, float64 reference, on the conformance kit's cases
    (:mod:`ptychopinn_core.parity.cases`) and held to the same tolerances (1e-6).
``forward``
    Patches and predicted amplitude of one batch, backend against backend, from the
    same canonical weights; in float32 and in float64 (``execution.precision="64"``).
``loss`` / ``gradients``
    The training loss of one batch (relative to the loss above its floor, the batch's loss
    under a perfect prediction) and its gradient with respect to every canonical
    parameter. In float64 every parameter's gradient is held to a tolerance. In float32
    the gradient is reported, not held: a ReLU pre-activation that lies within float32
    rounding of zero lands on either side of the kink depending on the summation order,
    and that one element routes (or not) its whole upstream gradient — a correct but
    different subgradient (docs/parity.md shows the measured case). In float64 the
    same pre-activations are 1e9 times further from the rounding, and the backends
    agree to ~1e-12: the definitions are the same.
``training``
    ``steps`` optimisation steps from the same weights on the same batches (the core
    orders them): the two loss curves, step by step, each step's difference relative to
    the loss above its floor (the batch's loss under a perfect prediction); in float32,
    and on request float64 and bf16-mixed (the network in bfloat16).
``refinement``
    ``refine_iterations`` iterations of refinement (docs/physics.md §10, probe refined in
    the last half) from the same flat start on the whole scan: each backend's refined
    object and probe against the numpy reference and against each other, float32 and
    float64.
``reconstruction``
    A model trained by one backend, written as a bundle, read back and run by every
    backend on the whole scan: stitched objects compared to the trainer's own; then each
    backend's own trained model against the ground truth (SSIM), when the scan has one.

A backend that runs trained models only (``capabilities.training`` False, e.g. ONNX
Runtime) joins the physics, forward, refinement and reconstruction levels (it runs every
trainer's bundle); the loss, gradient and training levels compare the backends that
train. A precision is compared among the backends that support it.

Everything is framework-free here: backends are reached through the registry's hooks.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptychopinn_core.config import Config, ModelConfig
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.model.bundle import ModelBundle, read_bundle, write_bundle
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.model.inputs import prepare_model_state
from ptychopinn_core.parity.cases import PHYSICS_OPS, physics_case
from ptychopinn_core.parity.report import ParityReport
from ptychopinn_core.parity.tolerances import TOLERANCES, relative_error
from ptychopinn_core.training.data import prepare_training_data
from ptychopinn_core.training.schedule import batch_loss_floor

__all__ = ["BATCH_GROUPS", "ParityCase", "parity_cases", "run_parity"]

#: Groups in the batch that the forward, loss and gradient levels compare.
BATCH_GROUPS = 8
#: Every value of ``model.architecture``, read off the config field so that a new
#: architecture is compared without touching this module.
_ARCHITECTURES: tuple[str, ...] = typing.get_args(ModelConfig.model_fields["architecture"].annotation)
_DEFAULT_ARCHITECTURE: str = ModelConfig.model_fields["architecture"].default
#: Every value of ``model.group_network``, read off the config field likewise.
_GROUP_NETWORKS: tuple[str, ...] = typing.get_args(ModelConfig.model_fields["group_network"].annotation)
_DEFAULT_GROUP_NETWORK: str = ModelConfig.model_fields["group_network"].default


@dataclass(frozen=True)
class ParityCase:
    """One configuration compared: gridsize, mode, network architecture and, for
    gridsize > 1, how the network reads a group (``model.group_network``)."""

    gridsize: int
    mode: str
    architecture: str = _DEFAULT_ARCHITECTURE
    group_network: str = _DEFAULT_GROUP_NETWORK

    @property
    def label(self) -> str:
        label = f"gridsize {self.gridsize}, {self.mode}, {self.architecture}"
        return label if self.gridsize == 1 else f"{label}, {self.group_network}"


def parity_cases(
    gridsizes: Iterable[int] = (1, 2),
    modes: Iterable[str] = ("pinn", "supervised"),
    architectures: Iterable[str] = _ARCHITECTURES,
    group_networks: Iterable[str] = _GROUP_NETWORKS,
) -> list[ParityCase]:
    """Every combination of ``architectures``, ``gridsizes``, ``group_networks`` and
    ``modes`` (default: every architecture and group network). At gridsize 1 the group
    networks are one network, compared once (with the first of ``group_networks``)."""
    group_networks = tuple(group_networks)
    return [
        ParityCase(gridsize, mode, architecture, group_network)
        for architecture in architectures
        for gridsize in gridsizes
        for group_network in (group_networks[:1] if gridsize == 1 else group_networks)
        for mode in modes
    ]


def _precision_name(precision: str) -> str:
    return {"64": "float64", "bf16-mixed": "bfloat16-mixed"}.get(precision, "float32")


def _bits(precision: str) -> str:
    """The suffix of a precision's tolerances in TOLERANCES (``forward:32``, ``training:bf16``, ...)."""
    return {"64": "64", "bf16-mixed": "bf16"}.get(precision, "32")


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def _pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair, the first backend as the reference of the others."""
    return list(itertools.combinations(names, 2))


def _curve_error(curve: Sequence[float], reference: Sequence[float], floors: Sequence[float] | float = 0.0) -> float:
    """Largest per-step difference relative to the reference's loss above its floor (inf when
    the lengths differ).

    The Poisson loss carries a data-only constant (about -4e6 at 1e9 photons) that no
    model changes, so a difference relative to ``|loss|`` would hide the network's part
    (tens to thousands); the floor (the loss of a perfect prediction on the same batch,
    0 for the supervised MAEs) takes it out.
    """
    if len(curve) != len(reference) or not len(reference):
        return math.inf
    curve, reference = np.asarray(curve, np.float64), np.asarray(reference, np.float64)
    above = np.abs(reference - np.asarray(floors, np.float64))
    return float(np.max(np.abs(curve - reference) / np.maximum(above, np.finfo(np.float64).tiny)))


def _batch_floors(data, training) -> list[float]:
    """The loss floor of each training batch of epoch 0, in order."""
    return [batch_loss_floor(data.gather(group_ids)[0], data.intensity_scale, training)
            for group_ids in data.epoch_batches(0)]


# -- levels ---------------------------------------------------------------------------------


def _physics_level(report: ParityReport, backends: Mapping[str, Any], size: int, intensity_scale: float) -> None:
    for name, backend in backends.items():
        ops, seconds = _timed(backend.physics_ops)
        report._time(name, "physics", seconds)
        for op in PHYSICS_OPS:
            arguments, expected = physics_case(op, size, intensity_scale)
            actual, seconds = _timed(lambda: getattr(ops, op)(*arguments))
            report._time(name, "physics", seconds)
            report._add("physics", op, f"N={size}, float32", f"{name} vs numpy",
                        relative_error(actual, expected), TOLERANCES[op])


def _refinement_level(
    report: ParityReport, backends: Mapping[str, Any], scan: ScanData, base: Config, iterations: int, precision: str
) -> None:
    from ptychopinn_core.refine import NumpyRefiner, RefineProblem, flat_start
    from ptychopinn_core.workflow import object_frame_for, refine_probe_for

    config = base.with_overrides(
        {
            "refine.iterations": iterations,
            "refine.probe": True,
            "refine.probe_delay": iterations // 2,
            "execution.precision": precision,
        },
        source="parity",
    )
    problem = RefineProblem.for_scan(scan, object_frame_for(scan), config)
    probe = refine_probe_for(scan, config)
    start = flat_start(problem, probe)
    case = f"{iterations} iterations, {scan.n_positions} positions, {_precision_name(precision)}"
    key = f"refinement:{precision}"
    results = {"numpy": NumpyRefiner(problem, precision).run(start, probe)}
    for name, backend in backends.items():
        results[name], seconds = _timed(lambda backend=backend: backend.refiner(problem, config).run(start, probe))
        report._time(name, "refinement", seconds)
    for first, second in [("numpy", name) for name in backends] + _pairs(list(backends)):
        a, b = results[first], results[second]
        report._add("refinement", "object", case, f"{second} vs {first}", relative_error(b.object, a.object), key)
        report._add("refinement", "probe", case, f"{second} vs {first}", relative_error(b.probe, a.probe), key)


def _trainers(backends: Mapping[str, Any]) -> dict[str, Any]:
    """The backends that train (the others run trained models only)."""
    return {name: backend for name, backend in backends.items() if backend.info.capabilities.training}


def _with_precision(backends: Mapping[str, Any], precision: str) -> dict[str, Any]:
    """The backends that support ``precision``, in order."""
    return {name: backend for name, backend in backends.items() if precision in backend.info.capabilities.precisions}


def _supported(precisions: Sequence[str], backends: Mapping[str, Any], wanted: int) -> tuple[list[str], list[str]]:
    """``precisions`` that at least ``wanted`` of ``backends`` support (float32, which every
    backend has, when none is), and the rest."""
    kept = [p for p in precisions if len(_with_precision(backends, p)) >= wanted]
    return kept or ["32"], [p for p in precisions if p not in kept]


def _case_config(base: Config, case: ParityCase, precision: str, steps: int, n_positions: int) -> Config:
    """One epoch of exactly ``steps`` batches (fewer when the scan is too small), no validation."""
    n_groups = min(steps * base.training.batch_size, n_positions)
    return base.with_overrides(
        {
            "model.gridsize": case.gridsize,
            "model.architecture": case.architecture,
            "model.group_network": case.group_network,
            "training.mode": case.mode,
            "execution.precision": precision,
            "execution.device": "cpu",
            "execution.strategy": "single",
            "training.epochs": 1,
            "training.validation_fraction": 0.0,
            "data.n_groups": n_groups,
        }
    )


def _one_batch_levels(
    report: ParityReport, backends: Mapping[str, Any], scan: ScanData, base: Config, case: ParityCase, precision: str
) -> None:
    """Forward, loss and gradients of one batch from the same weights in every backend."""
    config = _case_config(base, case, precision, 1, scan.n_positions).with_overrides({"data.n_groups": None})
    state = prepare_model_state(scan, config)
    data = prepare_training_data(scan, config)
    group_ids = data.train_groups[:BATCH_GROUPS]
    diffraction, offsets = data.gather(group_ids)
    truth = data.gather_truth(group_ids) if case.mode == "supervised" else None
    weights = initial_weights(parameter_specs(config.model), config.training.seed)
    floor = batch_loss_floor(diffraction, data.intensity_scale, config.training)
    bits = _bits(precision)
    label = f"{case.label}, {_precision_name(precision)}"

    results = {}
    trainers = _trainers(backends)
    for name, backend in backends.items():
        model = backend.build_model(config, state, weights)
        forward, forward_seconds = _timed(lambda: model.forward(diffraction, offsets))
        loss, gradients, gradient_seconds = None, None, 0.0
        if name in trainers:
            (loss, gradients), gradient_seconds = _timed(
                lambda: model.loss_and_gradients(diffraction, offsets, truth))
        report._time(name, f"forward+gradients ({_precision_name(precision)})", forward_seconds + gradient_seconds)
        results[name] = (forward, loss, gradients)

    for first, second in _pairs(list(backends)):
        (forward_a, loss_a, gradients_a), (forward_b, loss_b, gradients_b) = results[first], results[second]
        compared = f"{second} vs {first}"
        if case.mode == "pinn":  # the forward pass does not depend on the mode: once per gridsize
            report._add("forward", "patches", label, compared,
                        relative_error(forward_b.patches, forward_a.patches), f"forward:{bits}")
            report._add("forward", "amplitude", label, compared,
                        relative_error(forward_b.amplitude, forward_a.amplitude), f"forward:{bits}")
            if precision != "64":
                maps = report.maps.setdefault(case.label, {})
                maps[f"amplitude |{second} - {first}|"] = np.abs(forward_b.amplitude[0, 0] - forward_a.amplitude[0, 0])
                maps[f"phase |{second} - {first}|"] = np.abs(
                    np.angle(forward_b.patches[0, 0] * np.conj(forward_a.patches[0, 0]))
                )
        if first not in trainers or second not in trainers:
            continue
        report._add("loss", "loss", label, compared, abs(loss_b - loss_a) / abs(loss_a - floor), f"loss:{bits}")
        all_a = np.concatenate([value.ravel() for value in gradients_a.values()])
        all_b = np.concatenate([gradients_b[key].ravel() for key in gradients_a])
        report._add("gradients", "all parameters", label, compared, relative_error(all_b, all_a), f"gradients:{bits}")
        per_parameter = {
            key: relative_error(gradients_b[key], value) for key, value in gradients_a.items() if np.any(value)
        }
        worst = max(per_parameter, key=per_parameter.get)
        report._add("gradients", f"worst parameter ({worst})", label, compared, per_parameter[worst],
                    f"gradients:{bits}")


def _training_level(
    report: ParityReport, backends: Mapping[str, Any], scan: ScanData, base: Config, case: ParityCase, steps: int,
    precision: str,
) -> dict[str, ModelBundle]:
    """``steps`` optimisation steps per backend from the same weights; the trained bundles.

    :func:`ptychopinn_core.workflow.train` starts every backend from the core's initial
    weights, normalisation, grouping and batch order, so the runs differ only by backend.
    """
    from ptychopinn_core.workflow import train

    config = _case_config(base, case, precision, steps, scan.n_positions)
    bits = _bits(precision)
    label = f"{case.label}, {_precision_name(precision)}"
    floors = _batch_floors(prepare_training_data(scan, config), config.training)
    curves: dict[str, list[float]] = {}
    bundles: dict[str, ModelBundle] = {}
    for name, backend in backends.items():
        losses: list[float] = []

        def record(event, losses=losses) -> None:
            if event.stage == "batch":
                losses.append(float(event.metrics["train_loss"]))

        bundles[name], seconds = _timed(lambda: train(scan, config, backend, record))
        report._time(name, f"training ({steps} steps, {_precision_name(precision)})", seconds)
        curves[name] = losses
    report.curves[label] = curves
    for first, second in _pairs(list(backends)):
        report._add("training", f"loss curve ({steps} steps)", label, f"{second} vs {first}",
                    _curve_error(curves[second], curves[first], floors), f"training:{bits}")
    return bundles


def _reconstruction_level(
    report: ParityReport, backends: Mapping[str, Any], scan: ScanData, case: ParityCase,
    bundles: Mapping[str, ModelBundle], folder: Path,
) -> None:
    """Each backend's bundle, through a file, reconstructed by every backend."""
    from ptychopinn_core.evaluation import evaluate
    from ptychopinn_core.workflow import reconstruct

    objects: dict[tuple[str, str], np.ndarray] = {}
    reconstructions = {}
    for trainer, bundle in bundles.items():
        path = write_bundle(folder / f"{trainer}-g{case.gridsize}-{case.mode}-{case.architecture}-{case.group_network}.zip", bundle)
        loaded = read_bundle(path)
        for runner, backend in backends.items():
            recon, seconds = _timed(lambda: reconstruct(loaded, scan, backend))
            report._time(runner, "reconstruction", seconds)
            objects[trainer, runner] = recon.object
            if trainer == runner:
                reconstructions[trainer] = recon
    label = f"{case.label}, float32"
    for trainer in bundles:
        own = objects[trainer, trainer]
        for runner in backends:
            if runner != trainer:
                report._add("reconstruction", f"bundle of {trainer}", label, f"{runner} vs {trainer}",
                            relative_error(objects[trainer, runner], own), "reconstruction")
    names = list(bundles)
    if len(names) >= 2:
        first, second = names[:2]
        report.maps.setdefault(case.label, {})[f"reconstruction |{second} - {first}| (own training)"] = np.abs(
            objects[second, second] - objects[first, first]
        )
    if scan.object is None:
        return
    scores = {name: evaluate(recon, scan.object, scan.positions_px) for name, recon in reconstructions.items()}
    for first, second in _pairs(names):
        for part in ("amplitude", "phase"):
            ssim_a, ssim_b = scores[first][part]["ssim"], scores[second][part]["ssim"]
            report._add("quality", f"SSIM {part} ({ssim_a:.3f} vs {ssim_b:.3f})", label, f"{second} vs {first}",
                        abs(ssim_b - ssim_a), "quality")


# -- entry point ----------------------------------------------------------------------------


def run_parity(
    scan: ScanData,
    backends: Mapping[str, Any],
    config: Config | None = None,
    *,
    steps: int = 20,
    cases: Sequence[ParityCase] | None = None,
    precisions: Sequence[str] = ("32", "64"),
    training_precisions: Sequence[str] = ("32",),
    reconstruction: bool = True,
    refine_iterations: int = 10,
    progress: Callable[[str], None] | None = None,
) -> ParityReport:
    """Compare ``backends`` level by level on ``scan`` (see the module docstring).

    Parameters
    ----------
    scan : ScanData
        The data; its pattern size sets ``model.pattern_size``. Supervised cases need
        ground-truth patches (``Y``) and are skipped, with a note, without them.
    backends : mapping of str to Backend
        Selected backends (:meth:`BackendRegistry.get`), at least one; pairs are
        compared in the mapping's order (those that train first), the first as the reference.
    config : Config, optional
        Base configuration (architecture, batch size, seed, loss weights).
    steps : int
        Optimisation steps of the training level.
    cases : sequence of ParityCase, optional
        Default: every architecture x gridsize 1 and 2 (those every backend supports)
        x every group network (gridsize 2) x pinn and supervised.
    precisions : sequence of {"32", "64"}
        Precisions of the forward, loss and gradient levels.
    training_precisions : sequence of {"32", "64", "bf16-mixed"}
        Precisions of the training level (float64 training is slow on CPUs: PyTorch
        has no fast float64 convolution there); the models trained in the first one
        are the ones reconstructed.
    reconstruction : bool
        Run the reconstruction level (each trained bundle through every backend).
    refine_iterations : int
        Iterations of the refinement level (0 skips it).
    progress : callable, optional
        Receives a short text before each stage.

    Returns
    -------
    ParityReport
    """
    from ptychopinn_core.workflow import config_for_scan

    if not backends:
        raise ValueError("parity: expected at least one backend, received none")
    if not precisions or not training_precisions:
        raise ValueError("parity: expected at least one precision for each of precisions and training_precisions")
    if steps < 1:
        raise ValueError(f"parity: expected steps >= 1, received steps={steps}")
    say = progress or (lambda text: None)
    base = config_for_scan(config or Config(), scan)
    if cases is None:
        gridsizes = sorted(set.intersection(*(set(b.info.capabilities.gridsizes) for b in backends.values())))
        cases = parity_cases([g for g in gridsizes if g <= 2])
    if scan.patches is None and any(case.mode == "supervised" for case in cases):
        cases = [case for case in cases if case.mode != "supervised"]
        supervised_note = "supervised cases skipped: the scan has no ground-truth patches (Y)"
    else:
        supervised_note = None
    trainers = _trainers(backends)
    backends = {**trainers, **backends}  # trainers first: the references of the pairs
    precisions, dropped = _supported(precisions, backends, min(2, len(backends)))
    training_precisions, dropped_training = _supported(training_precisions, trainers, 1)
    for name, backend in backends.items():
        for case in cases:
            for precision in {*precisions, *training_precisions} & set(backend.info.capabilities.precisions):
                backend.check_config(_case_config(base, case, precision, steps, scan.n_positions),
                                     training=name in trainers)

    report = ParityReport(
        backends=list(backends),
        settings={
            "pattern_size": base.model.pattern_size,
            "n_positions": scan.n_positions,
            "n_filters_scale": base.model.n_filters_scale,
            "batch_size": base.training.batch_size,
            "batch_groups": BATCH_GROUPS,
            "steps": steps,
            "refine_iterations": refine_iterations,
            "seed": base.training.seed,
            "cases": [case.label for case in cases],
            "precisions": [_precision_name(p) for p in precisions],
            "training_precisions": [_precision_name(p) for p in training_precisions],
            "source": scan.meta.get("source_file"),
        },
    )
    if supervised_note:
        report.notes.append(supervised_note)
    for precision in sorted({*dropped, *dropped_training}):
        report.notes.append(f"{_precision_name(precision)} skipped: not supported by enough of the backends compared")
    for name, backend in backends.items():
        missing = [_precision_name(p) for p in precisions if p not in backend.info.capabilities.precisions]
        if missing:
            report.notes.append(f"{name}: {', '.join(missing)} not supported, compared in the other precisions")
        if name not in trainers:
            report.notes.append(f"{name}: runs trained models only: in the physics, forward, refinement and "
                                "reconstruction levels (it runs every trainer's bundle), not loss, gradients, training")
    if len(backends) < 2:
        report.notes.append("one backend installed: only its physics is checked (install a second one)")

    say("physics steps against the numpy reference")
    state = prepare_model_state(scan, base)
    _physics_level(report, backends, base.model.pattern_size, state.intensity_scale)
    if refine_iterations:
        for precision in precisions:
            say(f"refinement, {_precision_name(precision)}: {refine_iterations} iterations from a flat start")
            _refinement_level(report, _with_precision(backends, precision), scan, base, refine_iterations, precision)
    if len(backends) < 2:
        return report
    if not trainers:
        report.notes.append("no backend that trains: the training and reconstruction levels are skipped")
    with tempfile.TemporaryDirectory(prefix="ptychopinn-parity-") as folder:
        for case in cases:
            for precision in precisions:
                say(f"{case.label}, {_precision_name(precision)}: forward pass, loss and gradients")
                _one_batch_levels(report, _with_precision(backends, precision), scan, base, case, precision)
            if not trainers:
                continue
            trained = {}
            for precision in training_precisions:
                say(f"{case.label}, {_precision_name(precision)}: {steps} training steps")
                trained[precision] = _training_level(report, _with_precision(trainers, precision), scan, base, case,
                                                     steps, precision)
            bundles = trained[training_precisions[0]]  # the first precision's models are reconstructed
            if reconstruction:
                say(f"{case.label}: reconstruction from each bundle by every backend")
                _reconstruction_level(report, backends, scan, case, bundles, Path(folder))
    return report
