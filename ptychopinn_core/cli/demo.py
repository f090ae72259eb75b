"""``ptychopinn demo``: the whole story on an embedded default, with a report."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from ptychopinn_core.cli.options import is_quiet
from ptychopinn_core.cli.progress import progress_display

__all__ = ["demo_command"]


@click.command("demo")
@click.option("--out", "out_dir", default="demo-out", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for the report and its files.")
@click.option("--quick", is_flag=True, help="A small run (under a minute) that proves the pipeline.")
def demo_command(out_dir: Path, quick: bool) -> None:
    """Simulate a scan, train every installed backend, reconstruct an unseen scan,
    evaluate against the truth and write OUT/report.md with figures. A backend that runs
    trained models only (ONNX) runs the first trained model.

    Nothing is downloaded: the scans come from the built-in simulator. The full run
    trains at gridsize 2, about 3 minutes per backend on 2 CPU cores (8 in all).

    \b
    Examples:
      ptychopinn demo
      ptychopinn demo --quick --out /tmp/demo
    """
    from ptychopinn_core.demo import DEFAULT, QUICK, run_demo

    quiet = is_quiet()
    say = (lambda text: None) if quiet else (lambda text: click.echo(text, err=True))
    report = run_demo(
        out_dir,
        QUICK if quick else DEFAULT,
        progress=partial(progress_display, quiet=quiet),
        say=say,
    )
    iterations = report["config"]["refine"]["iterations"]
    header = f"{'reconstruction':<28} {'amp SSIM':>9} {'phase SSIM':>11} {'amp FRC50':>10} {'phase FRC50':>12} {'seconds':>8}"
    click.echo(header)
    for name, result in report["results"].items():
        if "metrics" not in result:
            click.echo(f"{name:<28} {result['status']}: {result['reason']}")
            continue
        rows = [(name if "refined" not in result else f"{name} network", result["metrics"],
                 result.get("timings", {}).get("reconstruct_s"))]
        for start, label in (("refined", f"{name} network + {iterations}"), ("flat", f"{name} flat + {iterations}")):
            if start in result:
                rows.append((label, result[start]["metrics"], result[start]["refine_s"]))
        for label, metrics, seconds in rows:
            amp, phase = metrics["amplitude"], metrics["phase"]
            shown = f"{seconds:>8.1f}" if seconds is not None else f"{'':>8}"
            click.echo(f"{label:<28} {amp['ssim']:>9.3f} {phase['ssim']:>11.3f} {amp['frc50']:>10.3f} "
                       f"{phase['frc50']:>12.3f} {shown}")
    click.echo(f"report: {out_dir / 'report.md'}")
