"""Importers of foreign scan formats into the canonical NPZ (``ptychopinn convert``).

One module per format (:mod:`.tike`, :mod:`.ptychodus_h5`, :mod:`.legacy`), the
conversion of a Ptychodus product and its patterns (:mod:`.ptychodus_product`, shared
with the Ptychodus reconstructor adapter), the shared convention decisions
(:mod:`.conventions`: FFT order, counts, object frame, the import record in
``meta["import"]``) and the table of importers that picks the one for a file
(:mod:`.dispatch`: :data:`IMPORTERS`, :func:`detect_format`, :func:`import_scan`). See
``docs/data-contract.md`` (section "Converting foreign scans") and ``docs/real-data.md``.

Examples
--------
>>> from ptychopinn_core.data.importers import import_scan
>>> scan = import_scan("siemens-star-small.npz.bz2")  # doctest: +SKIP
>>> scan.meta["import"]["fft_order"], scan.object.shape  # doctest: +SKIP
('corner', (477, 474))
"""

from ptychopinn_core.data.importers.conventions import DEFAULT_MARGIN_PX, FFT_ORDERS
from ptychopinn_core.data.importers.dispatch import (
    FORMATS,
    IMPORTERS,
    MEASUREMENTS,
    Importer,
    detect_format,
    import_scan,
)

__all__ = [
    "DEFAULT_MARGIN_PX",
    "FFT_ORDERS",
    "FORMATS",
    "IMPORTERS",
    "MEASUREMENTS",
    "Importer",
    "detect_format",
    "import_scan",
]
