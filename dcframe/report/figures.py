"""The report's plots, each a function from numbers to a matplotlib figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dcframe.report.clusters import LabelStats
from dcframe.report.explorer import ExploredImage

BLUE, ORANGE, GREEN, RED, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"
SIZE_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _values(metrics: list[dict[str, Any]], key: str, sub: str | None = None) -> np.ndarray:
    """One field of every epoch record as floats, NaN where it is missing or null."""
    out = []
    for record in metrics:
        value = record.get(key)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        out.append(float(value) if isinstance(value, int | float) else math.nan)
    return np.asarray(out)


def _line(ax: Any, x: np.ndarray, y: np.ndarray, **style: Any) -> None:
    marker = "o" if len(x) <= 30 else None
    ax.plot(x, y, marker=marker, markersize=3, linewidth=1.5, **style)


def _epoch_axis(ax: Any, label: str = "epoch") -> None:
    ax.set_xlabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", color=GREY, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _stages(metrics: list[dict[str, Any]]) -> list[str]:
    """The timed stages of the run (extract, cluster, train, ... as the engine names them),
    in the order they first appear, with the total last."""
    stages = dict.fromkeys(
        k for r in metrics if isinstance(r.get("seconds"), dict) for k in r["seconds"]
    )
    return [s for s in stages if s != "total"] + ["total"] * ("total" in stages)


def metric_curves(metrics: list[dict[str, Any]]) -> Figure:
    """Every per-epoch number of ``metrics.jsonl`` over the epochs, one panel each."""
    epochs = _values(metrics, "epoch")
    figure = Figure(figsize=(13, 6), layout="constrained")
    axes = figure.subplots(2, 4).ravel()
    panels: list[tuple[str, list[tuple[str, np.ndarray, str | None]], str]] = [
        ("train loss", [("cross-entropy", _values(metrics, "train_loss"), BLUE)], ""),
        ("k-means objective", [("objective", _values(metrics, "kmeans_objective"), BLUE)], ""),
        (
            "NMI",
            [
                ("NMI(t-1, t)", _values(metrics, "nmi_vs_previous"), BLUE),
                ("NMI(labels)", _values(metrics, "nmi_vs_labels"), ORANGE),
            ],
            "",
        ),
        ("kNN accuracy", [("kNN", _values(metrics, "knn_accuracy"), GREEN)], "not measured"),
        ("empty clusters", [("empty", _values(metrics, "empty_clusters"), RED)], ""),
        (
            "cluster size",
            [
                ("max", _values(metrics, "cluster_size_max"), BLUE),
                ("median", _values(metrics, "cluster_size_median"), ORANGE),
                ("min", _values(metrics, "cluster_size_min"), GREEN),
            ],
            "",
        ),
        (
            "seconds per stage",
            [
                (stage, _values(metrics, "seconds", stage), GREY if stage == "total" else None)
                for stage in _stages(metrics)
            ],
            "",
        ),
        ("skipped images", [("unreadable", _values(metrics, "skipped_images"), RED)], ""),
    ]
    for ax, (title, lines, missing) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=11)
        drawn = [(label, y, colour) for label, y, colour in lines if not np.all(np.isnan(y))]
        if not drawn:
            _no_data(ax, missing or "no values")
            continue
        for label, y, colour in drawn:
            _line(ax, epochs, y, label=label, color=colour)
        _epoch_axis(ax)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=8)
        if title == "kNN accuracy":
            knn_k = [r.get("knn_k") for r in metrics if r.get("knn_k")]
            if knn_k:
                ax.set_title(f"kNN accuracy (k={knn_k[-1]})", fontsize=11)
    return figure


def size_distribution(sizes: np.ndarray, epoch: int) -> Figure:
    """One epoch's cluster sizes: a histogram and the sizes from largest to smallest."""
    figure = Figure(figsize=(11, 3.4), layout="constrained")
    hist, ranked = figure.subplots(1, 2)
    hist.hist(sizes, bins=min(50, max(5, len(sizes) // 4)), color=BLUE)
    hist.set_xlabel("images in a cluster")
    hist.set_ylabel("clusters")
    hist.set_title(f"cluster sizes at epoch {epoch}", fontsize=11)
    ordered = np.sort(sizes)[::-1]
    ranked.plot(np.arange(1, len(ordered) + 1), ordered, color=BLUE, label="cluster size")
    ranked.axhline(sizes.sum() / len(sizes), color=GREY, linestyle="--", label="equal sizes")
    ranked.set_xlabel("cluster rank (largest first)")
    ranked.set_ylabel("images")
    ranked.set_title("sizes from largest to smallest", fontsize=11)
    ranked.legend(fontsize=8)
    for ax in (hist, ranked):
        ax.grid(alpha=0.3)
    return figure


def size_evolution(epochs: Sequence[int], quantiles: np.ndarray, chosen: int) -> Figure:
    """Quantiles of the cluster sizes (``SIZE_QUANTILES``, one row per epoch) over epochs."""
    figure = Figure(figsize=(11, 3.4), layout="constrained")
    ax = figure.subplots()
    x = np.asarray(epochs)
    ax.fill_between(x, quantiles[:, 0], quantiles[:, 6], color=BLUE, alpha=0.12, label="min-max")
    ax.fill_between(x, quantiles[:, 1], quantiles[:, 5], color=BLUE, alpha=0.2, label="10-90 %")
    ax.fill_between(x, quantiles[:, 2], quantiles[:, 4], color=BLUE, alpha=0.35, label="25-75 %")
    _line(ax, x, quantiles[:, 3], color=BLUE, label="median")
    ax.axvline(chosen, color=ORANGE, linestyle=":", label=f"epoch {chosen}")
    _epoch_axis(ax)
    ax.set_ylabel("images in a cluster")
    ax.set_title("cluster sizes over epochs (empty clusters count as 0)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return figure


def contingency_heatmap(stats: LabelStats, class_names: list[str]) -> Figure:
    """Fraction of each cluster's images in each class; clusters ordered by majority class,
    then by purity (purest first)."""
    filled = np.flatnonzero(stats.majority >= 0)
    order = filled[np.lexsort((-stats.purity[filled], stats.majority[filled]))]
    table = stats.contingency[order].astype(float)
    table /= table.sum(axis=1, keepdims=True)
    classes = len(class_names)
    figure = Figure(figsize=(12, max(2.5, min(10, 0.3 * classes + 1.5))), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(table.T, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel(f"cluster ({len(order)} non-empty, ordered by majority class)")
    ax.set_ylabel("class")
    if classes <= 40:
        ax.set_yticks(range(classes), class_names)
    figure.colorbar(image, ax=ax, label="fraction of the cluster", fraction=0.03)
    ax.set_title("clusters x classes", fontsize=11)
    return figure


def class_purity(stats: LabelStats, class_names: list[str]) -> Figure:
    """Per class: purity and coverage of the clusters whose majority it is."""
    figure = Figure(figsize=(11, 3.4), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(class_names))
    if len(class_names) <= 40:
        ax.bar(x - 0.2, stats.class_purity, 0.4, color=BLUE, label="purity")
        ax.bar(x + 0.2, stats.class_coverage, 0.4, color=ORANGE, label="coverage")
        ax.set_xticks(x, class_names, rotation=45 if max(map(len, class_names)) > 3 else 0)
        for i, count in enumerate(stats.class_clusters):
            ax.text(i, 1.02, str(count), ha="center", fontsize=7, color=GREY)
        ax.set_xlabel("class (grey: number of clusters with this majority)")
    else:  # too many classes to name: each measure sorted
        _line(ax, x, np.sort(np.nan_to_num(stats.class_purity))[::-1], color=BLUE, label="purity")
        _line(ax, x, np.sort(stats.class_coverage)[::-1], color=ORANGE, label="coverage")
        ax.set_xlabel("classes, each measure sorted from best to worst")
    ax.set_ylim(0, 1.1)
    ax.set_title("purity per class", fontsize=11)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower right")
    return figure


def stability_curve(epochs: Sequence[int], changed: np.ndarray, nmi_previous: np.ndarray) -> Figure:
    """Fraction of images that changed cluster, and NMI(t-1, t), over the epochs."""
    figure = Figure(figsize=(11, 3.2), layout="constrained")
    ax = figure.subplots()
    x = np.asarray(epochs)
    _line(ax, x, changed, color=RED, label="images that changed cluster")
    _line(ax, x, nmi_previous, color=BLUE, label="NMI(t-1, t)")
    ax.set_ylim(0, 1.05)
    _epoch_axis(ax, "epoch (compared with the one before)")
    ax.set_title("stability from one epoch to the next", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def flow_heatmap(
    matrix: np.ndarray, clusters: np.ndarray, matched: np.ndarray, epochs: tuple[int, int]
) -> Figure:
    """Where the images of the largest clusters of the later epoch were the epoch before."""
    earlier, later = epochs
    figure = Figure(figsize=(8.5, 6), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    columns = [f"{c}" if c >= 0 else "none" for c in matched] + ["other"]
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=8)
    ax.set_yticks(range(len(clusters)), [str(c) for c in clusters], fontsize=8)
    ax.set_xlabel(f"matched cluster at epoch {earlier}")
    ax.set_ylabel(f"cluster at epoch {later} (largest first)")
    for (row, column), value in np.ndenumerate(matrix):
        if value >= 0.05:
            colour = "white" if value > 0.6 else "black"
            ax.text(column, row, f"{value:.0%}", ha="center", va="center", fontsize=6, color=colour)
    figure.colorbar(image, ax=ax, label="fraction of the cluster's images", fraction=0.04)
    ax.set_title(
        f"where the images of epoch {later}'s clusters were at epoch {earlier}", fontsize=11
    )
    return figure


def transform_grid(images: list[ExploredImage]) -> Figure:
    """One row per image: original, clustering view, Sobel Gx and Gy, training views."""
    has_sobel = images[0].sobel is not None
    titles = ["original", "clustering view"]
    titles += ["Sobel Gx", "Sobel Gy"] if has_sobel else []
    titles += [f"training view\nseed {i}" for i in range(len(images[0].training_views))]
    figure = Figure(figsize=(1.45 * len(titles), 1.55 * len(images) + 0.5), layout="constrained")
    axes = figure.subplots(len(images), len(titles), squeeze=False)
    for row, explored in zip(axes, images, strict=True):
        panels: list[tuple[np.ndarray, dict[str, Any]]] = [
            (explored.original, {}),
            (explored.clustering_view, {}),
        ]
        if explored.sobel is not None:
            # The zero padding makes strong gradients on the border; scale the colours to
            # the inside, where the digit or object is.
            limit = float(np.quantile(np.abs(explored.sobel), 0.99)) or 1.0
            panels += [
                (g, {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}) for g in explored.sobel
            ]
        panels += [(view, {}) for view in explored.training_views]
        for ax, (pixels, style) in zip(row, panels, strict=True):
            ax.imshow(pixels, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(explored.caption, fontsize=8)
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title, fontsize=9)
    return figure
