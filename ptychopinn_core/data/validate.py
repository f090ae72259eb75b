"""Validation of an in-memory scan against the data contract (v1).

:class:`~ptychopinn_core.data.scan.ScanData` calls :func:`validate_scan` when it is
built, so a ``ScanData`` that exists is valid. Validation is strict about dtypes: a
``ScanData`` holds the canonical dtypes only, and every conversion (legacy keys,
layouts, counts, precision) happens — visibly — in the reader
(:func:`ptychopinn_core.data.npz.read_scan`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ptychopinn_core.data import keys
from ptychopinn_core.data.errors import DataContractError, DataContractTypeError

__all__ = ["validate_scan", "normalize_meta", "count_nonfinite", "count_negative"]

# Largest number of elements examined at once by the value scans, so that checking a
# 10^5-pattern dataset never allocates a boolean array of the dataset's size.
_CHUNK_ELEMENTS = 1 << 22

# Canonical dtype of each ScanData field.
_CANONICAL_DTYPES: dict[str, np.dtype] = {
    "diffraction": np.dtype(np.float32),
    "xcoords": np.dtype(np.float64),
    "ycoords": np.dtype(np.float64),
    "probe": np.dtype(np.complex64),
    "object": np.dtype(np.complex64),
    "scan_index": np.dtype(np.int64),
    "patches": np.dtype(np.complex64),
}


def validate_scan(scan: Any, source: str = "<memory>") -> None:
    """Check that ``scan`` satisfies the data contract; raise on the first violation.

    Parameters
    ----------
    scan : ScanData
        The scan (any object with the ``ScanData`` attributes).
    source : str
        Where the scan came from; it is the file part of the error message.

    Raises
    ------
    DataContractTypeError
        An array is missing, not an ndarray, or not of its canonical dtype
        (also a ``TypeError``).
    DataContractError
        A shape mismatch, non-finite or negative values, ``M == 0``, or a ``meta``
        that is not a JSON object (a ``ValueError``).

    Notes
    -----
    Checked: diffraction float32 ``(M, N, N)`` with ``M >= 1``, ``N >= 1``, finite and
    ``>= 0``; xcoords/ycoords float64 ``(M,)``, finite; probeGuess complex64 ``(N, N)``,
    finite; objectGuess complex64 ``(H, W)``, finite; scan_index int64 ``(M,)``;
    Y complex64 ``(M, N, N)``, finite; meta a JSON-serialisable dict with string keys
    whose ``measurement`` field, if any, is ``"amplitude"``.
    """
    diffraction = _require_array(scan, "diffraction", source)
    _check_dtype(diffraction, "diffraction", source)
    if diffraction.ndim != 3 or diffraction.shape[1] != diffraction.shape[2]:
        raise DataContractError(
            "expected (M, N, N) with equal last two axes, received shape "
            f"{_shape(diffraction)}",
            key=keys.DIFFRACTION,
            file=source,
        )
    n_positions, pattern_size = diffraction.shape[0], diffraction.shape[1]
    if n_positions < 1 or pattern_size < 1:
        raise DataContractError(
            f"expected at least one pattern of at least 1 x 1 pixels, received shape "
            f"{_shape(diffraction)}",
            key=keys.DIFFRACTION,
            file=source,
        )
    _check_finite(diffraction, "diffraction", source)
    negative, minimum = count_negative(diffraction)
    if negative:
        raise DataContractError(
            f"expected amplitudes >= 0, received {negative} negative value"
            f"{'s' if negative != 1 else ''} (minimum {minimum:g})",
            key=keys.DIFFRACTION,
            file=source,
        )

    for name in ("xcoords", "ycoords"):
        coords = _require_array(scan, name, source)
        _check_dtype(coords, name, source)
        _check_shape(coords, (n_positions,), "(M,) with M = diffraction.shape[0]", name, source)
        _check_finite(coords, name, source)

    probe = _require_array(scan, "probe", source)
    _check_dtype(probe, "probe", source)
    _check_shape(probe, (pattern_size, pattern_size), "(N, N) with N = diffraction.shape[-1]",
                 "probe", source)
    _check_finite(probe, "probe", source)

    obj = _optional_array(scan, "object", source)
    if obj is not None:
        _check_dtype(obj, "object", source)
        if obj.ndim != 2 or min(obj.shape) < 1:
            raise DataContractError(
                f"expected a 2-D (H, W) object, received shape {_shape(obj)}",
                key=keys.OBJECT,
                file=source,
            )
        _check_finite(obj, "object", source)

    scan_index = _optional_array(scan, "scan_index", source)
    if scan_index is not None:
        _check_dtype(scan_index, "scan_index", source)
        _check_shape(scan_index, (n_positions,), "(M,) with M = diffraction.shape[0]",
                     "scan_index", source)

    patches = _optional_array(scan, "patches", source)
    if patches is not None:
        _check_dtype(patches, "patches", source)
        _check_shape(patches, diffraction.shape, "(M, N, N) equal to diffraction.shape",
                     "patches", source)
        _check_finite(patches, "patches", source)

    meta = getattr(scan, "meta", None)
    normalize_meta(meta, source)


def normalize_meta(meta: Any, source: str = "<memory>") -> dict[str, Any]:
    """Return a deep, JSON-normalised copy of ``meta``; raise if it is not valid meta.

    Numpy scalars become Python numbers and tuples become lists (what JSON stores);
    NaN/inf, non-string keys and other objects are refused, as is a ``measurement``
    field other than ``"amplitude"`` (a ScanData always holds amplitudes).
    """
    if not isinstance(meta, dict):
        raise DataContractTypeError(
            f"expected a dict (JSON object), received {type(meta).__name__}",
            key=keys.META,
            file=source,
        )
    bad_key = _first_non_string_key(meta)
    if bad_key is not _NO_BAD_KEY:
        raise DataContractTypeError(
            f"expected string keys (JSON object), received key {bad_key!r}",
            key=keys.META,
            file=source,
        )
    try:
        text = json.dumps(meta, allow_nan=False, default=_numpy_scalar_to_python)
    except (TypeError, ValueError) as error:
        raise DataContractError(
            f"expected JSON-serialisable values (no NaN/inf), received {error}",
            key=keys.META,
            file=source,
        ) from None
    normalised = json.loads(text)
    measurement = normalised.get(keys.META_MEASUREMENT, keys.MEASUREMENT_AMPLITUDE)
    if measurement != keys.MEASUREMENT_AMPLITUDE:
        raise DataContractError(
            f"expected meta['{keys.META_MEASUREMENT}'] == "
            f"'{keys.MEASUREMENT_AMPLITUDE}' (a ScanData holds amplitudes; the reader "
            f"converts counts), received {measurement!r}",
            key=keys.META,
            file=source,
        )
    return normalised


def count_nonfinite(values: np.ndarray) -> tuple[int, int, tuple[int, ...] | None]:
    """Count NaN and ±inf entries of a float or complex array, scanning in chunks.

    Returns
    -------
    n_nan, n_inf : int
        Number of entries with a NaN (resp. infinite, and no NaN) component.
    first_index : tuple of int or None
        Index of the first non-finite entry, ``None`` when all are finite.
    """
    if values.dtype.kind not in "fc" or values.size == 0:
        return 0, 0, None
    flat = values.reshape(-1)
    n_nan = n_inf = 0
    first_index = None
    for start in range(0, flat.size, _CHUNK_ELEMENTS):
        chunk = flat[start : start + _CHUNK_ELEMENTS]
        finite = np.isfinite(chunk)
        if finite.all():
            continue
        nan = np.isnan(chunk)
        chunk_nan = int(np.count_nonzero(nan))
        n_nan += chunk_nan
        n_inf += int(chunk.size - np.count_nonzero(finite)) - chunk_nan
        if first_index is None:
            flat_position = start + int(np.argmin(finite))
            first_index = tuple(int(i) for i in np.unravel_index(flat_position, values.shape))
    return n_nan, n_inf, first_index


def count_negative(values: np.ndarray) -> tuple[int, float]:
    """Number of entries ``< 0`` of a real array and its minimum (0.0 when none)."""
    if values.dtype.kind not in "fiu" or values.size == 0 or values.dtype.kind == "u":
        return 0, 0.0
    flat = values.reshape(-1)
    negative = 0
    minimum = math.inf
    for start in range(0, flat.size, _CHUNK_ELEMENTS):
        chunk = flat[start : start + _CHUNK_ELEMENTS]
        chunk_negative = int(np.count_nonzero(chunk < 0))
        if chunk_negative:
            negative += chunk_negative
            minimum = min(minimum, float(np.nanmin(chunk)))
    return negative, (minimum if negative else 0.0)


def _require_array(scan: Any, name: str, source: str) -> np.ndarray:
    value = getattr(scan, name, None)
    if value is None:
        raise DataContractError(
            f"required array missing (ScanData.{name} is None)",
            key=keys.FIELD_KEYS[name],
            file=source,
        )
    return _as_ndarray(value, name, source)


def _optional_array(scan: Any, name: str, source: str) -> np.ndarray | None:
    value = getattr(scan, name, None)
    return None if value is None else _as_ndarray(value, name, source)


def _as_ndarray(value: Any, name: str, source: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise DataContractTypeError(
            f"expected a numpy ndarray of dtype {_CANONICAL_DTYPES[name]}, received "
            f"{type(value).__name__} (ScanData.{name})",
            key=keys.FIELD_KEYS[name],
            file=source,
        )
    return value


def _check_dtype(values: np.ndarray, name: str, source: str) -> None:
    expected = _CANONICAL_DTYPES[name]
    if values.dtype != expected:
        raise DataContractTypeError(
            f"expected dtype {expected}, received dtype {values.dtype} (ScanData.{name}; "
            f"convert with .astype(np.{expected.name}), or read files with read_scan, "
            "which converts legacy dtypes)",
            key=keys.FIELD_KEYS[name],
            file=source,
        )


def _check_shape(values: np.ndarray, expected: tuple[int, ...], description: str,
                 name: str, source: str) -> None:
    if values.shape != tuple(expected):
        raise DataContractError(
            f"expected shape {description} = {_shape_text(expected)}, received shape "
            f"{_shape(values)}",
            key=keys.FIELD_KEYS[name],
            file=source,
        )


def _check_finite(values: np.ndarray, name: str, source: str) -> None:
    n_nan, n_inf, first_index = count_nonfinite(values)
    if n_nan or n_inf:
        found = " and ".join(
            f"{count} {label}" for count, label in ((n_nan, "NaN"), (n_inf, "inf")) if count
        )
        raise DataContractError(
            f"expected finite values, received {found} among {values.size} values "
            f"(first at index {first_index})",
            key=keys.FIELD_KEYS[name],
            file=source,
        )


_NO_BAD_KEY = object()


def _first_non_string_key(value: Any) -> Any:
    """The first dict key, at any depth, that is not a str (JSON would silently coerce it)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return key
            found = _first_non_string_key(item)
            if found is not _NO_BAD_KEY:
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            found = _first_non_string_key(item)
            if found is not _NO_BAD_KEY:
                return found
    return _NO_BAD_KEY


def _numpy_scalar_to_python(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _shape(values: np.ndarray) -> str:
    return _shape_text(values.shape)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"
