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

    1. the core alone: it imports (every module) and runs with no framework present;
    2. ``ptychopinn[torch]``: the core plus the torch backend, and no TensorFlow;
    3. ``ptychopinn[tf]`` (resolved only, ``--dry-run``): the TensorFlow backend and
       ``tensorflow-cpu``, and no torch.
    """
    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels,
         REPO, REPO / "ptychopinn_tf", REPO / "ptychopinn_torch"]
    )
    built = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert built == ["ptychopinn", "ptychopinn_tf", "ptychopinn_torch"]

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = [python, "-m", "pip", "install", "-q", "--find-links", wheels]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    run(pip + ["ptychopinn"], env=env)
    assert "without frameworks" in run([python, "-c", IMPORT_ALL_CORE], env=env).stdout
    cli = env_dir / "bin" / "ptychopinn"
    assert run([cli, "--version"], env=env).stdout.strip().endswith(_core_version())

    run(pip + ["ptychopinn[torch]", "torch==2.13.0"], env=env)
    installed = _installed(python, env)
    assert {"ptychopinn", "ptychopinn-torch", "torch", "lightning"} <= installed
    assert not {"tensorflow", "tensorflow-cpu", "ptychopinn-tf"} & installed
    run([python, "-c", "import ptychopinn_core, ptychopinn_torch"], env=env)

    report = tmp_path / "tf-report.json"
    run(
        [python, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
         "--report", report, "--find-links", wheels, "ptychopinn[tf]"],
        env=env,
    )
    to_install = {
        canonicalize_name(item["metadata"]["name"])
        for item in json.loads(report.read_text())["install"]
    }
    assert {"ptychopinn", "ptychopinn-tf", "tensorflow-cpu"} <= to_install
    assert not {"torch", "ptychopinn-torch", "lightning"} & to_install


def _installed(python: Path, env: dict[str, str]) -> set[str]:
    listing = run([python, "-m", "pip", "list", "--format", "json"], env=env).stdout
    return {canonicalize_name(item["name"]) for item in json.loads(listing)}


def _core_version() -> str:
    from ptychopinn_core import __version__

    return __version__
