"""The three distributions install the way users install them, the core stays free of
TensorFlow and torch, and it installs beside the published PtychoPINN (distribution
``ptychopinn``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from conftest import FAKE_BACKEND_ROOT

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("tensorflow", "torch", "lightning", "keras")

# Two subpackages need optional dependencies: the conformance kit (ptychopinn_core.testing)
# needs pytest (the `test` extra), the Ptychodus adapter (ptychopinn_core.ptychodus) needs
# ptychodus (the `ptychodus` extra), and its window panels PyQt5 (the `gui` extra); a user
# install without them skips them.
IMPORT_ALL_CORE = f"""
import importlib, importlib.util, pkgutil, sys
import ptychopinn_core
optional = {{"ptychopinn_core.testing": "pytest", "ptychopinn_core.ptychodus": "ptychodus",
            "ptychopinn_core.ptychodus.panels": "PyQt5"}}
for module in pkgutil.walk_packages(ptychopinn_core.__path__, "ptychopinn_core."):
    needs = [dep for prefix, dep in optional.items() if module.name.startswith(prefix)]
    if any(importlib.util.find_spec(dep) is None for dep in needs):
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
    """Build the four wheels, then install as a user would, from that folder.

    1. the core alone (installed for real): it imports (every module) and its command
       runs with no framework present;
    2. ``ptychopinn-core[torch]`` and ``ptychopinn-core[tf]`` (resolved with ``--dry-run``,
       which reads the same metadata pip installs from): each extra brings its backend and
       its framework, and not the other's. That each backend then works without the other
       framework is checked in this environment by
       :func:`test_each_backend_works_when_the_other_framework_cannot_import` (a real
       install of torch would only copy 700 MB to show the same);
    3. then ``ptychopinn-core[onnx]`` installed for real into the same environment: the
       ONNX backend alone runs bundles trained by each framework backend
       (:func:`_check_onnx_alone`).
    """
    wheels = build_wheels(tmp_path / "wheels", REPO, REPO / "ptychopinn_tf", REPO / "ptychopinn_torch",
                          REPO / "ptychopinn_onnx")
    built = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert built == ["ptychopinn_core", "ptychopinn_onnx", "ptychopinn_tf", "ptychopinn_torch"]

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
    # The wheel carries its package data: the simulator's shipped probe model.
    simulated = run([cli, "simulate", "--out", tmp_path / "beamline.npz", "--size", "32", "--n-positions", "20",
                     "--probe-kind", "velociprobe"], env=env).stdout
    assert "velociprobe probe" in simulated

    def resolved(extra: str) -> set[str]:
        return {canonicalize_name(item["metadata"]["name"]) for item in json.loads(reports[extra].read_text())["install"]}

    assert {"ptychopinn-core", "ptychopinn-torch", "torch", "lightning"} <= resolved("torch")
    assert not {"tensorflow", "tensorflow-cpu", "ptychopinn-tf"} & resolved("torch")
    assert {"ptychopinn-core", "ptychopinn-tf", "tensorflow-cpu"} <= resolved("tf")
    assert not {"torch", "ptychopinn-torch", "lightning"} & resolved("tf")

    run(pip + ["ptychopinn-core[onnx]"], env=env)
    _check_onnx_alone(env_dir, env, tmp_path / "onnx")


# In the ONNX environment: no framework is installed, and the backend's modules import none.
NO_FRAMEWORK_IN_ONNX_ENV = f"""
import importlib.util, sys
installed = [name for name in {FRAMEWORKS!r} if importlib.util.find_spec(name) is not None]
assert not installed, f"installed: {{installed}}"
import ptychopinn_onnx.plugin, ptychopinn_onnx.model, onnxruntime, ptychopinn_core.cli.main
loaded = sorted(set({FRAMEWORKS!r}) & {{name.split(".")[0] for name in sys.modules}})
assert not loaded, f"imported {{loaded}}"
print("onnx backend without frameworks")
"""


def _check_onnx_alone(env_dir: Path, env: dict[str, str], folder: Path) -> None:
    """Core + ONNX backend only (no TensorFlow, no torch): ``ptychopinn infer --backend onnx``
    on a bundle trained here by each framework backend, and on its ONNX export, gives that
    backend's own reconstruction within the parity tolerance (issue 19)."""
    from ptychopinn_core import workflow
    from ptychopinn_core.backends import BackendRegistry
    from ptychopinn_core.config import Config
    from ptychopinn_core.data import write_scan
    from ptychopinn_core.model.bundle import write_bundle
    from ptychopinn_core.parity.tolerances import TOLERANCES, relative_error
    from ptychopinn_core.reconstruction import read_reconstruction
    from ptychopinn_core.simulation.scan import make_demo_scan

    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "ptychopinn"
    assert "without frameworks" in run([python, "-c", NO_FRAMEWORK_IN_ONNX_ENV], env=env).stdout
    listed = run([cli, "backends", "--json"], env=env).stdout
    assert json.loads(listed)["usable"] == ["onnx"], listed

    folder.mkdir()
    scan = make_demo_scan(48, 32, seed=3)
    scan_path = write_scan(folder / "scan.npz", scan)
    registry = BackendRegistry.discover()
    trainers = [name for name in registry.names() if registry.get(name).info.capabilities.training
                and registry.get(name).info.framework in ("tensorflow", "torch")]
    assert trainers, "no framework backend installed in the test environment"
    config = Config.from_dict({"model": {"pattern_size": 32, "gridsize": 2, "n_filters_scale": 1},
                               "training": {"epochs": 1, "batch_size": 8}, "refine": {"iterations": 0}})
    tolerance = TOLERANCES["reconstruction"].relative
    for name in trainers:
        backend = registry.get(name)
        bundle = workflow.train(scan, config, backend)
        own = workflow.reconstruct(bundle, scan, backend).object
        bundle_path = write_bundle(folder / f"{name}.zip", bundle)
        onnx_path = folder / f"{name}.onnx"
        run([cli, "--quiet", "export", "--model", bundle_path, "--out", onnx_path], env=env)
        for model_path in (bundle_path, onnx_path):
            out = folder / f"{model_path.name}.recon.npz"
            run([cli, "--quiet", "infer", "--model", model_path, "--data", scan_path, "--out", out,
                 "--backend", "onnx", "--refine-iterations", "0"], env=env)
            error = relative_error(read_reconstruction(out).object, own)
            assert error <= tolerance, f"{model_path.name} by onnx vs {name}: relative error {error:.2e}"


# A stand-in for the published PtychoPINN (hoidn/PtychoPINN): its distribution name and
# its import package, nothing else (the real one pulls in TensorFlow and torch). The real
# one declares no entry point; this one declares one in our group whose module raises if
# imported, to show that a distribution NAMED ptychopinn is not taken for our core.
STAND_IN = {
    "pyproject.toml": """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "ptychopinn"
version = "2.0.0"
description = "Stand-in for the published PtychoPINN (import package ptycho)"

[project.entry-points."ptychodus.reconstructors"]
published = "ptycho.plugin"

[tool.setuptools]
packages = ["ptycho"]
""",
    "ptycho/__init__.py": '"""Stand-in for the published PtychoPINN."""\n',
    "ptycho/plugin.py": "raise RuntimeError('the registry must not import the published PtychoPINN')\n",
}

# Both import, each from its own distribution.
BOTH_IMPORT = """
import importlib.metadata as metadata
import ptycho, ptychopinn_core
assert metadata.version("ptychopinn") == "2.0.0"
assert metadata.version("ptychopinn-core") == ptychopinn_core.__version__
print("both import")
"""


@pytest.mark.slow
def test_core_installs_beside_the_published_ptychopinn(tmp_path, fake_backend_ok_site):
    """The core (``ptychopinn-core``) and a distribution named ``ptychopinn`` with the
    package ``ptycho`` (the published PtychoPINN's names) install into one venv in either
    order, and neither removes the other: the rename of issue 21.

    In one venv: the stand-in, then our core wheel; then the stand-in is uninstalled (our
    core stays) and installed again after ours. ``pip show -f`` tells the two apart (the
    CHANGELOG's migration note relies on it). Then ``ptychopinn backends`` lists a backend
    that requires ``ptychopinn-core`` (the test fake) and skips the stand-in's entry point.
    The venv sees the base interpreter's site-packages, so the core's dependencies that are
    there already are not installed again.
    """
    stand_in = tmp_path / "stand-in"
    for name, text in STAND_IN.items():
        (stand_in / name).parent.mkdir(parents=True, exist_ok=True)
        (stand_in / name).write_text(text.lstrip(), encoding="utf-8")
    folders = {REPO: tmp_path / "core-wheel", stand_in: tmp_path / "stand-in-wheel"}
    builds = [[sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", folder, project]
              for project, folder in folders.items()]
    for args, outcome in zip(builds, run_together(builds), strict=True):
        assert outcome.returncode == 0, f"{args} failed:\n{outcome.stdout}\n{outcome.stderr}"
    (core_wheel,), (stand_in_wheel,) = (list(folder.glob("*.whl")) for folder in folders.values())

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    pip = [python, "-m", "pip", "--disable-pip-version-check"]

    def installed() -> dict[str, list[str]]:
        """``pip show -f`` of both names: distribution name -> its files."""
        shown = subprocess.run([str(arg) for arg in [*pip, "show", "-f", "ptychopinn", "ptychopinn-core"]],
                               capture_output=True, text=True, env=env, timeout=120)
        found = {}
        for block in shown.stdout.split("\n---\n"):
            lines = block.splitlines()
            name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Name:")), None)
            if name is not None:
                found[name] = [line.strip() for line in lines if line.startswith("  ")]
        return found

    def assert_both_installed() -> None:
        found = installed()
        assert sorted(found) == ["ptychopinn", "ptychopinn-core"], found
        assert "ptycho/__init__.py" in found["ptychopinn"], found["ptychopinn"]
        assert "ptychopinn_core/__init__.py" in found["ptychopinn-core"], found["ptychopinn-core"]
        assert "both import" in run([python, "-c", BOTH_IMPORT], env=env).stdout

    run([*pip, "install", "-q", stand_in_wheel], env=env)
    run([*pip, "install", "-q", core_wheel], env=env)  # with its dependencies
    assert_both_installed()

    run([*pip, "uninstall", "-y", "-q", "ptychopinn"], env=env)
    assert sorted(installed()) == ["ptychopinn-core"]
    run([*pip, "install", "-q", stand_in_wheel], env=env)
    assert_both_installed()

    # Discovery: a backend that requires ptychopinn-core is found; the stand-in's entry
    # point is skipped without its module being imported (that would make it "broken").
    with_fake = dict(env, PYTHONPATH=os.pathsep.join([str(fake_backend_ok_site), str(FAKE_BACKEND_ROOT)]))
    listing = json.loads(run([env_dir / "bin" / "ptychopinn", "backends", "--json"], env=with_fake).stdout)
    status = {entry["name"]: (entry["distribution"], entry["status"]) for entry in listing["backends"]}
    assert status == {"numpyfake": ("ptychopinn-fake", "ok")}, listing


def build_wheels(folder: Path, *projects: Path, isolated: bool = True) -> Path:
    """``pip wheel`` the projects into ``folder`` (no dependencies); returns ``folder``."""
    isolation = [] if isolated else ["--no-build-isolation"]
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", folder, *projects])
    return folder


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
from ptychopinn_core.inference_chunks import prepare_inference_inputs
from ptychopinn_core.model.inputs import prepare_model_state
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
