"""A Ptychodus product and its patterns as the canonical scan: counts, bad pixels, metres.

What Ptychodus hands a reconstructor (``ReconstructInput``: patterns, bad pixels and a
``Product``) and what the core works on (:class:`~ptychopinn_core.data.ScanData`) differ
in four ways; each is converted here, in one place, for the Ptychodus file importer
(:mod:`.ptychodus_h5`) and the Ptychodus reconstructor adapter
(:mod:`ptychopinn_core.ptychodus`) alike, so a model always sees what it was trained on:

1. **Measurement.** Ptychodus gives detector intensities (counts, any int/float dtype,
   shape (P, N, N), zero frequency centred). The contract stores amplitudes:
   ``X = sqrt(max(counts, 0))`` in float64, rounded once to float32. Negative values
   (background-subtracted data) are clipped to 0 and counted in ``meta``.
2. **Bad pixels** (bool (N, N), True = bad) are set to 0 counts with Ptychodus' own
   :func:`~ptychodus.api.preprocess.diffraction.zero_bad_pixels`, before the square
   root. The model has no pixel mask, so a zeroed pixel is NOT excluded from the
   loss: it reads as "no photons measured there", which biases the prediction at those
   pixels slightly low. That is acceptable for a few isolated pixels; a detector with
   large dead areas should be cropped in Ptychodus first. The rule is the same in
   training, export and reconstruction.
3. **Positions** arrive in metres. Ptychodus' object geometry maps them to object
   pixels (:meth:`~ptychodus.api.object.ObjectGeometry.map_probe_positions_to_object_x_px`,
   never re-derived here). That pixel coordinate is where Ptychodus puts the centre of
   an ``N``-wide window, i.e. window pixel ``(N - 1) / 2`` (its
   ``BarycentricArrayInterpolator.get_patch``); the contract puts the probe centre
   pixel ``N // 2`` on the position (physics.md §1). The two name the same patch when
   ``x_contract = x_ptychodus + (N // 2 - (N - 1) / 2)``, i.e. +0.5 px for even N:
   :func:`probe_centre_offset_px`. A test checks that ``get_patch`` and
   :func:`~ptychopinn_core.physics.translate.extract_patches` then return the same patch.
4. **Probe**: the first incoherent mode of the probe without OPR variation,
   ``probes.get_probe_no_opr().get_incoherent_mode(0)``; other modes are ignored (the
   model is single-mode). The object is layer 0 of the product's object; its grid is
   the canvas the reconstruction is stitched on (``objectGuess`` of the scan).

The way back (our results as Ptychodus objects) is the adapter's
(:mod:`ptychopinn_core.ptychodus.convert`). Ptychodus is imported only where it is
called (``pip install "ptychopinn-core[ptychodus]"``), so that importing the importers
never needs it; nothing here imports a framework.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ptychopinn_core.data import keys
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.physics.translate import extract_patches

if TYPE_CHECKING:
    from ptychodus.api.object import ObjectGeometry
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.probe_positions import ProbePositionSequence
    from ptychodus.api.reconstruct import ReconstructInput

__all__ = [
    "META_GEOMETRY",
    "META_MEAN_COUNTS",
    "META_SOURCE",
    "PIXEL_SIZE_RTOL",
    "SOURCE_PTYCHODUS",
    "amplitudes_from_counts",
    "positions_to_object_px",
    "probe_centre_offset_px",
    "scan_from_reconstruct_input",
]

#: ``meta`` key naming where a scan came from, and its value for Ptychodus input.
META_SOURCE = keys.META_SOURCE
SOURCE_PTYCHODUS = "ptychodus"
#: ``meta`` key of the Ptychodus geometry the scan was converted with (metres, eV).
META_GEOMETRY = "ptychodus_geometry"
#: ``meta`` key of the measured mean total count per pattern (after bad pixels).
META_MEAN_COUNTS = "mean_counts_per_pattern"
#: The model assumes object pixel = probe (sample-plane) pixel; sizes that differ by
#: more than this relative amount are refused rather than silently mis-scaled.
PIXEL_SIZE_RTOL = 1e-3
_INSTALL_HINT = 'converting Ptychodus data needs the ptychodus package: pip install "ptychopinn-core[ptychodus]"'


def probe_centre_offset_px(size: int) -> float:
    """``N // 2 - (N - 1) / 2``: contract position minus Ptychodus position, pixels.

    Ptychodus centres an ``N``-wide window at array pixel ``(N - 1) / 2``, the contract
    at ``N // 2`` (the fftshift centre): 0.5 for even ``N``, 0 for odd ``N``.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"invalid pattern size: expected a positive int, received size={size!r}")
    return int(size) // 2 - (int(size) - 1) / 2


def positions_to_object_px(
    positions: ProbePositionSequence, object_geometry: ObjectGeometry, pattern_size: int
) -> np.ndarray:
    """Probe positions in metres to contract positions in object pixels.

    Parameters
    ----------
    positions : ProbePositionSequence
        ``x_m``, ``y_m`` of every scan point (metres).
    object_geometry : ObjectGeometry
        Grid of the object the positions are placed on.
    pattern_size : int
        ``N``; decides the window-centre offset (:func:`probe_centre_offset_px`).

    Returns
    -------
    ndarray, float64, shape (M, 2)
        ``(x, y)``: the object pixel on which the probe's centre pixel ``N // 2`` lies,
        ``x = map_probe_positions_to_object_x_px(positions) + N // 2 - (N - 1) / 2``.
    """
    offset = probe_centre_offset_px(pattern_size)
    x_px = np.asarray(object_geometry.map_probe_positions_to_object_x_px(positions), dtype=np.float64)
    y_px = np.asarray(object_geometry.map_probe_positions_to_object_y_px(positions), dtype=np.float64)
    return np.stack([x_px + offset, y_px + offset], axis=-1)


def _check_patterns(patterns: np.ndarray) -> np.ndarray:
    patterns = np.asarray(patterns)
    if patterns.ndim != 3 or patterns.shape[1] != patterns.shape[2] or patterns.shape[0] < 1:
        raise ValueError(
            "invalid diffraction patterns: expected (P, N, N) square patterns with P >= 1, "
            f"received diffraction_patterns.shape={patterns.shape}"
        )
    if patterns.dtype.kind not in "iuf":
        raise TypeError(
            f"invalid diffraction patterns: expected integer or float counts, received dtype {patterns.dtype}"
        )
    return patterns


def _check_bad_pixels(bad_pixels: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if bad_pixels is None:
        return np.zeros(shape, dtype=bool)
    bad_pixels = np.asarray(bad_pixels)
    if bad_pixels.shape != shape:
        raise ValueError(
            f"invalid bad pixel mask: expected shape {shape} (one pattern), "
            f"received bad_pixels.shape={bad_pixels.shape}"
        )
    return bad_pixels.astype(bool, copy=False)


def amplitudes_from_counts(
    patterns: np.ndarray, bad_pixels: np.ndarray | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Detector counts to contract amplitudes: ``X = sqrt(max(counts, 0))``, bad pixels 0.

    Parameters
    ----------
    patterns : ndarray, int or float, shape (P, N, N)
        Counts, zero frequency centred.
    bad_pixels : ndarray, bool, shape (N, N), or None
        True where a detector pixel is bad; those pixels become 0 counts
        (Ptychodus' ``zero_bad_pixels``).

    Returns
    -------
    amplitudes : ndarray, float32, shape (P, N, N)
    report : dict
        ``bad_pixels`` (count zeroed per pattern), ``negative_counts`` (values clipped),
        ``mean_counts_per_pattern`` (after both).

    Raises
    ------
    ValueError
        Non-finite counts outside the bad pixels, or a wrong shape.
    """
    try:  # Ptychodus' own rule for bad pixels, so that its reconstructors and ours agree
        from ptychodus.api.preprocess.diffraction import zero_bad_pixels
    except ImportError as error:
        raise ImportError(f"{_INSTALL_HINT} ({error})") from None

    patterns = _check_patterns(patterns)
    bad = _check_bad_pixels(bad_pixels, patterns.shape[1:])
    cleaned = zero_bad_pixels(patterns, bad)
    amplitudes = np.empty(cleaned.shape, dtype=np.float32)
    n_negative = 0
    total = 0.0
    for index in range(cleaned.shape[0]):  # one pattern at a time: float64 temporaries stay small
        counts = cleaned[index].astype(np.float64)
        if not np.all(np.isfinite(counts)):
            raise ValueError(
                f"invalid diffraction patterns: non-finite counts in pattern {index} outside the bad "
                "pixels; mark those pixels bad in Ptychodus"
            )
        negative = counts < 0
        n_negative += int(negative.sum())
        counts[negative] = 0.0
        total += float(counts.sum())
        amplitudes[index] = np.sqrt(counts)
    report = {
        "bad_pixels": int(bad.sum()),
        "negative_counts": n_negative,
        META_MEAN_COUNTS: total / cleaned.shape[0],
    }
    return amplitudes, report


def _first_probe_mode(probes: ProbeSequence) -> tuple[np.ndarray, int]:
    """The first incoherent mode without OPR variation, and the number of modes."""
    probe = probes.get_probe_no_opr()
    if probe.num_incoherent_modes < 1 or probe.width_px == 0:
        raise ValueError("invalid product: it has no probe; initialise one in Ptychodus first")
    return np.asarray(probe.get_incoherent_mode(0)), probe.num_incoherent_modes


def _check_pixel_sizes(object_geometry: ObjectGeometry, probes: ProbeSequence) -> None:
    probe_pixel = probes.get_pixel_geometry()
    for axis, object_m, probe_m in (
        ("width", object_geometry.pixel_width_m, probe_pixel.width_m),
        ("height", object_geometry.pixel_height_m, probe_pixel.height_m),
    ):
        if not (math.isfinite(object_m) and object_m > 0):
            raise ValueError(
                f"invalid object geometry: expected a positive pixel {axis}, received pixel_{axis}_m={object_m!r}"
            )
        if not math.isclose(object_m, probe_m, rel_tol=PIXEL_SIZE_RTOL):
            raise ValueError(
                f"object and probe pixel sizes differ: the model needs object pixel = probe pixel, received "
                f"object pixel_{axis}_m={object_m:.6g} and probe pixel_{axis}_m={probe_m:.6g}; "
                "rebuild the object on the probe's sampling in Ptychodus"
            )


def scan_from_reconstruct_input(parameters: ReconstructInput, *, with_truth_patches: bool = False) -> ScanData:
    """The canonical scan of a Ptychodus ``ReconstructInput`` (module docstring, steps 1-4).

    Parameters
    ----------
    parameters : ReconstructInput
        ``diffraction_patterns`` (P, N, N) counts, ``bad_pixels`` (N, N) bool, and the
        ``product`` (positions in metres, probe, object grid, metadata).
    with_truth_patches : bool
        Also store ``Y`` = the product's object sampled at every position
        (:func:`~ptychopinn_core.physics.translate.extract_patches`): the ground truth
        of supervised training, which takes the product's object as the truth.

    Returns
    -------
    ScanData
        ``diffraction`` float32 (P, N, N) amplitudes; ``xcoords``/``ycoords`` float64
        (P,) object pixels; ``probe`` complex64 (N, N); ``object`` complex64 (H, W)
        (layer 0); ``patches`` when asked; ``meta`` with the source, the conversions
        and the geometry.
    """
    product = parameters.product
    amplitudes, report = amplitudes_from_counts(parameters.diffraction_patterns, parameters.bad_pixels)
    n_patterns, size = amplitudes.shape[0], amplitudes.shape[-1]
    n_positions = len(product.probe_positions)
    if n_positions != n_patterns:
        raise ValueError(
            f"invalid reconstruct input: expected one probe position per pattern ({n_patterns}), "
            f"received {n_positions} positions"
        )
    probe, n_probe_modes = _first_probe_mode(product.probes)
    if probe.shape != (size, size):
        raise ValueError(
            f"invalid probe shape: expected ({size}, {size}) like the diffraction patterns, "
            f"received probe shape {probe.shape}"
        )
    obj = product.object_
    if obj.width_px == 0 or obj.height_px == 0:
        raise ValueError("invalid product: its object is empty; initialise an object in Ptychodus first")
    object_geometry = obj.get_geometry()
    _check_pixel_sizes(object_geometry, product.probes)
    positions_xy = positions_to_object_px(product.probe_positions, object_geometry, size)
    object_array = np.asarray(obj.get_layer(0)).astype(np.complex64)
    patches = extract_patches(object_array, positions_xy, size).astype(np.complex64) if with_truth_patches else None
    metadata = product.metadata
    conversions = ["ptychodus counts -> amplitude sqrt(max(counts, 0))"]
    if report["bad_pixels"]:
        conversions.append(f"{report['bad_pixels']} bad pixels set to 0 counts (not masked in the loss)")
    if report["negative_counts"]:
        conversions.append(f"{report['negative_counts']} negative counts clipped to 0")
    if n_probe_modes > 1:
        conversions.append(f"probe: first of {n_probe_modes} incoherent modes used")
    if obj.num_layers > 1:
        conversions.append(f"object: layer 0 of {obj.num_layers} used")
    meta = {
        META_SOURCE: SOURCE_PTYCHODUS,
        "product_name": metadata.name,
        keys.META_MEASUREMENT: keys.MEASUREMENT_AMPLITUDE,
        keys.META_CONVERSIONS: conversions,
        META_MEAN_COUNTS: report[META_MEAN_COUNTS],
        META_GEOMETRY: {
            "object_pixel_width_m": object_geometry.pixel_width_m,
            "object_pixel_height_m": object_geometry.pixel_height_m,
            "object_center_x_m": object_geometry.center_x_m,
            "object_center_y_m": object_geometry.center_y_m,
            "detector_distance_m": metadata.detector_distance_m,
            "photon_energy_eV": metadata.photon_energy_eV,
            "wavelength_m": metadata.photon_wavelength_m,
            "probe_centre_offset_px": probe_centre_offset_px(size),
        },
    }
    return ScanData(
        diffraction=amplitudes,
        xcoords=positions_xy[:, 0].copy(),
        ycoords=positions_xy[:, 1].copy(),
        probe=probe.astype(np.complex64),
        object=object_array,
        patches=patches,
        meta=meta,
    )
