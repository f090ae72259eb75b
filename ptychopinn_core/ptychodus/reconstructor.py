"""``PINNReconstructor``: one backend and one training mode as a Ptychodus reconstructor.

It implements Ptychodus 1.7's ``TrainableReconstructor`` on top of the core's workflow
(:func:`ptychopinn_core.workflow.train`, :func:`~ptychopinn_core.workflow.reconstruct`),
so Ptychodus trains and reconstructs exactly as ``ptychopinn train``/``infer`` do:

- **reconstruct**: converts the input (:mod:`ptychopinn_core.ptychodus.convert`),
  predicts every position with the loaded model and stitches the patches onto the
  INPUT object's grid; the output product is the input product with that object (same
  shape, pixel geometry and centre), the model's per-epoch training losses, and a line
  in the comments naming the reconstructor (``'{library}_{reconstructor}'``
  casefolded) that produced it. Progress is logged per chunk of positions
  (``ChunkSize``); the product is yielded once, complete (Ptychodus writes one product
  file per yield).
- **train**: reads the training data from ``input_path`` (:func:`training_scan`),
  trains in a worker thread and yields a ``TrainOutput`` after every epoch (losses so
  far, progress = epochs done). Ptychodus checks its stop flag after each result and
  then closes the generator; training ends after the batch in progress and no model
  is written. The model is written to ``output_path/model.zip`` (the name the
  batch mode loads) and stays loaded.
- **model files** are the core's bundles (``.zip``, :mod:`ptychopinn_core.model.bundle`):
  a bundle trained by any backend loads in any other.
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

from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.io import StandardFileLayout, load_diffraction_data, load_product
from ptychodus.api.product import LossValue
from ptychodus.api.reconstruct import (
    ReconstructInput,
    ReconstructOutput,
    TrainableReconstructor,
    TrainOutput,
    prepare_reconstruct_input,
)

from ptychopinn_core import __version__, workflow
from ptychopinn_core.backends import Backend, ProgressEvent
from ptychopinn_core.data import ScanData, read_scan, write_scan
from ptychopinn_core.model.bundle import ModelBundle, read_bundle, write_bundle
from ptychopinn_core.physics.stitching import ObjectFrame
from ptychopinn_core.ptychodus.convert import (
    losses_from_history,
    mean_counts_per_pattern,
    output_product,
    scan_from_reconstruct_input,
)
from ptychopinn_core.ptychodus.settings import PINNSettings

__all__ = [
    "MODEL_FILE_EXTENSION",
    "MODE_NAMES",
    "TRAINING_DATA_FILE",
    "PINNReconstructor",
    "TrainingStopped",
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
        return f"PtychoPINN Model Bundle (*{MODEL_FILE_EXTENSION})"

    def get_model_file_extension(self) -> str:
        return MODEL_FILE_EXTENSION

    def load_model_from_file(self, file_path: Path) -> None:
        """Load a bundle trained by any backend; refuse one this backend cannot run."""
        bundle = read_bundle(file_path)
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
        """Predict, stitch onto the input object's grid, and yield the finished product once."""
        bundle = self._bundle
        if bundle is None:
            raise RuntimeError(
                f"{self.key}: no model is loaded; train one (ptychodus -b train, or Train in the GUI) "
                f"or load one (Load Model..., or put model{MODEL_FILE_EXTENSION} in the batch input directory)"
            )
        scan = scan_from_reconstruct_input(parameters)
        device = self._settings.device.get_value()
        if device != bundle.config.execution.device:
            bundle = dataclasses.replace(
                bundle,
                config=bundle.config.with_overrides(
                    {"execution.device": device}, source=f"Ptychodus settings [{self._settings.group_name}] Device"
                ),
            )
        self._progress_goal = scan.n_positions

        def log_progress(event: ProgressEvent) -> None:  # one event per chunk of positions
            self._logger.info("%s: %d/%d positions predicted", self.key, event.step, event.n_steps)

        chunk_size = self._settings.chunk_size.get_value()
        if isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(
                f"Ptychodus settings [{self._settings.group_name}] ChunkSize: expected an int >= 1, "
                f"received ChunkSize={chunk_size!r}"
            )
        recon = workflow.reconstruct(bundle, scan, self._backend, chunk_size=chunk_size, progress=log_progress)
        expected_frame = ObjectFrame.for_object(scan.object.shape)
        if recon.frame != expected_frame:  # the workflow stitches on objectGuess's grid; keep it that way
            raise RuntimeError(
                f"{self.key}: reconstruction frame {recon.frame.to_json()} is not the input object's grid "
                f"{expected_frame.to_json()}"
            )
        training_losses, _ = losses_from_history(bundle.history)
        comment = (
            f"PtychoPINN: reconstructed by {self.key} (backend {self._backend.name}, model trained by "
            f"{bundle.manifest['backend']} in mode {bundle.manifest['mode']}, ptychopinn-core {__version__})"
        )
        product = output_product(parameters.product, recon.object, training_losses, comment)
        yield ReconstructOutput(product=product, progress=scan.n_positions, status=0)

    # -- train ------------------------------------------------------------------------

    def train(self, input_path: Path, output_path: Path) -> Iterator[TrainOutput]:
        """Train on the data at ``input_path``, yield per-epoch losses, write the model.

        Settings are read now (:meth:`PINNSettings.config`); ``NumPhotons = 0`` uses the
        measured mean total count per pattern of the training data.
        """
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
