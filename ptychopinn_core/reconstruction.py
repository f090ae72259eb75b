"""The reconstruction file written by ``ptychopinn infer`` (design.md §6).

One NPZ, no pickle::

    object      complex64 (H, W)    the stitched (or refined) complex object
    probeGuess  complex64 (N, N)    optional: the probe the object goes with (refined
                                    when refinement refined it; physics.md §10)
    meta        0-d unicode array   JSON text: {"format": "ptychopinn-reconstruction",
                                             "format_version": 1,
                                             "frame": ObjectFrame.to_json(),
                                             "provenance": {...}}

``frame`` says where the object lies in object-pixel coordinates (see
:class:`~ptychopinn_core.physics.stitching.ObjectFrame`): when the input data had an
object (``objectGuess``), the frame is that object's own frame and ``object`` has its
shape, so the two compare pixel for pixel. ``provenance`` is free-form JSON (backend,
bundle, data file, crop size, created time, ...).

Errors are one line, ``FILE: key 'KEY': PROBLEM`` (the data contract's layout).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptychopinn_core.atomic import atomic_write
from ptychopinn_core.physics.stitching import ObjectFrame

__all__ = [
    "OBJECT_KEY",
    "PROBE_KEY",
    "META_KEY",
    "META_CROP_SIZE_KEY",
    "RECONSTRUCTION_FORMAT",
    "RECONSTRUCTION_FORMAT_VERSION",
    "Reconstruction",
    "read_reconstruction",
    "write_reconstruction",
]

OBJECT_KEY = "object"
PROBE_KEY = "probeGuess"
META_KEY = "meta"
RECONSTRUCTION_FORMAT = "ptychopinn-reconstruction"
RECONSTRUCTION_FORMAT_VERSION = 1
# Fields of the meta JSON object.
_META_FORMAT = "format"
_META_FORMAT_VERSION = "format_version"
_META_FRAME = "frame"
_META_PROVENANCE = "provenance"
# Provenance key for the stitching crop the object was made with: whoever stitches (or
# starts a flat object) writes it, and evaluation reads it as the scanned-region window.
META_CROP_SIZE_KEY = "crop_size_px"


def _where(path: Any, key: str | None, problem: str) -> str:
    parts = [str(path)] + ([f"key '{key}'"] if key else []) + [problem]
    return ": ".join(parts)


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """A reconstructed object on a known frame.

    Attributes
    ----------
    object : ndarray, complex64, shape (H, W)
        The complex object; ``object[r, c]`` is object pixel
        ``(x = c + frame.origin_x_px, y = r + frame.origin_y_px)``.
    frame : ObjectFrame
        Where the canvas lies; ``frame.shape == object.shape``.
    meta : dict
        JSON-serialisable provenance.
    probe : ndarray, complex64, shape (N, N), optional
        The probe the object goes with, when one was refined (or is to be carried on).
    """

    object: np.ndarray
    frame: ObjectFrame
    meta: dict[str, Any] = field(default_factory=dict)
    probe: np.ndarray | None = None

    def __post_init__(self) -> None:
        obj = np.asarray(self.object)
        if obj.dtype.kind not in "fc":
            raise TypeError(
                f"invalid reconstruction object: expected complex64, received dtype {obj.dtype}"
            )
        if obj.ndim != 2:
            raise ValueError(
                "invalid reconstruction object: expected shape (H, W), "
                f"received object.shape={obj.shape}"
            )
        if not isinstance(self.frame, ObjectFrame):
            raise TypeError(
                "invalid reconstruction frame: expected an ObjectFrame, "
                f"received {type(self.frame).__name__}"
            )
        if obj.shape != self.frame.shape:
            raise ValueError(
                f"invalid reconstruction: expected object.shape == frame shape {self.frame.shape}, "
                f"received object.shape={obj.shape}"
            )
        if not isinstance(self.meta, dict):
            raise TypeError(
                f"invalid reconstruction meta: expected a dict, received {type(self.meta).__name__}"
            )
        object.__setattr__(self, "object", obj.astype(np.complex64, copy=False))
        if self.probe is not None:
            probe = np.asarray(self.probe)
            if probe.dtype.kind not in "fc" or probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
                raise ValueError(
                    "invalid reconstruction probe: expected a complex (N, N) array, "
                    f"received shape {probe.shape} dtype {probe.dtype}"
                )
            object.__setattr__(self, "probe", probe.astype(np.complex64, copy=False))

    @property
    def crop_size_px(self) -> int | None:
        """The stitching crop it was made with (``meta[META_CROP_SIZE_KEY]``); None if not recorded.

        Evaluation measures the scanned region with this window, so a reconstruction
        is scored on the area its stitching actually filled.
        """
        value = self.meta.get(META_CROP_SIZE_KEY)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def write_reconstruction(path: str | os.PathLike[str], recon: Reconstruction) -> Path:
    """Write ``recon`` as an NPZ, atomically (temporary file + rename).

    Parameters
    ----------
    path : path-like
        Destination, written exactly as given.
    recon : Reconstruction

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    ValueError
        ``recon.meta`` is not JSON-serialisable (NaN and inf are refused too).
    """
    if not isinstance(recon, Reconstruction):
        raise TypeError(
            f"invalid reconstruction: expected Reconstruction, received {type(recon).__name__}"
        )
    meta = {
        _META_FORMAT: RECONSTRUCTION_FORMAT,
        _META_FORMAT_VERSION: RECONSTRUCTION_FORMAT_VERSION,
        _META_FRAME: recon.frame.to_json(),
        _META_PROVENANCE: recon.meta,
    }
    try:
        meta_text = json.dumps(meta, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid reconstruction meta: not JSON-serialisable ({error})") from None
    destination = Path(path)
    with atomic_write(destination, "wb") as handle:
        arrays = {OBJECT_KEY: recon.object, META_KEY: np.array(meta_text)}
        if recon.probe is not None:
            arrays[PROBE_KEY] = recon.probe
        np.savez(handle, **arrays)
    return destination


def read_reconstruction(path: str | os.PathLike[str]) -> Reconstruction:
    """Read a reconstruction NPZ written by :func:`write_reconstruction`.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Reconstruction

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not an NPZ, pickled data, missing or malformed ``object`` / ``meta``, another
        format, or a frame that does not match the object's shape. The message names
        the file and the key.
    TypeError
        ``object`` is not complex.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(_where(path, None, "no such reconstruction file"))
    if not zipfile.is_zipfile(path):
        raise ValueError(
            _where(path, None, "not an NPZ archive (expected the output of 'ptychopinn infer')")
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(_where(path, None, f"cannot read as NPZ ({error})")) from None
    with archive:
        for key in (OBJECT_KEY, META_KEY):
            if key not in archive.files:
                problem = (
                    f"missing; expected keys {OBJECT_KEY!r} and {META_KEY!r}, "
                    f"found {sorted(archive.files)}"
                )
                raise ValueError(_where(path, key, problem))
        arrays = {}
        for key in (OBJECT_KEY, META_KEY, PROBE_KEY):
            if key not in archive.files:
                continue
            try:
                arrays[key] = archive[key]
            except ValueError as error:  # object arrays need pickle: refused
                problem = f"refused: holds pickled objects ({error})"
                raise ValueError(_where(path, key, problem)) from None
    obj, meta_array = arrays[OBJECT_KEY], arrays[META_KEY]
    if obj.dtype.kind != "c":
        raise TypeError(_where(path, OBJECT_KEY, f"expected complex64, received dtype {obj.dtype}"))
    if obj.ndim != 2:
        raise ValueError(_where(path, OBJECT_KEY, f"expected shape (H, W), received {obj.shape}"))
    if meta_array.ndim != 0 or meta_array.dtype.kind != "U":
        problem = (
            "expected JSON text in a 0-d unicode array, "
            f"received shape {meta_array.shape} dtype {meta_array.dtype}"
        )
        raise ValueError(_where(path, META_KEY, problem))
    try:
        meta = json.loads(str(meta_array))
    except json.JSONDecodeError as error:
        raise ValueError(_where(path, META_KEY, f"invalid JSON ({error})")) from None
    if not isinstance(meta, dict):
        problem = f"expected a JSON object, received {type(meta).__name__}"
        raise ValueError(_where(path, META_KEY, problem))
    if meta.get(_META_FORMAT) != RECONSTRUCTION_FORMAT:
        problem = (
            f"expected format {RECONSTRUCTION_FORMAT!r}, received format={meta.get(_META_FORMAT)!r}"
        )
        raise ValueError(_where(path, META_KEY, problem))
    version = meta.get(_META_FORMAT_VERSION)
    if version != RECONSTRUCTION_FORMAT_VERSION:
        problem = (
            f"unsupported format_version: expected {RECONSTRUCTION_FORMAT_VERSION}, "
            f"received {version!r}"
        )
        raise ValueError(_where(path, META_KEY, problem))
    try:
        frame = ObjectFrame.from_json(meta.get(_META_FRAME))
    except (TypeError, ValueError) as error:
        raise ValueError(_where(path, META_KEY, f"bad 'frame': {error}")) from None
    provenance = meta.get(_META_PROVENANCE, {})
    if not isinstance(provenance, dict):
        problem = (
            f"expected 'provenance' to be a JSON object, received {type(provenance).__name__}"
        )
        raise ValueError(_where(path, META_KEY, problem))
    if obj.shape != frame.shape:
        problem = f"shape {obj.shape} does not match the frame in meta, expected {frame.shape}"
        raise ValueError(_where(path, OBJECT_KEY, problem))
    probe = arrays.get(PROBE_KEY)
    if probe is not None and (probe.dtype.kind != "c" or probe.ndim != 2 or probe.shape[0] != probe.shape[1]):
        problem = f"expected a complex64 (N, N) probe, received shape {probe.shape} dtype {probe.dtype}"
        raise ValueError(_where(path, PROBE_KEY, problem))
    return Reconstruction(obj.astype(np.complex64, copy=False), frame, provenance, probe)
