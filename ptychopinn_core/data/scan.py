"""The in-memory scan: one typed, validated, read-only object for what a canonical NPZ holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ScanData"]

_ARRAY_FIELDS = ("diffraction", "xcoords", "ycoords", "probe", "object", "scan_index", "patches")


@dataclass(frozen=True, eq=False, repr=False)
class ScanData:
    """A far-field ptychography scan in the canonical conventions (data contract v1).

    Building one validates it (:func:`ptychopinn_core.data.validate.validate_scan`):
    the arrays must already have the canonical dtypes — conversions of legacy files are
    the reader's job (:func:`ptychopinn_core.data.read_scan`). The stored arrays are
    C-contiguous, read-only copies, so neither the caller nor a consumer can change a
    scan behind its back; use :func:`dataclasses.replace` to derive a new one.

    Attributes
    ----------
    diffraction : ndarray, float32, shape (M, N, N)
        Measured diffraction **amplitudes** (sqrt of photon counts), zero frequency at
        pixel ``(N//2, N//2)`` (fftshift convention). NPZ key ``diffraction``.
    xcoords, ycoords : ndarray, float64, shape (M,)
        Probe-centre positions in object pixels (x = column, y = row): the probe's
        centre pixel ``N//2`` lies on object pixel ``(ycoords[m], xcoords[m])``.
    probe : ndarray, complex64, shape (N, N)
        Probe guess (NPZ key ``probeGuess``).
    object : ndarray, complex64, shape (H, W), optional
        Object (ground truth for simulations, NPZ key ``objectGuess``); when present
        the positions are in its pixel frame.
    scan_index : ndarray, int64, shape (M,), optional
        Index of the scan (acquisition) each pattern belongs to.
    patches : ndarray, complex64, shape (M, N, N), optional
        Ground-truth object patches (NPZ key ``Y``), for supervised training.
    meta : dict
        JSON object with provenance (nphotons, measurement domain, geometry, the
        conversions done by the reader, ...). Stored as a JSON-normalised deep copy;
        ``meta["measurement"]``, if present, is ``"amplitude"``.
    """

    diffraction: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    probe: np.ndarray
    object: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    patches: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ptychopinn_core.data.validate import normalize_meta, validate_scan

        validate_scan(self)
        for name in _ARRAY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _read_only(value))
        object.__setattr__(self, "meta", normalize_meta(self.meta))

    @property
    def n_positions(self) -> int:
        """Number of scan positions M."""
        return int(self.diffraction.shape[0])

    @property
    def pattern_size(self) -> int:
        """Diffraction pattern side N in pixels."""
        return int(self.diffraction.shape[-1])

    @property
    def positions_px(self) -> np.ndarray:
        """Positions as one ``(M, 2)`` float64 array of ``(x, y)`` object pixels."""
        return np.stack([self.xcoords, self.ycoords], axis=-1)

    def __repr__(self) -> str:
        optional = ", ".join(
            f"{name}={'x'.join(map(str, getattr(self, name).shape))}"
            for name in ("object", "scan_index", "patches")
            if getattr(self, name) is not None
        )
        return (
            f"ScanData(M={self.n_positions}, N={self.pattern_size}"
            + (f", {optional}" if optional else "")
            + f", meta keys={sorted(self.meta)})"
        )


def _read_only(values: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous array with the same content, copied unless already private.

    An array that is read-only, C-contiguous and owns its memory (what the reader
    hands over) is kept as is: nobody holds a writeable view of it.
    """
    if not values.flags.writeable and values.flags.owndata and values.flags.c_contiguous:
        return values
    stored = np.array(values, copy=True, order="C")
    stored.flags.writeable = False
    return stored
