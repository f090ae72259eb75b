"""Simulated far-field scans with Poisson counts (docs/physics.md §10).

The forward model is the core's numpy reference (:mod:`ptychopinn_core.physics`)::

    Y_m       = extract_patches(O, positions, N)[m]      ground-truth patch (bilinear)
    F_m       = fftshift(fft2(Y_m * P)) / N              far field (unitary)
    scale**2  = nphotons / mean_m(sum_hw |F_m|**2)
    counts_m  ~ Poisson((scale * |F_m|)**2)              integer photon counts
    X_m       = sqrt(counts_m)                           stored diffraction amplitude

so that the expected total count per pattern, averaged over the scan, is exactly
``nphotons``. ``sum_hw |F_m|**2`` is computed as ``sum_hw |Y_m P|**2`` (Parseval; the
far field is unitary), which lets the scale be fixed before any FFT.

Work is done in chunks of positions, so peak memory is the outputs (diffraction and
``Y``) plus one chunk, whatever M. Counts are drawn from one seeded generator in
position order; the result does not depend on the chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ptychopinn_core.data import keys
from ptychopinn_core.data.scan import ScanData
from ptychopinn_core.physics.forward import far_field, illuminate
from ptychopinn_core.physics.translate import extract_patches
from ptychopinn_core.simulation.objects import OBJECT_KINDS, image_object, lines_object
from ptychopinn_core.simulation.positions import (
    POSITION_KINDS,
    default_step_px,
    object_shape_for_scan,
    random_positions,
    raster_positions,
    valid_position_range,
)
from ptychopinn_core.simulation.probe import PROBE_KINDS, make_probe

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_JITTER_FRACTION",
    "DEFAULT_NPHOTONS",
    "GENERATOR_NAME",
    "make_demo_scan",
    "simulate_scan",
]

GENERATOR_NAME = "ptychopinn_core.simulation"
DEFAULT_NPHOTONS = 1e9
# Positions per chunk: 1024 patches of 64 x 64 in complex128 is 64 MiB of work space.
DEFAULT_CHUNK_SIZE = 1024
# Default raster jitter of make_demo_scan, as a fraction of the step: real raster
# scans land off the nominal grid, and sub-pixel positions exercise the bilinear rule.
DEFAULT_JITTER_FRACTION = 0.1


def _seed_for_meta(seed: Any) -> int | None:
    """The seed as JSON: an int, or None for generators that cannot be written down."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    return None


def _check_inputs(
    obj, probe, positions_xy, nphotons
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    obj = np.asarray(obj)
    if obj.ndim != 2 or obj.dtype.kind not in "fciu":
        raise ValueError(
            f"invalid object: expected a numeric (H, W) array, received obj.shape={obj.shape} "
            f"dtype {obj.dtype}"
        )
    if not np.all(np.isfinite(obj)):
        raise ValueError("invalid object: non-finite values in obj")
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1] or probe.dtype.kind not in "fciu":
        raise ValueError(
            f"invalid probe: expected a numeric (N, N) array, received probe.shape={probe.shape}"
        )
    if not np.all(np.isfinite(probe)):
        raise ValueError("invalid probe: non-finite values in probe")
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    if positions_xy.ndim != 2 or positions_xy.shape[1] != 2 or positions_xy.shape[0] < 1:
        raise ValueError(
            f"invalid positions: expected (M, 2) (x, y) pixels with M >= 1, "
            f"received positions_xy.shape={positions_xy.shape}"
        )
    if not np.all(np.isfinite(positions_xy)):
        raise ValueError("invalid positions: non-finite values in positions_xy")
    size = probe.shape[0]
    (x_min, x_max), (y_min, y_max) = valid_position_range(obj.shape, size)
    outside = (
        (positions_xy[:, 0] < x_min)
        | (positions_xy[:, 0] > x_max)
        | (positions_xy[:, 1] < y_min)
        | (positions_xy[:, 1] > y_max)
    )
    if np.any(outside):
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"invalid positions: {int(outside.sum())} patches leave the object; expected "
            f"{x_min} <= x <= {x_max} and {y_min} <= y <= {y_max} for obj.shape={obj.shape} "
            f"and N={size}, "
            f"received positions_xy[{first}]={tuple(positions_xy[first])}"
        )
    nphotons = float(nphotons)
    if not (math.isfinite(nphotons) and nphotons > 0):
        raise ValueError(
            f"invalid nphotons: expected a positive finite number, received nphotons={nphotons}"
        )
    return obj.astype(np.complex64), probe.astype(np.complex64), positions_xy, nphotons


def simulate_scan(
    obj: np.ndarray,
    probe: np.ndarray,
    positions_xy: np.ndarray,
    nphotons: float = DEFAULT_NPHOTONS,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
    meta: Mapping[str, Any] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ScanData:
    """Simulate the measured diffraction of an object scanned by a probe.

    Parameters
    ----------
    obj : ndarray, complex, shape (H, W)
        Object transmission ``O``; stored as ``objectGuess`` (complex64).
    probe : ndarray, complex, shape (N, N)
        Probe ``P``; stored as ``probeGuess`` (complex64).
    positions_xy : ndarray, float, shape (M, 2)
        ``(x, y)`` probe centres in object pixels; every N x N patch must lie on the
        object (see :func:`~ptychopinn_core.simulation.positions.valid_position_range`).
    nphotons : float
        Mean expected total count per pattern (> 0).
    seed : int, SeedSequence or Generator
        Seed of the Poisson draws.
    meta : mapping, optional
        Extra provenance, merged over the defaults (keys given here win), e.g.
        ``object_kind``. Must be JSON-serialisable.
    chunk_size : int
        Positions processed at once (memory, not results, depends on it).

    Returns
    -------
    ScanData
        ``diffraction`` float32 (M, N, N) ``= sqrt(counts)``; ``xcoords``/``ycoords``
        float64 (M,); ``probe`` complex64 (N, N); ``object`` complex64 (H, W);
        ``patches`` (``Y``) complex64 (M, N, N); ``meta`` with ``generator``,
        ``core_version``, ``created_utc``, ``seed``, ``nphotons``,
        ``measurement="amplitude"``, ``intensity_scale`` (the ``scale`` above),
        ``mean_counts_per_pattern`` (realised) and ``object_kind``/``probe_kind``/
        ``positions_kind`` (``"array"`` unless ``meta`` says otherwise).
    """
    from ptychopinn_core import __version__

    obj, probe, positions_xy, nphotons = _check_inputs(obj, probe, positions_xy, nphotons)
    if chunk_size < 1:
        raise ValueError(f"invalid chunk_size: expected >= 1, received chunk_size={chunk_size}")
    n_positions, size = positions_xy.shape[0], probe.shape[0]
    chunks = [
        slice(start, min(start + chunk_size, n_positions))
        for start in range(0, n_positions, chunk_size)
    ]

    patches = np.empty((n_positions, size, size), dtype=np.complex64)
    energy = np.empty(n_positions, dtype=np.float64)
    probe_intensity = np.abs(probe.astype(np.complex128)) ** 2
    for chunk in chunks:
        patches[chunk] = extract_patches(obj, positions_xy[chunk], size)
        # Parseval: sum |F|^2 == sum |Y P|^2 for the unitary far field.
        patch_intensity = np.abs(patches[chunk].astype(np.complex128)) ** 2
        energy[chunk] = np.einsum("mhw,hw->m", patch_intensity, probe_intensity)
    mean_energy = float(energy.mean())
    if not mean_energy > 0:
        raise ValueError(
            "cannot simulate: the exit waves carry no energy (object or probe is zero on the scan)"
        )
    scale = math.sqrt(nphotons / mean_energy)

    rng = np.random.default_rng(seed)
    diffraction = np.empty((n_positions, size, size), dtype=np.float32)
    total_counts = 0
    probe128 = probe.astype(np.complex128)
    for chunk in chunks:
        wave = far_field(illuminate(patches[chunk].astype(np.complex128), probe128))
        counts = rng.poisson((scale * np.abs(wave)) ** 2)
        total_counts += int(counts.sum())
        diffraction[chunk] = np.sqrt(counts)

    record: dict[str, Any] = {
        "generator": GENERATOR_NAME,
        "core_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": _seed_for_meta(seed),
        keys.META_NPHOTONS: nphotons,
        keys.META_MEASUREMENT: keys.MEASUREMENT_AMPLITUDE,
        "intensity_scale": scale,
        "mean_counts_per_pattern": total_counts / n_positions,
        "object_kind": "array",
        "probe_kind": "array",
        "positions_kind": "array",
    }
    record.update(meta or {})
    return ScanData(
        diffraction=diffraction,
        xcoords=positions_xy[:, 0].copy(),
        ycoords=positions_xy[:, 1].copy(),
        probe=probe,
        object=obj,
        patches=patches,
        meta=record,
    )


def make_demo_scan(
    n_positions: int,
    size: int = 64,
    object_kind: str = "lines",
    nphotons: float = DEFAULT_NPHOTONS,
    seed: int = 0,
    *,
    positions_kind: str = "raster",
    step_px: float | None = None,
    jitter_px: float | None = None,
    probe: np.ndarray | None = None,
    probe_kind: str = "disk",
    defocus_waves: float | None = None,
    amplitude_image: str = "camera",
    phase_image: str = "astronaut",
    meta: Mapping[str, Any] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ScanData:
    """Build object, probe and positions, then :func:`simulate_scan` them.

    The object is the smallest one that holds the raster of ``n_positions`` at
    ``step_px`` with its jitter and full patches
    (:func:`~ptychopinn_core.simulation.positions.object_shape_for_scan`), so the scan
    covers it; random positions are drawn over the same object. One ``seed`` drives
    everything through independent :class:`numpy.random.SeedSequence` children
    (object, positions, counts).

    Parameters
    ----------
    n_positions : int
        M.
    size : int
        Pattern side N (default 64).
    object_kind : {"lines", "image"}
        :func:`~ptychopinn_core.simulation.objects.lines_object` or
        :func:`~ptychopinn_core.simulation.objects.image_object`.
    nphotons : float
        Mean total count per pattern (default 1e9).
    seed : int
        Master seed.
    positions_kind : {"raster", "random"}
    step_px : float, optional
        Raster step; default ``3 N / 32``
        (:func:`~ptychopinn_core.simulation.positions.default_step_px`).
    jitter_px : float, optional
        Raster jitter half-width; default ``0.1 * step_px``. Ignored for random positions.
    probe : ndarray, complex, shape (N, N), optional
        Probe to use instead of one of ``probe_kind`` (``meta["probe_kind"]`` is then
        ``"array"`` unless ``meta`` says otherwise).
    probe_kind : {"disk", "focused", "zoneplate", "velociprobe"}
        Probe built when ``probe`` is None
        (:func:`~ptychopinn_core.simulation.probe.make_probe`).
    defocus_waves : float, optional
        Defocus of the ``focused`` or ``zoneplate`` probe (default: a footprint of radius
        ``11 N / 64`` or ``12 N / 64``).
    amplitude_image, phase_image : str
        Sample pictures for ``object_kind="image"``.
    meta : mapping, optional
        Extra provenance merged into the scan's ``meta``.
    chunk_size : int
        Positions per chunk.

    Returns
    -------
    ScanData
        As :func:`simulate_scan`, with ``meta`` also holding ``object_kind``,
        ``probe_kind`` (with a focused or zone-plate probe's ``probe_*`` parameters),
        ``positions_kind``, ``step_px``, ``jitter_px`` and the images.
    """
    if object_kind not in OBJECT_KINDS:
        raise ValueError(
            f"invalid object_kind: expected one of {OBJECT_KINDS}, "
            f"received object_kind={object_kind!r}"
        )
    if positions_kind not in POSITION_KINDS:
        raise ValueError(
            f"invalid positions_kind: expected one of {POSITION_KINDS}, "
            f"received positions_kind={positions_kind!r}"
        )
    if probe is None:
        probe_array, probe_record = make_probe(probe_kind, size, defocus_waves=defocus_waves)
    else:
        if probe_kind != "disk" or defocus_waves is not None:
            raise ValueError(
                f"invalid probe arguments: give a probe array or a probe_kind ({PROBE_KINDS}), "
                f"not both (received probe_kind={probe_kind!r}, defocus_waves={defocus_waves})"
            )
        probe_array, probe_record = np.asarray(probe), {"probe_kind": "array"}
        if probe_array.shape != (size, size):
            raise ValueError(
                f"invalid probe shape: expected ({size}, {size}) for size={size}, "
                f"received probe.shape={probe_array.shape}"
            )
    step = float(default_step_px(size) if step_px is None else step_px)
    if positions_kind == "random":
        jitter = 0.0
    else:  # round: 0.1 * 6 px is recorded as 0.6, not 0.6000000000000001
        jitter = round(DEFAULT_JITTER_FRACTION * step, 9) if jitter_px is None else float(jitter_px)
    object_shape = object_shape_for_scan(n_positions, size, step, jitter)
    object_seed, positions_seed, counts_seed = np.random.SeedSequence(seed).spawn(3)

    record: dict[str, Any] = {"object_kind": object_kind, **probe_record, "positions_kind": positions_kind}
    if object_kind == "lines":
        obj = lines_object(object_shape, object_seed)
    else:
        obj = image_object(object_shape, amplitude_image, phase_image)
        record.update(amplitude_image=amplitude_image, phase_image=phase_image)
    if positions_kind == "raster":
        positions = raster_positions(n_positions, object_shape, size, step, jitter, positions_seed)
        record.update(step_px=step, jitter_px=jitter)
    else:
        positions = random_positions(n_positions, object_shape, size, positions_seed)
    record.update(meta or {})
    record["seed"] = int(seed)
    return simulate_scan(
        obj, probe_array, positions, nphotons, counts_seed, record, chunk_size=chunk_size
    )
