"""The CPU's bfloat16 units, read from Linux's CPU flags, and the demo's choice of precision from them."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from ptychopinn_core import demo
from ptychopinn_core.hardware import cpu_bfloat16_flags

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\nprocessor\t: 1\n"
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(("cpuinfo", "expected"), [
    (SAPPHIRE_RAPIDS, ("amx_bf16", "avx512_bf16")),
    (ZEN3, ()),
    (GRAVITON3, ()),  # Arm's bf16 is not a oneDNN x86 unit: float32 stays
])
def test_cpu_flags(tmp_path, cpuinfo, expected) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert cpu_bfloat16_flags(path) == expected


def test_no_cpuinfo_means_none(tmp_path) -> None:
    assert cpu_bfloat16_flags(tmp_path / "missing") == ()


def _backend(precisions, devices):
    return SimpleNamespace(name="stub", info=SimpleNamespace(capabilities=SimpleNamespace(precisions=precisions)),
                           devices=lambda: devices)


@pytest.mark.parametrize(("precisions", "devices", "flags", "expected"), [
    ({"32", "bf16-mixed"}, ["cpu"], ("amx_bf16",), "bf16-mixed"),
    ({"32", "bf16-mixed"}, ["cpu:0"], ("avx512_bf16",), "bf16-mixed"),
    ({"32", "bf16-mixed"}, ["cpu"], (), "32"),  # emulated bfloat16 is slower than float32
    ({"32", "bf16-mixed"}, ["cpu", "cuda:0"], ("amx_bf16",), "32"),  # a GPU trains: not this CPU's units
    ({"32"}, ["cpu"], ("amx_bf16",), "32"),  # the backend does not offer it
])
def test_the_demo_trains_in_bfloat16_where_it_is_fast(monkeypatch, precisions, devices, flags, expected) -> None:
    monkeypatch.setattr(demo, "cpu_bfloat16_flags", lambda: flags)
    precision, why = demo._training_precision(demo.DEFAULT, _backend(precisions, devices))
    assert precision == expected and why


def test_a_set_precision_is_kept(monkeypatch) -> None:
    monkeypatch.setattr(demo, "cpu_bfloat16_flags", lambda: ("amx_bf16",))
    settings = replace(demo.DEFAULT, precision="32")
    assert demo._training_precision(settings, _backend({"32", "bf16-mixed"}, ["cpu"]))[0] == "32"
    assert settings.config().execution.precision == "32"
