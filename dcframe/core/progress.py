"""Progress bars and the one-line epoch summary (rich), silenced by ``--quiet``."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


class Reporter:
    """Shows progress of every pass and prints one line per epoch.

    Args:
        quiet: Print nothing but warnings.
        console: Where to print (stderr by default so stdout stays machine-readable).
    """

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._epoch: tuple[int, int] | None = None  # (epoch, epochs) under way
        self._epoch_started = 0.0
        self._epoch_seconds: list[float] = []

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Bars from now on belong to ``epoch`` of ``epochs``, shown as "epoch 3 (4/10)": the
        epoch's number as the run directory counts (from 0), and how far the run is."""
        self._epoch, self._epoch_started = (epoch, epochs), time.perf_counter()

    def track(
        self,
        items: Iterable[T],
        total: int,
        description: str,
        status: dict[str, str] | None = None,
    ) -> Iterator[T]:
        """Yield ``items`` while a progress bar counts them.

        ``status`` (updated in place by the caller) adds the running loss and images/s to
        the bar, and the time the whole run still needs (the training bar). Bars are for
        terminals: in a log file they would only leave empty lines."""
        if self.quiet or not self.console.is_terminal:
            yield from items
            return
        label = description
        if self._epoch is not None:
            label = f"{_epoch_label(*self._epoch)} {description}"
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(label, total=total, info="")
            for item in items:
                yield item
                info = ""
                if status is not None:
                    left = progress.tasks[0].time_remaining
                    info = _status_line(status, self._run_left(left))
                progress.update(task, advance=1, info=info)

    def _run_left(self, bar_left: float | None) -> float | None:
        """Seconds the run still needs: this bar's rest, then the epochs after this one at
        the median length of the finished ones (or of this one, as far as it got)."""
        if bar_left is None or self._epoch is None:
            return None
        epoch, epochs = self._epoch
        this_epoch = time.perf_counter() - self._epoch_started + bar_left
        typical = statistics.median(self._epoch_seconds) if self._epoch_seconds else this_epoch
        return bar_left + (epochs - epoch - 1) * typical

    @contextlib.contextmanager
    def stage(self, description: str) -> Iterator[None]:
        """A spinner for a step that reports no progress of its own (a k-means call)."""
        if self.quiet or not self.console.is_terminal:
            yield
            return
        with self.console.status(description):
            yield

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")

    def epoch(self, metrics: dict[str, Any], epochs: int | None = None) -> None:
        """One line per epoch with the numbers that tell whether training is healthy."""
        self._epoch_seconds.append(float(metrics["seconds"]["total"]))
        self._epoch = None
        if self.quiet:
            return
        labels = metrics.get("nmi_vs_labels")
        number = int(metrics["epoch"])
        parts = [
            f"[bold]{_epoch_label(number, epochs) if epochs else f'epoch {number:>3}'}[/bold]",
            f"loss {metrics['train_loss']:.3f}",
            f"kmeans-obj {metrics['kmeans_objective']:.4g}",
            f"NMI(t-1,t) {_fmt(metrics['nmi_vs_previous'])}",
            f"NMI(labels) {_fmt(labels)}" if labels is not None else "",
            f"kNN {_fmt(knn)}" if (knn := metrics.get("knn_accuracy")) is not None else "",
            f"empty {metrics['empty_clusters']}",
            f"cluster sizes min {metrics['cluster_size_min']} · median "
            f"{metrics['cluster_size_median']:g} · max {metrics['cluster_size_max']}",
            f"{metrics['seconds']['total']:.1f}s",
        ]
        self.console.print("  ".join(p for p in parts if p))

    def summary(
        self, run_dir: Any, records: list[dict[str, Any]], seconds: float, page: Any = None
    ) -> None:
        """The end of a run: how long, where it got, and where its results are."""
        if not self.quiet:
            self.console.print(_summary(records, seconds, run_dir, page))


def _summary(records: list[dict[str, Any]], seconds: float, run_dir: Any, page: Any) -> str:
    last = records[-1] if records else {}
    lines = [f"[bold]finished[/bold] {len(records)} epochs in {_duration(seconds)}"]
    if last:
        found = [
            f"NMI(t-1,t) {_fmt(last.get('nmi_vs_previous'))}",
            f"NMI(labels) {_fmt(last['nmi_vs_labels'])}" if last.get("nmi_vs_labels") else "",
            f"kNN {_fmt(last['knn_accuracy'])}" if last.get("knn_accuracy") is not None else "",
        ]
        first_knn = records[0].get("knn_accuracy")
        if first_knn is not None and last.get("knn_accuracy") is not None:
            found.append(f"(epoch 0: kNN {_fmt(first_knn)})")
        shown = "  ".join(f for f in found if f)
        lines.append(f"last epoch: loss {last['train_loss']:.3f}  {shown}")
    lines.append(f"run directory: {run_dir}")
    if page is not None:
        lines.append(f"report: {page}")
    return "\n".join(lines)


def _epoch_label(epoch: int, epochs: int) -> str:
    return f"epoch {epoch} ({epoch + 1}/{epochs})"


def _status_line(status: dict[str, str], run_left: float | None) -> str:
    parts = []
    if "loss" in status:
        parts.append(f"loss {status['loss']}")
    if "rate" in status:
        parts.append(f"{status['rate']} img/s")
    if run_left is not None:
        parts.append(f"run ETA {_duration(run_left)}")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
