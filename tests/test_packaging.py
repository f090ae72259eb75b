"""The three distributions install the way users install them, and the core stays
free of TensorFlow and torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("tensorflow", "torch", "lightning", "keras")

# Two subpackages need optional dependencies: the conformance kit (ptychopinn_core.testing)
# needs pytest (the `test` extra), the Ptychodus adapter (ptychopinn_core.ptychodus) needs
# ptychodus (the `ptychodus` extra); a user install without them skips them.
IMPORT_ALL_CORE = f"""
import importlib, importlib.util, pkgutil, sys
import ptychopinn_core
optional = {{"ptychopinn_core.testing": "pytest", "ptychopinn_core.ptychodus": "ptychodus"}}
for module in pkgutil.walk_packages(ptychopinn_core.__path__, "ptychopinn_core."):
    needs = [dep for prefix, dep in optional.items() if module.name.startswith(prefix)]
    if needs and importlib.util.find_spec(needs[0]) is None:
        continue
    importlib.import_module(module.name)
loaded = sorted(set({FRAMEWORKS!r}) & {{name.split(".")[0] for name in sys.modules}})
assert not loaded, f"the core imported {{loaded}}"
print("core modules import without frameworks")
"""


def run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=900, **kwargs
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_every_core_module_imports_without_loading_a_framework():
    """Even with both frameworks installed, nothing in the core pulls them in."""
    result = run([sys.executable, "-c", IMPORT_ALL_CORE])
    assert "without frameworks" in result.stdout


def test_backend_trees_mirror_each_other():
    """Same module names in both backend packages, so a reader can diff them."""
    tf_modules = {p.name for p in (REPO / "ptychopinn_tf" / "ptychopinn_tf").glob("*.py")}
    torch_modules = {p.name for p in (REPO / "ptychopinn_torch" / "ptychopinn_torch").glob("*.py")}
    assert tf_modules == torch_modules


@pytest.mark.slow
def test_wheels_and_extras_install_only_what_they_name(tmp_path):
    """Build the three wheels, then install as a user would, from that folder.

    1. the core alone (installed for real): it imports (every module) and its command
       runs with no framework present;
    2. ``ptychopinn-core[torch]`` and ``ptychopinn-core[tf]`` (resolved with ``--dry-run``,
       which reads the same metadata pip installs from): each extra brings its backend and
       its framework, and not the other's. That each backend then works without the other
       framework is checked in this environment by
       :func:`test_each_backend_works_when_the_other_framework_cannot_import` (a real
       install of torch would only copy 700 MB to show the same).
    """
    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels,
         REPO, REPO / "ptychopinn_tf", REPO / "ptychopinn_torch"]
    )
    built = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert built == ["ptychopinn_core", "ptychopinn_tf", "ptychopinn_torch"]

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    pip = [python, "-m", "pip", "install", "-q", "--find-links", wheels]

    # The install and the two resolutions are independent (the dry runs ignore what is
    # installed) and mostly wait on the package index: run them side by side.
    reports = {extra: tmp_path / f"{extra}-report.json" for extra in ("torch", "tf")}
    extras = {"torch": ["ptychopinn-core[torch]", "torch==2.13.0"], "tf": ["ptychopinn-core[tf]"]}
    jobs = [pip + ["ptychopinn-core"]] + [
        pip + ["--dry-run", "--ignore-installed", "--report", reports[extra], *extras[extra]] for extra in extras
    ]
    for args, outcome in zip(jobs, run_together(jobs, env=env), strict=True):
        assert outcome.returncode == 0, f"{args} failed:\n{outcome.stdout}\n{outcome.stderr}"

    assert "without frameworks" in run([python, "-c", IMPORT_ALL_CORE], env=env).stdout
    cli = env_dir / "bin" / "ptychopinn"
    assert run([cli, "--version"], env=env).stdout.strip().endswith(_core_version())

    def resolved(extra: str) -> set[str]:
        return {canonicalize_name(item["metadata"]["name"]) for item in json.loads(reports[extra].read_text())["install"]}

    assert {"ptychopinn-core", "ptychopinn-torch", "torch", "lightning"} <= resolved("torch")
    assert not {"tensorflow", "tensorflow-cpu", "ptychopinn-tf"} & resolved("torch")
    assert {"ptychopinn-core", "ptychopinn-tf", "tensorflow-cpu"} <= resolved("tf")
    assert not {"torch", "ptychopinn-torch", "lightning"} & resolved("tf")


def run_together(jobs: list[list[str | Path]], **kwargs) -> list[subprocess.CompletedProcess[str]]:
    """Run commands concurrently; their results in the same order."""
    processes = [
        subprocess.Popen([str(arg) for arg in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         **kwargs)
        for args in jobs
    ]
    results = []
    for args, process in zip(jobs, processes, strict=True):
        stdout, stderr = process.communicate(timeout=900)
        results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return results


# A framework that cannot import (None in sys.modules makes `import x` raise ImportError):
# the other backend must still import, be discovered as usable, and run a forward pass;
# the missing one must be reported, not crash discovery.
WITHOUT_FRAMEWORK = """
import sys
sys.modules[{missing!r}] = None
import numpy as np
from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config
from ptychopinn_core.model.parameters import initial_weights, parameter_specs
from ptychopinn_core.simulation import make_demo_scan
from ptychopinn_core.training_data import prepare_inference_inputs, prepare_model_state
registry = BackendRegistry.discover()
status = {{entry.name: entry.status for entry in registry.entries()}}
assert status[{present!r}] == "ok", status
assert status[{absent!r}] != "ok", status
config = Config()
scan = make_demo_scan(16, 64, seed=0)
state = prepare_model_state(scan, config)
model = registry.get({present!r}).build_model(config, state, initial_weights(parameter_specs(config.model), 0))
chunk = next(iter(prepare_inference_inputs(scan, config, state, 16)))
patches = model.predict(chunk.diffraction, chunk.offsets_xy)
assert patches.shape == (16, 1, 64, 64) and np.all(np.isfinite(patches))
loaded = sorted(name for name in sys.modules if name.split(".")[0] == {missing!r} and sys.modules[name] is not None)
assert not loaded, loaded
print("works without", {missing!r})
"""


@pytest.mark.parametrize(
    ("present", "absent", "missing"),
    [("pytorch", "tensorflow", "tensorflow"), ("tensorflow", "pytorch", "torch")],
)
def test_each_backend_works_when_the_other_framework_cannot_import(present, absent, missing):
    pytest.importorskip("ptychopinn_tf" if present == "tensorflow" else "ptychopinn_torch")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    script = WITHOUT_FRAMEWORK.format(present=present, absent=absent, missing=missing)
    assert f"works without {missing}" in run([sys.executable, "-c", script], env=env).stdout


def _core_version() -> str:
    from ptychopinn_core import __version__

    return __version__
