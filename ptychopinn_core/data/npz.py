"""Reading and writing scans as canonical NPZ files (data contract v1).

:func:`read_scan` is the one place where files become :class:`ScanData`: it never
unpickles, turns every malformed file into a one-line :class:`DataContractError`
naming the file, the key and the problem, and converts unambiguous legacy inputs
(``diff3d``, ``(N, N, M)`` layout, integer counts, float64/complex128, real probes)
with a logged note that is also recorded in ``meta["conversions"]``. Ambiguous input is
an error that names the flag resolving it. :func:`write_scan` writes atomically.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ptychopinn_core.atomic import atomic_write
from ptychopinn_core.data import keys
from ptychopinn_core.data.errors import DataContractError, DataContractTypeError
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.data.validate import count_negative

__all__ = ["read_scan", "write_scan", "Measurement", "MEASUREMENT_CHOICES"]

logger = logging.getLogger(__name__)

Measurement = Literal["auto", "amplitude", "counts"]
MEASUREMENT_CHOICES = keys.MEASUREMENT_CHOICES

# File signatures recognised before numpy sees the file, to name what the file is.
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # local file header, empty archive
_NPY_SIGNATURE = b"\x93NUMPY"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_PICKLE_PROTOCOL_OPCODE = b"\x80"

# Patterns converted per step when taking sqrt of counts, to bound the float64 scratch.
_SQRT_CHUNK_ELEMENTS = 1 << 22

# Flag hint shared by the ambiguity errors.
_MEASUREMENT_HINT = (
    "pass --measurement counts (sqrt is applied) or --measurement amplitude (used as is) "
    "on the command line, measurement='counts' or measurement='amplitude' to read_scan, "
    f"or store meta {{\"{keys.META_MEASUREMENT}\": ...}} in the file"
)


def read_scan(path: str | os.PathLike[str], *, measurement: Measurement = "auto") -> ScanData:
    """Read a canonical (or unambiguous legacy) NPZ scan file.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.
    measurement : {"auto", "amplitude", "counts"}
        What ``diffraction`` holds. ``"auto"``: the file's ``meta["measurement"]`` if it
        declares one, else integer data are photon counts and float data are
        amplitudes — unless float data look like counts (every value a whole number and
        the maximum > 1), which is refused as ambiguous. ``"counts"``: ``sqrt`` is
        applied (negative counts are refused). ``"amplitude"``: used as is. An explicit
        value overrides the file's declaration, with a note.

    Returns
    -------
    ScanData
        Canonical dtypes, read-only arrays; ``meta["measurement"] == "amplitude"``,
        ``meta["conversions"]`` lists what was converted (file history first) and
        ``meta["source_file"]`` is the file name.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The file cannot be opened.
    DataContractError
        The file is not a valid scan (a ``ValueError``; :class:`DataContractTypeError`,
        also a ``TypeError``, for wrong dtypes). The message is one line naming the
        file, the key and the problem.

    Notes
    -----
    Never unpickles (``np.load(..., allow_pickle=False)``): an object array is refused
    and nothing from the file is executed.

    Examples
    --------
    >>> scan = read_scan("scan.npz")  # doctest: +SKIP
    >>> scan.diffraction.shape, scan.meta["measurement"]  # doctest: +SKIP
    ((512, 64, 64), 'amplitude')
    """
    if measurement not in MEASUREMENT_CHOICES:
        raise ValueError(
            f"invalid measurement: expected one of {', '.join(MEASUREMENT_CHOICES)}, "
            f"received measurement={measurement!r}"
        )
    file = os.fspath(path)
    _check_file_signature(file)
    try:
        archive = np.load(file, allow_pickle=False)
    except zipfile.BadZipFile as error:
        raise DataContractError(
            f"truncated or corrupt NPZ (zip) archive ({error}); re-create or re-copy the file",
            file=file,
        ) from None
    except (ValueError, EOFError) as error:
        raise DataContractError(f"not a readable NPZ archive ({error})", file=file) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # pragma: no cover - signature check
        raise DataContractError("not an NPZ archive", file=file)
    with archive:
        reader = _ArchiveReader(archive, file)
        scan, notes, warnings = reader.read(measurement)
    for note in notes:
        logger.info("%s: %s", file, note)
    for warning in warnings:
        logger.warning("%s: %s", file, warning)
    return scan


def write_scan(
    path: str | os.PathLike[str], scan: ScanData, *, compress: bool = False
) -> Path:
    """Write ``scan`` as a canonical NPZ file, atomically.

    The arrays are written under the contract's keys with their canonical dtypes;
    ``meta`` is stored as JSON text (0-d unicode array) with ``measurement =
    "amplitude"`` and ``contract_version`` set. The file is written to a temporary
    file beside ``path`` and renamed over it only when complete: an exception or an
    interrupted run leaves no partial file and an existing ``path`` untouched.

    Parameters
    ----------
    path : str or path-like
        Destination, written exactly as given (no ``.npz`` suffix is added).
    scan : ScanData
        The scan to write (already validated by construction).
    compress : bool
        Use ``np.savez_compressed`` (smaller, slower) instead of ``np.savez``.

    Returns
    -------
    pathlib.Path
        The written path.

    Examples
    --------
    >>> write_scan("scan.npz", scan)  # doctest: +SKIP
    PosixPath('scan.npz')
    """
    if not isinstance(scan, ScanData):
        raise TypeError(f"invalid scan: expected ScanData, received {type(scan).__name__}")
    arrays: dict[str, np.ndarray] = {
        keys.DIFFRACTION: scan.diffraction,
        keys.XCOORDS: scan.xcoords,
        keys.YCOORDS: scan.ycoords,
        keys.PROBE: scan.probe,
    }
    for key, value in ((keys.OBJECT, scan.object), (keys.SCAN_INDEX, scan.scan_index),
                       (keys.PATCHES, scan.patches)):
        if value is not None:
            arrays[key] = value
    meta = dict(scan.meta)
    meta[keys.META_MEASUREMENT] = keys.MEASUREMENT_AMPLITUDE
    meta[keys.META_CONTRACT_VERSION] = keys.CONTRACT_VERSION
    arrays[keys.META] = np.array(json.dumps(meta, ensure_ascii=False, allow_nan=False))
    save = np.savez_compressed if compress else np.savez
    destination = Path(path)
    with atomic_write(destination, "wb") as handle:
        save(handle, **arrays)
    return destination


def _check_file_signature(file: str) -> None:
    """Refuse, with a message saying what it is, a path that cannot be an NPZ archive."""
    if not os.path.exists(file):
        raise FileNotFoundError(errno.ENOENT, "no such scan file", file)
    if os.path.isdir(file):
        raise IsADirectoryError(errno.EISDIR, "is a directory, expected an NPZ scan file", file)
    with open(file, "rb") as handle:
        head = handle.read(8)
    if not head:
        raise DataContractError(
            "file is empty (0 bytes), expected an NPZ archive (was its writer interrupted?)",
            file=file,
        )
    if head.startswith(_ZIP_SIGNATURES):
        return
    if head.startswith(_NPY_SIGNATURE):
        problem = (
            "is a single .npy array, not an NPZ archive of named arrays; save the scan "
            "with np.savez(file, diffraction=..., xcoords=..., ...) or write_scan"
        )
    elif head.startswith(_HDF5_SIGNATURE):
        problem = "is an HDF5 file, not an NPZ archive; convert it to the NPZ data contract"
    elif head.startswith(_PICKLE_PROTOCOL_OPCODE):
        problem = "is a Python pickle, not an NPZ archive; refused without unpickling it"
    else:
        problem = f"not an NPZ (zip) archive: it starts with {head[:4]!r}, not b'PK'"
    raise DataContractError(problem, file=file)


class _ArchiveReader:
    """Reads one open NPZ archive into a ScanData, collecting the notes of conversions."""

    def __init__(self, archive: np.lib.npyio.NpzFile, file: str) -> None:
        self.archive = archive
        self.file = file
        self.names = set(archive.files)
        self.conversions: list[str] = []  # recorded in meta and logged (info)
        self.warnings: list[str] = []  # logged (warning), not conversions

    def error(self, problem: str, key: str | None = None) -> DataContractError:
        return DataContractError(problem, key=key, file=self.file)

    def type_error(self, problem: str, key: str | None = None) -> DataContractTypeError:
        return DataContractTypeError(problem, key=key, file=self.file)

    def read(self, measurement: str) -> tuple[ScanData, list[str], list[str]]:
        notes: list[str] = []
        unknown = sorted(self.names - keys.KNOWN_KEYS)
        if unknown:
            notes.append(f"ignored unknown keys: {', '.join(unknown)}")
        diffraction_key = self.diffraction_key()
        missing = [key for key in keys.REQUIRED_KEYS[1:] if key not in self.names]
        if missing:
            present = ", ".join(sorted(self.names)) or "none"
            others = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
            raise self.error(
                f"required key missing{others}; keys present: {present}", missing[0]
            )
        meta = self.read_meta()
        raw_diffraction = self.load(diffraction_key)
        xcoords = self.read_coordinates(keys.XCOORDS)
        ycoords = self.read_coordinates(keys.YCOORDS)
        if xcoords.shape != ycoords.shape:
            # Blame the coordinate array whose length matches neither layout of the patterns.
            shape = raw_diffraction.shape
            pattern_counts = {shape[0], shape[-1]} if len(shape) == 3 else set()
            if xcoords.shape[0] not in pattern_counts:
                bad_key, bad, other_key, other = keys.XCOORDS, xcoords, keys.YCOORDS, ycoords
            else:
                bad_key, bad, other_key, other = keys.YCOORDS, ycoords, keys.XCOORDS, xcoords
            raise self.error(
                f"expected shape (M,) equal to {other_key}.shape = {_shape_text(other.shape)}, "
                f"received shape {_shape_text(bad.shape)} ('{diffraction_key}' has shape "
                f"{_shape_text(raw_diffraction.shape)})",
                bad_key,
            )
        diffraction = self.read_diffraction(
            diffraction_key, raw_diffraction, xcoords.shape[0], meta, measurement
        )
        probe = self.read_complex(keys.PROBE, required=True)
        obj = self.read_complex(keys.OBJECT, required=False)
        patches = self.read_complex(keys.PATCHES, required=False)
        scan_index = self.read_scan_index()

        history = meta.get(keys.META_CONVERSIONS, [])
        if not (isinstance(history, list) and all(isinstance(item, str) for item in history)):
            raise self.error(
                f"expected meta['{keys.META_CONVERSIONS}'] to be a list of strings, "
                f"received {history!r}",
                keys.META,
            )
        meta[keys.META_MEASUREMENT] = keys.MEASUREMENT_AMPLITUDE
        meta[keys.META_CONVERSIONS] = history + self.conversions
        meta[keys.META_SOURCE_FILE] = Path(self.file).name
        try:
            scan = ScanData(
                diffraction=_private(diffraction),
                xcoords=_private(xcoords),
                ycoords=_private(ycoords),
                probe=_private(probe),
                object=None if obj is None else _private(obj),
                scan_index=None if scan_index is None else _private(scan_index),
                patches=None if patches is None else _private(patches),
                meta=meta,
            )
        except DataContractError as error:
            raise error.with_file(self.file) from None
        return scan, notes + self.conversions, self.warnings

    # -- single keys ---------------------------------------------------------------
    def load(self, key: str) -> np.ndarray:
        """One array of the archive, refusing pickles and naming the key on any failure."""
        try:
            value = self.archive[key]
        except ValueError as error:
            if "allow_pickle" in str(error):
                raise self.error(
                    "holds a Python object array (pickle); refused without unpickling, "
                    "nothing from the file was executed; store numeric arrays instead",
                    key,
                ) from None
            raise self.error(f"unreadable array ({error})", key) from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            kind = type(error).__name__
            if type(error).__module__ not in ("builtins", "zipfile"):
                kind = f"{type(error).__module__}.{kind}"  # zlib.error, not just "error"
            raise self.error(
                f"unreadable: corrupt or truncated archive member ({kind}: {error})", key
            ) from None
        if not isinstance(value, np.ndarray):
            raise self.error("not a .npy array member of the archive", key)
        return value

    def require(self, key: str) -> np.ndarray:
        if key not in self.names:
            present = ", ".join(sorted(self.names)) or "none"
            raise self.error(f"required key missing; keys present: {present}", key)
        return self.load(key)

    def read_meta(self) -> dict[str, Any]:
        if keys.META not in self.names:
            return {}
        raw = self.load(keys.META)
        if raw.ndim != 0 or raw.dtype.kind not in "US":
            raise self.type_error(
                "expected JSON text in a 0-d string array (np.array(json.dumps(meta))), "
                f"received dtype {raw.dtype} with shape {_shape_text(raw.shape)}",
                keys.META,
            )
        text = raw.item()
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise self.error(f"invalid UTF-8 text ({error})", keys.META) from None
        try:
            meta = json.loads(text)
        except json.JSONDecodeError as error:
            raise self.error(
                f"invalid JSON ({error.msg} at line {error.lineno} column {error.colno})",
                keys.META,
            ) from None
        if not isinstance(meta, dict):
            raise self.type_error(
                f"expected a JSON object, received a JSON {type(meta).__name__}", keys.META
            )
        version = meta.get(keys.META_CONTRACT_VERSION, keys.CONTRACT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise self.error(
                f"expected meta['{keys.META_CONTRACT_VERSION}'] to be a positive integer, "
                f"received {version!r}",
                keys.META,
            )
        if version > keys.CONTRACT_VERSION:
            raise self.error(
                f"written with data contract version {version}, newer than the supported "
                f"version {keys.CONTRACT_VERSION}; upgrade ptychopinn-core",
                keys.META,
            )
        declared = meta.get(keys.META_MEASUREMENT)
        if declared is not None and declared not in keys.MEASUREMENT_DOMAINS:
            raise self.error(
                f"expected meta['{keys.META_MEASUREMENT}'] in "
                f"{' or '.join(map(repr, keys.MEASUREMENT_DOMAINS))}, received {declared!r}",
                keys.META,
            )
        return meta

    def diffraction_key(self) -> str:
        if keys.DIFFRACTION in self.names:
            if keys.LEGACY_DIFFRACTION in self.names:
                self.warnings.append(
                    f"both '{keys.DIFFRACTION}' and legacy '{keys.LEGACY_DIFFRACTION}' "
                    f"present; using '{keys.DIFFRACTION}', ignoring '{keys.LEGACY_DIFFRACTION}'"
                )
            return keys.DIFFRACTION
        if keys.LEGACY_DIFFRACTION in self.names:
            self.conversions.append(
                f"renamed legacy key '{keys.LEGACY_DIFFRACTION}' to '{keys.DIFFRACTION}'"
            )
            return keys.LEGACY_DIFFRACTION
        present = ", ".join(sorted(self.names)) or "none"
        raise self.error(
            f"required key missing (nor legacy '{keys.LEGACY_DIFFRACTION}'); keys present: "
            f"{present}",
            keys.DIFFRACTION,
        )

    def read_coordinates(self, key: str) -> np.ndarray:
        raw = self.require(key)
        if raw.dtype.kind not in "fiu":
            raise self.type_error(
                f"expected real numbers (float64 object pixels), received dtype {raw.dtype}",
                key,
            )
        if raw.ndim != 1:
            raise self.error(
                f"expected shape (M,), received shape {_shape_text(raw.shape)}", key
            )
        return self.convert(raw, np.float64, key)

    def read_diffraction(
        self, key: str, raw: np.ndarray, n_coordinates: int, meta: dict[str, Any],
        measurement: str,
    ) -> np.ndarray:
        if raw.dtype.kind not in "fiu":
            raise self.type_error(
                "expected real diffraction amplitudes (float32) or integer counts, received "
                f"dtype {raw.dtype}",
                key,
            )
        if raw.ndim == 3 and raw.shape[0] == raw.shape[1] != raw.shape[2] == n_coordinates:
            self.conversions.append(
                f"transposed '{key}' from legacy (N, N, M) layout {_shape_text(raw.shape)} "
                "to (M, N, N)"
            )
            raw = np.ascontiguousarray(np.moveaxis(raw, -1, 0))
        if raw.ndim != 3 or raw.shape[1] != raw.shape[2]:
            raise self.error(
                "expected (M, N, N) with equal last two axes, received shape "
                f"{_shape_text(raw.shape)}",
                key,
            )
        negative, minimum = count_negative(raw)
        domain = self.measurement_domain(raw, key, meta, measurement, negative > 0)
        if negative:
            raise self.error(
                f"expected {'photon counts' if domain == keys.MEASUREMENT_COUNTS else 'amplitudes'}"
                f" >= 0, received {negative} negative value{'s' if negative != 1 else ''} "
                f"(minimum {minimum:g})",
                key,
            )
        if domain == keys.MEASUREMENT_COUNTS:
            self.conversions.append(
                f"'{key}': sqrt applied to photon counts ({raw.dtype}) -> float32 amplitude"
            )
            return _sqrt_to_float32(raw)
        return self.convert(raw, np.float32, key)

    def measurement_domain(
        self, raw: np.ndarray, key: str, meta: dict[str, Any], measurement: str,
        has_negative: bool,
    ) -> str:
        """Decide whether ``raw`` holds counts or amplitudes (see :func:`read_scan`).

        Negative data are neither: they are left to be refused as amplitudes rather
        than reported as ambiguous.
        """
        declared = meta.get(keys.META_MEASUREMENT)
        if measurement != "auto":
            if declared is not None and declared != measurement:
                self.warnings.append(
                    f"measurement='{measurement}' overrides the file's meta "
                    f"{keys.META_MEASUREMENT}='{declared}'"
                )
            return measurement
        if declared is not None:
            return declared
        if raw.dtype.kind in "iu":
            self.conversions.append(
                f"'{key}' holds integers ({raw.dtype}): read as photon counts"
            )
            return keys.MEASUREMENT_COUNTS
        whole, maximum = (False, 0.0) if has_negative else _all_whole_numbers(raw)
        if whole and maximum > 1:
            raise self.error(
                f"ambiguous measurement: float data of undeclared domain look like counts "
                f"(all {raw.size} values are whole numbers, maximum {maximum:g}); "
                + _MEASUREMENT_HINT,
                key,
            )
        return keys.MEASUREMENT_AMPLITUDE

    def read_complex(self, key: str, *, required: bool) -> np.ndarray | None:
        if not required and key not in self.names:
            return None
        raw = self.require(key)
        if raw.dtype.kind == "c":
            return self.convert(raw, np.complex64, key)
        if raw.dtype.kind in "fiu":
            self.conversions.append(f"'{key}': real {raw.dtype} -> complex64 (zero phase)")
            return raw.astype(np.complex64)
        raise self.type_error(f"expected complex64 values, received dtype {raw.dtype}", key)

    def read_scan_index(self) -> np.ndarray | None:
        if keys.SCAN_INDEX not in self.names:
            return None
        raw = self.load(keys.SCAN_INDEX)
        if raw.dtype.kind not in "iu":
            raise self.type_error(f"expected integers (int64), received dtype {raw.dtype}",
                                  keys.SCAN_INDEX)
        if raw.dtype.kind == "u" and raw.size and raw.max() > np.iinfo(np.int64).max:
            raise self.error(f"values exceed the int64 range (maximum {raw.max()})",
                             keys.SCAN_INDEX)
        return self.convert(raw, np.int64, keys.SCAN_INDEX)

    def convert(self, raw: np.ndarray, dtype: type, key: str) -> np.ndarray:
        """``raw`` cast to ``dtype``, recording the conversion when one happens."""
        if raw.dtype == dtype:
            return raw
        self.conversions.append(f"'{key}': {raw.dtype} -> {np.dtype(dtype).name}")
        return raw.astype(dtype)


def _sqrt_to_float32(counts: np.ndarray) -> np.ndarray:
    """``sqrt(counts)`` rounded once to float32 (computed in float64, chunk by chunk)."""
    amplitude = np.empty(counts.shape, dtype=np.float32)
    flat_in, flat_out = counts.reshape(-1), amplitude.reshape(-1)
    for start in range(0, flat_in.size, _SQRT_CHUNK_ELEMENTS):
        stop = start + _SQRT_CHUNK_ELEMENTS
        flat_out[start:stop] = np.sqrt(flat_in[start:stop], dtype=np.float64)
    return amplitude


def _all_whole_numbers(values: np.ndarray) -> tuple[bool, float]:
    """Whether every value is a finite whole number, and the maximum (chunked scan)."""
    flat = values.reshape(-1)
    maximum = -np.inf
    for start in range(0, flat.size, _SQRT_CHUNK_ELEMENTS):
        chunk = flat[start : start + _SQRT_CHUNK_ELEMENTS]
        if not np.all(np.isfinite(chunk)) or not np.array_equal(chunk, np.round(chunk)):
            return False, float("nan")
        maximum = max(maximum, float(chunk.max()))
    return True, maximum


def _private(values: np.ndarray) -> np.ndarray:
    """Mark an array the reader alone holds as read-only, so ScanData need not copy it."""
    if values.flags.owndata and values.flags.c_contiguous:
        values.flags.writeable = False
    return values


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"
