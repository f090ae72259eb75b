"""The real Ptychodus 1.7 discovers our reconstructors through the hook, and only through it.

- The hook module is installed for real (non-editable) inside Ptychodus' namespace
  package ``ptychodus.plugins``, and is the repository's file.
- With it, ``ModelCore``'s ``available_reconstructors()`` lists ``'{library}_{mode}'``
  for every usable backend (the fake included); with the module hidden (the control)
  none of ours appear and Ptychodus' own list is unchanged; listing imports no framework.
- Names are unique, contain no ``_`` and differ from Ptychodus' built-in libraries;
  every library registers its own settings group.
- A failure while building our libraries never stops Ptychodus.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import sys
from pathlib import Path

import pytest
from conftest import FAKE_BACKEND_ROOT
from ptychodus_helpers import FAKE_BACKEND, HOOK_MODULE, HOOK_SOURCE, run, subprocess_env

from ptychopinn_core.backends import BackendRegistry

ptychodus = pytest.importorskip("ptychodus")

from ptychodus.api.reconstruct import ReconstructorLibrary  # noqa: E402
from ptychodus.api.settings import SettingsRegistry  # noqa: E402

from ptychopinn_core.ptychodus import hook  # noqa: E402
from ptychopinn_core.ptychodus.library import (  # noqa: E402
    PTYCHODUS_BUILTIN_LIBRARIES,
    build_libraries,
    library_name,
)
from ptychopinn_core.ptychodus.reconstructor import MODE_NAMES, reconstructor_key  # noqa: E402
from ptychopinn_core.ptychodus.settings import SETTINGS_KEYS  # noqa: E402

# Prints the reconstructor keys of a fresh ModelCore and the frameworks imported by then.
# "hidden": the hook module cannot be imported (None in sys.modules: Ptychodus skips it
# like a module with a missing dependency). The launcher's way (install() with the module
# hidden) is run end to end in test_ptychodus_workflow.py.
DISCOVERY_SCRIPT = f"""
import json, logging, sys
mode = sys.argv[1]
if mode == "hidden":
    sys.modules[{HOOK_MODULE!r}] = None
from ptychodus.model import ModelCore
with ModelCore(log_level=logging.WARNING) as model:
    keys = sorted(model.workflow_api.available_reconstructors())
frameworks = sorted({{"tensorflow", "torch", "lightning", "keras"}} & {{name.split(".")[0] for name in sys.modules}})
gui = sorted(name for name in sys.modules
             if name.split(".")[0] == "PyQt5" or name.startswith(("ptychodus.controller", "ptychodus.view"))
             or name == "ptychopinn_core.ptychodus.panels")
print("KEYS=" + json.dumps(keys))
print("FRAMEWORKS=" + json.dumps(frameworks))
print("GUI=" + json.dumps(gui))
"""


@pytest.fixture
def fake_on_path(fake_backend_ok_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake backend (``numpyfake`` only) discoverable in this process."""
    monkeypatch.syspath_prepend(str(FAKE_BACKEND_ROOT))
    monkeypatch.syspath_prepend(str(fake_backend_ok_site))


@pytest.fixture(scope="module")
def discovered(fake_backend_ok_site: Path) -> dict[str, list[str]]:
    """Keys listed by a fresh ``ModelCore`` in a subprocess, per discovery mode."""
    env = subprocess_env(fake_backend_ok_site, FAKE_BACKEND_ROOT)
    keys = {}
    for mode in ("plain", "hidden"):
        result = run([sys.executable, "-c", DISCOVERY_SCRIPT, mode], env)
        assert result.returncode == 0, f"{mode}: {result.stdout}\n{result.stderr}"
        line = [text for text in result.stdout.splitlines() if text.startswith("KEYS=")]
        assert line, f"{mode}: no key list printed:\n{result.stdout}\n{result.stderr}"
        keys[mode] = json.loads(line[-1].removeprefix("KEYS="))
        loaded = [text for text in result.stdout.splitlines() if text.startswith("FRAMEWORKS=")]
        assert loaded == ["FRAMEWORKS=[]"], f"{mode}: listing reconstructors imported a framework: {loaded}"
        gui = [text for text in result.stdout.splitlines() if text.startswith("GUI=")]
        assert gui == ["GUI=[]"], f"{mode}: headless use imported GUI modules (PyQt5, the panels): {gui}"
    return keys


def expected_keys(registry: BackendRegistry) -> set[str]:
    """``'{library}_{reconstructor}'`` of every mode of every usable backend (``PINN`` alone
    for a backend that runs trained models only)."""
    keys = set()
    for entry in registry.entries():
        if entry.ok:
            capabilities = entry.info.capabilities
            for mode in capabilities.modes if capabilities.training else {"pinn"}:
                keys.add(reconstructor_key(library_name(entry), MODE_NAMES[mode]))
    return keys


def test_hook_module_is_installed_for_real_in_ptychodus_plugins():
    """The plugin file sits in Ptychodus' installed plugins folder, as shipped, not editable."""
    plugins = Path(ptychodus.__file__).parent / "plugins"
    assert not (plugins / "__init__.py").exists(), "ptychodus.plugins must stay a namespace package"
    installed = plugins / "ptychopinn_reconstructors.py"
    assert installed.is_file(), (
        f"{installed} is missing: install the hook with `pip install ./ptychodus_hook` (non-editable), "
        "e.g. `pip install -r requirements-dev.txt`"
    )
    assert installed.read_text(encoding="utf-8") == HOOK_SOURCE.read_text(encoding="utf-8"), (
        "the installed hook module differs from ptychodus_hook/: reinstall with `pip install -r requirements-dev.txt`"
    )
    distribution = importlib.metadata.distribution("ptychopinn-ptychodus-hook")
    python_files = [str(f) for f in distribution.files if f.suffix == ".py"]
    assert python_files == ["ptychodus/plugins/ptychopinn_reconstructors.py"]
    direct_url = distribution.read_text("direct_url.json")
    if direct_url:
        assert not json.loads(direct_url).get("dir_info", {}).get("editable", False)
    requirements = " ".join(distribution.requires or [])
    assert "ptychopinn-core" in requirements.split() and "ptychodus<1.8,>=1.7" in requirements.replace(" ", "")


def test_a_path_entry_cannot_replace_the_installed_file():
    """Why the hook is installed non-editable: a sys.path entry (what an editable install
    adds) holding ``ptychodus/plugins/`` is not searched, because the installed regular
    package ``ptychodus`` wins and ``ptychodus.plugins`` is looked up only inside it."""
    code = "import ptychodus.plugins as p, json; print(json.dumps(list(p.__path__)))"
    result = run([sys.executable, "-c", code], subprocess_env(HOOK_SOURCE.parents[2]))
    assert result.returncode == 0, result.stderr
    paths = json.loads(result.stdout)
    assert paths == [str(Path(ptychodus.__file__).parent / "plugins")]


def test_importing_the_core_does_not_import_ptychodus():
    code = (
        "import sys, ptychopinn_core, ptychopinn_core.workflow, ptychopinn_core.cli.main, "
        "ptychopinn_core.ptychodus; print(sorted(m for m in sys.modules if m.startswith('ptychodus')))"
    )
    result = run([sys.executable, "-c", code], subprocess_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_with_the_hook_ptychodus_lists_every_backend(discovered, fake_on_path):
    keys = set(discovered["plain"])
    ours = expected_keys(BackendRegistry.discover())
    assert f"pinn-{FAKE_BACKEND}_pinn" in ours
    missing = ours - keys
    assert not missing, f"keys missing from available_reconstructors(): {sorted(missing)}; listed {sorted(keys)}"


def test_without_the_hook_none_of_ours_and_ptychodus_unchanged(discovered, fake_on_path):
    """The control: the same environment with the hook module hidden."""
    ours = expected_keys(BackendRegistry.discover())
    assert not set(discovered["hidden"]) & ours
    assert sorted(set(discovered["plain"]) - ours) == discovered["hidden"]


def builtin_library_names(model) -> set[str]:
    return {value.name for value in vars(model).values() if isinstance(value, ReconstructorLibrary)}


def test_in_process_names_settings_and_builtins(fake_on_path):
    """Our libraries: unique names without '_', not built-in, one settings group each."""
    from ptychodus.model import ModelCore

    with ModelCore(log_level=logging.WARNING) as model:
        builtins = builtin_library_names(model)
        keys = list(model.workflow_api.available_reconstructors())
        registry = model.settings_registry
        assert builtins == set(PTYCHODUS_BUILTIN_LIBRARIES)
        libraries = build_libraries(SettingsRegistry(), taken_names=builtins)
        names = [library.name for library in libraries]
        assert len({name.casefold() for name in names}) == len(names)
        for library in libraries:
            assert "_" not in library.name
            assert library.name.casefold() not in {name.casefold() for name in builtins}
            group = registry[library.name]
            assert set(group.parameters()) == set(SETTINGS_KEYS) | {"Overrides"}
            for reconstructor in library:
                assert reconstructor_key(library.name, reconstructor.name) in keys
    assert len(keys) == len(set(keys))


def test_name_collision_skips_the_backend_with_a_warning(fake_on_path, caplog):
    caplog.set_level(logging.WARNING)
    fake_entry = next(e for e in BackendRegistry.discover().entries() if e.name == FAKE_BACKEND)
    taken = library_name(fake_entry).upper()
    libraries = build_libraries(SettingsRegistry(), taken_names=[taken])
    assert FAKE_BACKEND not in {library.backend.name for library in libraries}
    assert "is taken" in caplog.text


def gui_hook_state() -> str:
    """How the GUI part of the hook stands: "patched", "waiting" (import finder) or "none"."""
    controller = sys.modules.get(hook.CONTROLLER_MODULE)
    if controller is not None and hasattr(controller.ProcessingController, hook.PATCH_MARKER):
        return "patched"
    if any(type(finder).__name__ == "_ControllerFinder" for finder in sys.meta_path):
        return "waiting"
    return "none"


def test_install_is_idempotent_and_uninstall_restores():
    """Both parts: ProcessingCore now, ProcessingController now or when the GUI imports it."""
    import ptychodus.model.core as core

    gui_imported = hook.CONTROLLER_MODULE in sys.modules  # another test of this process may have started the GUI
    was_installed = hook.is_installed()
    try:
        hook.uninstall()
        original = core.ProcessingCore
        assert not hasattr(original, hook.PATCH_MARKER)
        assert gui_hook_state() == "none"
        assert hook.install() is True
        patched = core.ProcessingCore
        assert issubclass(patched, original) and patched is not original
        assert gui_hook_state() == ("patched" if gui_imported else "waiting")
        assert hook.install() is False and core.ProcessingCore is patched
        assert [type(f).__name__ for f in sys.meta_path].count("_ControllerFinder") <= 1
        assert hook.uninstall() is True and core.ProcessingCore is original
        assert gui_hook_state() == "none"
        assert hook.uninstall() is False
    finally:
        if was_installed:
            hook.install()


def test_a_failing_library_build_never_stops_ptychodus(fake_on_path, monkeypatch, caplog):
    from ptychodus.model import ModelCore

    import ptychopinn_core.ptychodus.library as library_module

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure while building the libraries")

    monkeypatch.setattr(library_module, "build_libraries", broken)
    caplog.set_level(logging.ERROR)
    with ModelCore(log_level=logging.WARNING) as model:
        keys = list(model.workflow_api.available_reconstructors())
    assert not [key for key in keys if key.startswith("pinn-")]
    assert "simulated failure while building the libraries" in caplog.text
