"""Shared pieces of the Ptychodus integration tests (tests/test_ptychodus_*.py).

The tests drive the real Ptychodus 1.7 package: its ``ModelCore`` in-process and its
``ptychodus`` command in subprocesses. Inputs are Ptychodus' standard batch layout
(``diffraction.h5``, ``product.h5``, ``settings.ini``) written with
``ptychodus.api.io`` from a simulated scan with a consistent far-field geometry.

Backends: every backend that ``BackendRegistry.discover()`` lists as ok in this
environment, plus the numpy fake (``numpyfake``, made discoverable through
``PYTHONPATH``/``sys.path``); no backend name is hard-coded.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.data import ScanData
from ptychopinn_core.simulation.scan import make_demo_scan

#: Name of the fake backend (tests/fake_backend/pyproject.toml).
FAKE_BACKEND = "numpyfake"
#: A consistent far-field geometry: object pixel = wavelength * distance / (N * pixel).
PHOTON_ENERGY_EV = 8000.0
DETECTOR_DISTANCE_M = 2.0
DETECTOR_PIXEL_M = 75e-6
#: Small scans keep every backend's training to seconds on two CPU cores.
PATTERN_SIZE = 32
N_POSITIONS = 64
NPHOTONS = 1e7
#: Where the hook module is installed, and the module name Ptychodus imports.
HOOK_MODULE = "ptychodus.plugins.ptychopinn_reconstructors"
HOOK_SOURCE = (
    Path(__file__).resolve().parents[1] / "ptychodus_hook" / "ptychodus" / "plugins" / "ptychopinn_reconstructors.py"
)
PTYCHODUS_TIMEOUT_S = 600


def installed_backend_names() -> list[str]:
    """Backends usable in this environment (without the fake), sorted."""
    return BackendRegistry.discover().names()


def backend_params() -> list[Any]:
    """``pytest.param`` per installed backend plus the fake, with readable ids."""
    names = sorted(set(installed_backend_names()) | {FAKE_BACKEND})
    return [pytest.param(name, id=name) for name in names]


def simulated_scan(seed: int = 1, size: int = PATTERN_SIZE, n_positions: int = N_POSITIONS) -> ScanData:
    """A small simulated scan with ground truth (``make_demo_scan``, Poisson counts)."""
    return make_demo_scan(n_positions, size=size, nphotons=NPHOTONS, seed=seed)


def settings_text(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A Ptychodus settings file (INI) with the given sections and keys."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep Ptychodus' CamelCase keys as written
    for section, values in sections.items():
        parser[section] = {key: str(value) for key, value in values.items()}
    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in parser[section].items()]
        lines.append("")
    return "\n".join(lines)


def write_input_directory(
    directory: Path,
    scan: ScanData,
    *,
    algorithm: str | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    bad_pixels: Any = None,
) -> Path:
    """Write Ptychodus' batch input layout for ``scan`` into ``directory``.

    ``diffraction.h5`` (counts ``X**2`` with the detector pixel attributes) and
    ``product.h5`` (positions in metres, probe, object grid) come from
    :func:`ptychopinn_core.ptychodus.convert.ptychodus_inputs_from_scan` and
    ``ptychodus.api.io``; ``settings.ini`` selects ``algorithm`` and holds ``settings``.
    """
    from ptychodus.api.io import save_diffraction_data, save_product

    from ptychopinn_core.ptychodus.convert import ptychodus_inputs_from_scan

    directory.mkdir(parents=True, exist_ok=True)
    diffraction, product = ptychodus_inputs_from_scan(
        scan,
        photon_energy_eV=PHOTON_ENERGY_EV,
        detector_distance_m=DETECTOR_DISTANCE_M,
        detector_pixel_m=DETECTOR_PIXEL_M,
        name="simulated",
        bad_pixels=bad_pixels,
    )
    save_diffraction_data(directory / "diffraction.h5", diffraction)
    save_product(directory / "product.h5", product)
    sections: dict[str, Mapping[str, Any]] = {}
    if algorithm is not None:
        sections["Processing"] = {"Algorithm": algorithm}
    sections.update(settings or {})
    if sections:
        (directory / "settings.ini").write_text(settings_text(sections), encoding="utf-8")
    return directory


def subprocess_env(*paths: Path) -> dict[str, str]:
    """Environment for a subprocess with ``paths`` first on PYTHONPATH."""
    env = dict(os.environ)
    existing = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([str(path) for path in paths] + existing)
    return env


def ptychodus_command() -> list[str]:
    """The ``ptychodus`` console script of this environment."""
    script = Path(sys.executable).with_name("ptychodus")
    assert script.is_file(), f"the ptychodus command is not installed beside {sys.executable}"
    return [str(script)]


def run(args: list[str], env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output as text."""
    return subprocess.run(
        args, capture_output=True, text=True, env=dict(env), cwd=cwd, timeout=PTYCHODUS_TIMEOUT_S, check=False
    )


def output_products(directory: Path) -> list[Path]:
    """``product.NNNNNN.h5`` files Ptychodus wrote, in progress order."""
    return sorted(directory.glob("product.*.h5"))


def reconstructed_by(comments: str) -> list[str]:
    """Reconstructor keys named in a product's comments by our provenance line."""
    marker = "PtychoPINN: reconstructed by "
    return [line[len(marker):].split(" ", 1)[0] for line in comments.splitlines() if line.startswith(marker)]
