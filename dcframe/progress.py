"""Progress bars and the one-line epoch summary (rich), silenced by ``--quiet``."""

from __future__ import annotations

import contextlib
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

    def track(self, items: Iterable[T], total: int, description: str) -> Iterator[T]:
        """Yield ``items`` while a progress bar counts them."""
        if self.quiet:
            yield from items
            return
        columns = (
            TextColumn("{task.description:>12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(description, total=total)
            for item in items:
                yield item
                progress.advance(task)

    @contextlib.contextmanager
    def stage(self, description: str) -> Iterator[None]:
        """A spinner for a step that reports no progress of its own (a k-means call)."""
        if self.quiet:
            yield
            return
        with self.console.status(description):
            yield

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}")

    def epoch(self, metrics: dict[str, Any]) -> None:
        """One line per epoch with the numbers that tell whether training is healthy."""
        if self.quiet:
            return
        labels = metrics.get("nmi_vs_labels")
        parts = [
            f"[bold]epoch {metrics['epoch']:>3}[/bold]",
            f"loss {metrics['train_loss']:.3f}",
            f"kmeans-obj {metrics['kmeans_objective']:.4g}",
            f"NMI(t-1,t) {_fmt(metrics['nmi_vs_previous'])}",
            f"NMI(labels) {_fmt(labels)}" if labels is not None else "",
            f"kNN {_fmt(knn)}" if (knn := metrics.get("knn_accuracy")) is not None else "",
            f"empty {metrics['empty_clusters']}",
            f"sizes {metrics['cluster_size_min']}/{metrics['cluster_size_median']:g}"
            f"/{metrics['cluster_size_max']}",
            f"{metrics['seconds']['total']:.1f}s",
        ]
        self.console.print("  ".join(p for p in parts if p))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
