"""Import a PtychoPINN NPZ (canonical or a legacy variant) through :func:`read_scan`.

:func:`~ptychopinn_core.data.read_scan` already converts the unambiguous legacy
variants (``diff3d``, ``(N, N, M)`` layout, integer counts, other dtypes) and refuses the
ambiguous ones naming ``--measurement``; this importer only adds what ``convert``
promises for every format: the FFT order (the format states ``centered``;
``--fft-order corner`` applies ``fftshift``), an object frame when the file has none,
and the import record in ``meta``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ptychopinn_core.data import keys
from ptychopinn_core.data.importers.conventions import (
    DEFAULT_MARGIN_PX,
    META_IMPORT,
    META_OBJECT_ROLE,
    OBJECT_ROLE_FRAME,
    ImportRecord,
    place_in_frame,
    resolve_fft_order,
    to_centered,
)
from ptychopinn_core.data.npz import read_scan
from ptychopinn_core.data.scan import ScanData

__all__ = ["FORMAT_LEGACY", "read_legacy"]

FORMAT_LEGACY = "ptychopinn-legacy"
# What read_scan writes in meta["conversions"] when it took the square root of counts.
_SQRT_NOTE = "sqrt applied to photon counts"


def read_legacy(
    path: str | os.PathLike[str],
    *,
    fft_order: str | None = None,
    measurement: str | None = None,
    margin_px: int = DEFAULT_MARGIN_PX,
) -> ScanData:
    """Read a PtychoPINN NPZ scan with :func:`read_scan`, recording the conventions.

    Parameters
    ----------
    path : path-like
    fft_order : {"corner", "centered"}, optional
        Default ``"centered"`` (the PtychoPINN convention); ``"corner"`` applies fftshift.
    measurement : {"counts", "amplitude"}, optional
        Passed to :func:`read_scan` (default ``"auto"``: its rules, which refuse
        ambiguous float data naming ``--measurement``).
    margin_px : int
        Margin of the sized frame, used only when the file has no ``objectGuess``.

    Returns
    -------
    ScanData
        What :func:`read_scan` returns, with the same arrays when the file has an
        ``objectGuess`` and the patterns are centred; ``meta["import"]`` added.
    """
    file = os.fspath(path)
    scan = read_scan(file, measurement=measurement or "auto")
    record = ImportRecord(format=FORMAT_LEGACY, files=[Path(file).name])
    from_read_scan = any(_SQRT_NOTE in note for note in scan.meta.get(keys.META_CONVERSIONS, []))
    record.measurement = measurement or ("counts" if from_read_scan else "amplitude")
    record.measurement_from = "--measurement" if measurement else "read_scan rules"
    order = resolve_fft_order(scan.diffraction, fft_order, "centered", record, file=file,
                              key=keys.DIFFRACTION, amplitude=True)
    conversions = list(scan.meta.get(keys.META_CONVERSIONS, []))
    meta = dict(scan.meta)
    changes: dict[str, object] = {}
    if order == "corner":
        changes["diffraction"] = np.ascontiguousarray(to_centered(scan.diffraction, order))
        conversions.append(f"fft order corner ({record.fft_order_from}): fftshift applied")
    record.position_convention = "PtychoPINN: probe centre pixel N//2 in object pixels"
    if scan.object is None:
        positions, frame, shift = place_in_frame(scan.positions_px, scan.pattern_size, margin_px)
        changes.update(xcoords=np.ascontiguousarray(positions[:, 0]),
                       ycoords=np.ascontiguousarray(positions[:, 1]),
                       object=np.ones(frame.shape, dtype=np.complex64))
        record.position_shift_px = [float(shift[0]), float(shift[1])]
        record.object_frame = {"kind": "sized", "margin_px": int(margin_px),
                               "height_px": frame.height_px, "width_px": frame.width_px}
        conversions.append(
            f"positions shifted by ({shift[0]:g}, {shift[1]:g}) px into a sized object frame; "
            f"objectGuess: ones {frame.height_px} x {frame.width_px} (not a ground truth)"
        )
        meta[META_OBJECT_ROLE] = OBJECT_ROLE_FRAME
    else:
        height, width = scan.object.shape
        record.object_frame = {"kind": "objectGuess", "height_px": height, "width_px": width}
    meta.setdefault(keys.META_SOURCE, FORMAT_LEGACY)
    meta[keys.META_CONVERSIONS] = conversions
    meta[META_IMPORT] = record.to_json()
    return dataclasses.replace(scan, meta=meta, **changes)
