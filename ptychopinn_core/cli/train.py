"""``ptychopinn train``: train a model with one backend and write a bundle."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ptychopinn_core.backends import BackendRegistry
from ptychopinn_core.cli.options import config_options, is_quiet, resolve_config
from ptychopinn_core.cli.progress import progress_display
from ptychopinn_core.data import read_scan
from ptychopinn_core.model.bundle import write_bundle

__all__ = ["train_command"]


@click.command("train")
@click.option("--backend", "backend_name", required=True, help="Backend name: tensorflow (tf), pytorch (torch), ...")
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Training scan (canonical NPZ).")
@click.option("--test", "test_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Scan to reconstruct and evaluate after training (needs objectGuess).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model bundle to write (.zip).")
@click.option("--epochs", type=int, help="training.epochs")
@click.option("--batch-size", type=int, help="training.batch_size")
@click.option("--gridsize", type=int, help="model.gridsize (1: single patterns, 2: groups of 4)")
@click.option("--n-filters-scale", type=int, help="model.n_filters_scale")
@click.option("--mode", type=click.Choice(["pinn", "supervised"]), help="training.mode")
@click.option("--seed", type=int, help="training.seed")
@config_options
def train_command(
    backend_name: str,
    train_path: Path,
    test_path: Path | None,
    out_path: Path,
    epochs: int | None,
    batch_size: int | None,
    gridsize: int | None,
    n_filters_scale: int | None,
    mode: str | None,
    seed: int | None,
    config_path: Path | None,
    assignments: tuple[str, ...],
) -> None:
    """Train a PINN (or supervised) model and write a backend-neutral bundle.

    The bundle holds the full configuration, canonical weights, probe, scales and
    per-epoch losses; any installed backend can load it (`ptychopinn infer`).

    \b
    Examples:
      ptychopinn train --backend torch --train scan.npz --out model.zip --epochs 5
      ptychopinn train --backend tf --train scan.npz --test other.npz --out model.zip \\
          --gridsize 2 --set training.learning_rate=5e-4
    """
    from ptychopinn_core import workflow

    config = resolve_config(
        config_path,
        assignments,
        {
            "training.epochs": epochs,
            "training.batch_size": batch_size,
            "model.gridsize": gridsize,
            "model.n_filters_scale": n_filters_scale,
            "training.mode": mode,
            "training.seed": seed,
        },
    )
    backend = BackendRegistry.discover().get(backend_name)
    scan = read_scan(train_path, measurement=config.data.measurement)
    quiet = is_quiet()
    with progress_display(f"training ({backend.name})", total=config.training.epochs, quiet=quiet) as show:
        bundle = workflow.train(scan, config, backend, progress=show)
    if not _is_primary_process():
        return  # distributed training: every rank holds the same model; rank 0 writes it
    write_bundle(out_path, bundle)
    if not quiet:
        summary = bundle.history.summary()
        click.echo(f"wrote {out_path} ({backend.name}, {summary})")
    if test_path is not None:
        from ptychopinn_core.cli.evaluate import print_metrics
        from ptychopinn_core.evaluation.report import evaluate, truth_object

        test_scan = read_scan(test_path, measurement=config.data.measurement)
        truth = truth_object(test_scan, str(test_path))
        with progress_display("reconstructing test scan", total=1, quiet=quiet) as show:
            recon = workflow.reconstruct(bundle, test_scan, backend, progress=show)
        print_metrics(evaluate(recon, truth, test_scan.positions_px), f"{test_path.name} after training")


def _is_primary_process() -> bool:
    """False in the extra processes of a distributed run (Lightning DDP, SLURM tasks)."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
