"""Shared fixtures: "installing" test distributions without pip; each installed framework.

importlib.metadata finds a distribution by a ``<name>-<version>.dist-info`` folder on
``sys.path``; the entry points it declares are read from ``entry_points.txt`` there. So
writing such a folder into a temporary directory and putting that directory on
``sys.path`` (in-process) or ``PYTHONPATH`` (subprocesses) makes a distribution
discoverable for one test, exactly like an installed one, while the developer's
environment stays untouched (``ptychopinn demo`` there trains every installed backend,
and must never meet the fake). See tests/fake_backend/README.md.

The ``framework`` fixture runs a test once per framework (TensorFlow, PyTorch) against
that backend's own code, through the small adapters of tests/frameworks.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest

from frameworks import FRAMEWORKS, Framework, load_framework
from ptychopinn_core.backends import ENTRY_POINT_GROUP, BackendRegistry

# Two test workers share the CPU (pyproject's -n 2): OpenMP threads that spin while they
# wait would burn the other worker's core (docs/benchmarks.md); the CLI sets the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Numerics hygiene for a process that holds both frameworks (Keras' own test setup does
# the same): torch is imported before TensorFlow, whichever test file pytest collects
# first. Without torch installed there is nothing to order.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401

TESTS_DIR = Path(__file__).resolve().parent
#: Source tree of the fake backend: its pyproject.toml and the package ptychopinn_fake.
FAKE_BACKEND_ROOT = TESTS_DIR / "fake_backend"


def write_distribution(
    site: Path,
    name: str,
    version: str = "0.1.0",
    *,
    requires: Iterable[str] = (),
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Write the metadata of an installed distribution into ``site``.

    Parameters
    ----------
    site : Path
        A directory that is (or will be) on ``sys.path``.
    name, version : str
        Distribution name and version (METADATA ``Name``/``Version``).
    requires : iterable of str
        ``Requires-Dist`` lines (PEP 508 requirements).
    entry_points : mapping of group to {entry point name: target}
        Written to ``entry_points.txt``.

    Returns
    -------
    Path
        The ``.dist-info`` folder.
    """
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True, exist_ok=True)
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {requirement}" for requirement in requires]
    (folder / "METADATA").write_text("\n".join(metadata) + "\n", encoding="utf-8")
    lines = []
    for group, targets in (entry_points or {}).items():
        lines.append(f"[{group}]")
        lines += [f"{entry_name} = {target}" for entry_name, target in targets.items()]
        lines.append("")
    (folder / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


def write_fake_backend_distribution(site: Path, entry_point_names: Iterable[str] | None = None) -> Path:
    """Write the dist-info of ``ptychopinn-fake`` from tests/fake_backend/pyproject.toml.

    Reading the pyproject keeps the test install and a real ``pip install`` of the fake
    identical (name, version, requirements, entry points).

    Parameters
    ----------
    site : Path
    entry_point_names : iterable of str, optional
        Keep only these entry points (default: all, i.e. ``numpyfake`` and ``brokenfake``).
    """
    project = tomllib.loads((FAKE_BACKEND_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    targets = dict(project["entry-points"][ENTRY_POINT_GROUP])
    if entry_point_names is not None:
        wanted = set(entry_point_names)
        targets = {name: target for name, target in targets.items() if name in wanted}
    return write_distribution(
        site,
        project["name"],
        project["version"],
        requires=project["dependencies"],
        entry_points={ENTRY_POINT_GROUP: targets},
    )


def pythonpath_env(*paths: Path) -> dict[str, str]:
    """A copy of the environment with ``paths`` in front of PYTHONPATH (for subprocesses)."""
    env = dict(os.environ)
    existing = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([str(path) for path in paths] + existing)
    return env


@pytest.fixture(scope="session")
def fake_backend_root() -> Path:
    """tests/fake_backend: put it on sys.path to import the package ptychopinn_fake."""
    return FAKE_BACKEND_ROOT


@pytest.fixture(scope="session")
def fake_backend_site(tmp_path_factory) -> Path:
    """A directory holding the fake backend's dist-info (both entry points); not on sys.path."""
    site = tmp_path_factory.mktemp("fake-backend-site")
    write_fake_backend_distribution(site)
    return site


@pytest.fixture(scope="session")
def fake_backend_ok_site(tmp_path_factory) -> Path:
    """Like ``fake_backend_site`` with the working entry point only (no broken one)."""
    site = tmp_path_factory.mktemp("fake-backend-ok-site")
    write_fake_backend_distribution(site, ["numpyfake"])
    return site


@pytest.fixture
def fake_backend(fake_backend_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``ptychopinn-fake`` (``numpyfake`` and ``brokenfake``) discoverable in this test."""
    monkeypatch.syspath_prepend(str(FAKE_BACKEND_ROOT))
    monkeypatch.syspath_prepend(str(fake_backend_site))
    return fake_backend_site


@pytest.fixture
def fake_backend_env(fake_backend_site: Path) -> dict[str, str]:
    """Environment for a subprocess in which ``ptychopinn-fake`` is installed."""
    return pythonpath_env(fake_backend_site, FAKE_BACKEND_ROOT)


@pytest.fixture
def make_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Factory: install a throw-away distribution with its own modules for this test.

    ``make_distribution(name, requires=[...], entry_points={name: target},
    modules={"module_name": "source"})`` writes the modules and the dist-info into a
    fresh directory, prepends it to ``sys.path`` and returns it. Entry points go to the
    ``ptychodus.reconstructors`` group. The modules are removed from ``sys.modules``
    after the test.
    """
    created: list[str] = []

    def make(
        name: str,
        *,
        requires: Iterable[str] = ("ptychopinn-core",),
        entry_points: Mapping[str, str] | None = None,
        modules: Mapping[str, str] | None = None,
        version: str = "0.1.0",
    ) -> Path:
        site = tmp_path / f"site-{name}"
        site.mkdir()
        for module_name, source in (modules or {}).items():
            (site / f"{module_name}.py").write_text(source, encoding="utf-8")
            created.append(module_name)
        write_distribution(site, name, version, requires=requires,
                           entry_points={ENTRY_POINT_GROUP: dict(entry_points or {})})
        monkeypatch.syspath_prepend(str(site))
        return site

    yield make
    for module_name in created:
        sys.modules.pop(module_name, None)


@pytest.fixture
def installed_backend() -> Callable[[str], object]:
    """``installed_backend(name)``: that installed, usable backend; skips the test otherwise."""

    def get(name: str):
        registry = BackendRegistry.discover()
        entry = next((e for e in registry.entries() if e.name == name), None)
        if entry is None or not entry.ok:
            pytest.skip(f"backend {name!r} is not installed")
        return registry.get(name)

    return get


@pytest.fixture(scope="module", params=FRAMEWORKS)
def framework(request) -> Framework:
    """Each installed framework's backend code (``layers``, ``network``, ``model``) and tensor
    operations (tests/frameworks.py); a framework that is not installed is skipped."""
    return load_framework(request.param)
