"""The user-level steps, independent of the backend: train a bundle, reconstruct a scan.

These functions hold the glue that the command line, the demo, the Ptychodus adapter and
Python users share, so each of them trains and reconstructs in exactly one way::

    from ptychopinn_core import workflow
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.data import read_scan

    backend = BackendRegistry.discover().get("pytorch")
    bundle = workflow.train(read_scan("train.npz"), config, backend)
    recon = workflow.reconstruct(bundle, read_scan("scan.npz"), backend)
    recon = workflow.refine(recon, read_scan("scan.npz"), config, backend)

Everything framework-specific happens behind :class:`~ptychopinn_core.backends.Backend`.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any

import numpy as np

from ptychopinn_core import __version__
from ptychopinn_core.progress import ProgressCallback, ProgressEvent
from ptychopinn_core.backends.registry import Backend
from ptychopinn_core.config import Config, RefineConfig
from ptychopinn_core.data import ScanData
from ptychopinn_core.model.bundle import ModelBundle, make_manifest
from ptychopinn_core.model.parameters import initial_weights, parameter_specs, validate_weights
from ptychopinn_core.physics.stitching import ObjectFrame, Stitcher, default_crop_size
from ptychopinn_core.reconstruction import META_CROP_SIZE_KEY, Reconstruction
from ptychopinn_core.refine.problem import Observer, RefineProblem, flat_start
from ptychopinn_core.inference_chunks import prepare_inference_inputs
from ptychopinn_core.model.inputs import model_probe, prepare_model_state
from ptychopinn_core.training.data import prepare_training_data

__all__ = [
    "train",
    "reconstruct",
    "refine",
    "refine_problem",
    "refine_probe_for",
    "flat_reconstruction",
    "with_default_refine",
    "object_frame_for",
    "config_for_scan",
]

_log = logging.getLogger(__name__)


def train(
    scan: ScanData,
    config: Config,
    backend: Backend,
    progress: ProgressCallback | None = None,
    *,
    start_weights: Mapping[str, np.ndarray] | None = None,
    start_source: str = "start weights",
) -> ModelBundle:
    """Train a model on ``scan`` with ``backend``; return it as a backend-neutral bundle.

    The core decides everything both backends must agree on: the initial weights
    (Glorot, seeded by ``training.seed``), the normalisation, the grouping, the
    validation split and the batch order. The backend only runs the optimisation.

    Parameters
    ----------
    scan : ScanData
        Training scan (``Y`` required in supervised mode).
    config : Config
        ``model.pattern_size`` is taken from the scan when it differs from the default.
    backend : Backend
        A selected backend (:meth:`BackendRegistry.get`).
    progress : callable, optional
        Receives :class:`~ptychopinn_core.backends.contract.ProgressEvent`.
    start_weights : mapping of str to ndarray, optional
        Canonical weights to start from instead of the seeded initial ones: another
        model's (``ModelBundle.weights``) to train further, e.g. a gridsize-1 model as
        the start of a gridsize-2 one with the shared group network (the same
        parameter list, docs/physics.md §3).
    start_source : str
        Names ``start_weights`` in the error when they do not fit ``config.model``.

    Raises
    ------
    WeightsError (a ValueError)
        ``start_weights`` do not fit the model; the message names the parameter.
    """
    config = config_for_scan(config, scan)
    backend.check_config(config, training=True)
    specs = parameter_specs(config.model)
    if start_weights is None:
        weights = initial_weights(specs, config.training.seed)
    else:
        weights = validate_weights(start_weights, specs, source=start_source)
    state = prepare_model_state(scan, config)
    data = prepare_training_data(scan, config)
    model = backend.build_model(config, state, weights)
    history = backend.train(model, data, config, progress)
    manifest = make_manifest(
        mode=config.training.mode,
        backend=backend.name,
        framework=backend.info.framework,
        framework_version=backend.entry.framework_version or "unknown",
    )
    return ModelBundle(
        manifest=manifest,
        config=config,
        weights=model.get_weights(),
        state=model.state,
        history=history,
    )


def reconstruct(
    bundle: ModelBundle,
    scan: ScanData,
    backend: Backend,
    *,
    chunk_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> Reconstruction:
    """Predict every position of ``scan`` in chunks and stitch them onto its object frame.

    Memory is bounded by one chunk plus the canvas (and, with ``inference.phase_sync``,
    the placed windows: about 5 KiB a position at N = 64, 24 KiB at the synchronisation's
    peak). For ``C > 1`` each position seeds
    one group and its prediction is channel 0 of that group after the overlap
    constraint (the merged object seen from the seed). The frame is the scan's
    ``objectGuess`` grid when it has one, so the result lines up with it.
    """
    config = bundle.config
    if scan.pattern_size != config.model.pattern_size:
        raise ValueError(
            f"pattern size mismatch: the model was trained on N={config.model.pattern_size}, "
            f"the scan has N={scan.pattern_size}"
        )
    model = backend.build_model(config, bundle.state, bundle.weights)
    crop = config.inference.stitch_crop or default_crop_size(scan.pattern_size)
    frame = object_frame_for(scan)
    stitcher = Stitcher(frame, crop_size=crop, patch_size=scan.pattern_size, phase_sync=config.inference.phase_sync)
    chunk_size = chunk_size or config.inference.chunk_size
    n_groups = scan.n_positions
    normalisation = None
    for chunk in prepare_inference_inputs(scan, config, bundle.state, chunk_size):
        patches = model.predict(chunk.diffraction, chunk.offsets_xy)
        stitcher.add(patches[:, 0], chunk.positions_xy[:, 0])
        normalisation = chunk.amplitude_normalisation
        if progress is not None:
            progress(
                ProgressEvent(
                    stage="batch",
                    epoch=0,
                    n_epochs=1,
                    step=stitcher.n_added,
                    n_steps=n_groups,
                    metrics={},
                )
            )
    if progress is not None:  # the pass is complete: the one "epoch" of inference
        progress(ProgressEvent(stage="epoch", epoch=0, n_epochs=1, step=n_groups, n_steps=n_groups, metrics={}))
    meta: dict[str, Any] = {
        "generator": f"ptychopinn {__version__}",
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "backend": backend.name,
        "trained_by": bundle.manifest.get("backend"),
        "mode": config.training.mode,
        "n_positions": scan.n_positions,
        "pattern_size": scan.pattern_size,
        "gridsize": config.model.gridsize,
        META_CROP_SIZE_KEY: crop,
        "amplitude_normalisation": normalisation,
        "frame": frame.to_json(),
        "phase_sync": config.inference.phase_sync,
        "frame_kind": "objectGuess" if scan.object is not None else "around_positions",
        "source_file": scan.meta.get("source_file"),
    }
    obj = stitcher.result()
    if config.inference.phase_sync:
        meta["phase_sync_steps"] = stitcher.sync_steps_run
    return Reconstruction(object=obj, frame=frame, meta=meta)


def refine(
    recon: Reconstruction,
    scan: ScanData,
    config: Config,
    backend: Backend,
    *,
    progress: ProgressCallback | None = None,
    observe: Observer | None = None,
) -> Reconstruction:
    """Fit ``recon``'s object (and, with ``refine.probe``, its probe) to ``scan``'s patterns.

    The start is whatever ``recon`` holds: the network's stitched object, another code's
    reconstruction, or :func:`~ptychopinn_core.refine.flat_start`. The probe starts from
    ``recon.probe`` when it has one, else from :func:`refine_probe_for` the scan.
    ``config.refine`` sets the iterations and step rule, ``config.data.nphotons`` the
    photon scale and ``config.execution`` the device and precision (physics.md §10).

    Raises
    ------
    ValueError
        ``recon`` is not on ``scan``'s object frame, or its probe does not fit the patterns.
    """
    problem, probe = refine_problem(recon, scan, config)
    frame = problem.frame
    if config.refine.iterations == 0:
        return Reconstruction(object=recon.object, frame=frame, meta=dict(recon.meta), probe=probe)
    refiner = backend.refiner(problem, config)
    started = time.perf_counter()
    result = refiner.run(recon.object, probe, progress, observe)
    meta = dict(recon.meta)
    meta["refine"] = {
        **config.refine.model_dump(mode="json"),
        "backend": backend.name,
        "precision": config.execution.precision,
        "seconds": time.perf_counter() - started,
        "final_loss": result.losses[-1] if result.losses else None,
        "first_loss": result.losses[0] if result.losses else None,
    }
    return Reconstruction(object=result.object, frame=frame, meta=meta, probe=result.probe)


def refine_problem(recon: Reconstruction, scan: ScanData, config: Config) -> tuple[RefineProblem, np.ndarray]:
    """The problem of refining ``recon`` against ``scan``, and the probe to start from.

    Raises ValueError when ``recon`` is not on the scan's object frame or its probe or
    object does not fit, before any work starts.
    """
    frame = object_frame_for(scan)
    if recon.frame != frame:
        raise ValueError(
            f"reconstruction frame {recon.frame.to_json()} is not the object frame of the scan "
            f"{frame.to_json()}: refine a reconstruction of this scan"
        )
    probe = recon.probe if recon.probe is not None else refine_probe_for(scan, config)
    problem = RefineProblem.for_scan(scan, frame, config)
    problem.check_variables(recon.object, probe)
    return problem, probe


def with_default_refine(config: Config) -> Config:
    """``config`` with today's ``[refine]`` defaults.

    A bundle stores the configuration it was trained with, ``[refine]`` included, but
    refinement settings say how a reconstruction is finished, not what the model is: an
    older bundle must not pin the refinement defaults of its day.
    """
    return config.model_copy(update={"refine": RefineConfig()})


def refine_probe_for(scan: ScanData, config: Config) -> np.ndarray:
    """The probe refinement starts from: the scan's own, as a model runs it (physics.md §5)."""
    return model_probe(scan.probe, config.model.probe_mask)


def flat_reconstruction(scan: ScanData, config: Config, probe: np.ndarray | None = None) -> Reconstruction:
    """The iterative baseline as a reconstruction: :func:`~ptychopinn_core.refine.flat_start`
    on the scan's object frame, with ``probe`` (default :func:`refine_probe_for` the scan)."""
    frame = object_frame_for(scan)
    probe = refine_probe_for(scan, config) if probe is None else probe
    obj = flat_start(RefineProblem.for_scan(scan, frame, config), probe)
    crop = config.inference.stitch_crop or default_crop_size(scan.pattern_size)
    return Reconstruction(object=obj, frame=frame, meta={"start": "flat", META_CROP_SIZE_KEY: crop}, probe=probe)


def object_frame_for(scan: ScanData) -> ObjectFrame:
    """The scan's object grid when it has one, else the smallest frame around the scan."""
    if scan.object is not None:
        return ObjectFrame.for_object(scan.object.shape)
    return ObjectFrame.around_positions(scan.positions_px, scan.pattern_size)


def config_for_scan(config: Config, scan: ScanData) -> Config:
    """``config`` with ``model.pattern_size`` set to the scan's pattern size.

    The pattern size is a property of the data, not a choice: training always uses
    the scan's N (with a note when the configuration said otherwise).
    """
    if config.model.pattern_size == scan.pattern_size:
        return config
    _log.info(
        "model.pattern_size set to %d, the pattern size of the training data (was %d)",
        scan.pattern_size,
        config.model.pattern_size,
    )
    source = f"{scan.meta.get('source_file') or 'the scan'} (its {scan.pattern_size} x {scan.pattern_size} patterns)"
    return config.with_overrides({"model.pattern_size": scan.pattern_size}, source=source)
