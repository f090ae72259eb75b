"""Screenshots of Ptychodus' window with the PtychoPINN reconstructors (docs/ptychodus.md).

Starts Ptychodus 1.7's window offscreen (``QT_QPA_PLATFORM=offscreen``, no display
needed), loads a simulated scan through Ptychodus' own readers, chooses a PtychoPINN
reconstructor in the Algorithm box, sets a few values in its settings panel, presses
Train (the directory dialog answered with the scan's folder) and then Infer, exactly as
a user does, and saves:

- ``processing-panel.png``: the Processing page after training: our settings panel
  and the processing log;
- ``reconstructed-object.png``: the Object page showing the reconstructed object.

Run from the repository root (two to three minutes on two CPU cores)::

    .venv/bin/python docs/figures/ptychodus/make_screenshots.py

Needs the ``gui`` extra (PyQt5). ``--backend`` picks the backend (default: the first
installed one, by name); the hook is installed in this process, so the hook
distribution need not be.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Window size of the screenshots (pixels).
SIZE = (1500, 950)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", help="backend to train with (default: the first installed one)")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (set in the panel)")
    parser.add_argument("--positions", type=int, default=400, help="scan positions of the simulated scan")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the PNG files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt5.QtCore import QCoreApplication, QEvent
    from PyQt5.QtWidgets import QApplication

    from ptychodus.api.io import save_diffraction_data, save_product
    from ptychodus.model import ModelCore

    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.ptychodus import hook
    from ptychopinn_core.ptychodus.convert import ptychodus_inputs_from_scan
    from ptychopinn_core.ptychodus.library import library_name
    from ptychopinn_core.ptychodus.reconstructor import reconstructor_key
    from ptychopinn_core.simulation.scan import make_demo_scan

    registry = BackendRegistry.discover()
    backend = args.backend or registry.names()[0]
    entry = next(entry for entry in registry.entries() if entry.name == backend)
    library = library_name(entry)
    key = reconstructor_key(library, "PINN")

    app = QApplication.instance() or QApplication(["ptychodus"])
    hook.install()
    with tempfile.TemporaryDirectory() as folder, ModelCore(log_level=logging.INFO) as model:
        directory = Path(folder)
        scan = make_demo_scan(args.positions, size=64, nphotons=1e7, seed=3)
        diffraction, product = ptychodus_inputs_from_scan(
            scan, photon_energy_eV=8000.0, detector_distance_m=2.0, detector_pixel_m=75e-6, name="simulated"
        )
        save_diffraction_data(directory / "diffraction.h5", diffraction)
        save_product(directory / "product.h5", product)

        from ptychodus.controller import ControllerCore
        from ptychodus.view import ViewCore

        view = ViewCore(is_developer_mode_enabled=False)
        controller = ControllerCore(model, view)
        processing = controller._processing_controller

        def events() -> None:
            app.processEvents()
            model.run_tasks()
            app.processEvents()

        def run_task(button) -> None:
            monitor = model.processing_core.processing_api.task_monitor
            before = monitor.get_completed_runs()
            button.click()
            while monitor.get_completed_runs() <= before:
                events()
                time.sleep(0.05)
            events()
            monitor.raise_if_failed()

        data = model.workflow_api.load_assembled_diffraction_data(directory / "diffraction.h5")
        loaded = model.workflow_api.load_product(directory / "product.h5", diffraction=data)
        combo = processing._algorithm_view_controller.get_widget()
        combo.setCurrentIndex(combo.findText(key))
        combo.textActivated.emit(key)
        settings = next(lib for lib in model.processing_core.algorithm_parameter._libraries if lib.name == library)
        settings = settings.settings
        settings.epochs.set_value(args.epochs)  # the panel shows what the settings hold
        settings.batch_size.set_value(16)
        settings.refine_iterations.set_value(10)
        processing._product_view_controller.get_widget().setCurrentIndex(loaded.get_product_index())
        processing._file_dialog_factory.get_existing_directory_path = lambda *a, **k: directory

        view.resize(*SIZE)
        view.show()
        view.processing_action.trigger()
        events()
        print(f"training {key} for {args.epochs} epochs on {args.positions} positions ...", flush=True)
        run_task(processing._actions_view.train_button)
        args.out.mkdir(parents=True, exist_ok=True)
        view.grab().save(str(args.out / "processing-panel.png"))  # the panel and the training log
        run_task(processing._actions_view.reconstruct_button)
        output = processing._product_view_controller.get_widget().currentIndex()

        view.object_action.trigger()
        tree = view.object_view.tree_view
        tree.setCurrentIndex(tree.model().index(output, 0))
        ribbon = view.object_image_view.image_ribbon
        renderer = ribbon.colormap_group_box.renderer_combo_box
        if renderer.findText("Amplitude") >= 0:
            renderer.setCurrentText("Amplitude")
            renderer.textActivated.emit("Amplitude")
        events()
        ribbon.data_range_group_box.auto_button.click()  # the object's own value range
        ribbon.image_tools_group_box.home_button.click()  # zoom to fit
        events()
        view.grab().save(str(args.out / "reconstructed-object.png"))
        print(f"wrote {args.out / 'processing-panel.png'} and {args.out / 'reconstructed-object.png'}")

        controller._run_tasks_timer.stop()
        # Ptychodus' agent controllers filter events of widgets in the window; remove the
        # filters before the window is deleted (else PyQt aborts at exit).
        view.agent_chat_view.input_view.text_edit.removeEventFilter(controller._agent_chat_controller._input_controller)
        view.agent_view.removeEventFilter(controller._agent_controller)
        view.close()
        view.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    return 0


if __name__ == "__main__":
    sys.exit(main())
