"""Built-in loggers: ``jsonl`` (the run's record), ``csv`` and ``tensorboard``."""

from __future__ import annotations

import csv
import io
from typing import Any

from dcframe.components.builtin_params import TensorBoardParams
from dcframe.core.errors import UserError
from dcframe.core.files import atomic_write_bytes
from dcframe.core.interfaces import EpochRecord, Logger, RunInfo
from dcframe.core.metrics_file import MetricsFile


def flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """One level of keys: ``seconds.train`` becomes ``seconds_train``; lists are joined."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{sub}": v for sub, v in value.items()})
        elif isinstance(value, list):
            flat[key] = "; ".join(map(str, value))
        else:
            flat[key] = value
    return flat


class JsonlLogger(Logger):
    """metrics.jsonl in the run directory, one JSON object per epoch: the run's record.

    Every run keeps it (``--resume`` and ``dcframe report`` read it), so a recipe's
    ``[[loggers]]`` list always holds it first.
    """

    def open(self, run: RunInfo) -> None:
        self.file = MetricsFile(run.run_dir)
        self.file.truncate(run.start_epoch)

    def epoch(self, record: EpochRecord) -> None:
        self.file.append(record.metrics)


class CsvLogger(Logger):
    """metrics.csv in the run directory: one row per epoch, for spreadsheets and pandas.

    Nested fields are flattened (``seconds_train``), lists joined with "; "."""

    def open(self, run: RunInfo) -> None:
        self.path = run.run_dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():  # a resumed run keeps the epochs before the one it redoes
            with self.path.open(newline="", encoding="utf-8") as handle:
                kept = [r for r in csv.DictReader(handle) if int(r["epoch"]) < run.start_epoch]
            self.rows = kept

    def epoch(self, record: EpochRecord) -> None:
        self.rows.append(flat_metrics(record.metrics))
        columns: dict[str, None] = {}
        for row in self.rows:
            columns.update(dict.fromkeys(row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, lambda f: f.write(text.getvalue().encode()))


class TensorBoardLogger(Logger):
    """TensorBoard event files in <run>/tensorboard: epoch metrics, steps, cluster galleries.

    Every numeric epoch metric; the training loss, learning rate and images/s every few
    steps; an image of the largest clusters every epoch (``pip install
    'dcframe[tensorboard]'``; view with ``tensorboard --logdir <run>/tensorboard``)."""

    Params = TensorBoardParams
    params: TensorBoardParams

    def open(self, run: RunInfo) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise UserError(
                "loggers: 'tensorboard' needs the tensorboard package; "
                "pip install 'dcframe[tensorboard]', or remove that logger from the recipe"
            ) from error
        folder = run.run_dir / "tensorboard"
        # Epoch scalars count epochs, step scalars count steps done (the first step of epoch
        # e is e * steps_per_epoch + 1): a resumed run purges what it is about to redo.
        self.epochs = SummaryWriter(str(folder / "epochs"), purge_step=run.start_epoch)
        self.steps = SummaryWriter(
            str(folder / "steps"), purge_step=run.start_epoch * run.steps_per_epoch + 1
        )
        self.last_step = -self.params.every_steps

    def step(self, epoch: int, step: int, global_step: int, values: dict[str, float]) -> None:
        if global_step - self.last_step < self.params.every_steps:
            return
        self.last_step = global_step
        for name, value in values.items():
            self.steps.add_scalar(f"train/{name}", value, global_step)

    def epoch(self, record: EpochRecord) -> None:
        epoch = int(record.metrics["epoch"])
        for name, value in flat_metrics(record.metrics).items():
            if isinstance(value, int | float) and not isinstance(value, bool) and name != "epoch":
                self.epochs.add_scalar(f"epoch/{name}", value, epoch)
        if self.params.gallery:
            self.epochs.add_image("clusters/largest", record.gallery(), epoch, dataformats="HWC")
        self.epochs.flush()

    def close(self) -> None:
        for writer in (getattr(self, "epochs", None), getattr(self, "steps", None)):
            if writer is not None:
                writer.close()


__all__ = ["CsvLogger", "JsonlLogger", "TensorBoardLogger", "TensorBoardParams", "flat_metrics"]
