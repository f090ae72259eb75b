"""Import a Ptychodus 1.7 diffraction + product HDF5 pair (its standard file layout).

Ptychodus writes a scan as two files (``ptychodus.api.io``; the batch mode's input
folder holds them as ``diffraction.h5`` and ``product.h5``):

- the **diffraction file**: ``patterns`` (P, N, N) detector counts with the zero
  frequency centred, ``indexes`` (P,), ``bad_pixels`` (N, N) bool (True = bad), the
  detector pixel size as attributes of ``patterns``;
- the **product file**: probe positions in metres with their indexes, the probe
  (modes), the object with its pixel size and centre, metadata and losses.

``IN`` is the product file, or a folder holding ``product.h5`` and ``diffraction.h5``;
``--diffraction`` names the diffraction file (default: ``diffraction.h5`` beside the
product). Both files are read with Ptychodus' own readers
(``load_diffraction_data``, ``load_product``), patterns and positions are paired by
scan index with Ptychodus' ``prepare_reconstruct_input``, and the result is converted
exactly as the Ptychodus reconstructor adapter converts its input
(:func:`~ptychopinn_core.data.importers.ptychodus_product.scan_from_reconstruct_input`): counts ->
``sqrt`` (bad pixels zeroed), metres -> object pixels through the product's object
geometry (+ ``N//2 - (N-1)/2`` px, the window-centre convention), probe mode 0 without
OPR, object layer 0 as ``objectGuess`` (its grid is the object frame).

Needs the ``ptychodus`` package (``pip install "ptychopinn-core[ptychodus]"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptychopinn_core.data import keys
from ptychopinn_core.data.errors import DataContractError
from ptychopinn_core.data.importers.archive import HDF5_SIGNATURE, file_signature
from ptychopinn_core.data.importers.conventions import (
    META_IMPORT,
    META_OBJECT_ROLE,
    ImportRecord,
    resolve_fft_order,
)
from ptychopinn_core.data.importers.ptychodus_product import (
    probe_centre_offset_px,
    scan_from_reconstruct_input,
)
from ptychopinn_core.data.scan import ScanData

__all__ = [
    "DIFFRACTION_FILE",
    "FORMAT_PTYCHODUS",
    "OBJECT_ROLE_PRODUCT",
    "PRODUCT_FILE",
    "ptychodus_file_kind",
    "read_ptychodus",
]

FORMAT_PTYCHODUS = "ptychodus"
DIFFRACTION_FILE = "diffraction.h5"
PRODUCT_FILE = "product.h5"
OBJECT_ROLE_PRODUCT = "ptychodus product object"
_PATTERNS = "patterns"
_PRODUCT_MARKERS = ("object", "probe", "probe_position_x_m")
_INSTALL_HINT = 'reading Ptychodus files needs the ptychodus package: pip install "ptychopinn-core[ptychodus]"'


def ptychodus_file_kind(path: str | os.PathLike[str]) -> str | None:
    """``"diffraction"``, ``"product"`` or ``None``: which Ptychodus HDF5 file this is."""
    if not os.path.isfile(path) or not file_signature(path).startswith(HDF5_SIGNATURE):
        return None
    import h5py

    with h5py.File(path, "r") as handle:
        names = set(handle.keys())
    if _PATTERNS in names:
        return "diffraction"
    if all(marker in names for marker in _PRODUCT_MARKERS):
        return "product"
    return None


def _locate(path: Path, diffraction: Path | None) -> tuple[Path, Path]:
    """The (product, diffraction) files named by ``IN`` and ``--diffraction``."""
    if path.is_dir():
        product = path / PRODUCT_FILE
        diffraction = diffraction or path / DIFFRACTION_FILE
    else:
        product = path
        diffraction = diffraction or path.parent / DIFFRACTION_FILE
    if not product.is_file():
        raise FileNotFoundError(f"{product}: no such Ptychodus product file")
    if not diffraction.is_file():
        raise FileNotFoundError(
            f"{diffraction}: no such Ptychodus diffraction file; name it with --diffraction FILE"
        )
    kinds = {"product": ptychodus_file_kind(product), "diffraction": ptychodus_file_kind(diffraction)}
    if kinds["product"] == "diffraction":
        raise DataContractError(
            "is a Ptychodus diffraction file, not a product file; pass the product file as "
            "IN and this one with --diffraction",
            file=product,
        )
    for role, file in (("product", product), ("diffraction", diffraction)):
        if kinds[role] != role:
            raise DataContractError(
                f"not a Ptychodus {role} file (expected an HDF5 file written by "
                f"ptychodus.api.io.save_{'product' if role == 'product' else 'diffraction_data'})",
                file=file,
            )
    return product, diffraction


def read_ptychodus(
    path: str | os.PathLike[str],
    *,
    diffraction_path: str | os.PathLike[str] | None = None,
    fft_order: str | None = None,
    measurement: str | None = None,
) -> ScanData:
    """Read a Ptychodus product + diffraction HDF5 pair into the canonical conventions.

    Parameters
    ----------
    path : path-like
        The product file, or a folder with ``product.h5`` and ``diffraction.h5``.
    diffraction_path : path-like, optional
        The diffraction file (default ``diffraction.h5`` beside the product).
    fft_order : {"corner", "centered"}, optional
        Default ``"centered"`` (Ptychodus' convention); ``"corner"`` applies fftshift to
        the patterns and the bad-pixel mask.
    measurement : {"counts", "amplitude"}, optional
        Default ``"counts"`` (what Ptychodus stores); ``"amplitude"`` squares the
        patterns first.

    Returns
    -------
    ScanData
        With ``objectGuess`` = the product's object (layer 0) on its grid, and
        ``meta["import"]``, ``meta["ptychodus_geometry"]``.
    """
    try:
        from ptychodus.api.io import load_diffraction_data, load_product
        from ptychodus.api.reconstruct import ReconstructInput, prepare_reconstruct_input
    except ImportError as error:
        raise ImportError(f"{_INSTALL_HINT} ({error})") from None

    product_file, diffraction_file = _locate(
        Path(path), None if diffraction_path is None else Path(diffraction_path)
    )
    try:
        assembled = load_diffraction_data(diffraction_file)
    except (KeyError, ValueError, OSError) as error:
        raise DataContractError(f"unreadable Ptychodus diffraction file ({error})",
                                file=diffraction_file) from None
    try:
        product = load_product(product_file)
    except (KeyError, ValueError, OSError) as error:
        raise DataContractError(f"unreadable Ptychodus product file ({error})",
                                file=product_file) from None
    try:
        paired = prepare_reconstruct_input(assembled, product)
    except ValueError as error:
        raise DataContractError(f"patterns and positions do not pair by index ({error})",
                                file=product_file) from None

    record = ImportRecord(format=FORMAT_PTYCHODUS,
                          files=[product_file.name, diffraction_file.name])
    record.measurement, record.measurement_from = (
        (measurement, "--measurement") if measurement is not None else ("counts", "format")
    )
    is_amplitude = record.measurement == keys.MEASUREMENT_AMPLITUDE
    patterns = np.asarray(paired.diffraction_patterns)
    bad_pixels = np.asarray(paired.bad_pixels, dtype=bool)
    order = resolve_fft_order(patterns, fft_order, "centered", record,
                              file=os.fspath(diffraction_file), key=_PATTERNS,
                              amplitude=is_amplitude)
    if order == "corner":
        patterns = np.fft.fftshift(patterns, axes=(-2, -1))
        bad_pixels = np.fft.fftshift(bad_pixels)
    if is_amplitude:
        patterns = np.square(patterns.astype(np.float64))
    try:
        scan = scan_from_reconstruct_input(ReconstructInput(patterns, bad_pixels, paired.product))
    except ValueError as error:
        raise DataContractError(str(error), file=product_file) from None

    size = scan.pattern_size
    offset = probe_centre_offset_px(size)
    n_modes = paired.product.probes.get_probe_no_opr().num_incoherent_modes
    record.position_convention = (
        "metres -> object pixels with the product's object geometry (Ptychodus "
        f"ObjectGeometry), + N//2 - (N-1)/2 = {offset:g} px (window-centre convention)"
    )
    record.position_shift_px = [float(offset), float(offset)]
    record.probe = f"mode 0 of {n_modes} (without OPR variation)"
    height, width = scan.object.shape
    record.object_frame = {"kind": "ptychodus product", "height_px": height, "width_px": width}
    record.details.update(
        patterns_in_file=int(assembled.get_num_patterns()),
        positions_in_product=len(product.probe_positions),
        paired=scan.n_positions,
        bad_pixels=int(bad_pixels.sum()),
    )
    conversions = list(scan.meta.get(keys.META_CONVERSIONS, []))
    if order == "corner":
        conversions.insert(0, f"fft order corner ({record.fft_order_from}): fftshift applied")
    if is_amplitude:
        conversions.insert(0, "patterns declared amplitudes (--measurement amplitude): squared")
    meta = dict(scan.meta)
    meta.update({
        keys.META_SOURCE_FILE: product_file.name,
        keys.META_CONVERSIONS: conversions,
        META_OBJECT_ROLE: OBJECT_ROLE_PRODUCT,
        META_IMPORT: record.to_json(),
    })
    return ScanData(
        diffraction=scan.diffraction,
        xcoords=scan.xcoords,
        ycoords=scan.ycoords,
        probe=scan.probe,
        object=scan.object,
        meta=meta,
    )
