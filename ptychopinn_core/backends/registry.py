"""Discover installed backends through entry points and select one by name.

How discovery works (:meth:`BackendRegistry.discover`):

1. Iterate ``importlib.metadata.entry_points(group="ptychodus.reconstructors")``. The
   group is shared with other Ptychodus plugins, so an entry point is considered only
   if its distribution is the core (``ptychopinn``) or requires it; other projects'
   entry points are never imported.
2. The entry point's name is the backend's canonical name. A second entry point with
   the same name (from another distribution) is ignored with a :class:`BackendWarning`:
   the first one (``sys.path`` order) wins.
3. Each plugin module is imported on its own, guarded: one that fails to import, fails
   pluggy's validation, lacks a hook, or whose ``ptychopinn_backend_info`` raises is
   recorded as broken (with the reason and a :class:`BackendWarning`) while the others
   still work. (pluggy's ``load_setuptools_entrypoints`` would let one broken plugin
   break the host.)
4. A plugin that loaded but whose framework module is not importable
   (:func:`importlib.util.find_spec`, which imports nothing) is "incomplete"; its
   ``install_hint`` says how to finish the install.

Nothing here imports a framework: plugin modules are light by contract and the
framework is only located, never imported.

Selection (:meth:`BackendRegistry.get`) is explicit: case-insensitive names and a few
aliases; an unknown name is a ValueError listing the installed backends; a known backend
that is not installed, a broken or an incomplete one is an ImportError saying how to fix
it. There is no fallback to another backend.

Examples
--------
>>> registry = BackendRegistry.discover()                      # doctest: +SKIP
>>> [(entry.name, entry.status) for entry in registry.entries()]  # doctest: +SKIP
[('pytorch', 'ok'), ('tensorflow', 'ok')]
>>> backend = registry.get("TF")                               # doctest: +SKIP
>>> backend.name                                               # doctest: +SKIP
'tensorflow'
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ptychopinn_core.backends.contract import (
    BACKEND_NAME_PATTERN,
    BackendInfo,
    BackendModel,
    PhysicsOps,
    ProgressCallback,
    ProgressEvent,
    Refiner,
)
from ptychopinn_core.backends.framework import import_framework
from ptychopinn_core.backends.hookspec import HOOK_NAMES, PROJECT_NAME, BackendHookSpec

if TYPE_CHECKING:
    import numpy as np

    from ptychopinn_core.config import Config
    from ptychopinn_core.model.state import History, ModelState
    from ptychopinn_core.refine.problem import RefineProblem
    from ptychopinn_core.training.data import TrainingData

__all__ = [
    "ALIASES",
    "CORE_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "KNOWN_BACKENDS",
    "Backend",
    "BackendEntry",
    "BackendRegistry",
    "BackendStatus",
    "BackendWarning",
    "DuplicateBackendWarning",
    "canonical_backend_name",
    "depends_on_core",
    "install_instructions",
]

logger = logging.getLogger(__name__)

#: The entry-point group backends register in; shared with other Ptychodus plugins.
ENTRY_POINT_GROUP = "ptychodus.reconstructors"
#: The core's distribution name; a backend distribution must require it. (Not
#: "ptychopinn": that name belongs to the published PtychoPINN, packages ptycho/ptycho_torch.)
CORE_DISTRIBUTION = "ptychopinn-core"
#: Backends this project publishes -> the pip command that installs each (the xarray
#: pattern of known-but-missing engines: selecting one that is absent says what to run).
KNOWN_BACKENDS: Mapping[str, str] = MappingProxyType(
    {
        "tensorflow": 'pip install "ptychopinn-core[tf]"',
        "pytorch": 'pip install "ptychopinn-core[torch]"',
        "onnx": 'pip install "ptychopinn-core[onnx]"',
    }
)
#: Other spellings accepted by :meth:`BackendRegistry.get` -> canonical name.
ALIASES: Mapping[str, str] = MappingProxyType({"tf": "tensorflow", "torch": "pytorch", "onnxruntime": "onnx"})

BackendStatus = Literal["ok", "broken", "incomplete"]


class BackendWarning(RuntimeWarning):
    """A backend plugin could not be used (broken) or was shadowed (duplicate name)."""


class DuplicateBackendWarning(BackendWarning):
    """Two distributions declare the same backend name; the first found is used."""


@dataclass(frozen=True)
class BackendEntry:
    """One discovered backend, usable or not.

    Attributes
    ----------
    name : str
        Canonical name (the entry point's name, lower case).
    distribution : str
        Distribution that declared the entry point (``"ptychopinn-tf"``).
    distribution_version : str
        Its installed version.
    status : {"ok", "broken", "incomplete"}
        ``"broken"``: the plugin could not be loaded or described; ``"incomplete"``:
        it loaded but its framework is not installed.
    reason : str
        Why it is not ``"ok"`` (one line; empty when ok). For "incomplete" it ends
        with the install hint.
    info : BackendInfo or None
        The backend's description; ``None`` when broken before it could describe itself.
    target : str
        The entry point's target (``"ptychopinn_tf.plugin"``).
    framework_version : str or None
        Installed version of the framework, from distribution metadata (no import).
    """

    name: str
    distribution: str
    distribution_version: str
    status: BackendStatus
    reason: str
    info: BackendInfo | None
    target: str = ""
    framework_version: str | None = None

    @property
    def ok(self) -> bool:
        """True when the backend can be selected."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "distribution_version": self.distribution_version,
            "status": self.status,
            "reason": self.reason,
            "target": self.target,
            "framework_version": self.framework_version,
            "info": None if self.info is None else self.info.to_dict(),
        }


def canonical_backend_name(name: str) -> str:
    """The canonical form of a user-given backend name: stripped, lower case, alias resolved.

    >>> canonical_backend_name(" TF ")
    'tensorflow'
    """
    if not isinstance(name, str):
        raise TypeError(f"invalid backend name: expected a string, received name={name!r}")
    key = name.strip().lower()
    return ALIASES.get(key, key)


def install_instructions() -> list[str]:
    """One line per known backend: ``"tensorflow: pip install ..."``."""
    return [f"{name}: {command}" for name, command in KNOWN_BACKENDS.items()]


def depends_on_core(distribution: importlib.metadata.Distribution | None) -> bool:
    """Whether a distribution is the core or requires it unconditionally.

    Only such distributions' entry points in the shared group are imported. A
    requirement behind an extra (``ptychopinn-core; extra == "x"``) does not count: the
    distribution works without the core, so its entry point is not ours.
    """
    if distribution is None:
        return False
    name = distribution.metadata["Name"]
    if name is not None and canonicalize_name(name) == CORE_DISTRIBUTION:
        return True
    for text in distribution.requires or ():
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != CORE_DISTRIBUTION:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            return True
    return False


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe_error(error: BaseException) -> str:
    return _one_line(f"{type(error).__name__}: {error}")


def _framework_version(info: BackendInfo) -> str | None:
    for distribution in info.framework_distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _framework_importable(info: BackendInfo) -> bool:
    # Only the top-level name: find_spec of "a.b" would import "a", i.e. the framework.
    top_level = info.framework_module.partition(".")[0]
    try:
        return importlib.util.find_spec(top_level) is not None
    except (ImportError, ValueError):
        return False


class Backend:
    """A selected backend: calls the hooks of this one plugin only.

    Obtained from :meth:`BackendRegistry.get`; it stays valid as long as its registry.
    Every call checks its inputs against the backend's capabilities first, so an
    unsupported setting fails with a ValueError naming it instead of deep inside a
    framework.

    Attributes
    ----------
    entry : BackendEntry
    """

    def __init__(self, entry: BackendEntry, registry: BackendRegistry, plugin: object) -> None:
        if entry.info is None:  # pragma: no cover - the registry hands out ok entries only
            raise ValueError(f"backend {entry.name!r} has no BackendInfo")
        self.entry = entry
        self._registry = registry
        self._plugin = plugin
        self._framework_imported = False

    @property
    def name(self) -> str:
        """Canonical name (``"tensorflow"``)."""
        return self.entry.name

    @property
    def info(self) -> BackendInfo:
        """The backend's description."""
        assert self.entry.info is not None
        return self.entry.info

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, {self.entry.distribution} {self.entry.distribution_version})"

    # -- hooks ----------------------------------------------------------------------

    def devices(self) -> list[str]:
        """Devices the framework can use now (imports the framework)."""
        devices = self._call("ptychopinn_devices")
        if isinstance(devices, str) or not all(isinstance(device, str) for device in devices):
            raise TypeError(
                f"backend {self.name!r}: ptychopinn_devices must return a list of str, received {devices!r}"
            )
        return list(devices)

    def physics_ops(self) -> PhysicsOps:
        """The backend's implementation of each physics step (numpy in, numpy out)."""
        ops = self._call("ptychopinn_physics_ops")
        if not isinstance(ops, PhysicsOps):
            raise TypeError(
                f"backend {self.name!r}: ptychopinn_physics_ops must return a PhysicsOps, "
                f"received {type(ops).__name__}"
            )
        return ops

    def check_config(self, config: Config, *, training: bool = True) -> None:
        """Raise ValueError if ``config`` asks for something this backend cannot do.

        The one message names every refused key and, for each, the installed backends
        that would honour it, so a user knows which backend to pick.
        """
        problems = self.info.capabilities.unsupported(config, training=training)
        if not problems:
            return
        others = {entry.name: entry.info.capabilities.unsupported(config, training=training)
                  for entry in self._registry.entries() if entry.ok and entry.name != self.name}
        described = []
        for problem in problems:
            key = problem.split("=", 1)[0]
            able = sorted(name for name, theirs in others.items()
                          if not any(their.split("=", 1)[0] == key for their in theirs))
            described.append(f"{problem}; installed backends that support it: {', '.join(able) if able else 'none'}")
        raise ValueError(f"backend {self.name!r} does not support " + " | ".join(described))

    def build_model(self, config: Config, state: ModelState, weights: Mapping[str, np.ndarray]) -> BackendModel:
        """Build the network from canonical weights (``ptychopinn_build_model``).

        Parameters
        ----------
        config : Config
        state : ModelState
        weights : Mapping[str, ndarray]
            Canonical weights, validated against
            ``parameter_specs(config.model)`` before the backend sees them.

        Returns
        -------
        BackendModel
        """
        from ptychopinn_core.model.parameters import parameter_specs, validate_weights

        self.check_config(config, training=False)
        validate_weights(weights, parameter_specs(config.model), f"weights for backend {self.name!r}")
        model = self._call("ptychopinn_build_model", config=config, state=state, weights=weights)
        if not isinstance(model, BackendModel):
            raise TypeError(
                f"backend {self.name!r}: ptychopinn_build_model must return a BackendModel "
                f"(get_weights, set_weights, predict, forward, loss_and_gradients, state), received {type(model).__name__}"
            )
        return model

    def train(
        self,
        model: BackendModel,
        data: TrainingData,
        config: Config,
        progress: ProgressCallback | None = None,
    ) -> History:
        """Train ``model`` in place on ``data`` (``ptychopinn_train``).

        Parameters
        ----------
        model : BackendModel
            Built by this backend.
        data : TrainingData
        config : Config
        progress : callable, optional
            Receives :class:`~ptychopinn_core.backends.contract.ProgressEvent`; default
            ignores them.

        Returns
        -------
        History
        """
        from ptychopinn_core.model.state import History

        self.check_config(config, training=True)
        history = self._call(
            "ptychopinn_train", model=model, data=data, config=config, progress=progress or _ignore_progress
        )
        if not isinstance(history, History):
            raise TypeError(
                f"backend {self.name!r}: ptychopinn_train must return a History, received {type(history).__name__}"
            )
        return history

    def refiner(self, problem: RefineProblem, config: Config) -> Refiner:
        """A refiner for ``problem`` (``ptychopinn_refiner``) on ``config.execution``'s device."""
        self.check_config(config, training=False)
        refiner = self._call("ptychopinn_refiner", problem=problem, config=config)
        if not isinstance(refiner, Refiner):
            raise TypeError(
                f"backend {self.name!r}: ptychopinn_refiner must return a Refiner "
                f"(loss_and_gradients, run), received {type(refiner).__name__}"
            )
        return refiner

    def _call(self, hook_name: str, **kwargs: Any) -> Any:
        # The first hook imports the framework, its native start-up lines filtered
        # (backends/framework.py); once per Backend, since finding its modules reads the
        # metadata of every installed distribution.
        if not self._framework_imported:
            import_framework(self.info.framework_distributions)
            self._framework_imported = True
        result = self._registry._call_one(self._plugin, hook_name, **kwargs)
        if result is None:
            raise TypeError(
                f"backend {self.name!r}: hook {hook_name} of {self.entry.target} returned None; "
                "every hook must return a value"
            )
        return result


def _ignore_progress(event: ProgressEvent) -> None:
    """Default progress callback."""


class BackendRegistry:
    """The backends found in one entry-point group.

    Create one with :meth:`discover` where it is needed (a CLI call, a test, a
    Ptychodus library) and pass it on; there is no process-wide registry, so tests and
    callers with different environments never see each other's backends.
    """

    def __init__(
        self,
        group: str,
        manager: pluggy.PluginManager,
        entries: Mapping[str, BackendEntry],
        plugins: Mapping[str, object],
    ) -> None:
        self._group = group
        self._manager = manager
        self._entries = dict(entries)
        self._plugins = dict(plugins)

    @property
    def group(self) -> str:
        """The entry-point group this registry was discovered from."""
        return self._group

    def __repr__(self) -> str:
        listed = ", ".join(f"{entry.name}={entry.status}" for entry in self.entries())
        return f"BackendRegistry(group={self._group!r}, {listed or 'no backends'})"

    # -- discovery --------------------------------------------------------------------

    @classmethod
    def discover(cls, group: str = ENTRY_POINT_GROUP) -> BackendRegistry:
        """Find, import (guarded) and describe every PtychoPINN backend of ``group``.

        Parameters
        ----------
        group : str
            Entry-point group (default ``"ptychodus.reconstructors"``).

        Returns
        -------
        BackendRegistry

        Warns
        -----
        BackendWarning
            For every broken plugin and every duplicate name.
        """
        manager = pluggy.PluginManager(PROJECT_NAME)
        manager.add_hookspecs(BackendHookSpec)
        registry = cls(group, manager, {}, {})
        for entry_point in importlib.metadata.entry_points(group=group):
            distribution = entry_point.dist
            if not depends_on_core(distribution):
                logger.debug("skipping entry point %s: its distribution does not require %s",
                             entry_point, CORE_DISTRIBUTION)
                continue
            registry._add(entry_point, distribution)
        return registry

    def _add(self, entry_point: importlib.metadata.EntryPoint, distribution: importlib.metadata.Distribution) -> None:
        """Load one entry point and record it (ok, broken or incomplete)."""
        name = entry_point.name.strip().lower()
        dist_name = distribution.metadata["Name"] or "<unknown>"
        dist_version = distribution.version or "<unknown>"
        previous = self._entries.get(name)
        if previous is not None:
            warnings.warn(
                f"PtychoPINN backend {name!r} is declared by {previous.distribution} "
                f"{previous.distribution_version} and by {dist_name} {dist_version}; "
                f"using {previous.distribution} (the first found), ignoring {dist_name}",
                DuplicateBackendWarning,
                stacklevel=3,
            )
            return
        status, reason, info = self._load(entry_point, name, plugin_name=f"{dist_name}:{name}")
        self._entries[name] = BackendEntry(
            name=name,
            distribution=dist_name,
            distribution_version=dist_version,
            status=status,
            reason=reason,
            info=info,
            target=entry_point.value,
            framework_version=None if info is None else _framework_version(info),
        )
        if status == "broken":
            warnings.warn(
                f"PtychoPINN backend {name!r} ({dist_name} {dist_version}) is broken: {reason}",
                BackendWarning,
                stacklevel=3,
            )

    def _load(
        self, entry_point: importlib.metadata.EntryPoint, name: str, plugin_name: str
    ) -> tuple[BackendStatus, str, BackendInfo | None]:
        """Import, register and describe one plugin; ``(status, reason, info)``.

        A plugin that is not usable is unregistered again, so that only working plugins
        stay in the plugin manager.
        """
        target = entry_point.value
        if not BACKEND_NAME_PATTERN.fullmatch(name):
            return "broken", (f"invalid backend name {entry_point.name!r}: expected lower-case letters "
                              "and digits only (no '_' or '-')"), None
        try:
            plugin = entry_point.load()
        except Exception as error:  # noqa: BLE001 - any import error must not break discovery
            return "broken", f"importing {target} failed: {_describe_error(error)}", None
        try:
            self._manager.register(plugin, name=plugin_name)
        except (pluggy.PluginValidationError, ValueError) as error:
            return "broken", f"invalid plugin {target}: {_describe_error(error)}", None
        info = None
        problem = self._check_hooks(plugin)
        if problem:
            problem = f"invalid plugin {target}: {problem}"
        else:
            try:
                info = self._call_one(plugin, "ptychopinn_backend_info")
            except Exception as error:  # noqa: BLE001 - a failing description marks only this backend
                problem = f"ptychopinn_backend_info of {target} failed: {_describe_error(error)}"
        if not problem and not isinstance(info, BackendInfo):
            problem = f"ptychopinn_backend_info of {target} returned {type(info).__name__}, expected a BackendInfo"
            info = None
        if not problem and info.name != name:
            problem = f"name mismatch: entry point {name!r} but BackendInfo.name={info.name!r}"
        if problem:
            self._manager.unregister(plugin)
            return "broken", problem, info
        self._plugins[name] = plugin
        if not _framework_importable(info):
            return "incomplete", (f"framework module {info.framework_module!r} is not installed; "
                                  f"install it with: {info.install_hint}"), info
        return "ok", "", info

    def _check_hooks(self, plugin: object) -> str:
        """Why a registered plugin's hooks are unusable ('' when they are fine)."""
        callers = self._manager.get_hookcallers(plugin) or []
        implemented = {caller.name for caller in callers}
        unknown = sorted(caller.name for caller in callers if not caller.has_spec())
        missing = [name for name in HOOK_NAMES if name not in implemented]
        problems = []
        if missing:
            problems.append(f"missing hook(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown hook(s) {', '.join(unknown)} (is ptychopinn-core older than the backend?)")
        return "; ".join(problems)

    def _call_one(self, plugin: object, hook_name: str, **kwargs: Any) -> Any:
        """Call ``hook_name`` on ``plugin`` only."""
        others = [other for other in self._manager.get_plugins() if other is not plugin]
        return self._manager.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)

    # -- listing and selection ---------------------------------------------------------

    def entries(self) -> list[BackendEntry]:
        """Every discovered backend (ok, broken or incomplete), sorted by name."""
        return [self._entries[name] for name in sorted(self._entries)]

    def names(self) -> list[str]:
        """Names of the backends that can be selected (status "ok"), sorted."""
        return [entry.name for entry in self.entries() if entry.ok]

    def get(self, name: str) -> Backend:
        """Select a backend by name (case-insensitive; aliases ``tf``, ``torch``).

        Raises
        ------
        ValueError
            The name is neither discovered nor a known backend; the message lists the
            installed backends (or how to install one when there is none).
        ImportError
            The backend is known but not installed (the message names the pip command),
            broken (the message gives the reason) or incomplete (the install hint).
        """
        key = canonical_backend_name(name)
        entry = self._entries.get(key)
        if entry is None:
            if key in KNOWN_BACKENDS:
                raise ImportError(
                    f"backend {key!r} is not installed; install it with: {KNOWN_BACKENDS[key]}"
                )
            installed = self.names()
            if installed:
                raise ValueError(
                    f"unknown backend: expected one of the installed backends "
                    f"({', '.join(installed)}), received name={name!r}"
                )
            raise ValueError(
                f"unknown backend: received name={name!r}, and no PtychoPINN backend is installed; "
                f"install one with: {' or '.join(KNOWN_BACKENDS.values())}"
            )
        where = f"{entry.distribution} {entry.distribution_version}"
        if entry.status == "broken":
            raise ImportError(f"backend {key!r} ({where}) is broken: {entry.reason}")
        if entry.status == "incomplete":
            raise ImportError(f"backend {key!r} ({where}) is incomplete: {entry.reason}")
        return Backend(entry, self, self._plugins[key])
