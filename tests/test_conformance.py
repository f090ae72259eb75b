"""The conformance kit, run for every discovered backend and for the numpy fake.

Parametrised over the backends discovered in the test environment plus the known ones
(tensorflow, pytorch): a backend that is not installed, or installed without its
framework (incomplete), shows up as skipped with the reason, never silently absent. A
backend that is installed but broken fails ``test_installed_backend_is_not_broken``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from ptychopinn_core.backends import KNOWN_BACKENDS, BackendRegistry, BackendWarning
from ptychopinn_core.testing import BackendConformanceTests


def _discover() -> BackendRegistry:
    # Broken backends are reported by a test below; their warnings would only repeat it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendWarning)
        return BackendRegistry.discover()


#: Discovered names plus the known ones, so a missing backend is a visible skip.
BACKEND_NAMES = sorted({entry.name for entry in _discover().entries()} | set(KNOWN_BACKENDS))


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_installed_backend_is_not_broken(name: str) -> None:
    entry = {entry.name: entry for entry in _discover().entries()}.get(name)
    if entry is None:
        pytest.skip(f"backend {name!r} not installed ({KNOWN_BACKENDS[name]})")
    assert entry.status != "broken", f"installed backend {name!r} is broken: {entry.reason}"


@pytest.fixture(scope="module", params=BACKEND_NAMES)
def installed_backend(request):
    registry = _discover()
    entry = {entry.name: entry for entry in registry.entries()}.get(request.param)
    if entry is None:
        pytest.skip(f"backend {request.param!r} not installed ({KNOWN_BACKENDS[request.param]})")
    if not entry.ok:
        pytest.skip(f"backend {request.param!r} is {entry.status}: {entry.reason}")
    return registry.get(request.param)


@pytest.fixture(scope="module")
def fake_backend_handle(fake_backend_ok_site: Path, fake_backend_root: Path):
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(fake_backend_root))
        patch.syspath_prepend(str(fake_backend_ok_site))
        # A different-case name: selection is case-insensitive.
        yield _discover().get("NumpyFake")


class TestInstalledBackend(BackendConformanceTests):
    """Every backend installed in this environment (the real TensorFlow/PyTorch ones)."""

    @pytest.fixture
    def backend(self, installed_backend):
        return installed_backend


class TestFakeBackend(BackendConformanceTests):
    """The numpy fake of tests/fake_backend (a real, if minimal, backend)."""

    @pytest.fixture
    def backend(self, fake_backend_handle):
        return fake_backend_handle
