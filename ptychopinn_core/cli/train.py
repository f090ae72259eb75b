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
@click.option("--init-from", "init_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from this bundle's weights instead of fresh ones (same network: e.g. a gridsize-1 "
                   "model for a gridsize-2 one with the shared group network).")
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
    init_path: Path | None,
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
      ptychopinn train --backend tf --train scan.npz --out g2.zip --gridsize 2 \\
          --init-from g1.zip
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
    start_weights = None if init_path is None else _start_weights(init_path, workflow.config_for_scan(config, scan))
    quiet = is_quiet()
    with progress_display(f"training ({backend.name})", total=config.training.epochs, quiet=quiet) as show:
        bundle = workflow.train(scan, config, backend, progress=show, start_weights=start_weights,
                                start_source=str(init_path))
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


def _start_weights(path: Path, config) -> dict:
    """The bundle's weights, checked against the model to train before any training starts."""
    from ptychopinn_core.model.formats import read_model
    from ptychopinn_core.model.parameters import parameter_specs, validate_weights

    weights = read_model(path).weights
    try:
        return validate_weights(weights, parameter_specs(config.model), source=str(path))
    except ValueError as error:
        model = config.model
        raise click.ClickException(
            f"{error} (--init-from needs the network of the model to train: pattern_size={model.pattern_size}, "
            f"architecture={model.architecture}, n_filters_scale={model.n_filters_scale}, "
            f"gridsize={model.gridsize} with group_network={model.group_network})"
        ) from None


def _is_primary_process() -> bool:
    """False in the extra processes of a distributed run (Lightning DDP, SLURM tasks)."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
