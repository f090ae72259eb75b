"""Simulated scans for demos, tests and benchmarks (docs/physics.md §10).

Objects (:mod:`.objects`), probes (:mod:`.probe`), scan positions (:mod:`.positions`)
and the Poisson far-field simulator (:mod:`.scan`). Everything is seeded.

Example
-------
>>> from ptychopinn_core.simulation import make_demo_scan
>>> scan = make_demo_scan(n_positions=100, size=32, nphotons=1e6, seed=1)
>>> scan.diffraction.shape, scan.object.dtype.name
((100, 32, 32), 'complex64')
"""

from ptychopinn_core.simulation.objects import (
    OBJECT_KINDS,
    SAMPLE_IMAGES,
    image_object,
    lines_object,
)
from ptychopinn_core.simulation.positions import (
    POSITION_KINDS,
    default_step_px,
    object_shape_for_scan,
    random_positions,
    raster_positions,
    valid_position_range,
)
from ptychopinn_core.simulation.probe import (
    PROBE_KINDS,
    default_probe,
    focused_probe,
    load_probe,
    make_probe,
    zoneplate_probe,
)
from ptychopinn_core.simulation.scan import make_demo_scan, simulate_scan

__all__ = [
    "OBJECT_KINDS",
    "POSITION_KINDS",
    "PROBE_KINDS",
    "SAMPLE_IMAGES",
    "default_probe",
    "default_step_px",
    "focused_probe",
    "image_object",
    "lines_object",
    "load_probe",
    "make_demo_scan",
    "make_probe",
    "object_shape_for_scan",
    "random_positions",
    "raster_positions",
    "simulate_scan",
    "valid_position_range",
    "zoneplate_probe",
]
