"""Model file formats: the bundle zip, formats that distributions add through entry points,
and ``ptychopinn export``. The ONNX format itself is tested in tests/test_onnx_*.py."""

from __future__ import annotations

import sys

import pytest

from conftest import write_distribution
from ptychopinn_core.cli.main import main
from ptychopinn_core.model.bundle import BundleError, bundle_digest, read_bundle, write_bundle
from ptychopinn_core.model.formats import (
    BUNDLE_FORMAT_NAME,
    MODEL_FORMATS_GROUP,
    format_for_path,
    installed_formats,
    read_model,
    write_model,
)
from ptychopinn_core.testing import bitwise_equal
from test_bundle import make_bundle

# A format that stores the bundle zip under its own suffix, and one whose reader is wrong.
COPY_FORMAT = """
from ptychopinn_core.model.bundle import read_bundle, write_bundle
def write_model(path, bundle):
    return write_bundle(path, bundle)
def read_model(path):
    return read_bundle(path)
"""
WRONG_FORMAT = """
def write_model(path, bundle):
    open(path, "w").write("x")
    return path
def read_model(path):
    return "not a bundle"
"""


@pytest.fixture
def formats(tmp_path, monkeypatch):
    """Two throw-away formats, ``copyfmt`` and ``wrongfmt``, installed for this test."""
    site = tmp_path / "site"
    site.mkdir()
    for name, source in {"copyfmt_module": COPY_FORMAT, "wrongfmt_module": WRONG_FORMAT}.items():
        (site / f"{name}.py").write_text(source, encoding="utf-8")
    write_distribution(site, "formats-for-tests", requires=["ptychopinn-core"],
                       entry_points={MODEL_FORMATS_GROUP: {"copyfmt": "copyfmt_module",
                                                           "wrongfmt": "wrongfmt_module"}})
    monkeypatch.syspath_prepend(str(site))
    yield
    for name in ("copyfmt_module", "wrongfmt_module"):
        sys.modules.pop(name, None)


def test_a_bundle_is_the_default_format(tmp_path):
    bundle = make_bundle()
    for name in ("model.zip", "model.ptychopinn", "model"):
        assert format_for_path(tmp_path / name) == BUNDLE_FORMAT_NAME
        read = read_model(write_model(tmp_path / name, bundle))
        assert bundle_digest(read) == bundle_digest(bundle)


def test_an_installed_format_is_found_by_its_suffix(formats, tmp_path):
    assert installed_formats()[0] == BUNDLE_FORMAT_NAME
    assert {"copyfmt", "wrongfmt"} <= set(installed_formats())
    assert format_for_path(tmp_path / "model.CopyFmt") == "copyfmt"
    bundle = make_bundle()
    path = write_model(tmp_path / "model.copyfmt", bundle)
    read = read_model(path)
    assert read.config == bundle.config and bundle_digest(read) == bundle_digest(bundle)
    assert all(bitwise_equal(read.weights[name], value) for name, value in bundle.weights.items())
    # --format wins over the suffix
    assert read_bundle(write_model(tmp_path / "other.bin", bundle, "copyfmt")).config == bundle.config


def test_a_reader_that_returns_something_else_is_refused(formats, tmp_path):
    path = write_model(tmp_path / "model.wrongfmt", make_bundle())
    with pytest.raises(BundleError, match=r"model\.wrongfmt: the wrongfmt reader returned str"):
        read_model(path)


def test_a_known_format_that_is_not_installed_says_what_to_install(tmp_path, monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not read")
    assert format_for_path(path) == "onnx"
    with pytest.raises(ImportError, match=r'model\.onnx: the onnx model format is not installed; '
                                          r'install it with: pip install "ptychopinn-core\[onnx\]"'):
        read_model(path)
    with pytest.raises(ValueError, match="unknown model format: expected one of bundle, received format='nope'"):
        write_model(tmp_path / "x.zip", make_bundle(), "nope")


def test_export_command_writes_the_format_of_the_suffix(formats, tmp_path, capsys):
    bundle = make_bundle()
    source = write_bundle(tmp_path / "model.zip", bundle)
    assert main(["export", "--model", str(source), "--out", str(tmp_path / "model.copyfmt")]) == 0
    out = capsys.readouterr().out
    assert "model.copyfmt (copyfmt" in out and bundle_digest(bundle)[:12] in out
    assert bundle_digest(read_model(tmp_path / "model.copyfmt")) == bundle_digest(bundle)


def test_export_command_refuses_a_suffix_that_names_no_format(tmp_path, capsys):
    source = write_bundle(tmp_path / "model.zip", make_bundle())
    assert main(["export", "--model", str(source), "--out", str(tmp_path / "model.txt")]) == 2
    assert "the suffix names no model format" in capsys.readouterr().err
    assert not (tmp_path / "model.txt").exists()
