"""The one-file model bundle: a zip any backend can read without pickle (design.md §5).

Members (see ``docs/bundle.md``)::

    manifest.json   format name/version, mode, backend, framework (version), core
                    version, created time (UTC), parameter count
    config.json     Config.to_dict(): the full configuration the model was trained with
    weights.npz     canonical weights {name: float32 array} (model.parameters)
    state.json      ModelState scalars (intensity scale, amplitude normalisation, ...)
    state.npz       ModelState arrays: probe complex64 (N, N)
    history.json    per-epoch losses, learning rate and time

Reading never unpickles (``numpy.load(..., allow_pickle=False)``) and validates every
member; any problem is a :class:`BundleError` whose one-line message names the file,
the member and what is wrong. Writing is atomic: an interrupted write leaves the
previous file (if any) untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ptychopinn_core import __version__ as CORE_VERSION
from ptychopinn_core.atomic import atomic_write
from ptychopinn_core.config import Config, ConfigError
from ptychopinn_core.model.parameters import count_parameters, parameter_specs, validate_weights
from ptychopinn_core.model.state import PROBE_KEY, History, ModelState

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "MANIFEST_MEMBER",
    "CONFIG_MEMBER",
    "WEIGHTS_MEMBER",
    "STATE_MEMBER",
    "STATE_ARRAYS_MEMBER",
    "HISTORY_MEMBER",
    "MEMBERS",
    "MANIFEST_FIELDS",
    "KEYS_ADDED_SINCE_FORMAT_1",
    "BundleError",
    "ModelBundle",
    "bundle_digest",
    "inspect_bundle",
    "make_manifest",
    "read_bundle",
    "require_model_file",
    "write_bundle",
]

#: Value of ``manifest["format"]``: tells a bundle from any other zip.
BUNDLE_FORMAT = "ptychopinn-bundle"
#: Layout version written here; readers refuse newer versions.
BUNDLE_FORMAT_VERSION = 1

#: Config keys added after bundles were first written, with the value that reproduces
#: the model of a bundle that predates each (read_bundle fills them in when absent).
#: ``model.group_network``: gridsize > 1 read a group as the channels of one network;
#: ``training.ema_decay``: the trained weights were the last step's, not an average.
KEYS_ADDED_SINCE_FORMAT_1: dict[str, Any] = {"model.group_network": "joint", "training.ema_decay": 0.0}

MANIFEST_MEMBER = "manifest.json"
CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "weights.npz"
STATE_MEMBER = "state.json"
STATE_ARRAYS_MEMBER = "state.npz"
HISTORY_MEMBER = "history.json"
#: Every member, in the order they are written.
MEMBERS: tuple[str, ...] = (
    MANIFEST_MEMBER,
    CONFIG_MEMBER,
    WEIGHTS_MEMBER,
    STATE_MEMBER,
    STATE_ARRAYS_MEMBER,
    HISTORY_MEMBER,
)

#: Required manifest fields and their JSON types.
MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "mode": str,
    "backend": str,
    "framework": str,
    "framework_version": str,
    "core_version": str,
    "created": str,
    "parameter_count": int,
}
_MODES = ("pinn", "supervised")
# Arrays compress poorly and are read often: store them; deflate the small JSON members.
_COMPRESSION = {WEIGHTS_MEMBER: zipfile.ZIP_STORED, STATE_ARRAYS_MEMBER: zipfile.ZIP_STORED}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest time a zip entry can carry


class BundleError(ValueError):
    """A model bundle is unreadable, corrupt, foreign or inconsistent.

    ``str(error)`` is one line: ``FILE: member 'MEMBER': PROBLEM`` (the member part
    left out for problems of the whole file).
    """

    def __init__(self, problem: str, *, file: str | os.PathLike[str], member: str | None = None) -> None:
        self.problem = " ".join(str(problem).split())
        self.file = os.fspath(file)
        self.member = member
        super().__init__(self._message())

    def _message(self) -> str:
        member = f"member '{self.member}': " if self.member is not None else ""
        return f"{self.file}: {member}{self.problem}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):  # keep the keyword-only fields when pickled (multiprocessing)
        return (_rebuild_error, (self.problem, self.file, self.member))


def _rebuild_error(problem: str, file: str, member: str | None) -> BundleError:
    return BundleError(problem, file=file, member=member)


def _utc_now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def make_manifest(mode: str, backend: str, framework: str, framework_version: str) -> dict[str, Any]:
    """A new manifest: the given fields plus format, core version and UTC created time.

    ``parameter_count`` is added by :class:`ModelBundle` from the weights.

    Parameters
    ----------
    mode : {"pinn", "supervised"}
        Training mode.
    backend : str
        Canonical backend name that trained the model (``"tensorflow"``, ``"pytorch"``).
    framework : str
        Framework name (``"tensorflow"``, ``"torch"``).
    framework_version : str
        Its installed version.
    """
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "mode": mode,
        "backend": backend,
        "framework": framework,
        "framework_version": framework_version,
        "core_version": CORE_VERSION,
        "created": _utc_now_iso(),
    }
    _check_manifest_fields(manifest, require_count=False)
    return manifest


# -- consistency checks shared by ModelBundle and read_bundle (ValueError/TypeError) -----


def _check_manifest_format(manifest: Any) -> None:
    if not isinstance(manifest, dict):
        raise ValueError(f"expected a JSON object, received {type(manifest).__name__}")
    name = manifest.get("format")
    if name != BUNDLE_FORMAT:
        raise ValueError(
            f"not a PtychoPINN model bundle: expected format {BUNDLE_FORMAT!r}, received format={name!r}"
        )
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"invalid format_version: expected an integer >= 1, received format_version={version!r}")
    if version > BUNDLE_FORMAT_VERSION:
        raise ValueError(
            f"bundle format_version {version} is newer than this ptychopinn-core {CORE_VERSION} can read "
            f"(up to version {BUNDLE_FORMAT_VERSION}): upgrade ptychopinn-core (pip install --upgrade ptychopinn-core)"
        )


def _check_manifest_fields(manifest: dict[str, Any], *, require_count: bool) -> None:
    _check_manifest_format(manifest)
    for name, kind in MANIFEST_FIELDS.items():
        if name == "parameter_count" and not require_count and name not in manifest:
            continue
        if name not in manifest:
            raise ValueError(f"missing manifest field {name!r}")
        value = manifest[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(
                f"invalid manifest field {name!r}: expected {kind.__name__}, received {name}={value!r}"
            )
    if manifest["mode"] not in _MODES:
        raise ValueError(f"invalid manifest field 'mode': expected one of {_MODES}, received mode={manifest['mode']!r}")
    if not manifest["backend"]:
        raise ValueError("invalid manifest field 'backend': expected a backend name, received ''")
    try:
        created = datetime.fromisoformat(manifest["created"])
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise ValueError(
            "invalid manifest field 'created': expected an ISO 8601 time with time zone, "
            f"received created={manifest['created']!r}"
        )


def _check_state(config: Config, state: ModelState) -> None:
    size = config.model.pattern_size
    if state.probe.shape != (size, size):
        raise ValueError(
            f"probe shape does not match the config: expected {(size, size)} for model.pattern_size={size}, "
            f"received probe.shape={state.probe.shape}"
        )
    if state.probe_mask != config.model.probe_mask:
        raise ValueError(
            f"probe_mask does not match the config: expected {config.model.probe_mask} "
            f"(model.probe_mask), received probe_mask={state.probe_mask}"
        )


def _check_consistency(manifest: dict[str, Any], config: Config, parameter_count: int) -> None:
    if manifest["mode"] != config.training.mode:
        raise ValueError(
            f"mode does not match the config: expected {config.training.mode!r} (training.mode), "
            f"received mode={manifest['mode']!r}"
        )
    if manifest["parameter_count"] != parameter_count:
        raise ValueError(
            f"parameter_count does not match the weights: expected {parameter_count}, "
            f"received parameter_count={manifest['parameter_count']}"
        )


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """Everything needed to run (or continue training) a model, in any backend.

    Building one checks that the parts agree: the weights match
    ``parameter_specs(config.model)``, the probe is ``(N, N)``, the manifest is
    complete and its mode is ``config.training.mode``. ``manifest["parameter_count"]``
    is filled in from the weights when absent.

    Attributes
    ----------
    manifest : dict
        See :func:`make_manifest`.
    config : Config
        The full configuration the model was trained with.
    weights : dict of str to ndarray, float32
        Canonical weights, in ``parameter_specs`` order.
    state : ModelState
        Probe, intensity scale, amplitude normalisation.
    history : History
        Per-epoch training history.
    """

    manifest: dict[str, Any]
    config: Config
    weights: dict[str, np.ndarray]
    state: ModelState
    history: History = field(default_factory=History)

    def __post_init__(self) -> None:
        if not isinstance(self.config, Config):
            raise TypeError(f"invalid config: expected a Config, received {type(self.config).__name__}")
        if not isinstance(self.state, ModelState):
            raise TypeError(f"invalid state: expected a ModelState, received {type(self.state).__name__}")
        if not isinstance(self.history, History):
            raise TypeError(f"invalid history: expected a History, received {type(self.history).__name__}")
        specs = parameter_specs(self.config.model)
        weights = validate_weights(self.weights, specs, source="weights")
        manifest = dict(self.manifest) if isinstance(self.manifest, Mapping) else self.manifest
        _check_manifest_fields(manifest, require_count=False)
        manifest.setdefault("parameter_count", count_parameters(specs))
        _check_manifest_fields(manifest, require_count=True)
        _check_consistency(manifest, self.config, count_parameters(specs))
        _check_state(self.config, self.state)
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "weights", weights)


# -- writing ------------------------------------------------------------------------------


def _json_bytes(values: Any, *, allow_nan: bool = False) -> bytes:
    return (json.dumps(values, indent=2, allow_nan=allow_nan) + "\n").encode("utf-8")


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _zip_time(created: str) -> tuple[int, int, int, int, int, int]:
    moment = datetime.fromisoformat(created).astimezone(timezone.utc)
    stamp = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    return max(stamp, _ZIP_EPOCH)


def write_bundle(path: str | os.PathLike[str], bundle: ModelBundle) -> Path:
    """Write ``bundle`` to ``path`` atomically (temporary file, then rename).

    The entries carry the manifest's ``created`` time, so the same bundle always gives
    the same bytes.

    Parameters
    ----------
    path : str or path-like
        Destination (conventionally ``*.zip`` or ``*.ptychopinn``); replaced if present.
    bundle : ModelBundle

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(bundle, ModelBundle):
        raise TypeError(f"invalid bundle: expected a ModelBundle, received {type(bundle).__name__}")
    # Serialise everything first: an unserialisable part fails before the file is touched.
    members = {
        MANIFEST_MEMBER: _json_bytes(bundle.manifest),
        CONFIG_MEMBER: _json_bytes(bundle.config.to_dict()),
        WEIGHTS_MEMBER: _npz_bytes(bundle.weights),
        STATE_MEMBER: _json_bytes(bundle.state.to_json()),
        STATE_ARRAYS_MEMBER: _npz_bytes(bundle.state.to_arrays()),
        # A diverged loss is NaN; Python's json writes and reads it as the NaN token.
        HISTORY_MEMBER: _json_bytes(bundle.history.to_json(), allow_nan=True),
    }
    date_time = _zip_time(bundle.manifest["created"])
    path = Path(path)
    with atomic_write(path, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
        for name in MEMBERS:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = _COMPRESSION.get(name, zipfile.ZIP_DEFLATED)
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return path


def bundle_digest(bundle: ModelBundle) -> str:
    """SHA-256 (hex) of what decides the model's output: config, weights and state.

    The manifest (when, by whom) and the history are left out, so a bundle and its
    export to another format (``ptychopinn export``) have the same digest, and a file
    whose weights, probe or settings were changed after the export does not. Weights
    enter in ``parameter_specs`` order with their names, dtypes and shapes; JSON parts
    with sorted keys, so the digest does not depend on dict order.
    """
    if not isinstance(bundle, ModelBundle):
        raise TypeError(f"invalid bundle: expected a ModelBundle, received {type(bundle).__name__}")
    digest = hashlib.sha256(b"ptychopinn-bundle-digest-1\n")

    def add_json(values: Any) -> None:
        digest.update(json.dumps(values, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n")

    def add_array(name: str, array: np.ndarray) -> None:
        add_json([name, array.dtype.str, list(array.shape)])
        digest.update(np.ascontiguousarray(array).tobytes())

    add_json(bundle.config.to_dict())
    for name, value in bundle.weights.items():  # parameter_specs order (ModelBundle checks it)
        add_array(name, value)
    add_json(bundle.state.to_json())
    for name, value in sorted(bundle.state.to_arrays().items()):
        add_array(name, value)
    return digest.hexdigest()


# -- reading ------------------------------------------------------------------------------


class _Reader:
    """Reads and decodes the members of one open bundle; errors name file and member."""

    def __init__(self, archive: zipfile.ZipFile, file: str) -> None:
        self.archive = archive
        self.file = file
        self.names = set(archive.namelist())

    def error(self, problem: str, member: str | None = None) -> BundleError:
        return BundleError(problem, file=self.file, member=member)

    def raw(self, member: str) -> bytes:
        if member not in self.names:
            hint = "" if MANIFEST_MEMBER in self.names else "; not a PtychoPINN model bundle"
            raise self.error(f"missing member (a bundle holds {', '.join(MEMBERS)}){hint}", member)
        try:
            return self.archive.read(member)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
            raise self.error(f"corrupt member data ({error}); the file is damaged", member) from None

    def json(self, member: str) -> Any:
        data = self.raw(member)
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise self.error(f"invalid JSON: not UTF-8 text ({error.reason} at byte {error.start})", member) from None
        except json.JSONDecodeError as error:
            raise self.error(f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}", member) from None

    def json_object(self, member: str) -> dict[str, Any]:
        values = self.json(member)
        if not isinstance(values, dict):
            raise self.error(f"invalid JSON: expected an object {{...}}, received {type(values).__name__}", member)
        return values

    def arrays(self, member: str) -> dict[str, np.ndarray]:
        data = self.raw(member)
        try:
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
            if not hasattr(loaded, "files"):
                raise self.error(
                    "invalid NPZ: expected an .npz archive of arrays, received a single .npy array", member
                )
            with loaded as npz:
                arrays = {}
                for key in npz.files:
                    try:
                        arrays[key] = npz[key]
                    except ValueError as error:
                        if "allow_pickle" in str(error):
                            raise self.error(
                                f"array {key!r} has dtype object and would need pickle to load; refused "
                                "(a bundle holds plain numeric arrays only)",
                                member,
                            ) from None
                        raise
                return arrays
        except BundleError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as error:
            raise self.error(f"invalid NPZ: {error}", member) from None


def require_model_file(path: str | os.PathLike[str], kind: str) -> tuple[str, int]:
    """``(path as a string, its size in bytes)`` when it is a readable, non-empty file; else
    the BundleError a reader of any model format raises (``kind`` names what it should be)."""
    file = os.fspath(path)
    try:
        size = os.path.getsize(file)
    except FileNotFoundError:
        raise BundleError("file not found", file=file) from None
    except OSError as error:
        raise BundleError(f"cannot read: {error.strerror or error}", file=file) from None
    if size == 0:
        raise BundleError(f"empty file (0 bytes), not {kind}", file=file)
    return file, size


def read_bundle(path: str | os.PathLike[str]) -> ModelBundle:
    """Read and validate a bundle written by :func:`write_bundle` (any backend).

    Nothing is unpickled: arrays are loaded with ``numpy.load(..., allow_pickle=False)``
    from the member bytes.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ModelBundle

    Raises
    ------
    BundleError
        (a ValueError) with a one-line message naming the file, the member and the
        problem: missing, empty, truncated or non-zip file; missing member; invalid
        JSON; a foreign zip (wrong format name); a newer format_version (upgrade
        ptychopinn); an invalid config (the config error text); weights that do not
        match the config's parameter list; a probe of the wrong shape.
    """
    file, size = require_model_file(path, "a model bundle")
    try:
        archive = zipfile.ZipFile(file, "r")
    except zipfile.BadZipFile:
        raise BundleError(
            f"not a zip archive ({size} bytes): truncated, damaged or not a PtychoPINN model bundle", file=file
        ) from None
    except (OSError, EOFError, ValueError) as error:
        raise BundleError(f"cannot read as a zip archive: {error}", file=file) from None
    with archive:
        # A truncated bundle can still "open": zipfile then finds the directory of the
        # (stored, uncompressed) npz member inside it, whose entries start mid-file.
        # Every zip written here, like ordinary zips, starts with its first entry.
        infos = archive.infolist()
        if infos and min(info.header_offset for info in infos) != 0:
            raise BundleError(
                f"not a complete zip archive ({size} bytes): truncated or damaged (the zip directory "
                "found does not describe the start of the file)",
                file=file,
            )
        reader = _Reader(archive, file)
        return _read_members(reader)


def _read_members(reader: _Reader) -> ModelBundle:
    duplicates = sorted(name for name, count in Counter(reader.archive.namelist()).items() if count > 1)
    if duplicates:
        raise reader.error(f"duplicate member(s) {duplicates}: the file is damaged or was edited")

    manifest = reader.json_object(MANIFEST_MEMBER)
    try:
        _check_manifest_fields(manifest, require_count=True)
    except ValueError as error:
        raise reader.error(str(error), MANIFEST_MEMBER) from None

    config_values = _with_keys_of_older_bundles(reader.json_object(CONFIG_MEMBER))
    try:
        config = Config.from_dict(config_values, source=CONFIG_MEMBER)
    except ConfigError as error:
        text = str(error).removeprefix(f"{CONFIG_MEMBER}: ")
        raise reader.error(f"invalid config: {text}", CONFIG_MEMBER) from None

    specs = parameter_specs(config.model)
    weights = reader.arrays(WEIGHTS_MEMBER)
    try:
        weights = validate_weights(weights, specs, source="weights")
    except ValueError as error:
        text = str(error).removeprefix("weights: ")
        raise reader.error(
            f"weights do not match the config (model {_describe_model(config)}): {text}", WEIGHTS_MEMBER
        ) from None

    state_values = reader.json_object(STATE_MEMBER)
    state_arrays = reader.arrays(STATE_ARRAYS_MEMBER)
    extra = sorted(set(state_arrays) - {PROBE_KEY})
    if extra:
        raise reader.error(f"unexpected array(s) {extra}: expected only {PROBE_KEY!r}", STATE_ARRAYS_MEMBER)
    if PROBE_KEY not in state_arrays:
        raise reader.error(f"missing array {PROBE_KEY!r}", STATE_ARRAYS_MEMBER)
    probe = state_arrays[PROBE_KEY]
    if probe.dtype != np.complex64:
        raise reader.error(
            f"invalid probe dtype: expected complex64, received probe.dtype={probe.dtype}", STATE_ARRAYS_MEMBER
        )
    size = config.model.pattern_size
    if probe.shape != (size, size):
        raise reader.error(
            f"probe shape does not match the config: expected {(size, size)} for model.pattern_size={size}, "
            f"received probe.shape={probe.shape}",
            STATE_ARRAYS_MEMBER,
        )
    try:
        state = ModelState.from_json(state_values, state_arrays)
    except (ValueError, TypeError) as error:
        raise reader.error(str(error), STATE_MEMBER) from None
    try:
        _check_state(config, state)
    except ValueError as error:
        raise reader.error(str(error), STATE_MEMBER) from None

    try:
        history = History.from_json(reader.json(HISTORY_MEMBER))
    except BundleError:
        raise
    except (ValueError, TypeError) as error:
        raise reader.error(str(error), HISTORY_MEMBER) from None

    try:
        _check_consistency(manifest, config, count_parameters(specs))
    except ValueError as error:
        raise reader.error(str(error), MANIFEST_MEMBER) from None
    return ModelBundle(manifest=manifest, config=config, weights=weights, state=state, history=history)


def _with_keys_of_older_bundles(values: dict[str, Any]) -> dict[str, Any]:
    """The stored config with the keys added since it was written, at the values it was
    trained with (which may differ from today's defaults).

    Every bundle stores its full config, so a key it lacks did not exist when it was
    written; :data:`KEYS_ADDED_SINCE_FORMAT_1` says what the model then did.
    """
    values = {section: dict(keys) if isinstance(keys, dict) else keys for section, keys in values.items()}
    for dotted, value in KEYS_ADDED_SINCE_FORMAT_1.items():
        section, _, key = dotted.partition(".")
        keys = values.setdefault(section, {})
        if isinstance(keys, dict):
            keys.setdefault(key, value)
    return values


def _describe_model(config: Config) -> str:
    model = config.model
    return (
        f"pattern_size={model.pattern_size}, gridsize={model.gridsize}, group_network={model.group_network}, "
        f"architecture={model.architecture}, n_filters_scale={model.n_filters_scale}"
    )


def inspect_bundle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate a bundle and summarise it (for ``ptychopinn inspect``-like commands).

    Returns
    -------
    dict
        JSON-ready: ``file``, ``manifest``, ``parameter_count``, ``parameter_tensors``,
        ``model`` (the config's model section), ``training`` (mode, epochs, batch size,
        seed), ``state`` (scalars and probe shape) and ``history`` (
        :meth:`History.summary`).
    """
    bundle = read_bundle(path)
    config = bundle.config.to_dict()
    return {
        "file": os.fspath(path),
        "manifest": dict(bundle.manifest),
        "parameter_count": count_parameters(parameter_specs(bundle.config.model)),
        "parameter_tensors": len(bundle.weights),
        "model": config["model"],
        "training": {key: config["training"][key] for key in ("mode", "epochs", "batch_size", "seed")},
        "state": bundle.state.to_json(),
        "history": bundle.history.summary(),
    }
