"""The run folder (``execution.run_dir``): where a training run keeps its checkpoint and logs.

Layout, the same for every backend::

    run_dir/
        <checkpoint>              the backend's file (its name: the backend's docs)
        logs/version_0/metrics.csv   one folder per (re)start, one row per epoch
        logs/version_1/...

The rules every backend follows are here: when a resume is possible, and the CSV
metrics file (the columns of Lightning's ``CSVLogger``, so the two backends' logs read
alike). Frameworks keep their own writers for their own formats (TensorBoard).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

from ptychopinn_core.config import ExecutionConfig

__all__ = ["LOG_FOLDER", "CsvMetricsLogger", "checkpoint_to_resume", "new_log_version"]

#: Sub-folder of ``run_dir`` holding the metrics loggers' files.
LOG_FOLDER = "logs"
#: Columns of ``metrics.csv``, in order.
CSV_COLUMNS = ("epoch", "learning_rate", "seconds", "step", "train_loss", "val_loss")


def checkpoint_to_resume(execution: ExecutionConfig, checkpoint_name: str) -> Path | None:
    """The checkpoint to continue from, None for a new run; one clear error when there is none.

    Parameters
    ----------
    execution : ExecutionConfig
        ``run_dir`` and ``resume``.
    checkpoint_name : str
        The backend's checkpoint file name in ``run_dir``.
    """
    if not execution.resume:
        return None
    if execution.run_dir is None:
        raise ValueError(
            f"execution.resume=true needs execution.run_dir (the folder holding {checkpoint_name}), received none"
        )
    path = Path(execution.run_dir) / checkpoint_name
    if not path.is_file():
        raise ValueError(
            f"execution.resume=true: expected a checkpoint {path}, found none; unset execution.resume to start a new run"
        )
    return path


def new_log_version(run_dir: str | os.PathLike[str]) -> Path:
    """A new, empty ``run_dir/logs/version_k`` (k one past the highest there)."""
    logs = Path(run_dir) / LOG_FOLDER
    logs.mkdir(parents=True, exist_ok=True)
    versions = [int(path.name.removeprefix("version_")) for path in logs.glob("version_*")
                if path.name.removeprefix("version_").isdigit()]
    folder = logs / f"version_{max(versions, default=-1) + 1}"
    folder.mkdir()
    return folder


class CsvMetricsLogger:
    """Appends one row per epoch to ``folder/metrics.csv``, flushed at every :meth:`save`.

    A row is written whole at each epoch's end, so a run killed mid-epoch leaves every
    finished epoch readable.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / "metrics.csv"
        with self.path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(CSV_COLUMNS)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        row = {**metrics, "step": step}
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow([_cell(row.get(column)) for column in CSV_COLUMNS])

    def save(self) -> None:
        """Rows are written when logged: nothing is buffered."""


def _cell(value: float | None) -> str:
    return "" if value is None else str(value)  # str of a float is its shortest exact repr
