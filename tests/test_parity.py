"""Cross-backend parity (design.md §7, docs/parity.md): every level held to its tolerance.

One parity run over the installed backends (encoder_decoder, gridsize 1 and 2, PINN and
supervised, N = 64, the first 20 training steps, each backend's bundle reconstructed by
the others) feeds the level tests below. Without two real backends they skip;
`ptychopinn parity` itself is run once through the CLI on the unet (so every level sees
the skip connections too, at no extra run), and once against a backend that computes
something else, to show that a difference is caught.
"""

from __future__ import annotations

import itertools
import typing

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import FAKE_BACKEND_ROOT, pythonpath_env

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.config import Config, ModelConfig
from ptychopinn_core.data import write_scan
from ptychopinn_core.parity import TOLERANCES, ParityCase, parity_cases, run_parity
from ptychopinn_core.parity.runner import _case_config
from ptychopinn_core.simulation.scan import make_demo_scan

_REGISTRY = BackendRegistry.discover()
_REAL = sorted(entry.name for entry in _REGISTRY.entries() if entry.ok and entry.name != "numpyfake")
#: The backends that train, then those that run trained models only (ONNX): the report's
#: order, in which the first of a pair is the reference.
_TRAINERS = [name for name in _REAL if _REGISTRY.get(name).info.capabilities.training]
_ORDER = _TRAINERS + [name for name in _REAL if name not in _TRAINERS]
needs_two = pytest.mark.skipif(len(_TRAINERS) < 2, reason="needs two installed backends that train")


def _supporting(precision: str) -> list[str]:
    """The backends of the report that support ``precision`` ("float32"/"float64"), in order."""
    return [name for name in _ORDER if precision[-2:] in _REGISTRY.get(name).info.capabilities.precisions]

STEPS = 20
BATCH = 8
#: The full report runs the default architecture and group network, and the joint group
#: network in pinn mode; the unet goes through the CLI test.
CASES = [
    *parity_cases((1, 2), ("pinn", "supervised"), ("encoder_decoder",), ("shared",)),
    ParityCase(2, "pinn", "encoder_decoder", "joint"),
]
ARCHITECTURES = typing.get_args(ModelConfig.model_fields["architecture"].annotation)
GROUP_NETWORKS = typing.get_args(ModelConfig.model_fields["group_network"].annotation)


def test_cases_cover_every_architecture():
    """By default parity compares every value of model.architecture, and each case's
    configuration builds that architecture."""
    cases = parity_cases((1, 2), ("pinn",))
    assert {case.architecture for case in cases} == set(ARCHITECTURES) == {"encoder_decoder", "unet", "space_to_depth"}
    assert {case.group_network for case in cases} == set(GROUP_NETWORKS) == {"shared", "joint"}
    # Gridsize 1 once per architecture (both group networks are one network there), gridsize 2 once per pair.
    assert len(cases) == len(ARCHITECTURES) * (1 + len(GROUP_NETWORKS))
    assert len({case.label for case in cases}) == len(cases), "labels tell the cases apart"
    assert ParityCase(2, "pinn", "unet", "joint").label == "gridsize 2, pinn, unet, joint"
    assert ParityCase(1, "pinn").label == "gridsize 1, pinn, encoder_decoder"
    assert ParityCase(1, "pinn").architecture == ModelConfig().architecture
    assert ParityCase(1, "pinn").group_network == ModelConfig().group_network
    for case in cases:
        config = _case_config(_config(), case, "32", steps=2, n_positions=40)
        assert (config.model.architecture, config.model.gridsize, config.model.group_network) == (
            case.architecture, case.gridsize, case.group_network
        )


def _config() -> Config:
    return Config().with_overrides({"model.n_filters_scale": 1, "training.batch_size": BATCH, "training.seed": 2})


@pytest.fixture(scope="module")
def report():
    scan = make_demo_scan(STEPS * BATCH + 16, size=64, seed=3)
    backends = {name: _REGISTRY.get(name) for name in _REAL}
    result = run_parity(scan, backends, _config(), steps=STEPS, cases=CASES)
    print("\n" + "\n".join(
        f"{c.level:14s} {c.quantity:40s} {c.case:30s} {c.compared:24s} {c.error:.2e}" for c in result.checks
    ))
    return result


def _checks(report, level: str, case: str | None = None):
    checks = [check for check in report.checks if check.level == level and (case is None or check.case.startswith(case))]
    assert checks, f"no {level} checks for {case}"
    return checks


def _assert_within(checks) -> None:
    for check in checks:
        assert check.passed, f"{check.level} {check.quantity} ({check.case}, {check.compared}): {check.error:.2e} > {check.tolerance}"


@needs_two
def test_physics_steps_match_numpy(report):
    checks = _checks(report, "physics")
    assert {check.compared for check in checks} == {f"{name} vs numpy" for name in _REAL}
    _assert_within(checks)


@needs_two
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_refinement_is_the_same(report, precision):
    """Ten iterations from one flat start, probe refined: every backend against the numpy
    reference and against each other (measured ~3e-7 in float32, ~2e-16 in float64)."""
    checks = [check for check in _checks(report, "refinement") if check.case.endswith(precision)]
    names = _supporting(precision)
    expected = {f"{name} vs numpy" for name in names} | {f"{b} vs {a}" for a, b in itertools.combinations(names, 2)}
    assert {check.compared for check in checks} == expected
    assert {check.quantity for check in checks} == {"object", "probe"}
    _assert_within(checks)
    if precision == "float64":
        assert max(check.error for check in checks) < 1e-12


@needs_two
@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_forward_pass_is_the_same(report, gridsize, precision):
    checks = _checks(report, "forward", f"{ParityCase(gridsize, 'pinn').label}, {precision}")
    assert {check.quantity for check in checks} == {"patches", "amplitude"}
    names = _supporting(precision)  # every pair, the backends that run trained models only included
    assert {check.compared for check in checks} == {f"{b} vs {a}" for a, b in itertools.combinations(names, 2)}
    assert all(check.tolerance == TOLERANCES[f"forward:{precision[-2:]}"].relative for check in checks)
    _assert_within(checks)


@needs_two
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_loss_and_gradients_are_the_same(report, case):
    float32 = _checks(report, "loss", f"{case.label}, float32")
    _assert_within(float32)
    # float64: the loss and EVERY parameter's gradient (the worst one is reported)
    float64 = _checks(report, "loss", f"{case.label}, float64") + _checks(report, "gradients", f"{case.label}, float64")
    assert any(check.quantity.startswith("worst parameter") for check in float64)
    _assert_within(float64)
    # float32 gradients are reported, not held (ReLU kinks, docs/parity.md), and still close overall
    reported = _checks(report, "gradients", f"{case.label}, float32")
    assert all(check.passed is None for check in reported)
    assert next(c for c in reported if c.quantity == "all parameters").error < 1e-2


@needs_two
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_first_training_steps_agree(report, case):
    checks = _checks(report, "training", f"{case.label}, float32")
    _assert_within(checks)
    curves = report.curves[f"{case.label}, float32"]
    assert set(curves) == set(_TRAINERS)
    assert all(len(curve) == STEPS and np.all(np.isfinite(curve)) for curve in curves.values())


@needs_two
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_a_bundle_reconstructs_the_same_in_every_backend(report, case):
    checks = _checks(report, "reconstruction", case.label)
    # every trainer's bundle run by every other backend (those that only run models too)
    assert {check.quantity for check in checks} == {f"bundle of {name}" for name in _TRAINERS}
    assert {check.compared for check in checks} == {
        f"{runner} vs {trainer}" for trainer in _TRAINERS for runner in _REAL if runner != trainer}
    _assert_within(checks)


@needs_two
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_quality_after_training_is_the_same(report, case):
    checks = _checks(report, "quality", case.label)
    assert len(checks) == 2 * (len(_TRAINERS) - 1)  # amplitude and phase SSIM per pair of trainers
    _assert_within(checks)


@needs_two
def test_float64_training_steps_agree():
    """The optimisers are one definition: in float64 the curves agree far below float32's."""
    scan = make_demo_scan(4 * BATCH, size=64, seed=4)
    backends = {name: _REGISTRY.get(name) for name in _TRAINERS}
    result = run_parity(scan, backends, _config(), steps=4, cases=[ParityCase(1, "pinn")], precisions=("64",),
                        training_precisions=("64",), reconstruction=False)
    checks = _checks(result, "training", f"{ParityCase(1, 'pinn').label}, float64")
    _assert_within(checks)
    # measured ~4e-8 of the loss above its floor over the first steps (float32: ~1e-4 by step 5)
    assert max(check.error for check in checks) < 1e-6


@needs_two
def test_bf16_training_steps_agree():
    """The network in bfloat16 (bf16-mixed): both backends round alike, so the curves stay together."""
    scan = make_demo_scan(8 * BATCH, size=64, seed=4)
    backends = {name: _REGISTRY.get(name) for name in _TRAINERS if "bf16-mixed" in
                _REGISTRY.get(name).info.capabilities.precisions}
    if len(backends) < 2:
        pytest.skip("fewer than two backends train in bf16-mixed")
    case = ParityCase(2, "pinn")
    result = run_parity(scan, backends, _config(), steps=8, cases=[case], precisions=("32",),
                        training_precisions=("bf16-mixed",), reconstruction=False, refine_iterations=0)
    checks = _checks(result, "training", f"{case.label}, bfloat16-mixed")
    assert checks and all(check.tolerance == TOLERANCES["training:bf16"].relative for check in checks)
    _assert_within(checks)


@needs_two
def test_parity_command_writes_the_table_json_and_plots(tmp_path):
    """Through the CLI, on the unet with the shared group network: every level, the skip
    connections included."""
    data = tmp_path / "scan.npz"
    write_scan(data, make_demo_scan(40, size=64, seed=5))
    command = [sys.executable, "-m", "ptychopinn_core.cli.main", "parity", "--data", str(data), "--steps", "2",
               "--gridsize", "2", "--mode", "pinn", "--architecture", "unet", "--group-network", "shared",
               "--set", "model.n_filters_scale=1", "--set", "training.batch_size=4",
               "--refine-iterations", "1",  # the level's numbers are held by the report fixture
               "--json", str(tmp_path / "parity.json"), "--plots", str(tmp_path / "plots")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "every held check passed" in run.stdout
    report = json.loads((tmp_path / "parity.json").read_text())
    assert report["passed"] is True
    assert report["settings"]["cases"] == ["gridsize 2, pinn, unet, shared"]
    assert {check["level"] for check in report["checks"]} == {
        "physics", "refinement", "forward", "loss", "gradients", "training", "reconstruction", "quality"
    }
    assert set(report["timings"]) == set(_REAL)
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == [
        "gridsize-2-pinn-unet-shared-differences.png", "gridsize-2-pinn-unet-shared-float32-loss.png"
    ]


def test_a_backend_that_computes_something_else_fails(fake_backend_ok_site, tmp_path):
    """The numpy fake backend is a different model (constant patches): parity must say so, rc 1."""
    data = tmp_path / "scan.npz"
    write_scan(data, make_demo_scan(24, size=64, seed=6))
    reference = _TRAINERS[0] if _TRAINERS else None
    if reference is None:
        pytest.skip("needs one real backend besides the fake")
    command = [sys.executable, "-m", "ptychopinn_core.cli.main", "parity", "--data", str(data), "--steps", "1",
               "--backends", f"{reference},numpyfake", "--gridsize", "1", "--mode", "pinn", "--no-reconstruction",
               "--architecture", "encoder_decoder",
               "--refine-iterations", "0",  # the fake differs already in its forward pass
               "--set", "model.n_filters_scale=1", "--set", "training.batch_size=4", "--json", str(tmp_path / "p.json")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600,
                         env=pythonpath_env(fake_backend_ok_site, FAKE_BACKEND_ROOT))
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "parity check(s) over tolerance" in run.stderr
