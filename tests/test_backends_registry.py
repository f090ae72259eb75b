"""Discovery, selection and error reporting of backends (ptychopinn_core.backends).

Distributions are "installed" per test by writing dist-info folders on sys.path
(tests/conftest.py); nothing is pip-installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from ptychopinn_core.backends import (
    ALIASES,
    HOOK_NAMES,
    KNOWN_BACKENDS,
    BackendHookSpec,
    BackendInfo,
    BackendRegistry,
    BackendWarning,
    Capabilities,
    DuplicateBackendWarning,
    ProgressEvent,
    canonical_backend_name,
    depends_on_core,
)
from ptychopinn_core.config import Config
from ptychopinn_core.model.parameters import initial_weights, parameter_specs

#: A group nobody declares entry points in: discovering it is "no backend installed".
EMPTY_GROUP = "ptychopinn.tests.no-backends-here"
FRAMEWORKS = ("tensorflow", "torch", "lightning", "keras")


def discover_quietly(group: str | None = None) -> tuple[BackendRegistry, list[warnings.WarningMessage]]:
    """Discover, returning the warnings instead of emitting them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = BackendRegistry.discover() if group is None else BackendRegistry.discover(group)
    return registry, list(caught)


def by_name(registry: BackendRegistry) -> dict:
    return {entry.name: entry for entry in registry.entries()}


_HOOKS = {
    "ptychopinn_backend_info": """
@hookimpl
def ptychopinn_backend_info():
    return BackendInfo(
        name={name!r}, display_name="Test backend", framework="testframework",
        framework_distributions=("numpy",), framework_module={framework_module!r},
        install_hint='pip install "test-backend[framework]"',
    )
""",
    "ptychopinn_devices": """
@hookimpl
def ptychopinn_devices():
    return {devices!r}
""",
    "ptychopinn_physics_ops": """
@hookimpl
def ptychopinn_physics_ops():
    return None
""",
    "ptychopinn_build_model": """
@hookimpl
def ptychopinn_build_model(config, state, weights):
    raise AssertionError("the core must reject the config before calling the backend")
""",
    "ptychopinn_train": """
@hookimpl
def ptychopinn_train(model, data, config, progress):
    return None
""",
    "ptychopinn_refiner": """
@hookimpl
def ptychopinn_refiner(problem, config):
    return None
""",
}


def plugin_source(name: str, *, framework_module: str = "numpy", devices=("cpu",), omit=(), extra: str = "") -> str:
    """Source of a plugin module implementing every hook except ``omit``, plus ``extra``."""
    parts = ["from ptychopinn_core.backends import BackendInfo, Capabilities, hookimpl\n"]
    for hook, template in _HOOKS.items():
        if hook not in omit:
            parts.append(template.format(name=name, framework_module=framework_module, devices=list(devices)
                                         if devices is not None else None))
    parts.append(textwrap.dedent(extra))
    return "\n".join(parts)


# -- no backend installed ------------------------------------------------------------------


def test_empty_group_lists_nothing_and_names_the_pip_commands():
    registry, caught = discover_quietly(EMPTY_GROUP)
    assert registry.entries() == [] and registry.names() == []
    assert not caught
    with pytest.raises(ValueError, match="no PtychoPINN backend is installed") as error:
        registry.get("jax")
    for command in KNOWN_BACKENDS.values():
        assert command in str(error.value)


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("pytorch", 'pip install "ptychopinn-core[torch]"'),
        ("torch", 'pip install "ptychopinn-core[torch]"'),
        ("PyTorch", 'pip install "ptychopinn-core[torch]"'),
        ("tensorflow", 'pip install "ptychopinn-core[tf]"'),
        ("TF", 'pip install "ptychopinn-core[tf]"'),
    ],
)
def test_known_backend_not_installed_is_an_import_error_naming_pip(name, command):
    registry, _ = discover_quietly(EMPTY_GROUP)
    with pytest.raises(ImportError, match="is not installed") as error:
        registry.get(name)
    assert command in str(error.value)


@pytest.mark.parametrize(("given", "canonical"), [("tf", "tensorflow"), (" Torch ", "pytorch"), ("JAX", "jax")])
def test_canonical_names(given, canonical):
    assert canonical_backend_name(given) == canonical
    assert set(ALIASES.values()) <= set(KNOWN_BACKENDS)


def test_backend_name_must_be_a_string():
    registry, _ = discover_quietly(EMPTY_GROUP)
    with pytest.raises(TypeError, match="backend name"):
        registry.get(None)


# -- the fake backend ----------------------------------------------------------------------


def test_fake_backend_is_discovered_with_its_metadata(fake_backend):
    registry, _ = discover_quietly()
    entry = by_name(registry)["numpyfake"]
    assert entry.status == "ok" and entry.reason == ""
    assert (entry.distribution, entry.distribution_version) == ("ptychopinn-fake", "0.1.0")
    assert entry.target == "ptychopinn_fake.plugin"
    assert entry.framework_version == np.__version__
    assert entry.info.name == "numpyfake" and entry.info.capabilities.modes == {"pinn"}
    assert "numpyfake" in registry.names()


@pytest.mark.parametrize("name", ["numpyfake", "NumpyFake", "  NUMPYFAKE "])
def test_fake_backend_is_selected_case_insensitively(fake_backend, name):
    registry, _ = discover_quietly()
    backend = registry.get(name)
    assert backend.name == "numpyfake"
    assert backend.devices() == ["cpu"]


def test_selected_backend_runs_its_own_physics(fake_backend):
    registry, _ = discover_quietly()
    ops = registry.get("numpyfake").physics_ops()
    psi = np.zeros((1, 16, 16), dtype=np.complex64)
    psi[0, 8, 8] = 16.0  # a point at the centre: a flat far field of 16 / N = 1
    np.testing.assert_allclose(np.abs(ops.far_field(psi)), 1.0, rtol=1e-6)


def test_broken_plugin_is_reported_while_the_others_work(fake_backend):
    with pytest.warns(BackendWarning, match="brokenfake.*simulated import failure"):
        registry = BackendRegistry.discover()
    entries = by_name(registry)
    broken = entries["brokenfake"]
    assert broken.status == "broken" and broken.info is None
    assert "importing ptychopinn_fake.broken failed: ImportError" in broken.reason
    assert "brokenfake" not in registry.names()
    with pytest.raises(ImportError, match=r"backend 'brokenfake' \(ptychopinn-fake 0.1.0\) is broken: .*simulated"):
        registry.get("brokenfake")
    backend = registry.get("numpyfake")
    assert backend.devices() == ["cpu"]


def test_unknown_name_lists_the_installed_backends(fake_backend):
    registry, _ = discover_quietly()
    with pytest.raises(ValueError, match=r"unknown backend: expected one of the installed backends \(.*numpyfake.*\), "
                                         r"received name='jax'"):
        registry.get("jax")


def test_registries_are_independent(fake_backend):
    with_fake, _ = discover_quietly()
    empty, _ = discover_quietly(EMPTY_GROUP)
    assert "numpyfake" in by_name(with_fake) and by_name(empty) == {}
    assert with_fake.group != empty.group


# -- which entry points are considered -----------------------------------------------------


RAISES_IF_IMPORTED = "raise RuntimeError('this module must never be imported by the ptychopinn registry')\n"


@pytest.mark.parametrize(
    "requires",
    [["numpy>=1.26"], [], ['ptychopinn-core; extra == "ptycho"'], ["ptychopinn>=2"]],
    # ptychopinn: the published PtychoPINN's distribution (packages ptycho, ptycho_torch), not our core.
    ids=["other-dependency", "no-dependency", "core-only-as-extra", "published-ptychopinn"],
)
def test_foreign_entry_point_is_not_imported(make_distribution, requires):
    make_distribution("foreign-plugin", requires=requires, entry_points={"foreign": "foreign_plugin_module"},
                      modules={"foreign_plugin_module": RAISES_IF_IMPORTED})
    registry, caught = discover_quietly()
    assert "foreign" not in by_name(registry)
    assert "foreign_plugin_module" not in sys.modules
    assert not [warning for warning in caught if "foreign" in str(warning.message)]


def test_same_module_is_imported_when_the_distribution_requires_the_core(make_distribution):
    # The control of the test above: only the requirement differs, and now it is imported.
    make_distribution("our-plugin", requires=["ptychopinn-core>=0.1"], entry_points={"ours": "our_plugin_module"},
                      modules={"our_plugin_module": RAISES_IF_IMPORTED})
    registry, _ = discover_quietly()
    entry = by_name(registry)["ours"]
    assert entry.status == "broken" and "must never be imported" in entry.reason


def test_depends_on_core_reads_requirements():
    import importlib.metadata

    assert depends_on_core(importlib.metadata.distribution("ptychopinn-core"))
    assert not depends_on_core(importlib.metadata.distribution("numpy"))
    assert not depends_on_core(None)


def test_duplicate_name_warns_and_the_first_found_wins(make_distribution):
    make_distribution("dupe-second", entry_points={"dupe": "dupe_second_plugin"},
                      modules={"dupe_second_plugin": plugin_source("dupe", devices=["second"])})
    # Created last = prepended last = first on sys.path = found first.
    make_distribution("dupe-first", entry_points={"dupe": "dupe_first_plugin"},
                      modules={"dupe_first_plugin": plugin_source("dupe", devices=["first"])})
    with pytest.warns(DuplicateBackendWarning, match="'dupe' is declared by dupe-first 0.1.0 and by dupe-second"):
        registry = BackendRegistry.discover()
    assert by_name(registry)["dupe"].distribution == "dupe-first"
    assert registry.get("dupe").devices() == ["first"]
    assert "dupe_second_plugin" not in sys.modules


# -- broken and incomplete plugins ---------------------------------------------------------


@pytest.mark.parametrize(
    ("entry_name", "source_kwargs", "reason"),
    [
        pytest.param("badargs", {"omit": ("ptychopinn_devices",),
                                 "extra": "@hookimpl\ndef ptychopinn_devices(gpu_index):\n    return ['cpu']\n"},
                     r"invalid plugin .*PluginValidationError.*gpu_index", id="hookimpl-argument-not-in-spec"),
        pytest.param("missinghook", {"omit": ("ptychopinn_train",)},
                     r"missing hook\(s\) ptychopinn_train", id="missing-hook"),
        pytest.param("unknownhook", {"extra": "@hookimpl\ndef ptychopinn_frobnicate():\n    return 1\n"},
                     r"unknown hook\(s\) ptychopinn_frobnicate", id="unknown-hook"),
        pytest.param("inforaises", {"omit": ("ptychopinn_backend_info",),
                                    "extra": "@hookimpl\ndef ptychopinn_backend_info():\n"
                                             "    raise RuntimeError('cannot describe myself')\n"},
                     r"ptychopinn_backend_info of .* failed: RuntimeError: cannot describe myself", id="info-raises"),
        pytest.param("infodict", {"omit": ("ptychopinn_backend_info",),
                                  "extra": "@hookimpl\ndef ptychopinn_backend_info():\n    return {'name': 'x'}\n"},
                     r"returned dict, expected a BackendInfo", id="info-wrong-type"),
        pytest.param("badcaps", {"omit": ("ptychopinn_backend_info",),
                                 "extra": "@hookimpl\ndef ptychopinn_backend_info():\n"
                                          "    return BackendInfo('badcaps', 'B', 'f', ('numpy',), 'numpy', 'pip x',\n"
                                          "                       Capabilities(modes={'magic'}))\n"},
                     r"ValueError: invalid modes", id="invalid-capabilities"),
    ],
)
def test_invalid_plugin_is_broken_with_the_reason(make_distribution, entry_name, source_kwargs, reason):
    module = f"plugin_{entry_name}"
    make_distribution(f"test-{entry_name}", entry_points={entry_name: module},
                      modules={module: plugin_source(entry_name, **source_kwargs)})
    with pytest.warns(BackendWarning, match=entry_name):
        registry = BackendRegistry.discover()
    entry = by_name(registry)[entry_name]
    assert entry.status == "broken"
    assert entry.reason == " ".join(entry.reason.split()), "reasons are one line"
    assert re.search(reason, entry.reason), entry.reason
    with pytest.raises(ImportError, match="is broken"):
        registry.get(entry_name)


def test_info_name_must_match_the_entry_point(make_distribution):
    make_distribution("test-mismatch", entry_points={"declared": "plugin_mismatch"},
                      modules={"plugin_mismatch": plugin_source("described")})
    with pytest.warns(BackendWarning, match="name mismatch"):
        registry = BackendRegistry.discover()
    assert "entry point 'declared' but BackendInfo.name='described'" in by_name(registry)["declared"].reason


def test_invalid_entry_point_name_is_broken_without_import(make_distribution):
    make_distribution("test-underscore", entry_points={"bad_name": "plugin_underscore"},
                      modules={"plugin_underscore": RAISES_IF_IMPORTED})
    with pytest.warns(BackendWarning, match="invalid backend name 'bad_name'"):
        registry = BackendRegistry.discover()
    assert by_name(registry)["bad_name"].status == "broken"
    assert "plugin_underscore" not in sys.modules


def test_missing_framework_is_incomplete_with_the_install_hint(make_distribution):
    make_distribution("test-incomplete", entry_points={"incomplete": "plugin_incomplete"},
                      modules={"plugin_incomplete": plugin_source("incomplete",
                                                                  framework_module="no_such_framework_xyz.core")})
    registry, caught = discover_quietly()
    assert not [warning for warning in caught if "incomplete" in str(warning.message)]
    entry = by_name(registry)["incomplete"]
    assert entry.status == "incomplete" and entry.info is not None
    assert "framework module 'no_such_framework_xyz.core' is not installed" in entry.reason
    with pytest.raises(ImportError, match=r'is incomplete: .*install it with: pip install "test-backend\[framework\]"'):
        registry.get("incomplete")


def test_hook_returning_none_is_a_type_error(make_distribution):
    make_distribution("test-none", entry_points={"nonedevices": "plugin_nonedevices"},
                      modules={"plugin_nonedevices": plugin_source("nonedevices", devices=None)})
    registry, _ = discover_quietly()
    with pytest.raises(TypeError, match="ptychopinn_devices of plugin_nonedevices returned None"):
        registry.get("nonedevices").devices()


def test_hooks_are_called_on_the_selected_plugin_only(make_distribution):
    make_distribution("test-one", entry_points={"one": "plugin_one"},
                      modules={"plugin_one": plugin_source("one", devices=["device-of-one"])})
    make_distribution("test-two", entry_points={"two": "plugin_two"},
                      modules={"plugin_two": plugin_source("two", devices=["device-of-two"])})
    registry, _ = discover_quietly()
    assert registry.get("one").devices() == ["device-of-one"]
    assert registry.get("two").devices() == ["device-of-two"]


# -- the core checks inputs before the backend sees them -----------------------------------


@pytest.fixture
def fake(fake_backend):
    registry, _ = discover_quietly()
    return registry.get("numpyfake")


def _state(size: int):
    from ptychopinn_core.model.state import ModelState

    return ModelState(probe=np.ones((size, size), np.complex64), intensity_scale=1.0, amplitude_normalisation=1.0)


def test_unsupported_config_is_rejected_with_the_supported_values(fake):
    config = Config().with_overrides({"model.pattern_size": 128, "model.n_filters_scale": 1})
    weights = initial_weights(parameter_specs(config.model), 0)
    with pytest.raises(ValueError, match=r"backend 'numpyfake' does not support model.pattern_size=128 "
                                         r"\(supported: 16, 32, 64\)"):
        fake.build_model(config, _state(128), weights)
    with pytest.raises(ValueError, match=r"training.mode='supervised' \(supported: pinn\)"):
        fake.check_config(Config().with_overrides({"training.mode": "supervised"}))


INFERENCE_ONLY_PLUGIN = """
from ptychopinn_core.backends import BackendInfo, Capabilities, hookimpl

@hookimpl
def ptychopinn_backend_info():
    return BackendInfo(
        name="runner", display_name="Runner", framework="testframework", framework_distributions=("numpy",),
        framework_module="numpy", install_hint="pip install runner",
        capabilities=Capabilities(pattern_sizes=(16, 32, 64), training=False),
    )

@hookimpl
def ptychopinn_train(model, data, config, progress):
    raise AssertionError("the core must refuse training before calling an inference-only backend")
"""


def test_an_inference_only_backend_is_refused_training_naming_those_that_train(fake_backend, make_distribution):
    make_distribution("test-runner", entry_points={"runner": "plugin_runner"},
                      modules={"plugin_runner": INFERENCE_ONLY_PLUGIN + plugin_source(
                          "runner", omit=("ptychopinn_backend_info", "ptychopinn_train"))})
    registry, _ = discover_quietly()
    runner = registry.get("runner")
    config = Config().with_overrides({"model.pattern_size": 32, "execution.run_dir": "/tmp/x"})
    capabilities = runner.info.capabilities
    assert not capabilities.training and capabilities.to_dict()["training"] is False
    assert capabilities.unsupported(config, training=False) == []
    # Training settings are not listed one by one: the backend does not train at all.
    assert capabilities.unsupported(config) == ["training (this backend runs trained models only)"]
    with pytest.raises(ValueError, match=r"backend 'runner' does not support training \(this backend runs trained "
                                         r"models only\); installed backends that support it: .*numpyfake") as error:
        runner.check_config(config)
    assert "runner" not in str(error.value).split("support it:")[1]
    with pytest.raises(ValueError, match="runs trained models only"):
        runner.train(object(), object(), config)
    runner.check_config(config, training=False)  # running a model is fine


def test_weights_are_validated_before_the_backend_builds(fake):
    config = Config().with_overrides({"model.pattern_size": 16, "model.n_filters_scale": 1})
    weights = initial_weights(parameter_specs(config.model), 0)
    del weights["head_phase.bias"]
    with pytest.raises(ValueError, match="head_phase.bias"):
        fake.build_model(config, _state(16), weights)


# -- hook specification and contract types -------------------------------------------------


def test_every_hook_is_firstresult_and_documented():
    import pluggy

    manager = pluggy.PluginManager("ptychopinn")
    manager.add_hookspecs(BackendHookSpec)
    assert set(HOOK_NAMES) == {"ptychopinn_backend_info", "ptychopinn_devices", "ptychopinn_physics_ops",
                               "ptychopinn_build_model", "ptychopinn_train", "ptychopinn_refiner"}
    for name in HOOK_NAMES:
        caller = getattr(manager.hook, name)
        assert caller.spec.opts["firstresult"], name
        doc = getattr(BackendHookSpec, name).__doc__
        assert "Called" in doc and "Returns" in doc and "first result wins" in doc, name


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"modes": {"pinn", "magic"}}, ValueError, "invalid modes"),
        ({"modes": set()}, ValueError, "at least one"),
        ({"modes": "pinn"}, TypeError, "collection of strings"),
        ({"strategies": {"ddp"}}, ValueError, "'single'"),
        ({"pattern_sizes": (48,)}, ValueError, "powers of two"),
        ({"gridsizes": (2,)}, ValueError, "expected 1 among them"),
        ({"precisions": {"16-mixed"}}, ValueError, "'32'"),
    ],
)
def test_invalid_capabilities_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        Capabilities(**kwargs)


def test_backend_info_checks_its_name():
    with pytest.raises(ValueError, match="lower-case letters and digits"):
        BackendInfo("My_Backend", "B", "f", ("numpy",), "numpy", "pip install x")
    info = BackendInfo("mine", "Mine", "f", ["numpy"], "numpy", "pip install x")
    assert info.framework_distributions == ("numpy",)
    assert info.to_dict()["capabilities"]["pattern_sizes"] == [64]


def test_progress_event_checks_stage_and_epoch():
    event = ProgressEvent("batch", 0, 2, 1, 3, {"train_loss": np.float32(1.5)})
    assert event.metrics == {"train_loss": 1.5} and type(event.metrics["train_loss"]) is float
    with pytest.raises(ValueError, match="stage"):
        ProgressEvent("step", 0, 2, 1, 3)
    with pytest.raises(ValueError, match="epoch"):
        ProgressEvent("epoch", 2, 2, 3, 3)


# -- laziness --------------------------------------------------------------------------------


def test_discovery_and_listing_import_no_framework(fake_backend_env):
    """The xarray test_lazy_import idea, in a fresh interpreter with the real backends installed."""
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from ptychopinn_core.backends import BackendRegistry\n"
        "entries = BackendRegistry.discover().entries()\n"
        "assert 'numpyfake' in [entry.name for entry in entries], entries\n"
        "assert 'ptychopinn_fake.plugin' in sys.modules  # plugins really were imported\n"
        f"heavy = {set(FRAMEWORKS)!r} & {{name.split('.')[0] for name in sys.modules}}\n"
        "assert not heavy, f'frameworks imported by discovery: {heavy}'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=fake_backend_env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_mixed_precision_is_the_trainings_alone() -> None:
    """A model trained in bf16-mixed runs on a float32-only backend: inference is float32."""
    from ptychopinn_core.backends.contract import Capabilities

    float32_only = Capabilities(modes={"pinn"}, devices={"cpu"}, strategies={"single"}, precisions={"32"},
                                pattern_sizes=(64,), gridsizes=(1, 2))
    mixed = Config().with_overrides({"execution.precision": "bf16-mixed"})
    assert float32_only.unsupported(mixed, training=False) == []
    assert float32_only.unsupported(mixed) == ["execution.precision='bf16-mixed' (supported: 32)"]
    # float64 is the network's own arithmetic, at inference too
    assert float32_only.unsupported(Config().with_overrides({"execution.precision": "64"}), training=False) == [
        "execution.precision='64' (supported: 32)"]
