"""Our results as Ptychodus objects: the reconstructed product, losses, and scans as input.

The way in (a Ptychodus ``ReconstructInput`` as the canonical scan: counts, bad pixels,
metres, probe mode) is the data layer's,
:mod:`ptychopinn_core.data.importers.ptychodus_product`, shared with the Ptychodus file
importer. This module holds what only the Ptychodus adapter needs: the product it hands
back (:func:`output_product`, :func:`losses_from_history`), the measured photon count
it reports (:func:`mean_counts_per_pattern`), and a canonical scan written as Ptychodus
input (:func:`ptychodus_inputs_from_scan`, with :func:`positions_to_metres`, the inverse
of :func:`~ptychopinn_core.data.importers.ptychodus_product.positions_to_object_px`).

Nothing here imports a framework.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.constants import energy_eV_to_wavelength_m
from ptychodus.api.geometry import ImageExtent, PixelGeometry
from ptychodus.api.object import Object, ObjectCenter, ObjectGeometry, ObjectPosition
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePositionSequence
from ptychodus.api.product import LossValue, Product, ProductMetadata
from ptychodus.api.propagate import compute_far_field_pixel_geometry

from ptychopinn_core.data import ScanData
from ptychopinn_core.data import keys
from ptychopinn_core.data.importers.ptychodus_product import probe_centre_offset_px
from ptychopinn_core.model.state import History

__all__ = [
    "losses_from_history",
    "mean_counts_per_pattern",
    "output_product",
    "positions_to_metres",
    "ptychodus_inputs_from_scan",
]


def positions_to_metres(
    positions_xy: np.ndarray,
    object_geometry: ObjectGeometry,
    pattern_size: int,
    indexes: Sequence[int] | None = None,
) -> ProbePositionSequence:
    """Inverse of :func:`positions_to_object_px` (Ptychodus' ``map_coordinates_object_to_probe``).

    Parameters
    ----------
    positions_xy : ndarray, float, shape (M, 2)
        Contract positions ``(x, y)`` in object pixels.
    object_geometry : ObjectGeometry
    pattern_size : int
    indexes : sequence of int, optional
        Scan indexes; default ``0 .. M-1``.

    Returns
    -------
    ProbePositionSequence
        Positions in metres.
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    if positions_xy.ndim != 2 or positions_xy.shape[1] != 2:
        raise ValueError(
            f"invalid positions: expected (M, 2) (x, y) pixels, received positions_xy.shape={positions_xy.shape}"
        )
    indexes = range(len(positions_xy)) if indexes is None else indexes
    offset = probe_centre_offset_px(pattern_size)
    return ProbePositionSequence(
        [
            object_geometry.map_coordinates_object_to_probe(
                ObjectPosition(int(index), float(x) - offset, float(y) - offset)
            )
            for index, (x, y) in zip(indexes, positions_xy, strict=True)
        ]
    )


def mean_counts_per_pattern(scan: ScanData) -> float:
    """Mean total count per pattern, ``mean_m sum_hw X_m**2`` (photons), float64."""
    total = 0.0
    for pattern in scan.diffraction:
        total += float(np.sum(pattern.astype(np.float64) ** 2))
    return total / scan.n_positions


def losses_from_history(history: History) -> tuple[list[LossValue], list[LossValue]]:
    """Per-epoch training and validation losses as Ptychodus ``LossValue`` lists."""
    training = [LossValue(epoch=record.epoch, value=float(record.train_loss)) for record in history.epochs]
    validation = [
        LossValue(epoch=record.epoch, value=float(record.val_loss))
        for record in history.epochs
        if record.val_loss is not None
    ]
    return training, validation


def output_product(
    template: Product, object_array: np.ndarray, losses: Sequence[LossValue], comment: str
) -> Product:
    """The input product with the reconstructed object on its object's grid.

    Parameters
    ----------
    template : Product
        The input product: metadata, positions and probes are kept; the object's
        pixel geometry and centre are copied.
    object_array : ndarray, complex, shape (H, W)
        The stitched reconstruction on the template object's grid (layer 0's shape).
    losses : sequence of LossValue
        Per-epoch training losses of the model.
    comment : str
        Appended as a new line to the metadata comments (provenance: which
        reconstructor produced the product).

    Returns
    -------
    Product
    """
    template_object = template.object_
    expected = (template_object.height_px, template_object.width_px)
    object_array = np.asarray(object_array)
    if object_array.shape != expected:
        raise ValueError(
            f"invalid reconstruction shape: expected the input object's grid {expected}, "
            f"received object shape {object_array.shape}"
        )
    reconstructed = Object(
        array=object_array.astype(np.complex64)[np.newaxis],
        pixel_geometry=template_object.get_pixel_geometry().copy(),
        center=template_object.get_center().copy(),
        layer_spacing_m=[],
    )
    comments = template.metadata.comments
    comments = f"{comments}\n{comment}" if comments else comment
    return Product(
        metadata=dataclasses.replace(template.metadata, comments=comments),
        probe_positions=template.probe_positions,
        probes=template.probes,
        object_=reconstructed,
        losses=list(losses),
    )


def _counts_of(diffraction: np.ndarray) -> np.ndarray:
    """Counts from amplitudes: integers when the amplitudes are square roots of integers."""
    counts = np.square(diffraction.astype(np.float64))
    rounded = np.rint(counts)
    if np.all(np.abs(counts - rounded) <= 1e-3 * np.maximum(rounded, 1.0)) and rounded.max() < 2**31:
        return rounded.astype(np.int32)
    return counts.astype(np.float32)


def ptychodus_inputs_from_scan(
    scan: ScanData,
    *,
    photon_energy_eV: float,  # noqa: N803 - Ptychodus' spelling
    detector_distance_m: float,
    detector_pixel_m: float,
    name: str = "ptychopinn",
    bad_pixels: np.ndarray | None = None,
) -> tuple[AssembledDiffractionData, Product]:
    """A canonical scan as Ptychodus input: assembled diffraction data and a product.

    The geometry is made consistent with far-field sampling: object pixel = probe pixel
    ``= wavelength * distance / (N * detector_pixel)`` (Ptychodus'
    ``compute_far_field_pixel_geometry``), the object centred at ``(0, 0)`` m, and the
    positions mapped to metres with :func:`positions_to_metres`. Save the parts with
    ``ptychodus.api.io.save_diffraction_data`` and ``save_product``.

    Parameters
    ----------
    scan : ScanData
        Needs ``objectGuess`` (the product's object grid).
    photon_energy_eV, detector_distance_m, detector_pixel_m : float
        Beam energy, sample-detector distance and (square) detector pixel side.
    name : str
        Product name.
    bad_pixels : ndarray, bool, shape (N, N), optional
        Detector mask to store (default: none bad).

    Returns
    -------
    AssembledDiffractionData
        ``patterns`` = counts ``X**2`` (int32 when they are integers, else float32),
        indexes ``0..M-1``.
    Product
    """
    if scan.object is None:
        raise ValueError("invalid scan: expected an objectGuess (the product's object grid), received none")
    size = scan.pattern_size
    detector_pixel = PixelGeometry(width_m=float(detector_pixel_m), height_m=float(detector_pixel_m))
    wavelength_m = energy_eV_to_wavelength_m(float(photon_energy_eV))
    object_pixel = compute_far_field_pixel_geometry(
        detector_pixel,
        ImageExtent(width_px=size, height_px=size),
        wavelength_m=wavelength_m,
        propagation_distance_m=float(detector_distance_m),
    )
    height, width = scan.object.shape
    object_geometry = ObjectGeometry(
        width_px=width,
        height_px=height,
        pixel_width_m=object_pixel.width_m,
        pixel_height_m=object_pixel.height_m,
        center_x_m=0.0,
        center_y_m=0.0,
    )
    if bad_pixels is None:
        bad_pixels = np.zeros((size, size), dtype=bool)
    diffraction = AssembledDiffractionData(
        indexes=np.arange(scan.n_positions, dtype=np.intp),
        patterns=_counts_of(scan.diffraction),
        pixel_geometry=detector_pixel,
        bad_pixels=np.asarray(bad_pixels, dtype=bool),
    )
    metadata = ProductMetadata(
        name=name,
        comments="",
        detector_distance_m=float(detector_distance_m),
        photon_energy_eV=float(photon_energy_eV),
        probe_photon_count=float(scan.meta.get(keys.META_NPHOTONS, 0.0)),
        exposure_time_s=0.0,
        mass_attenuation_m2_per_kg=0.0,
        tomography_angle_deg=0.0,
    )
    product = Product(
        metadata=metadata,
        probe_positions=positions_to_metres(scan.positions_px, object_geometry, size),
        probes=ProbeSequence(
            array=np.asarray(scan.probe, dtype=np.complex64)[np.newaxis, np.newaxis],
            opr_weights=None,
            pixel_geometry=object_pixel.copy(),
        ),
        object_=Object(
            array=np.asarray(scan.object, dtype=np.complex64)[np.newaxis],
            pixel_geometry=object_pixel.copy(),
            center=ObjectCenter(x_m=0.0, y_m=0.0),
            layer_spacing_m=[],
        ),
        losses=[],
    )
    return diffraction, product
