"""Probes for simulation: an idealised disk, defocused focused beams, a beamline's, files.

Four kinds are built here (:data:`PROBE_KINDS`, :func:`make_probe`):

- ``disk``: the idealised probe of the first benchmarks (below), nearly flat in phase.
- ``focused``: an aperture (a KB mirror's) focused and then defocused to illuminate a
  larger spot, as ptychography experiments do (:func:`focused_probe`). Its curved phase
  front separates an object from its twin image.
- ``zoneplate``: a Fresnel zone plate's focus, defocused (:func:`zoneplate_probe`): an
  annular pupil (the central stop) of higher numerical aperture, so a ring-shaped spot
  with a strongly curved phase front.
- ``velociprobe``: the probe model shipped with the APS Velociprobe Siemens-star scan
  (:func:`velociprobe_probe`): a zone-plate focus with the irregular amplitude and phase
  of a real beam. The three parametric probes are rotationally symmetric and gave the
  network the same quality at gridsize 1; this one gave it about +0.1 SSIM
  (docs/benchmarks.md, "Network quality" §10), as the published experimental probe
  did over an idealised one: an irregular beam makes each pattern say more.

The ``disk`` probe is a *smoothed thresholded Gaussian*: the disk where a Gaussian
exceeds ``exp(-1/2)`` (its 1-sigma contour, radius ``R = 7 N / 32``), blurred by a
Gaussian of sigma ``N / 64`` so the edge is soft (no ringing in the far field), with a
weak quadratic phase (a slightly defocused beam). With ``R + 2 sigma = N / 4`` the
illuminated area fills the central ``N/2 x N/2`` window of the patch, which is where
the network predicts content (docs/physics.md §4), and the optional probe mask of
radius ``N / 4`` (physics §5) cuts only the last few percent of the edge.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_PROBE_CURVATURE_RAD",
    "PROBE_KINDS",
    "PROBE_NPZ_KEYS",
    "default_probe",
    "default_probe_radius_px",
    "focused_probe",
    "focused_probe_parameters",
    "load_probe",
    "make_probe",
    "velociprobe_probe",
    "zoneplate_probe",
    "zoneplate_probe_parameters",
]

# Phase at the disk edge of the default probe's quadratic phase, radians: enough to
# make the probe not purely real (breaks the twin-image ambiguity), small enough that
# the far field stays compact.
DEFAULT_PROBE_CURVATURE_RAD = 0.5
# NPZ keys searched, in order, by load_probe.
PROBE_NPZ_KEYS = ("probeGuess", "probe")
#: Probes make_probe builds (a probe from a file is loaded with load_probe).
PROBE_KINDS = ("disk", "focused", "zoneplate", "velociprobe")
#: Parameters each kind of :func:`make_probe` takes.
_KIND_PARAMETERS = {
    "disk": (),
    "focused": ("defocus_waves", "pupil_radius_px"),
    "zoneplate": ("defocus_waves", "pupil_radius_px", "central_stop"),
    "velociprobe": (),
}
#: The Velociprobe probe model (128 x 128, complex64) and its provenance, in package data.
VELOCIPROBE_FILE = "velociprobe_probe.npy"
VELOCIPROBE_SOURCE = (
    "probe of tike's tests/data/siemens-star-small.npz.bz2 (APS Velociprobe; BSD licence: "
    "ptychopinn_core/simulation/data/LICENSE-velociprobe-probe), Fourier-resampled from 128 to N"
)


def default_probe_radius_px(size: int) -> float:
    """Radius ``R = 7 N / 32`` of the default probe's disk, in pixels (14 px for N = 64)."""
    return 7.0 * size / 32.0


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"invalid probe size: expected an int, received size={size!r}")
    if size < 4:
        raise ValueError(f"invalid probe size: expected size >= 4, received size={size}")
    return int(size)


def default_probe(size: int, *, curvature_rad: float = DEFAULT_PROBE_CURVATURE_RAD) -> np.ndarray:
    """The default disk-like probe, centred on pixel ``(N//2, N//2)``.

    ::

        r      = sqrt((row - N//2)**2 + (col - N//2)**2)
        disk   = [exp(-r**2 / (2 R**2)) >= exp(-1/2)] = [r <= R],   R = 7 N / 32
        |P|    = G_{N/64} * disk, scaled to a peak of 1
        arg P  = curvature_rad * (r / R)**2

    Parameters
    ----------
    size : int
        Probe side N in pixels (>= 4).
    curvature_rad : float
        Phase at the disk edge, radians (default 0.5).

    Returns
    -------
    ndarray, complex64, shape (N, N)
        Peak amplitude 1; practically zero outside radius ``N / 4``.
    """
    size = _check_size(size)
    radius_px = default_probe_radius_px(size)
    offsets = np.arange(size) - size // 2
    radius_sq = offsets[:, None] ** 2 + offsets[None, :] ** 2
    gaussian = np.exp(-radius_sq / (2.0 * radius_px**2))
    disk = (gaussian >= np.exp(-0.5)).astype(np.float64)
    amplitude = ndimage.gaussian_filter(disk, sigma=size / 64.0, mode="constant")
    amplitude /= amplitude.max()
    phase = curvature_rad * radius_sq / radius_px**2
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def focused_probe_parameters(
    size: int, defocus_waves: float | None = None, pupil_radius_px: float | None = None
) -> dict[str, float]:
    """The focused probe's parameters with their defaults filled in (what ``meta`` records).

    Defaults scale with ``N``: pupil radius ``N / 4`` frequency pixels, pupil edge
    softness ``1.5 N / 64``, and the defocus whose geometric footprint radius
    ``R = 2 N W / r_p`` (the ray from the pupil edge, see :func:`focused_probe`) is
    ``11 N / 64`` (11 px at ``N = 64``; 1.375 waves). Measured on ``N = 64``: a footprint of
    10, 12 or 14 px leaves 0.2, 0.7 or 1.7 % of the probe's energy outside the central
    ``N/2 x N/2`` window, where the network cannot put any object (docs/physics.md §3);
    11 px keeps that below 0.5 % with an RMS radius of 7.5 px (the disk probe's: 9.5 px).
    A hard-edged pupil leaves 3-7 % outside, hence the soft edge.
    """
    size = _check_size(size)
    return _pupil_parameters(size, size / 4.0, 11.0 * size / 64.0, defocus_waves, pupil_radius_px)


def _pupil_parameters(
    size: int, radius: float, footprint: float, defocus_waves: float | None, pupil_radius_px: float | None
) -> dict[str, float]:
    """A defocused pupil's parameters: ``radius`` and the defocus giving ``footprint`` unless given."""
    if pupil_radius_px is not None:
        radius = float(pupil_radius_px)
    if not (0 < radius <= size / 2):
        raise ValueError(
            f"invalid pupil_radius_px: expected 0 < pupil_radius_px <= N/2 = {size / 2:g}, "
            f"received pupil_radius_px={pupil_radius_px}"
        )
    defocus = footprint * radius / (2.0 * size) if defocus_waves is None else float(defocus_waves)
    if not np.isfinite(defocus):
        raise ValueError(f"invalid defocus_waves: expected a finite number, received {defocus_waves}")
    return {
        "defocus_waves": defocus,
        "pupil_radius_px": radius,
        "pupil_softness_px": 1.5 * size / 64.0,
        "footprint_radius_px": 2.0 * size * abs(defocus) / radius,
    }


def focused_probe(
    size: int, *, defocus_waves: float | None = None, pupil_radius_px: float | None = None
) -> np.ndarray:
    """A defocused focused beam: a soft-edged circular pupil with a defocus aberration.

    ::

        k       = frequency pixel offset from the centre, |k| in pixels of the N x N grid
        pupil   = G_s * [|k| <= r_p]                        soft-edged aperture
        Pupil   = pupil * exp(2 pi i W (|k| / r_p)**2)       defocus: W waves at the edge
        P       = fftshift(ifft2(ifftshift(Pupil))), scaled to a peak of 1

    The far field of the bare probe is the pupil: every pattern holds its bright-field
    disk of radius ``r_p``, as measured patterns of a focused beam do. The quadratic pupil
    phase moves the ray of frequency ``k`` to ``x = 2 N W k / r_p**2`` pixels from the axis,
    so the beam's geometric footprint has radius ``R = 2 N W / r_p``, edged by Fresnel
    fringes, with a curved phase front; ``W = 0`` is the in-focus Airy spot (a few pixels
    wide) and the sign of ``W`` chooses the side of the focus. Defaults:
    :func:`focused_probe_parameters`.

    Parameters
    ----------
    size : int
        Probe side N in pixels (>= 4).
    defocus_waves : float, optional
        Defocus aberration ``W`` (the Seidel ``W020``): the pupil phase at its edge, in waves.
    pupil_radius_px : float, optional
        Pupil radius ``r_p`` in frequency pixels (``<= N/2``): the numerical aperture.

    Returns
    -------
    ndarray, complex64, shape (N, N)
        Centred on pixel ``(N//2, N//2)``, peak amplitude 1.
    """
    parameters = focused_probe_parameters(size, defocus_waves, pupil_radius_px)
    return _defocused_pupil(int(size), parameters["pupil_radius_px"], 0.0, parameters["pupil_softness_px"],
                            parameters["defocus_waves"])


def _defocused_pupil(size: int, radius: float, inner: float, softness: float, defocus: float) -> np.ndarray:
    """The probe of a soft annular pupil ``inner <= |k| <= radius`` with ``defocus`` waves at its edge."""
    offsets = np.arange(size) - size // 2
    frequency = np.sqrt(offsets[:, None] ** 2 + offsets[None, :] ** 2)
    aperture = (frequency <= radius) & (frequency >= inner)
    pupil = ndimage.gaussian_filter(aperture.astype(np.float64), softness, mode="constant")
    pupil = pupil * np.exp(2j * np.pi * defocus * (frequency / radius) ** 2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    return (probe / np.abs(probe).max()).astype(np.complex64)


def zoneplate_probe_parameters(
    size: int,
    defocus_waves: float | None = None,
    pupil_radius_px: float | None = None,
    central_stop: float | None = None,
) -> dict[str, float]:
    """The zone-plate probe's parameters with their defaults filled in (what ``meta`` records).

    Defaults scale with ``N``, after the Siemens star scan's probe model resampled to
    ``N = 64`` (its bright-field ring runs from about 10 to 24 frequency pixels): pupil
    radius ``3 N / 8``, central stop ``0.45`` of it, edge softness ``1.5 N / 64``, and the
    defocus whose geometric footprint radius ``R = 2 N W / r_p`` is ``12 N / 64`` (2.25
    waves at ``N = 64``), which keeps 99.4 % of the energy inside the central
    ``N/2 x N/2`` window where the network predicts the object.
    """
    size = _check_size(size)
    parameters = _pupil_parameters(size, 3.0 * size / 8.0, 12.0 * size / 64.0, defocus_waves, pupil_radius_px)
    stop = 0.45 if central_stop is None else float(central_stop)
    if not (0 <= stop < 1):
        raise ValueError(f"invalid central_stop: expected 0 <= central_stop < 1, received central_stop={central_stop}")
    return {**parameters, "central_stop": stop}


def zoneplate_probe(
    size: int,
    *,
    defocus_waves: float | None = None,
    pupil_radius_px: float | None = None,
    central_stop: float | None = None,
) -> np.ndarray:
    """A Fresnel zone plate's focus, defocused: :func:`focused_probe` with a central stop.

    ::

        pupil = G_s * [c r_p <= |k| <= r_p]     annulus: the zone plate inside its central stop
        Pupil = pupil * exp(2 pi i W (|k| / r_p)**2)

    The far field of the bare probe is a bright-field ring; in real space the defocused
    beam is a ring of radius about ``R = 2 N W / r_p`` with a dark centre, and with the
    larger aperture its phase wraps several times across the beam. Defaults:
    :func:`zoneplate_probe_parameters`.

    Parameters
    ----------
    size : int
        Probe side N in pixels (>= 4).
    defocus_waves : float, optional
        Defocus ``W``: the pupil phase at its outer edge, in waves.
    pupil_radius_px : float, optional
        Outer pupil radius ``r_p`` in frequency pixels (``<= N/2``).
    central_stop : float, optional
        Inner radius of the annulus as a fraction ``c`` of ``r_p`` (``0 <= c < 1``).

    Returns
    -------
    ndarray, complex64, shape (N, N)
        Centred on pixel ``(N//2, N//2)``, peak amplitude 1.
    """
    parameters = zoneplate_probe_parameters(size, defocus_waves, pupil_radius_px, central_stop)
    radius = parameters["pupil_radius_px"]
    return _defocused_pupil(int(size), radius, parameters["central_stop"] * radius,
                            parameters["pupil_softness_px"], parameters["defocus_waves"])


def velociprobe_probe(size: int) -> np.ndarray:
    """The Velociprobe Siemens-star scan's probe model, resampled to ``size``.

    The 128 x 128 model (a zone-plate focus, defocused; upstream a guess for its
    reconstruction, not a reconstruction) is band-limit resampled: its centred spectrum
    is cropped (N < 128) or zero-padded (N > 128) to N x N, so the beam keeps the same
    share of the array at any N (97 % of its energy inside the central N/2 x N/2 window,
    RMS radius 0.17 N) with pixels of 128/N times the original's.

    Returns
    -------
    ndarray, complex64, shape (N, N)
        Centred, peak amplitude 1.
    """
    size = _check_size(size)
    with resources.files("ptychopinn_core.simulation").joinpath("data", VELOCIPROBE_FILE).open("rb") as handle:
        model = np.load(handle, allow_pickle=False).astype(np.complex128)
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(model)))
    resampled = np.zeros((size, size), dtype=np.complex128)
    source, target = model.shape[0], size
    keep = min(source, target)
    src = slice(source // 2 - keep // 2, source // 2 - keep // 2 + keep)
    dst = slice(target // 2 - keep // 2, target // 2 - keep // 2 + keep)
    resampled[dst, dst] = spectrum[src, src]
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(resampled)))
    return (probe / np.abs(probe).max()).astype(np.complex64)


def make_probe(kind: str, size: int, **parameters: float | None) -> tuple[np.ndarray, dict[str, object]]:
    """Build a probe of one of :data:`PROBE_KINDS` and what ``meta`` records of it.

    Parameters
    ----------
    kind : {"disk", "focused", "zoneplate", "velociprobe"}
    size : int
        N.
    **parameters
        ``focused``: ``defocus_waves``, ``pupil_radius_px``; ``zoneplate``: those and
        ``central_stop`` (None: the default).

    Returns
    -------
    probe : ndarray, complex64, shape (N, N)
    record : dict
        ``probe_kind`` and, for ``focused`` and ``zoneplate``, every parameter used
        (:func:`focused_probe_parameters`, :func:`zoneplate_probe_parameters`) as
        ``probe_<name>``; for ``velociprobe``, ``probe_source``.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"invalid probe kind: expected one of {PROBE_KINDS}, received probe_kind={kind!r}")
    given = {name: value for name, value in parameters.items() if value is not None}
    accepted = _KIND_PARAMETERS[kind]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        expected = ", ".join(accepted) if accepted else "none (only focused and zoneplate probes take parameters)"
        raise ValueError(f"invalid {kind} probe parameters {unknown}: expected {expected}")
    if kind == "disk":
        return default_probe(size), {"probe_kind": "disk"}
    if kind == "velociprobe":
        return velociprobe_probe(size), {"probe_kind": "velociprobe", "probe_source": VELOCIPROBE_SOURCE}
    if kind == "focused":
        record = focused_probe_parameters(size, **given)
        probe = focused_probe(size, defocus_waves=record["defocus_waves"], pupil_radius_px=record["pupil_radius_px"])
    else:
        record = zoneplate_probe_parameters(size, **given)
        probe = zoneplate_probe(size, **{name: record[name] for name in accepted})
    return probe, {"probe_kind": kind, **{f"probe_{name}": value for name, value in record.items()}}


def load_probe(path: str | os.PathLike[str], size: int | None = None) -> np.ndarray:
    """Read a probe from ``.npy`` or ``.npz`` (key ``probeGuess`` or ``probe``).

    Parameters
    ----------
    path : path-like
        A ``.npy`` file holding one (N, N) array, or an ``.npz`` with key
        ``probeGuess`` (preferred) or ``probe``. Never unpickled.
    size : int, optional
        Expected side N; a probe of another size is an error (resampling a probe
        would change the pixel size, i.e. the physics).

    Returns
    -------
    ndarray, complex64, shape (N, N)

    Raises
    ------
    OSError
        The file does not exist.
    ValueError
        Not a numpy file, no probe key, pickled data, wrong shape, non-finite or
        all-zero values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probe file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(
            f"cannot read probe from {path}: expected a .npy or .npz file without pickled "
            f"data ({error})"
        ) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            key = next((k for k in PROBE_NPZ_KEYS if k in loaded.files), None)
            if key is None:
                raise ValueError(
                    f"no probe in {path}: expected key {' or '.join(PROBE_NPZ_KEYS)}, "
                    f"found keys {sorted(loaded.files)}"
                )
            try:
                probe = np.asarray(loaded[key])
            except ValueError as error:
                raise ValueError(f"cannot read key {key!r} of {path}: {error}") from None
        where = f"{path}[{key!r}]"
    else:
        probe = np.asarray(loaded)
        where = str(path)
    if probe.dtype.kind not in "fci" or probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(
            f"invalid probe: expected a numeric (N, N) array, received shape {probe.shape} "
            f"dtype {probe.dtype} in {where}"
        )
    if size is not None and probe.shape != (size, size):
        raise ValueError(
            f"invalid probe shape: expected ({size}, {size}), received {probe.shape} in {where}"
        )
    if not np.all(np.isfinite(probe)):
        raise ValueError(f"invalid probe: non-finite values in {where}")
    if not np.any(probe):
        raise ValueError(f"invalid probe: all values are zero in {where}")
    return probe.astype(np.complex64)
