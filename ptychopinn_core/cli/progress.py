"""Progress display for long work: rich bars fed by backend ProgressEvents."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ptychopinn_core.progress import ProgressEvent

__all__ = ["progress_display"]


@contextlib.contextmanager
def progress_display(
    description: str, *, total: int | None = None, quiet: bool = False
) -> Iterator[Callable[[ProgressEvent], None]]:
    """Yield a callback that shows epochs and batches (with ETA) on stderr.

    ``total``: the epochs (iterations, passes) planned, shown from the start instead of
    "0/?" while a framework starts up; the events' own count wins once they arrive.
    ``quiet`` yields a callback that does nothing. Bars go to stderr so stdout stays
    clean for results and JSON.
    """
    if quiet:
        yield lambda event: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bars:
        epochs = bars.add_task(description, total=total, metrics="")
        batches = bars.add_task("  batches", total=None, metrics="", visible=False)

        def show(event: ProgressEvent) -> None:
            metrics = "  ".join(f"{key} {value:.4g}" for key, value in event.metrics.items())
            if event.stage == "epoch":
                bars.update(epochs, total=event.n_epochs, completed=event.epoch + 1, metrics=metrics)
            else:
                bars.update(epochs, total=event.n_epochs)  # known from the first step on, not "?"
                bars.update(
                    batches,
                    total=event.n_steps,
                    completed=event.step,
                    metrics=metrics,
                    visible=True,
                )

        yield show
