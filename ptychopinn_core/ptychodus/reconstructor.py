"""``PINNReconstructor``: one backend and one training mode as a Ptychodus reconstructor.

It implements Ptychodus 1.7's ``TrainableReconstructor`` on top of the core's workflow
(:func:`ptychopinn_core.workflow.train`, :func:`~ptychopinn_core.workflow.reconstruct`),
so Ptychodus trains and reconstructs exactly as ``ptychopinn train``/``infer`` do:

- **reconstruct**: converts the input
  (:mod:`ptychopinn_core.data.importers.ptychodus_product`),
  predicts every position with the loaded model and stitches the patches onto the
  INPUT object's grid, then refines that object (and, with ``RefineProbe``, the probe)
  against the measured patterns (:func:`ptychopinn_core.workflow.refine`, the
  ``Refine*`` settings; ``RefineIterations = 0`` keeps the network's object). The
  output product is the input product with that object (same shape, pixel geometry
  and centre), the refined probe as incoherent mode 0 when the probe was refined
  (:func:`product_probes`), the model's per-epoch training losses, and a line in the
  comments naming the reconstructor (``'{library}_{reconstructor}'`` casefolded) that
  produced it and the refinement done. Progress is logged per chunk of positions
  (``ChunkSize``) and per refinement iteration; the product is yielded once, complete
  (Ptychodus writes one product file per yield).
- **train**: reads the training data from ``input_path`` (:func:`training_scan`),
  trains in a worker thread and yields a ``TrainOutput`` after every epoch (losses so
  far, progress = epochs done). Ptychodus checks its stop flag after each result and
  then closes the generator; training ends after the batch in progress and no model
  is written. The model is written to ``output_path/model.zip`` (the name the
  batch mode loads) and stays loaded.
- **model files** are the core's bundles (``.zip``, :mod:`ptychopinn_core.model.bundle`),
  or their exports in an installed format (``.onnx``, :mod:`ptychopinn_core.model.formats`):
  a model trained by any backend loads in any other. A backend that runs trained models
  only (ONNX) refuses ``train`` at once, naming what to do instead.
- **export_training_data** writes the canonical NPZ that ``ptychopinn train`` reads.

The framework is imported by the backend only when a model is built (train,
reconstruct); constructing a reconstructor imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np

from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.io import StandardFileLayout, load_diffraction_data, load_product
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.product import LossValue, Product
from ptychodus.api.reconstruct import (
    ReconstructInput,
    ReconstructOutput,
    TrainableReconstructor,
    TrainOutput,
    prepare_reconstruct_input,
)

from ptychopinn_core import __version__, workflow
from ptychopinn_core.backends import Backend, ProgressEvent
from ptychopinn_core.config import Config
from ptychopinn_core.data import ScanData, read_scan, write_scan
from ptychopinn_core.model.bundle import ModelBundle, write_bundle
from ptychopinn_core.model.formats import BUNDLE_FORMAT_NAME, installed_formats, read_model
from ptychopinn_core.physics.probe_model import circular_probe_mask
from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.reconstruction import Reconstruction
from ptychopinn_core.data.importers.ptychodus_product import scan_from_reconstruct_input
from ptychopinn_core.ptychodus.convert import losses_from_history, mean_counts_per_pattern, output_product
from ptychopinn_core.ptychodus.settings import PINNSettings

__all__ = [
    "MODEL_FILE_EXTENSION",
    "MODE_NAMES",
    "TRAINING_DATA_FILE",
    "PINNReconstructor",
    "TrainingStopped",
    "probe_refined",
    "product_probes",
    "reconstructor_key",
    "training_scan",
]

#: Model bundle extension (with the dot), as Ptychodus asks for it.
MODEL_FILE_EXTENSION = ".zip"
#: Canonical NPZ a training directory may hold (the name Ptychodus' own PtychoPINN uses).
TRAINING_DATA_FILE = "train_data.npz"
#: Training mode (``training.mode``) -> reconstructor name shown in Ptychodus.
MODE_NAMES: dict[str, str] = {"pinn": "PINN", "supervised": "Supervised"}


def reconstructor_key(library_name: str, reconstructor_name: str) -> str:
    """Ptychodus' selection key, ``'{library}_{reconstructor}'`` casefolded (``Algorithm`` setting)."""
    return f"{library_name.casefold()}_{reconstructor_name.casefold()}"


class TrainingStopped(RuntimeError):
    """Raised inside the training thread when Ptychodus stops the task."""


def _standard_layout_scan(directory: Path, with_truth_patches: bool) -> ScanData:
    """Scan of a Ptychodus batch directory (``diffraction.h5`` + ``product.h5``)."""
    assembled: AssembledDiffractionData = load_diffraction_data(directory / StandardFileLayout.DIFFRACTION)
    product = load_product(directory / StandardFileLayout.PRODUCT)
    parameters = prepare_reconstruct_input(assembled, product)
    return scan_from_reconstruct_input(parameters, with_truth_patches=with_truth_patches)


def training_scan(input_path: str | os.PathLike[str], *, with_truth_patches: bool = False) -> ScanData:
    """The training data Ptychodus points a trainer at, as a canonical scan.

    Ptychodus hands ``train`` a path only (the GUI: a directory the user picks; the
    batch mode: the input directory). Accepted, first match wins:

    1. a file: a canonical (or legacy) NPZ, read with :func:`~ptychopinn_core.data.read_scan`;
    2. a directory holding ``train_data.npz`` (e.g. written by *Export Training Data*);
    3. a directory in Ptychodus' standard layout, ``diffraction.h5`` + ``product.h5``,
       converted like a reconstruction input (the product's object is the truth ``Y``
       when ``with_truth_patches``).

    Raises
    ------
    FileNotFoundError
        None of these exists; the message lists what was looked for.
    """
    path = Path(input_path)
    if path.is_file():
        return read_scan(path)
    if path.is_dir():
        if (path / TRAINING_DATA_FILE).is_file():
            return read_scan(path / TRAINING_DATA_FILE)
        layout = (path / StandardFileLayout.DIFFRACTION, path / StandardFileLayout.PRODUCT)
        if all(part.is_file() for part in layout):
            return _standard_layout_scan(path, with_truth_patches)
    raise FileNotFoundError(
        f"no training data at {path}: expected a canonical NPZ file, or a directory holding "
        f"{TRAINING_DATA_FILE} or {StandardFileLayout.DIFFRACTION} + {StandardFileLayout.PRODUCT}"
    )


def _model_path(output_path: Path) -> Path:
    """Where ``train`` writes the model: ``output_path`` if it names a .zip, else ``output_path/model.zip``."""
    if output_path.suffix == MODEL_FILE_EXTENSION:
        return output_path
    return output_path / f"{StandardFileLayout.MODEL_BASENAME}{MODEL_FILE_EXTENSION}"


def probe_refined(config: Config) -> bool:
    """Whether a refinement with ``config`` updates the probe (``refine.probe``, after ``probe_delay``)."""
    return config.refine.probe and config.refine.iterations > config.refine.probe_delay


def product_probes(template: Product, refined_probe: np.ndarray, probe_mask: bool) -> ProbeSequence:
    """The input product's probes with incoherent mode 0 replaced by ``refined_probe``.

    Refinement works with the probe normalised like the model's (physics.md §5):
    ``P_r = k * mask * P_in`` at the start, ``k = N / sqrt(sum |mask * P_in|**2)``. The
    product gets ``P_r / k``: the input probe's scale, so an unchanged probe comes back
    as the input probe (masked, when the model masks it) and the object keeps the scale
    it has without refinement. Mode 0 is the one the conversion read (of the first
    coherent mode, without OPR variation); the other modes and the OPR weights are kept.
    """
    probes = template.probes
    array = np.array(probes.get_array(), copy=True)
    start = array[0, 0].astype(np.complex128)
    size = start.shape[-1]
    if probe_mask:
        start = start * circular_probe_mask(size, dtype=np.float64)
    scale = size / np.sqrt(np.sum(np.abs(start) ** 2))
    refined_probe = np.asarray(refined_probe)
    if refined_probe.shape != start.shape:
        raise ValueError(
            f"invalid refined probe: expected the product's probe shape {start.shape}, received {refined_probe.shape}"
        )
    array[0, 0] = (refined_probe.astype(np.complex128) / scale).astype(array.dtype)
    opr_weights = probes.get_opr_weights_or_none()
    return ProbeSequence(
        array=array,
        opr_weights=None if opr_weights is None else opr_weights.copy(),
        pixel_geometry=probes.get_pixel_geometry().copy(),
    )


class PINNReconstructor(TrainableReconstructor):
    """A PtychoPINN backend in one training mode, as a Ptychodus ``TrainableReconstructor``.

    Parameters
    ----------
    library_name : str
        Name of the library it belongs to (``"PINN-TensorFlow"``).
    mode : {"pinn", "supervised"}
        Training mode; the reconstructor is named ``MODE_NAMES[mode]``.
    backend : Backend
        The selected backend (from the library's ``BackendRegistry``).
    settings : PINNSettings
        The library's settings group, read at run time.
    logger : logging.Logger
        The library's logger (Ptychodus shows its records in the processing log).
    """

    def __init__(
        self,
        library_name: str,
        mode: str,
        backend: Backend,
        settings: PINNSettings,
        logger: logging.Logger,
    ) -> None:
        if mode not in MODE_NAMES:
            raise ValueError(f"invalid mode: expected one of {sorted(MODE_NAMES)}, received mode={mode!r}")
        self._library_name = library_name
        self._mode = mode
        self._backend = backend
        self._settings = settings
        self._logger = logger
        self._bundle: ModelBundle | None = None
        self._progress_goal = 0

    # -- identity ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return MODE_NAMES[self._mode]

    @property
    def key(self) -> str:
        """The ``Algorithm`` value that selects this reconstructor."""
        return reconstructor_key(self._library_name, self.name)

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def bundle(self) -> ModelBundle | None:
        """The loaded (or just trained) model, if any."""
        return self._bundle

    def get_progress_goal(self) -> int:
        """Positions (reconstruct) or epochs (train) of the current run; 0 before one starts."""
        return self._progress_goal

    # -- model files ------------------------------------------------------------------

    def is_model_loaded(self) -> bool:
        return self._bundle is not None

    def get_model_file_filter(self) -> str:
        """Bundles, and the exports of every installed model format (``*.zip *.onnx``)."""
        exports = [f"*.{name}" for name in installed_formats() if name != BUNDLE_FORMAT_NAME]
        return f"PtychoPINN Model ({' '.join([f'*{MODEL_FILE_EXTENSION}', *exports])})"

    def get_model_file_extension(self) -> str:
        return MODEL_FILE_EXTENSION

    def load_model_from_file(self, file_path: Path) -> None:
        """Load a model trained by any backend; refuse one this backend cannot run."""
        bundle = read_model(file_path)
        self._backend.check_config(bundle.config, training=False)
        if bundle.manifest["mode"] != self._mode:
            self._logger.info(
                "%s: model %s was trained in mode %r; inference is the same network, using it",
                self.key, file_path, bundle.manifest["mode"],
            )
        self._bundle = bundle
        self._logger.info(
            "%s: loaded %s (trained by %s, %d epochs)",
            self.key, file_path, bundle.manifest["backend"], bundle.history.n_epochs,
        )

    def save_model(self, file_path: Path) -> None:
        if self._bundle is None:
            raise RuntimeError(f"{self.key}: no model to save; train or load one first")
        write_bundle(file_path, self._bundle)
        self._logger.info("%s: saved model to %s", self.key, file_path)

    # -- training data ----------------------------------------------------------------

    def get_training_data_file_filter(self) -> str:
        return "PtychoPINN Canonical NPZ (*.npz)"

    def export_training_data(self, file_path: Path, parameters: ReconstructInput) -> None:
        """Write the input as a canonical NPZ (``ptychopinn train --train FILE`` reads it).

        In supervised mode the product's object, sampled at every position, is stored as
        the ground truth ``Y``.
        """
        scan = scan_from_reconstruct_input(parameters, with_truth_patches=self._mode == "supervised")
        write_scan(file_path, scan)
        self._logger.info("%s: exported %d patterns to %s", self.key, scan.n_positions, file_path)

    # -- reconstruct ------------------------------------------------------------------

    def reconstruct(self, parameters: ReconstructInput) -> Iterator[ReconstructOutput]:
        """Predict, stitch onto the input object's grid, refine, and yield the finished product once.

        The settings are read first (:meth:`PINNSettings.config`, ``NumPhotons = 0`` =
        the measured mean total count per pattern of this data), so a bad value fails
        before the network runs.
        """
        bundle = self._bundle
        if bundle is None:
            raise RuntimeError(
                f"{self.key}: no model is loaded; train one (ptychodus -b train, or Train in the GUI) "
                f"or load one (Load Model..., or put model{MODEL_FILE_EXTENSION} in the batch input directory)"
            )
        scan = scan_from_reconstruct_input(parameters)
        config = self._refine_config(bundle, scan)
        # What the settings say about this run (read by Infer), not about the model:
        # the device and the [inference] section (stitching) replace the bundle's.
        run_config = bundle.config.model_copy(update={
            "inference": config.inference,
            "execution": bundle.config.execution.model_copy(update={"device": config.execution.device}),
        })
        if run_config != bundle.config:
            bundle = dataclasses.replace(bundle, config=run_config)
        self._progress_goal = scan.n_positions

        def log_progress(event: ProgressEvent) -> None:  # one event per chunk of positions
            self._logger.info("%s: %d/%d positions predicted", self.key, event.step, event.n_steps)

        def log_refinement(event: ProgressEvent) -> None:  # one event per iteration (steps are not logged)
            if event.stage == "epoch":
                self._logger.info(
                    "%s: refinement iteration %d/%d, loss %.6g",
                    self.key, event.epoch + 1, event.n_epochs, event.metrics.get("loss", float("nan")),
                )

        chunk_size = config.inference.chunk_size
        recon = workflow.reconstruct(bundle, scan, self._backend, chunk_size=chunk_size, progress=log_progress)
        expected_frame = ObjectFrame.for_object(scan.object.shape)
        if recon.frame != expected_frame:  # the workflow stitches on objectGuess's grid; keep it that way
            raise RuntimeError(
                f"{self.key}: reconstruction frame {recon.frame.to_json()} is not the input object's grid "
                f"{expected_frame.to_json()}"
            )
        refined = self._refine(recon, scan, config, log_refinement)
        training_losses, _ = losses_from_history(bundle.history)
        comment = (
            f"PtychoPINN: reconstructed by {self.key} (backend {self._backend.name}, model trained by "
            f"{bundle.manifest['backend']} in mode {bundle.manifest['mode']}{_refinement_note(refined, config)}, "
            f"ptychopinn-core {__version__})"
        )
        product = output_product(parameters.product, refined.object, training_losses, comment)
        if probe_refined(config) and refined.probe is not None:
            product = dataclasses.replace(
                product, probes=product_probes(parameters.product, refined.probe, config.model.probe_mask)
            )
        yield ReconstructOutput(product=product, progress=scan.n_positions, status=0)

    def _refine_config(self, bundle: ModelBundle, scan: ScanData) -> Config:
        """The run's configuration: the settings (measured photons of ``scan``) and the model's probe mask.

        The network's object goes with the probe the model was trained with, masked or
        not (``model.probe_mask`` of the bundle); refinement starts from the scan's probe
        treated the same way.
        """
        config = self._settings.config(self._mode, measured_nphotons=mean_counts_per_pattern(scan))
        if config.model.probe_mask != bundle.config.model.probe_mask:
            config = config.with_overrides(
                {"model.probe_mask": bundle.config.model.probe_mask}, source=f"model of {self.key}"
            )
        return config

    def _refine(self, recon: Reconstruction, scan: ScanData, config: Config, progress) -> Reconstruction:
        """``workflow.refine`` with this backend, logged; the network's object when ``RefineIterations = 0``."""
        settings = config.refine
        if settings.iterations == 0:
            self._logger.info("%s: RefineIterations = 0: the network's object, not refined", self.key)
        else:
            self._logger.info(
                "%s: refining the object%s for %d iterations (%s loss, %d positions per step)",
                self.key, " and the probe" if probe_refined(config) else "", settings.iterations,
                settings.loss, settings.batch_size,
            )
            if settings.probe and not probe_refined(config):
                self._logger.warning(
                    "%s: RefineProbe is on but RefineProbeDelay = %d >= RefineIterations = %d: the probe is not refined",
                    self.key, settings.probe_delay, settings.iterations,
                )
        refined = workflow.refine(recon, scan, config, self._backend, progress=progress)
        if refined.frame != recon.frame or refined.object.shape != recon.object.shape:
            raise RuntimeError(
                f"{self.key}: refined object {refined.object.shape} on {refined.frame.to_json()} is not on the "
                f"input object's grid {recon.frame.to_json()}"
            )
        return refined

    # -- train ------------------------------------------------------------------------

    def train(self, input_path: Path, output_path: Path) -> Iterator[TrainOutput]:
        """Train on the data at ``input_path``, yield per-epoch losses, write the model.

        Settings are read now (:meth:`PINNSettings.config`); ``NumPhotons = 0`` uses the
        measured mean total count per pattern of the training data.
        """
        if not self._backend.info.capabilities.training:
            raise RuntimeError(
                f"{self.key}: backend {self._backend.name!r} runs trained models only; train with a PtychoPINN "
                "library whose backend trains (`ptychopinn backends` lists them) or `ptychopinn train`, "
                "then load the model here"
            )
        scan = training_scan(input_path, with_truth_patches=self._mode == "supervised")
        config = self._settings.config(self._mode, measured_nphotons=mean_counts_per_pattern(scan))
        self._progress_goal = config.training.epochs
        self._logger.info(
            "%s: training on %d patterns (N=%d) from %s for up to %d epochs",
            self.key, scan.n_positions, scan.pattern_size, input_path, config.training.epochs,
        )
        training_losses: list[LossValue] = []
        validation_losses: list[LossValue] = []
        epochs = self._train_in_thread(scan, config)
        try:
            while True:
                try:
                    event = next(epochs)
                except StopIteration as finished:
                    bundle: ModelBundle = finished.value
                    break
                training_losses.append(
                    LossValue(epoch=event.epoch, value=event.metrics.get("train_loss", float("nan")))
                )
                if "val_loss" in event.metrics:
                    validation_losses.append(LossValue(epoch=event.epoch, value=event.metrics["val_loss"]))
                self._logger.info(
                    "%s: epoch %d/%d %s", self.key, event.epoch + 1, event.n_epochs,
                    ", ".join(f"{name} {value:.6g}" for name, value in event.metrics.items()),
                )
                yield TrainOutput(
                    training_loss=list(training_losses),
                    validation_loss=list(validation_losses),
                    progress=event.epoch + 1,
                    status=0,
                )
        finally:
            epochs.close()  # stopped early: stop and join the worker now, not at garbage collection
        model_path = _model_path(Path(output_path))
        model_path.parent.mkdir(parents=True, exist_ok=True)
        write_bundle(model_path, bundle)
        self._bundle = bundle
        self._logger.info("%s: wrote model %s (%s)", self.key, model_path, bundle.history.summary())

    def _train_in_thread(self, scan: ScanData, config) -> Generator[ProgressEvent, None, ModelBundle]:
        """Run ``workflow.train`` in a worker thread; yield its epoch events; return the bundle.

        Closing this generator (Ptychodus stopping the task) makes the next progress
        callback raise :class:`TrainingStopped` in the worker, which ends training after
        the current batch; the worker is joined before the generator finishes.
        """
        done = object()
        events: queue.Queue[object] = queue.Queue()
        stop = threading.Event()
        outcome: dict[str, object] = {}

        def progress(event: ProgressEvent) -> None:
            if stop.is_set():
                raise TrainingStopped(f"{self.key}: training stopped by Ptychodus")
            if event.stage == "epoch":
                events.put(event)

        def work() -> None:
            try:
                outcome["bundle"] = workflow.train(scan, config, self._backend, progress)
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                outcome["error"] = error
            finally:
                events.put(done)

        worker = threading.Thread(target=work, name=f"ptychopinn-train-{self._backend.name}", daemon=True)
        worker.start()
        try:
            while (event := events.get()) is not done:
                yield event  # type: ignore[misc]
        finally:
            stop.set()
            worker.join()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["bundle"]  # type: ignore[return-value]


def _refinement_note(refined: Reconstruction, config: Config) -> str:
    """``", refined: 20 iterations of the object and probe, amplitude loss 0.12 -> 0.034"`` (empty if none)."""
    record = refined.meta.get("refine")
    if not record:
        return ""
    what = "object and probe" if probe_refined(config) else "object"
    first, final = record.get("first_loss"), record.get("final_loss")
    losses = f" {first:.4g} -> {final:.4g}" if first is not None and final is not None else ""
    return f", refined: {record['iterations']} iterations of the {what}, {record['loss']} loss{losses}"
