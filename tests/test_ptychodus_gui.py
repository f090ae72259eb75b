"""The real Ptychodus 1.7 window (PyQt5, offscreen) with our settings panels.

One window per module (``ModelCore`` + Ptychodus' ``ViewCore`` and ``ControllerCore``,
built as ``ptychodus`` builds them; the hook module installed for real adds our
libraries and panels), with every installed backend and the numpy fake:

- the window ``ptychodus``' own ``main()`` opens (in a subprocess, the GUI modules
  imported after the hook was installed, as in real use) shows a panel for each of our
  keys, without importing a framework;
- every one of our reconstructors has its own panel in the Processing page (no "not
  found!" placeholder), grouped like the configuration, tool tips from the field
  descriptions, the PINN-only keys left out of the ``Supervised`` panel; choosing the
  algorithm in the Algorithm box shows its panel;
- values edited in a panel are the library's settings (what a run reads) and what
  *Save Settings* writes; a settings file opened later shows in the panel;
- bad values typed in a panel (a negative epoch count, a negative learning rate, text,
  an odd pattern size in ``Overrides``) are refused there, each with one warning in the
  library's log, shown at once in the processing log, and no traceback;
- per backend, on a small scan loaded through Ptychodus' readers: Train (the GUI's
  button, directory dialog answered) with epochs (and, for the fake, gridsize) set in
  the panel writes a model trained with those values, then Infer (the button, enabled
  by the trained model) produces a product of our reconstructor whose object is finite
  and on the scan's object grid.
"""

from __future__ import annotations

import configparser
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FAKE_BACKEND_ROOT
from ptychodus_helpers import (
    FAKE_BACKEND,
    backend_params,
    reconstructed_by,
    run,
    simulated_scan,
    subprocess_env,
    write_input_directory,
)

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config
from ptychopinn_core.model.bundle import read_bundle

pytest.importorskip("ptychodus")
pytest.importorskip("PyQt5.QtWidgets")

from PyQt5.QtTest import QTest  # noqa: E402
from PyQt5.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QSpinBox, QWidget  # noqa: E402

from ptychopinn_core.ptychodus.library import LOGGER_PREFIX, library_name  # noqa: E402
from ptychopinn_core.ptychodus.panels import GROUP_TITLES  # noqa: E402
from ptychopinn_core.ptychodus.reconstructor import MODE_NAMES, reconstructor_key  # noqa: E402
from ptychopinn_core.ptychodus.settings import SETTINGS  # noqa: E402

#: A scan small enough for one quick epoch of every backend.
PATTERN_SIZE = 32
N_POSITIONS = 16
TASK_TIMEOUT_S = 120
PINN_ONLY = {setting.label + ":" for setting in SETTINGS if setting.pinn_only}


class Window:
    """The running window and the parts the tests drive."""

    def __init__(self, app, model, view, controller) -> None:
        self.app, self.model, self.view, self.controller = app, model, view, controller
        self.processing = controller._processing_controller

    def keys(self) -> list[str]:
        return list(self.model.processing_core.processing_api.available_reconstructors())

    def panel(self, key: str) -> QWidget:
        """The widget Ptychodus' Processing page shows under the Algorithm box for ``key``."""
        return self.processing._stacked_widget.widget(self.keys().index(key))

    def select_algorithm(self, key: str) -> None:
        """Choose ``key`` in the Algorithm box as a user does (activate the item)."""
        combo: QComboBox = self.processing._algorithm_view_controller.get_widget()
        index = combo.findText(key)
        assert index >= 0, f"{key} not in the Algorithm box"
        combo.setCurrentIndex(index)
        combo.textActivated.emit(key)
        self.events()

    def events(self) -> None:
        self.app.processEvents()
        self.model.run_tasks()  # what the window's one-second timer does
        self.app.processEvents()

    def run_task(self, button) -> None:
        """Click a Processing button and wait until the task it starts has finished."""
        monitor = self.model.processing_core.processing_api.task_monitor
        before = monitor.get_completed_runs()
        assert button.isEnabled(), f"{button.text()} is disabled"
        button.click()
        deadline = time.monotonic() + TASK_TIMEOUT_S
        while monitor.get_completed_runs() <= before:
            assert time.monotonic() < deadline, f"{button.text()} did not finish in {TASK_TIMEOUT_S} s"
            self.events()
            time.sleep(0.02)
        self.events()
        monitor.raise_if_failed()


@pytest.fixture(scope="module")
def window(fake_backend_ok_site: Path):
    """Ptychodus' window as ``ptychodus`` builds it, the fake backend discoverable too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QT_QPA_PLATFORM", "offscreen")
        patch.syspath_prepend(str(FAKE_BACKEND_ROOT))
        patch.syspath_prepend(str(fake_backend_ok_site))
        from PyQt5.QtWidgets import QApplication

        app = QApplication.instance() or QApplication(["ptychodus"])
        from ptychodus.model import ModelCore

        with ModelCore(log_level=logging.WARNING) as model:
            from ptychodus.controller import ControllerCore
            from ptychodus.view import ViewCore

            view = ViewCore(is_developer_mode_enabled=False)
            controller = ControllerCore(model, view)
            view.processing_action.trigger()
            try:
                yield Window(app, model, view, controller)
            finally:
                close_window(app, view, controller)


def close_window(app, view, controller) -> None:
    """Delete the window now, while its controllers live.

    Ptychodus' agent controllers filter events of widgets inside the window; deleted
    later (garbage collection at exit), those widgets send events to a filter whose view
    is gone, the filter raises and PyQt aborts the process. Removing the two filters
    first makes the deletion safe.
    """
    from PyQt5.QtCore import QCoreApplication, QEvent

    controller._run_tasks_timer.stop()
    chat = controller._agent_chat_controller._input_controller
    view.agent_chat_view.input_view.text_edit.removeEventFilter(chat)
    view.agent_view.removeEventFilter(controller._agent_controller)
    view.close()
    view.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    app.processEvents()


def our_keys() -> dict[str, tuple[str, str]]:
    """Key -> (library, mode) of every usable backend (the fake included: the fixture's path)."""
    keys = {}
    for entry in BackendRegistry.discover().entries():
        if entry.ok:
            capabilities = entry.info.capabilities  # PINN alone for a backend that runs trained models only
            for mode in capabilities.modes if capabilities.training else {"pinn"}:
                keys[reconstructor_key(library_name(entry), MODE_NAMES[mode])] = (library_name(entry), mode)
    return keys


def library_of(window: Window, name: str):
    return next(lib for lib in window.model.processing_core.algorithm_parameter._libraries if lib.name == name)


def rows(panel: QWidget) -> dict[str, dict[str, QWidget]]:
    """Group title -> {row label: field widget} of a panel built by ParameterViewBuilder."""
    found: dict[str, dict[str, QWidget]] = {}
    for box in panel.findChildren(QGroupBox):
        layout = box.layout()
        assert isinstance(layout, QFormLayout)
        found[box.title()] = {
            layout.itemAt(row, QFormLayout.LabelRole).widget().text():
                layout.itemAt(row, QFormLayout.FieldRole).widget()
            for row in range(layout.rowCount())
        }
    return found


def field(panel: QWidget, label: str) -> QWidget:
    matches = [widgets[label] for widgets in rows(panel).values() if label in widgets]
    assert len(matches) == 1, f"{label!r} in {rows(panel)}"
    return matches[0]


def type_into(line_edit: QLineEdit, text: str) -> None:
    """Replace the text and finish editing (Return), as a user does."""
    line_edit.selectAll()
    QTest.keyClicks(line_edit, text)
    QTest.keyClick(line_edit, "\r")


def _load_a_trained_model(window: Window, backend: str, key: str, scan, folder: Path) -> None:
    """Train one epoch with a backend that trains, export the model to the first installed
    non-bundle format (ONNX) and load it into ``backend``'s PINN reconstructor."""
    from ptychopinn_core import workflow
    from ptychopinn_core.model.formats import BUNDLE_FORMAT_NAME, installed_formats, write_model

    registry = BackendRegistry.discover()
    trainer = next(name for name in registry.names() if registry.get(name).info.capabilities.training)
    config = Config.from_dict({"model": {"pattern_size": PATTERN_SIZE, "n_filters_scale": 1},
                               "training": {"epochs": 1, "batch_size": 16}})
    bundle = workflow.train(scan, config, registry.get(trainer))
    export = next(name for name in installed_formats() if name != BUNDLE_FORMAT_NAME)
    path = write_model(folder / f"model.{export}", bundle)
    library = library_of(window, library_of_backend(backend))
    reconstructor = next(item for item in library if item.name == "PINN")
    assert f"*.{export}" in reconstructor.get_model_file_filter()
    reconstructor.load_model_from_file(path)
    assert reconstructor.is_model_loaded() and reconstructor.key == key


def library_of_backend(backend: str) -> str:
    return library_name(next(entry for entry in BackendRegistry.discover().entries() if entry.name == backend))


def fake_key() -> tuple[str, str]:
    """The fake's PINN key and library name."""
    library = library_of_backend(FAKE_BACKEND)
    return reconstructor_key(library, "PINN"), library


# -- the panels ---------------------------------------------------------------------------

# Ptychodus' own main() (what the `ptychodus` command runs: ModelCore, then the GUI
# modules are imported, then the window), offscreen; QApplication.exec is replaced by a
# look at the window: the Algorithm box's keys and what the Processing page shows for each.
MAIN_SCRIPT = """
import json, os, sys
from PyQt5.QtWidgets import QApplication, QComboBox, QLabel, QStackedWidget

def look(app):
    window = next(w for w in QApplication.topLevelWidgets() if type(w).__name__ == "ViewCore")
    page = window.processing_view
    keys = [page.findChildren(QComboBox)[0].itemText(i) for i in range(page.findChildren(QComboBox)[0].count())]
    stack = page.findChildren(QStackedWidget)[0]
    shown = [stack.widget(i).text() if isinstance(stack.widget(i), QLabel) else type(stack.widget(i)).__name__
             for i in range(stack.count())]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "torch"))
    print("WINDOW=" + json.dumps({"title": window.windowTitle(), "panels": dict(zip(keys, shown)),
                                  "frameworks": loaded}), flush=True)
    return 0

QApplication.exec = look
from ptychodus.__main__ import main
code = main()
os._exit(code)  # the window is not torn down: that is Ptychodus' business, not this test's
"""


def test_the_ptychodus_main_window_shows_our_panels(fake_backend_ok_site):
    """The window ``ptychodus`` opens lists our keys, each with a panel; no framework is imported to show them."""
    env = subprocess_env(fake_backend_ok_site, FAKE_BACKEND_ROOT)
    env["QT_QPA_PLATFORM"] = "offscreen"
    result = run([sys.executable, "-c", MAIN_SCRIPT, "--log-level", "30"], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    line = [text for text in result.stdout.splitlines() if text.startswith("WINDOW=")]
    assert line, result.stdout[-4000:] + result.stderr[-4000:]
    window = json.loads(line[-1].removeprefix("WINDOW="))
    assert window["title"].startswith("Ptychodus (1.7")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FAKE_BACKEND_ROOT))
        patch.syspath_prepend(str(fake_backend_ok_site))
        ours = our_keys()
    assert any(FAKE_BACKEND in key for key in ours)
    assert {key: window["panels"].get(key) for key in ours} == {key: "ParameterWidget" for key in ours}
    assert window["frameworks"] == [], "showing the panels imports no framework"



def test_every_reconstructor_of_ours_shows_its_own_panel(window):
    keys = window.keys()
    ours = our_keys()
    assert any(FAKE_BACKEND in key for key in ours) and set(ours) <= set(keys), (sorted(ours), keys)
    expected_titles = list(GROUP_TITLES.values())
    for key, (library, mode) in ours.items():
        panel = window.panel(key)
        assert not isinstance(panel, QLabel), f"{key}: {panel.text()}"
        assert [box.title() for box in panel.findChildren(QGroupBox)] == expected_titles
        labels = {label for widgets in rows(panel).values() for label in widgets}
        if mode == "pinn":
            assert PINN_ONLY <= labels
        else:
            assert not PINN_ONLY & labels, "the Supervised panel shows only what a supervised run reads"
        grouped = rows(panel)
        for setting in SETTINGS:
            if setting.pinn_only and mode != "pinn":
                continue
            widget = grouped[GROUP_TITLES[setting.section]].get(setting.label + ":")
            assert widget is not None, f"{key}: no row for {setting.key}"
            assert widget.toolTip().startswith(setting.info.description), setting.key
        window.select_algorithm(key)
        assert window.processing._stacked_widget.currentWidget() is panel
        assert not window.processing._actions_view.train_button.isHidden(), "a trainable reconstructor"


def test_panel_edits_are_the_settings_runs_read_and_save(window, tmp_path):
    key, library = fake_key()
    panel = window.panel(key)
    settings = library_of(window, library).settings
    epochs: QSpinBox = field(panel, "Epochs:")
    epochs.setValue(7)
    type_into(field(panel, "Learning rate:"), "0.002")
    architecture: QComboBox = field(panel, "Architecture:")
    architecture.setCurrentText("unet")
    architecture.textActivated.emit("unet")
    type_into(field(panel, "Overrides:"), "training.early_stopping_patience=3")
    config = settings.config("pinn", measured_nphotons=100.0)
    assert (config.training.epochs, config.training.learning_rate, config.model.architecture) == (7, 0.002, "unet")
    assert config.training.early_stopping_patience == 3

    window.model.settings_registry.save_settings(tmp_path / "saved.ini")
    saved = configparser.ConfigParser(interpolation=None)
    saved.optionxform = str
    saved.read(tmp_path / "saved.ini")
    assert saved[library]["Epochs"] == "7" and saved[library]["Architecture"] == "unet"
    assert float(saved[library]["LearningRate"]) == 0.002

    (tmp_path / "open.ini").write_text(f"[{library}]\nEpochs = 9\nArchitecture = encoder_decoder\nOverrides =\n"
                                       f"LearningRate = 0.001\n", encoding="utf-8")
    window.model.settings_registry.open_settings(tmp_path / "open.ini")
    assert epochs.value() == 9 and architecture.currentText() == "encoder_decoder"
    assert field(panel, "Overrides:").text() == ""


def test_bad_values_are_refused_in_the_panel(window, caplog):
    key, library = fake_key()
    panel = window.panel(key)
    settings = library_of(window, library).settings
    caplog.set_level(logging.WARNING, logger=LOGGER_PREFIX)

    epochs: QSpinBox = field(panel, "Epochs:")
    epochs.lineEdit().selectAll()
    QTest.keyClicks(epochs, "-3")
    QTest.keyClick(epochs, "\r")
    assert epochs.minimum() == 1 and settings.epochs.get_value() >= 1 and "-" not in epochs.text()
    gridsize: QSpinBox = field(panel, "Grid size:")
    assert (gridsize.minimum(), gridsize.maximum()) == (1, 4)

    refused = {
        "Learning rate:": ("-0.5", "training.learning_rate=-0.5"),
        "Step decay:": ("abc", "not a number"),
        "Overrides:": ("model.pattern_size=31", "model.pattern_size=31: must be a power of two"),
    }
    before = settings.values()
    for label, (text, reason) in refused.items():
        caplog.clear()
        line_edit: QLineEdit = field(panel, label)
        shown = line_edit.text()
        type_into(line_edit, text)
        records = [record for record in caplog.records if record.name.startswith(LOGGER_PREFIX)]
        assert len(records) == 1, [record.getMessage() for record in records]
        assert reason in records[0].getMessage() and "refused" in records[0].getMessage()
        assert records[0].exc_info is None, "a message, not a traceback"
        assert line_edit.text() == shown, "the panel shows the value that is kept"
        log = window.view.processing_status_view.text_edit.toPlainText()
        assert records[0].getMessage() in log, "the message is in the processing log at once"
    assert settings.values() == before, "nothing refused reached the settings"


# -- Train, then Infer, from the window ------------------------------------------------------------


@pytest.mark.parametrize("backend", backend_params())
def test_train_then_infer_from_the_window(window, backend, tmp_path, monkeypatch):
    key = reconstructor_key(library_of_backend(backend), "PINN")
    scan = simulated_scan(seed=2, size=PATTERN_SIZE, n_positions=N_POSITIONS)
    directory = write_input_directory(tmp_path / "train", scan)
    workflow = window.model.workflow_api
    data = workflow.load_assembled_diffraction_data(directory / "diffraction.h5")  # Ptychodus' readers
    product = workflow.load_product(directory / "product.h5", diffraction=data)
    window.events()

    window.select_algorithm(key)
    panel = window.panel(key)
    gridsize = 2 if backend == FAKE_BACKEND else 1  # the real networks: the quickest run
    for label, value in {"Epochs:": 1, "Grid size:": gridsize, "Filters scale:": 1, "Iterations:": 1}.items():
        field(panel, label).setValue(value)
    window.processing._product_view_controller.get_widget().setCurrentIndex(product.get_product_index())
    monkeypatch.setattr(window.processing._file_dialog_factory, "get_existing_directory_path",
                        lambda *args, **kwargs: directory)  # the Train dialog: this directory
    actions = window.processing._actions_view

    if not BackendRegistry.discover().get(backend).info.capabilities.training:
        # Train is refused with the message; a model trained elsewhere, exported to ONNX, is
        # loaded (what Load Model does) and Infer runs it.
        with pytest.raises(RuntimeError, match="runs trained models only"):
            window.run_task(actions.train_button)
        assert not (directory / "model.zip").exists()
        _load_a_trained_model(window, backend, key, scan, tmp_path)
        window.select_algorithm(fake_key()[0])  # Ptychodus updates its buttons when the selection changes
        window.select_algorithm(key)
    else:
        window.run_task(actions.train_button)
        bundle = read_bundle(directory / "model.zip")
        assert bundle.manifest["backend"] == backend
        assert (bundle.config.training.epochs, bundle.config.model.gridsize) == (1, gridsize)
        assert bundle.config.training.epochs != Config().training.epochs, "the panel's value, not the default"

    assert actions.reconstruct_button.text() == "Infer"
    window.run_task(actions.reconstruct_button)
    output_index = window.processing._product_view_controller.get_widget().currentIndex()
    assert output_index != product.get_product_index()
    result = window.model.product_core.product_repository[output_index].get_product()
    assert reconstructed_by(result.metadata.comments) == [key]
    assert "refined: 1 iterations of the object" in result.metadata.comments
    given = product.get_product().object_
    obj = result.object_
    assert obj.get_array().shape == given.get_array().shape
    assert obj.get_pixel_geometry() == given.get_pixel_geometry() and obj.get_center() == given.get_center()
    assert np.all(np.isfinite(obj.get_array())) and np.abs(obj.get_array()).max() > 0
