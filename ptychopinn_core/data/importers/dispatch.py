"""Pick the importer for a file: by ``--from``, or by what the file holds when unambiguous.

Every format is one :class:`Importer` in :data:`IMPORTERS`: how to recognise a file of
it cheaply (its signature, a folder's entries, an NPZ's key names; nothing is
decompressed or read) and which reader reads it. A new format is one more entry, not
another branch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
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

__all__ = ["FORMATS", "IMPORTERS", "MEASUREMENTS", "Importer", "detect_format", "import_scan"]


@dataclass(frozen=True)
class Importer:
    """One foreign format: how to recognise its files, and the reader that reads them.

    Attributes
    ----------
    name : str
        The ``--from`` value.
    expects : str
        What a file of this format looks like, for the message when none matches.
    guess_can_open : callable
        ``guess_can_open(path) -> bool``: cheap; ``True`` when the file looks like this
        format. Raises only what opening the file raises (missing, unreadable NPZ).
    read : callable
        ``read(path, *, fft_order, measurement, ...) -> ScanData``, plus ``margin_px``
        when :attr:`sizes_object_frame`, ``diffraction_path`` when
        :attr:`pairs_diffraction_file`.
    sizes_object_frame : bool
        The importer sizes an object frame around the positions (``--margin-px``);
        ``False`` when the file sets the frame itself.
    pairs_diffraction_file : bool
        The patterns are in a second file (``--diffraction``).
    """

    name: str
    expects: str
    guess_can_open: Callable[[str], bool]
    read: Callable[..., ScanData]
    sizes_object_frame: bool = True
    pairs_diffraction_file: bool = False


def _signature(path: str) -> bytes:
    """The file's first bytes; ``b""`` for a folder (``FileNotFoundError`` when missing)."""
    return b"" if os.path.isdir(path) else file_signature(path)


def _npz_keys(path: str) -> set[str]:
    """The member names of a plain (zip) NPZ; nothing else of it is read."""
    if not _signature(path).startswith(ZIP_SIGNATURE):
        return set()
    with open_npz(path) as archive:
        return set(archive.files)


def _is_tike(path: str) -> bool:
    # bz2 is the only compressed format read, and only tike files come that way.
    return _signature(path).startswith(BZ2_SIGNATURE) or {DATA, SCAN} <= _npz_keys(path)


def _is_ptychodus(path: str) -> bool:
    if os.path.isdir(path):
        return (Path(path) / PRODUCT_FILE).is_file()
    # Only the signature: a diffraction file named as IN is then refused by the reader
    # with a message that says which file goes where.
    return file_signature(path).startswith(HDF5_SIGNATURE)


def _is_ptychopinn(path: str) -> bool:
    names = _npz_keys(path)
    return bool({keys.DIFFRACTION, keys.LEGACY_DIFFRACTION} & names) and keys.XCOORDS in names


# Detection asks every importer, in this order (also the order of messages and of
# FORMATS): a file that two of them claim is refused as ambiguous, not given to the first.
IMPORTERS: tuple[Importer, ...] = (
    Importer(
        name=FORMAT_TIKE,
        expects="a tike NPZ, plain or .npz.bz2, with keys data, scan, probe",
        guess_can_open=_is_tike,
        read=read_tike,
    ),
    Importer(
        name=FORMAT_PTYCHODUS,
        expects=f"a Ptychodus HDF5 product file, or a folder holding {PRODUCT_FILE}",
        guess_can_open=_is_ptychodus,
        read=read_ptychodus,
        sizes_object_frame=False,
        pairs_diffraction_file=True,
    ),
    Importer(
        name=FORMAT_LEGACY,
        expects="a PtychoPINN NPZ with keys diffraction or diff3d, xcoords, ycoords, ...",
        guess_can_open=_is_ptychopinn,
        read=read_legacy,
    ),
)
_BY_NAME: dict[str, Importer] = {importer.name: importer for importer in IMPORTERS}
FORMATS: tuple[str, ...] = tuple(_BY_NAME)
MEASUREMENTS: tuple[str, ...] = (keys.MEASUREMENT_COUNTS, keys.MEASUREMENT_AMPLITUDE)
_FROM_HINT = f"pass --from {'|'.join(FORMATS)}"


def _what_it_is(path: str) -> str:
    """A few words on the file, for a message: a folder, an NPZ's keys, its first bytes."""
    if os.path.isdir(path):
        return "a folder"
    head = file_signature(path)
    if not head:
        return "an empty file"
    if head.startswith(ZIP_SIGNATURE):
        return f"an NPZ with keys: {', '.join(sorted(_npz_keys(path))) or 'none'}"
    return f"a file starting with {head[:4]!r}"


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its content; an error naming ``--from`` if unclear.

    Every importer of :data:`IMPORTERS` is asked whether it can open the file; the one
    that says yes is the format. None or more than one is an error naming the file,
    what it is and the formats tried.
    """
    file = os.fspath(path)
    claimed = [importer.name for importer in IMPORTERS if importer.guess_can_open(file)]
    if len(claimed) == 1:
        return claimed[0]
    what = _what_it_is(file)
    if claimed:
        raise DataContractError(
            f"cannot tell the format: it is {what}, claimed by {' and '.join(claimed)}; "
            f"pass --from {'|'.join(claimed)}",
            file=file,
        )
    tried = ", ".join(f"{importer.name} ({importer.expects})" for importer in IMPORTERS)
    hint = "name a scan file" if os.path.isdir(file) else _FROM_HINT
    raise DataContractError(f"cannot tell the format: it is {what}; tried {tried}; {hint}",
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
    importer = _BY_NAME[source_format or detect_format(path)]
    options: dict[str, object] = {"fft_order": fft_order, "measurement": measurement}
    if importer.sizes_object_frame:
        options["margin_px"] = DEFAULT_MARGIN_PX if margin_px is None else margin_px
    elif margin_px is not None:
        raise ValueError(f"invalid --margin-px: a {importer.name} file sets the object frame; "
                         "drop --margin-px")
    if importer.pairs_diffraction_file:
        options["diffraction_path"] = diffraction_path
    elif diffraction_path is not None:
        takers = "|".join(other.name for other in IMPORTERS if other.pairs_diffraction_file)
        raise ValueError(f"invalid --diffraction: only used with --from {takers}, "
                         f"received a {importer.name} file")
    return importer.read(path, **options)
