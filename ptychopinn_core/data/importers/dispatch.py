"""Pick the importer for a file: by ``--from``, or by what the file holds when unambiguous."""

from __future__ import annotations

import os
from pathlib import Path

from ptychopinn_core.data import keys
from ptychopinn_core.data.errors import DataContractError
from ptychopinn_core.data.importers.archive import (
    BZ2_SIGNATURE,
    HDF5_SIGNATURE,
    ZIP_SIGNATURE,
    file_signature,
    open_npz,
)
from ptychopinn_core.data.importers.conventions import DEFAULT_MARGIN_PX, FFT_ORDERS
from ptychopinn_core.data.importers.legacy import FORMAT_LEGACY, read_legacy
from ptychopinn_core.data.importers.ptychodus_h5 import (
    FORMAT_PTYCHODUS,
    PRODUCT_FILE,
    read_ptychodus,
)
from ptychopinn_core.data.importers.tike import DATA, FORMAT_TIKE, SCAN, read_tike
from ptychopinn_core.data.scan import ScanData

__all__ = ["FORMATS", "MEASUREMENTS", "detect_format", "import_scan"]

FORMATS: tuple[str, ...] = (FORMAT_TIKE, FORMAT_PTYCHODUS, FORMAT_LEGACY)
MEASUREMENTS: tuple[str, ...] = (keys.MEASUREMENT_COUNTS, keys.MEASUREMENT_AMPLITUDE)
_FROM_HINT = f"pass --from {'|'.join(FORMATS)}"


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its content; an error naming ``--from`` if unclear.

    A folder or an HDF5 file is Ptychodus; a bz2 file is tike (the only compressed
    format read); an NPZ with ``data`` and ``scan`` is tike, one with ``diffraction``
    (or ``diff3d``) and ``xcoords`` is PtychoPINN.
    """
    file = os.fspath(path)
    if os.path.isdir(file):
        if (Path(file) / PRODUCT_FILE).is_file():
            return FORMAT_PTYCHODUS
        raise DataContractError(
            f"is a folder without a Ptychodus {PRODUCT_FILE}; name a scan file", file=file
        )
    head = file_signature(file)
    if head.startswith(HDF5_SIGNATURE):
        return FORMAT_PTYCHODUS
    if head.startswith(BZ2_SIGNATURE):
        return FORMAT_TIKE
    if not head.startswith(ZIP_SIGNATURE):
        raise DataContractError(
            f"unknown file type (starts with {head[:4]!r}): expected an NPZ (tike or PtychoPINN), "
            f"a tike .npz.bz2 or a Ptychodus HDF5 product file; {_FROM_HINT}",
            file=file,
        )
    with open_npz(file) as archive:
        names = set(archive.files)
    is_tike = {DATA, SCAN} <= names
    is_legacy = bool({keys.DIFFRACTION, keys.LEGACY_DIFFRACTION} & names) and keys.XCOORDS in names
    if is_tike != is_legacy:
        return FORMAT_TIKE if is_tike else FORMAT_LEGACY
    present = ", ".join(sorted(names)) or "none"
    what = (
        "both tike and PtychoPINN keys" if is_tike else
        "neither tike keys (data, scan, probe) nor PtychoPINN keys (diffraction, xcoords, ...)"
    )
    raise DataContractError(f"cannot tell the format: it holds {what} (keys: {present}); {_FROM_HINT}",
                            file=file)


def import_scan(
    path: str | os.PathLike[str],
    *,
    source_format: str | None = None,
    diffraction_path: str | os.PathLike[str] | None = None,
    fft_order: str | None = None,
    measurement: str | None = None,
    margin_px: int | None = None,
) -> ScanData:
    """Read a foreign scan into a canonical :class:`ScanData` (what ``ptychopinn convert`` does).

    Parameters
    ----------
    path : path-like
        tike NPZ (or ``.npz.bz2``), Ptychodus product HDF5 (or a folder with
        ``product.h5`` + ``diffraction.h5``), or a PtychoPINN NPZ.
    source_format : {"tike", "ptychodus", "ptychopinn-legacy"}, optional
        Default: :func:`detect_format`.
    diffraction_path : path-like, optional
        Ptychodus only: the diffraction file.
    fft_order : {"corner", "centered"}, optional
        Order of the source patterns; default: what the format states, else detected.
    measurement : {"counts", "amplitude"}, optional
        What the source patterns hold; default: what the format states.
    margin_px : int, optional
        Margin of a sized object frame (tike, PtychoPINN without objectGuess); default
        :data:`~ptychopinn_core.data.importers.conventions.DEFAULT_MARGIN_PX`. Not used
        for Ptychodus, whose product sets the frame.

    Returns
    -------
    ScanData
        ``meta["import"]`` records every convention choice.
    """
    if fft_order is not None and fft_order not in FFT_ORDERS:
        raise ValueError(f"invalid --fft-order: expected one of {', '.join(FFT_ORDERS)}, "
                         f"received {fft_order!r}")
    if measurement is not None and measurement not in MEASUREMENTS:
        raise ValueError(f"invalid --measurement: expected one of {', '.join(MEASUREMENTS)}, "
                         f"received {measurement!r}")
    if source_format is not None and source_format not in FORMATS:
        raise ValueError(f"invalid --from: expected one of {', '.join(FORMATS)}, "
                         f"received {source_format!r}")
    source_format = source_format or detect_format(path)
    if source_format == FORMAT_PTYCHODUS:
        if margin_px is not None:
            raise ValueError("invalid --margin-px: a Ptychodus product sets the object frame; "
                             "drop --margin-px")
        return read_ptychodus(path, diffraction_path=diffraction_path, fft_order=fft_order,
                              measurement=measurement)
    if diffraction_path is not None:
        raise ValueError(f"invalid --diffraction: only used with --from {FORMAT_PTYCHODUS}, "
                         f"received a {source_format} file")
    margin = DEFAULT_MARGIN_PX if margin_px is None else margin_px
    reader = read_tike if source_format == FORMAT_TIKE else read_legacy
    return reader(path, fft_order=fft_order, measurement=measurement, margin_px=margin)
