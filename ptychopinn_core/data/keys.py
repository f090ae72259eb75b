"""Names of the canonical NPZ keys and of the ``meta`` fields (data contract v1).

Every reader and writer refers to these constants, never to string literals, so the
contract is spelled out in exactly one place. ``docs/data-contract.md`` describes what
each key holds (shape, dtype, units).
"""

from __future__ import annotations

__all__ = [
    "CONTRACT_VERSION",
    "DIFFRACTION",
    "XCOORDS",
    "YCOORDS",
    "PROBE",
    "OBJECT",
    "SCAN_INDEX",
    "PATCHES",
    "META",
    "LEGACY_DIFFRACTION",
    "REQUIRED_KEYS",
    "OPTIONAL_KEYS",
    "KNOWN_KEYS",
    "FIELD_KEYS",
    "META_CONTRACT_VERSION",
    "META_MEASUREMENT",
    "META_CONVERSIONS",
    "META_SOURCE",
    "META_SOURCE_FILE",
    "META_NPHOTONS",
    "MEASUREMENT_AMPLITUDE",
    "MEASUREMENT_COUNTS",
    "MEASUREMENT_DOMAINS",
    "MEASUREMENT_CHOICES",
]

#: Version of the NPZ layout written by :func:`ptychopinn_core.data.write_scan`.
CONTRACT_VERSION: int = 1

# Required arrays.
DIFFRACTION = "diffraction"  # float32 (M, N, N) amplitude = sqrt(counts), DC centred
XCOORDS = "xcoords"  # float64 (M,) probe-centre column in object pixels
YCOORDS = "ycoords"  # float64 (M,) probe-centre row in object pixels
PROBE = "probeGuess"  # complex64 (N, N)

# Optional arrays.
OBJECT = "objectGuess"  # complex64 (H, W); positions are in its pixel frame
SCAN_INDEX = "scan_index"  # int64 (M,)
PATCHES = "Y"  # complex64 (M, N, N) ground-truth object patches
META = "meta"  # 0-d unicode array holding a JSON object

# Accepted on read only, converted to the canonical name with a note.
LEGACY_DIFFRACTION = "diff3d"

REQUIRED_KEYS: tuple[str, ...] = (DIFFRACTION, XCOORDS, YCOORDS, PROBE)
OPTIONAL_KEYS: tuple[str, ...] = (OBJECT, SCAN_INDEX, PATCHES, META)
KNOWN_KEYS: frozenset[str] = frozenset(REQUIRED_KEYS + OPTIONAL_KEYS + (LEGACY_DIFFRACTION,))

#: ScanData attribute -> NPZ key (error messages name the key a user sees in the file).
FIELD_KEYS: dict[str, str] = {
    "diffraction": DIFFRACTION,
    "xcoords": XCOORDS,
    "ycoords": YCOORDS,
    "probe": PROBE,
    "object": OBJECT,
    "scan_index": SCAN_INDEX,
    "patches": PATCHES,
    "meta": META,
}

# Fields of the ``meta`` JSON object that the contract itself reads or writes.
META_CONTRACT_VERSION = "contract_version"  # int, written by write_scan
META_MEASUREMENT = "measurement"  # "amplitude" after reading; a file may declare "counts"
META_CONVERSIONS = "conversions"  # list[str]: what the reader changed, in order
META_SOURCE = "source"  # the format a scan was imported from (tike, ptychodus, ...)
META_SOURCE_FILE = "source_file"  # name of the file the scan was last read from
META_NPHOTONS = "nphotons"  # expected photons per pattern (simulations), optional

MEASUREMENT_AMPLITUDE = "amplitude"
MEASUREMENT_COUNTS = "counts"
MEASUREMENT_DOMAINS: tuple[str, ...] = (MEASUREMENT_AMPLITUDE, MEASUREMENT_COUNTS)
#: Values of ``read_scan(measurement=...)`` and ``--measurement``; "auto" decides per file.
MEASUREMENT_CHOICES: tuple[str, ...] = ("auto",) + MEASUREMENT_DOMAINS
