"""``ptychopinn simulate``: write a simulated scan as a canonical NPZ with ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ptychopinn_core.cli.options import is_quiet

from ptychopinn_core.simulation.objects import OBJECT_KINDS, SAMPLE_IMAGES
from ptychopinn_core.simulation.positions import POSITION_KINDS
from ptychopinn_core.simulation.probe import PROBE_KINDS

__all__ = ["simulate_command"]


_FILE = click.Path(dir_okay=False, path_type=Path)
_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("simulate")
@click.option(
    "--out", "out_path", required=True, type=_FILE,
    help="Output NPZ file (canonical data contract, with objectGuess and Y).",
)
@click.option(
    "--object", "object_kind", type=click.Choice(OBJECT_KINDS), default="lines",
    show_default=True,
    help="Synthetic object: random smoothed line strokes, or two sample pictures "
    "(amplitude, phase).",
)
@click.option(
    "--n-positions", type=click.IntRange(min=1), default=1000, show_default=True,
    help="Number of scan positions M.",
)
@click.option(
    "--size", type=click.IntRange(min=8), default=None,
    help="Diffraction pattern side N in pixels (even) [default: 64, or the size of --probe].",
)
@click.option(
    "--nphotons", type=click.FloatRange(min=0, min_open=True), default=1e9, show_default=True,
    help="Mean total photon count per pattern (Poisson noise level).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True,
    help="Seed of object, positions and counts: same seed, same file.",
)
@click.option(
    "--gridsize", type=click.IntRange(min=1), default=1, show_default=True,
    help="Intended grouping g (g*g neighbours per group); recorded in meta and checked "
    "against M.",
)
@click.option(
    "--positions", "positions_kind", type=click.Choice(POSITION_KINDS), default="raster",
    show_default=True,
    help="Jittered raster (step 3N/32, jitter 10% of the step) or uniform random positions.",
)
@click.option(
    "--step", "step_px", type=click.FloatRange(min=0, min_open=True), default=None,
    help="Raster step in pixels [default: 3N/32].",
)
@click.option(
    "--jitter", "jitter_px", type=click.FloatRange(min=0), default=None,
    help="Raster jitter half-width in pixels [default: 0.1 * step].",
)
@click.option(
    "--probe", "probe_path", type=_EXISTING_FILE, default=None,
    help="Probe from a .npy or .npz file (key probeGuess or probe), e.g. a real scan's, "
    "instead of --probe-kind.",
)
@click.option(
    "--probe-kind", type=click.Choice(PROBE_KINDS), default="disk", show_default=True,
    help="disk: idealised, nearly flat phase; focused: a defocused soft-edged aperture with a "
    "curved phase front; zoneplate: a defocused zone plate (annular pupil): a ring with a strongly "
    "curved phase front; velociprobe: the APS Velociprobe Siemens-star scan's probe model, an "
    "irregular real beam (resampled to --size).",
)
@click.option(
    "--defocus", "defocus_waves", type=float, default=None,
    help="With --probe-kind focused or zoneplate: defocus at the pupil edge in waves [default: a "
    "footprint of radius 11N/64 (focused), 12N/64 (zoneplate)].",
)
@click.option(
    "--amplitude-image", type=click.Choice(SAMPLE_IMAGES), default="camera", show_default=True,
    help="With --object image: scikit-image sample picture used as amplitude.",
)
@click.option(
    "--phase-image", type=click.Choice(SAMPLE_IMAGES), default="astronaut", show_default=True,
    help="With --object image: scikit-image sample picture used as phase.",
)
@click.option("--compress", is_flag=True, help="Write a compressed NPZ (smaller, slower).")
def simulate_command(
    out_path: Path,
    object_kind: str,
    n_positions: int,
    size: int | None,
    nphotons: float,
    seed: int,
    gridsize: int,
    positions_kind: str,
    step_px: float | None,
    jitter_px: float | None,
    probe_path: Path | None,
    probe_kind: str,
    defocus_waves: float | None,
    amplitude_image: str,
    phase_image: str,
    compress: bool,
) -> None:
    """Simulate a far-field ptychography scan with Poisson noise.

    Writes diffraction amplitudes (sqrt of counts), positions, probe, the
    ground-truth object (objectGuess) and patches (Y), with provenance in meta.

    \b
    Examples:
      ptychopinn simulate --out scan.npz
      ptychopinn simulate --out small.npz --n-positions 200 --size 32 --nphotons 1e6 --seed 3
      ptychopinn simulate --out img.npz --object image --positions random --gridsize 2
      ptychopinn simulate --out focused.npz --probe-kind focused --defocus 2
      ptychopinn simulate --out zp.npz --probe-kind zoneplate
      ptychopinn simulate --out beamline.npz --probe-kind velociprobe
      ptychopinn simulate --out like-star.npz --probe star.npz
    """
    from ptychopinn_core.data import write_scan
    from ptychopinn_core.simulation.probe import load_probe
    from ptychopinn_core.simulation.scan import make_demo_scan

    started = time.perf_counter()
    probe = None
    meta: dict[str, object] = {"gridsize": gridsize}
    ctx = click.get_current_context()
    if defocus_waves is not None and probe_kind not in ("focused", "zoneplate"):
        raise ValueError(
            f"invalid --defocus: only used with --probe-kind focused or zoneplate, received --probe-kind {probe_kind}"
        )
    if probe_path is not None:
        if ctx.get_parameter_source("probe_kind") is click.core.ParameterSource.COMMANDLINE:
            raise ValueError(f"invalid --probe-kind {probe_kind}: --probe {probe_path} gives the probe")
        probe = load_probe(probe_path, size)
        size = probe.shape[0]
        meta.update(probe_kind="file", probe_file=probe_path.name)
    size = 64 if size is None else size
    if size % 2:
        raise ValueError(f"invalid --size: expected an even pattern side, received --size={size}")
    if gridsize > 1 and n_positions < gridsize * gridsize + 1:
        raise ValueError(
            f"invalid --n-positions for --gridsize {gridsize}: grouping needs one seed position "
            f"plus {gridsize * gridsize} neighbours, expected at least {gridsize * gridsize + 1}, "
            f"received --n-positions={n_positions}"
        )
    if object_kind != "image":
        for name in ("amplitude_image", "phase_image"):
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                raise ValueError(
                    f"invalid --{name.replace('_', '-')}: only used with --object image, "
                    f"received --object {object_kind}"
                )
    scan = make_demo_scan(
        n_positions,
        size,
        object_kind,
        nphotons,
        seed,
        positions_kind=positions_kind,
        step_px=step_px,
        jitter_px=jitter_px,
        probe=probe,
        probe_kind=probe_kind if probe is None else "disk",
        defocus_waves=defocus_waves,
        amplitude_image=amplitude_image,
        phase_image=phase_image,
        meta=meta,
    )
    write_scan(out_path, scan, compress=compress)
    if not is_quiet():
        height, width = scan.object.shape
        click.echo(
            f"wrote {out_path}: {scan.n_positions} patterns of {size}x{size}, {object_kind} object "
            f"{height}x{width}, {scan.meta['probe_kind']} probe, {positions_kind} positions, nphotons {nphotons:g} "
            f"(mean counts {scan.meta['mean_counts_per_pattern']:.4g}), seed {seed}, "
            f"gridsize {gridsize}, "
            f"{time.perf_counter() - started:.1f} s"
        )
