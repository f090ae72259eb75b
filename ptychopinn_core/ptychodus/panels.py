"""The settings panel of each PtychoPINN library in Ptychodus' Processing page (GUI only).

Ptychodus fills the area under its Algorithm box from a list of
``ReconstructorViewControllerFactory`` objects, one per library, matched by the
casefolded library name (``ProcessingController._populate_stacked_widget``); a library
without one shows "<library> not found!". :class:`PINNViewControllerFactory` is ours,
one per library that :func:`~ptychopinn_core.ptychodus.library.build_libraries` built
(so one per discovered backend); :mod:`.hook` hands them to Ptychodus' controller.

A panel is built with Ptychodus' own ``ParameterViewBuilder`` from
:data:`~ptychopinn_core.ptychodus.settings.SETTINGS`: one group box per configuration
section (Model, Data, Training, Inference, Refinement, Execution, then Advanced with
``Overrides``), every row bound to the library's settings parameter, with the
configuration field's description as its tool tip. The ``Supervised`` panel leaves out
the keys only a PINN training reads. Edits go straight into the parameters: the next
Train / Infer reads them and Ptychodus' *Save Settings* writes them.

Bad values never reach a parameter: integer fields are spin boxes limited to the
field's bounds, choices are combo boxes, and a typed real number or ``Overrides`` text
is checked with the whole configuration (:meth:`PINNSettings.check`) when editing
finishes; a refused value is put back and one warning naming the key and the problem
goes to the library's log (shown in Ptychodus' processing log). Ptychodus' own spin box
needs parameter bounds, which would clamp settings-file values silently; these view
controllers take the bounds from the configuration instead.

This module imports PyQt5 and ``ptychodus.controller``: only the GUI imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from PyQt5.QtWidgets import QLabel, QLineEdit, QSpinBox, QWidget

from ptychodus.api.observer import Observable, Observer
from ptychodus.api.parameters import Parameter
from ptychodus.controller.data import FileDialogFactory
from ptychodus.controller.parameters import ParameterViewBuilder, ParameterViewController
from ptychodus.controller.processing import ReconstructorViewControllerFactory

from ptychopinn_core.ptychodus.library import PINNReconstructorLibrary
from ptychopinn_core.ptychodus.reconstructor import MODE_NAMES
from ptychopinn_core.ptychodus.settings import OVERRIDES_FIELDS, OVERRIDES_KEY, SETTINGS, PINNSettings, Setting

__all__ = ["GROUP_TITLES", "PINNViewControllerFactory", "view_controller_factories"]

#: Configuration section -> title of its group box, in the panel's order.
GROUP_TITLES: Mapping[str, str] = {
    "model": "Model",
    "data": "Data",
    "training": "Training",
    "inference": "Inference",
    "refine": "Refinement",
    "execution": "Execution",
    "overrides": "Advanced",
}
_MAX_INT = 0x7FFFFFFF
_OVERRIDES_TIP = (
    "Any other configuration field, as section.key=value pairs separated by ';', applied last "
    "(e.g. training.early_stopping_patience=10; execution.precision=64); docs/configuration.md describes them.\n"
    f"Fields without a row: {', '.join(OVERRIDES_FIELDS)}.\n"
    f"{OVERRIDES_KEY}; read by Train and Infer."
)


class _Checked:
    """Stores a value typed in the panel if the configuration accepts it, else logs why not."""

    def __init__(self, settings: PINNSettings, mode: str, logger: logging.Logger,
                 show_log: Callable[[], None] | None) -> None:
        self._settings = settings
        self._mode = mode
        self._logger = logger
        self._show_log = show_log

    def warn(self, message: str, *args: Any) -> None:
        """One warning in the library's log, shown in the processing log now."""
        self._logger.warning(message, *args)
        if self._show_log is not None:
            self._show_log()

    def parameter(self, key: str) -> Parameter[Any]:
        return self._settings.parameter(key)

    def store(self, key: str, value: Any) -> bool:
        """Set ``key`` to ``value`` and return True, or log the refusal and return False."""
        parameter = self._settings.parameter(key)
        try:
            self._settings.check({key: value}, self._mode)
        except ValueError as error:
            self.warn("%s = %r refused, keeping %r: %s", key, value, parameter.get_value(), error)
            return False
        parameter.set_value(value)
        return True


class _SpinBox(ParameterViewController, Observer):
    """An integer key as a spin box limited to its field's bounds (the parameter has none)."""

    def __init__(self, setting: Setting, checked: _Checked) -> None:
        super().__init__()
        self._setting = setting
        self._parameter = checked.parameter(setting.key)
        self._checked = checked
        self._widget = QSpinBox()
        minimum, maximum = setting.integer_range()
        self._widget.setRange(minimum, _MAX_INT if maximum is None else maximum)
        self._widget.setToolTip(setting.description())
        self._sync_model_to_view()
        self._widget.valueChanged.connect(self._sync_view_to_model)
        self._parameter.add_observer(self)

    def get_widget(self) -> QWidget:
        return self._widget

    def _sync_view_to_model(self, value: int) -> None:
        if not self._checked.store(self._setting.key, value):
            self._sync_model_to_view()

    def _sync_model_to_view(self) -> None:
        value = self._parameter.get_value()
        if not self._widget.minimum() <= value <= self._widget.maximum():  # e.g. from a settings file
            self._checked.warn(
                "%s = %r is out of range [%d, %d] (%s); Train and Infer refuse it until it is changed",
                self._setting.key, value, self._widget.minimum(), self._widget.maximum(), self._setting.field,
            )
        self._widget.blockSignals(True)
        self._widget.setValue(value)
        self._widget.blockSignals(False)

    def _update(self, observable: Observable) -> None:
        if observable is self._parameter:
            self._sync_model_to_view()


class _LineEdit(ParameterViewController, Observer):
    """A real number or text, stored when editing finishes if the configuration accepts it."""

    def __init__(self, key: str, tool_tip: str, parse: Callable[[str], Any], checked: _Checked) -> None:
        super().__init__()
        self._key = key
        self._parameter: Parameter[Any] = checked.parameter(key)
        self._parse = parse
        self._checked = checked
        self._widget = QLineEdit()
        self._widget.setToolTip(tool_tip)
        self._sync_model_to_view()
        self._widget.editingFinished.connect(self._sync_view_to_model)
        self._parameter.add_observer(self)

    def get_widget(self) -> QWidget:
        return self._widget

    def _sync_view_to_model(self) -> None:
        text = self._widget.text().strip()
        try:
            value = self._parse(text)
        except ValueError:
            self._checked.warn("%s = %r refused, keeping %r: not a number", self._key, text,
                               self._parameter.get_value())
            self._sync_model_to_view()
            return
        if value != self._parameter.get_value() and not self._checked.store(self._key, value):
            self._sync_model_to_view()

    def _sync_model_to_view(self) -> None:
        self._widget.setText(self._parameter.get_value_as_string())

    def _update(self, observable: Observable) -> None:
        if observable is self._parameter:
            self._sync_model_to_view()


class _Label(ParameterViewController):
    """A line of text at the top of the panel."""

    def __init__(self, text: str) -> None:
        self._widget = QLabel(text)
        self._widget.setWordWrap(True)

    def get_widget(self) -> QWidget:
        return self._widget


class PINNViewControllerFactory(ReconstructorViewControllerFactory):
    """The panels of one library: one per reconstructor (``PINN``, ``Supervised``).

    Parameters
    ----------
    library : PINNReconstructorLibrary
        Its settings are what the panel edits; its logger gets the refusals.
    file_dialog_factory : FileDialogFactory, optional
        Ptychodus' (the builder's file choosers; none are used now).
    show_log : callable, optional
        Called after a refusal was logged, to show the processing log now (Ptychodus
        reads its log queue when the task monitor notifies its observers).
    """

    def __init__(self, library: PINNReconstructorLibrary, file_dialog_factory: FileDialogFactory | None = None,
                 show_log: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._library = library
        self._file_dialog_factory = file_dialog_factory
        self._show_log = show_log

    @property
    def name(self) -> str:
        return self._library.name

    def create_view_controller(self, reconstructor_name: str) -> QWidget:
        """The panel of ``reconstructor_name`` (as Ptychodus passes it: casefolded)."""
        modes = {name.casefold(): mode for mode, name in MODE_NAMES.items()}
        mode = modes.get(reconstructor_name.casefold())
        if mode is None:
            raise ValueError(f"invalid reconstructor: expected one of {sorted(modes)}, received {reconstructor_name!r}")
        settings = self._library.settings
        checked = _Checked(settings, mode, self._library.get_logger(), self._show_log)
        builder = ParameterViewBuilder(self._file_dialog_factory)
        supervised = "" if mode == "pinn" else " (it learns from the true patches: no PINN loss settings)"
        builder.add_view_controller_to_top(_Label(
            f"{self._library.name} {MODE_NAMES[mode]}: PtychoPINN, backend {self._library.backend.name}. "
            f"Train reads the Model, Data and Training groups{supervised}; Infer reads Inference, Refinement "
            "and the photons per pattern; both read the device. Hover over a field for its description."
        ))
        for setting in SETTINGS:
            if setting.pinn_only and mode != "pinn":
                continue
            _add_row(builder, setting, settings, checked)
        builder.add_view_controller(
            _LineEdit(OVERRIDES_KEY, _OVERRIDES_TIP, str, checked),
            f"{OVERRIDES_KEY}:",
            group=GROUP_TITLES["overrides"],
        )
        return builder.build_widget()


def _add_row(builder: ParameterViewBuilder, setting: Setting, settings: PINNSettings, checked: _Checked) -> None:
    """One row: check box, combo box, spin box or checked line edit, by the field's type."""
    label, group, tip = f"{setting.label}:", GROUP_TITLES[setting.section], setting.description()
    parameter = settings.parameter(setting.key)
    choices = setting.choices()
    value = parameter.get_value()
    if isinstance(value, bool):
        builder.add_check_box(parameter, label, tool_tip=tip, group=group)
    elif choices is not None:
        builder.add_combo_box(parameter, choices, label, tool_tip=tip, group=group)
    elif isinstance(value, int):
        builder.add_view_controller(_SpinBox(setting, checked), label, group=group)
    else:
        builder.add_view_controller(_LineEdit(setting.key, tip, float, checked), label, group=group)


def view_controller_factories(
    libraries: Iterable[Any],
    file_dialog_factory: FileDialogFactory | None = None,
    show_log: Callable[[], None] | None = None,
) -> list[PINNViewControllerFactory]:
    """A factory for every PtychoPINN library among ``libraries`` (others are skipped)."""
    return [
        PINNViewControllerFactory(library, file_dialog_factory, show_log)
        for library in libraries
        if isinstance(library, PINNReconstructorLibrary)
    ]
