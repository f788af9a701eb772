"""The report's plots, each a function from numbers to a matplotlib figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
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
    # A single value (one epoch, or NMI(t-1, t) of a two-epoch run) is a point alone: larger.
    size = 6 if np.count_nonzero(np.isfinite(y)) == 1 else 3
    ax.plot(x, y, marker=marker, markersize=size, linewidth=1.5, **style)


#: Epoch axes with at most this many epochs get a tick at every epoch.
EVERY_EPOCH_TICKED = 12


def _epoch_axis(ax: Any, epochs: Sequence[float] | np.ndarray, label: str = "epoch") -> None:
    """An x axis of epochs with integer ticks only.

    Up to ``EVERY_EPOCH_TICKED`` epochs, one tick per epoch; beyond, a few integer ticks.
    A single epoch gets its one tick and half an epoch of room either side (matplotlib's
    own limits would be 0.945-1.05, ticked with fractions).
    """
    ax.set_xlabel(label)
    shown = sorted({int(e) for e in np.asarray(epochs, dtype=float) if not math.isnan(e)})
    if not shown:
        return
    if len(shown) <= EVERY_EPOCH_TICKED:
        ax.set_xticks(shown)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if len(shown) == 1:
        ax.set_xlim(shown[0] - 0.5, shown[0] + 0.5)


#: The y axis of a measure bounded by [0, 1] (NMI, accuracy, a fraction of images) is
#: never narrower than this: a change of 0.01 then moves the line 5 % of the panel's
#: height, not from top to bottom, so noise does not look like a cliff.
BOUNDED_MIN_SPAN = 0.2


def bounded_limits(values: np.ndarray) -> tuple[float, float]:
    """The y limits for values of a measure in [0, 1].

    The rule: the values' range plus 5 % either side, widened about its centre to at least
    ``BOUNDED_MIN_SPAN``, then shifted to stay inside [0, 1] (with a small margin so that
    points at 0 or 1 are not cut). Values outside [0, 1] (a measure in percent) are kept
    unbounded, only widened.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    pad = 0.05 * (high - low)
    low, high = low - pad, high + pad
    span = max(high - low, BOUNDED_MIN_SPAN)
    centre = (low + high) / 2
    low, high = centre - span / 2, centre + span / 2
    if finite.min() >= 0 and finite.max() <= 1:
        margin = 0.02
        if low < -margin:
            low, high = -margin, -margin + span
        if high > 1 + margin:
            low, high = 1 + margin - span, 1 + margin
    return (low, high)


def _bounded_axis(ax: Any, values: np.ndarray) -> None:
    """A y axis of a measure in [0, 1] by :func:`bounded_limits`, ticked at round steps
    (0.05 on the narrowest axis, so two decimals)."""
    ax.set_ylim(*bounded_limits(values))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))


def _level_limits(ax: Any, values: np.ndarray) -> None:
    """A constant unbounded series (the same loss or time every epoch) is drawn on an axis
    from 0 to a quarter above it, so it reads as a level rather than as matplotlib's
    +-5 % zoom onto noise that is not there."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() == finite.max() and finite[0] != 0:
        ends = sorted((0.0, 1.25 * float(finite[0])))
        ax.set_ylim(*ends)


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


@dataclass(frozen=True)
class Panel:
    """One panel of the curves.

    Attributes:
        title: Its title.
        lines: (legend label, value per epoch, colour or None) of each series.
        bounded: The values are in [0, 1] (``bounded_limits`` sets the y axis).
        zero: For a counter of things going wrong: what "0 in every epoch" means, said in
            a sentence instead of drawing a flat line (e.g. "no empty clusters").
        missing: What it means that no epoch has a value (e.g. "not measured").
    """

    title: str
    lines: list[tuple[str, np.ndarray, str | None]]
    bounded: bool = False
    zero: str | None = None
    missing: str = "not recorded"


@dataclass(frozen=True)
class Curves:
    """The panels worth drawing and the sentences that replace the others."""

    panels: list[Panel]
    quiet: list[str]  # zero counters: "no empty clusters", ...
    absent: list[str]  # "kNN accuracy: not measured", ...

    def sentences(self) -> list[str]:
        """What the panels left out say, as sentences for the page."""
        out = []
        if self.quiet:
            out.append(_capitalised(" and ".join(self.quiet) + " in any epoch."))
        if self.absent:
            out.append("Not in this run's metrics: " + "; ".join(self.absent) + ".")
        return out


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def curve_panels(metrics: list[dict[str, Any]]) -> Curves:
    """The panels of :func:`metric_curves`: a series that is 0 in every epoch (nothing
    happened) or missing in every epoch gets a sentence, not a panel."""
    panels = [
        Panel("train loss", [("cross-entropy", _values(metrics, "train_loss"), BLUE)]),
        Panel("k-means objective", [("objective", _values(metrics, "kmeans_objective"), BLUE)]),
        Panel(
            "NMI",
            [
                ("NMI(t-1, t)", _values(metrics, "nmi_vs_previous"), BLUE),
                ("NMI(labels)", _values(metrics, "nmi_vs_labels"), ORANGE),
            ],
            bounded=True,
        ),
        Panel(
            "kNN accuracy",
            [("kNN", _values(metrics, "knn_accuracy"), GREEN)],
            bounded=True,
            missing="not measured (no labels, or a run made before dcframe measured it)",
        ),
        Panel(
            "empty clusters",
            [("empty", _values(metrics, "empty_clusters"), RED)],
            zero="no empty clusters",
        ),
        Panel(
            "cluster size",
            [
                ("max", _values(metrics, "cluster_size_max"), BLUE),
                ("median", _values(metrics, "cluster_size_median"), ORANGE),
                ("min", _values(metrics, "cluster_size_min"), GREEN),
            ],
        ),
        Panel(
            "seconds per stage",
            [
                (stage, _values(metrics, "seconds", stage), GREY if stage == "total" else None)
                for stage in _stages(metrics)
            ],
        ),
        Panel(
            "skipped images",
            [("unreadable", _values(metrics, "skipped_images"), RED)],
            zero="no skipped images",
        ),
    ]
    kept, quiet, absent = [], [], []
    for panel in panels:
        values = np.concatenate([y for _, y, _ in panel.lines] or [np.array([math.nan])])
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            absent.append(f"{panel.title}, {panel.missing}")
        elif panel.zero is not None and np.all(finite == 0):
            quiet.append(panel.zero)
        else:
            kept.append(panel)
    return Curves(kept, quiet, absent)


#: Panels per row of the curves.
CURVE_COLUMNS = 4


def metric_curves(metrics: list[dict[str, Any]]) -> Figure:
    """Every per-epoch number of ``metrics.jsonl`` that carries information over the
    epochs, one panel each (see :func:`curve_panels` for those left out)."""
    epochs = _values(metrics, "epoch")
    panels = curve_panels(metrics).panels
    # 5 or 6 panels: two full rows of 3 rather than a row of 4 and a half-empty one.
    columns = 3 if len(panels) in (5, 6) else min(CURVE_COLUMNS, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    figure = Figure(
        figsize=(13 if columns >= 3 else 3.25 * columns, 3 * rows), layout="constrained"
    )
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    if not panels:
        _no_data(axes[0], "no values in any epoch")
    for ax, panel in zip(axes, panels, strict=False):
        title = panel.title
        if title == "kNN accuracy":
            knn_k = [r.get("knn_k") for r in metrics if r.get("knn_k")]
            title += f" (k={knn_k[-1]})" if knn_k else ""
        ax.set_title(title, fontsize=11)
        drawn = [(label, y, colour) for label, y, colour in panel.lines if not np.all(np.isnan(y))]
        for label, y, colour in drawn:
            _line(ax, epochs, y, label=label, color=colour)
        values = np.concatenate([y for _, y, _ in drawn])
        if panel.bounded:
            _bounded_axis(ax, values)
        else:
            _level_limits(ax, values)
        _epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
        if len(panel.lines) > 1:
            ax.legend(fontsize=8)
    for ax in axes[len(panels) :] if panels else []:
        ax.remove()  # an empty slot of the last row
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
    bands = ((0, 6, 0.12, "min-max"), (1, 5, 0.2, "10-90 %"), (2, 4, 0.35, "25-75 %"))
    for low, high, alpha, label in bands:
        if len(x) == 1:  # one epoch: bands of no width would be invisible; draw boxes
            ax.bar(
                x,
                quantiles[:, high] - quantiles[:, low],
                width=0.3,
                bottom=quantiles[:, low],
                color=BLUE,
                alpha=alpha,
                label=label,
            )
        else:
            ax.fill_between(
                x, quantiles[:, low], quantiles[:, high], color=BLUE, alpha=alpha, label=label
            )
    _line(ax, x, quantiles[:, 3], color=BLUE, label="median")
    if len(x) > 1:
        ax.axvline(chosen, color=ORANGE, linestyle=":", label=f"epoch {chosen}")
    _epoch_axis(ax, x)
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
    series = [("images that changed cluster", changed, RED), ("NMI(t-1, t)", nmi_previous, BLUE)]
    for label, values, colour in series:
        _line(ax, x, values, color=colour, label=label)
        if len(x) == 1 and np.isfinite(values[0]):  # one point: its value in words too
            ax.annotate(
                f"{values[0]:.2f}",
                (x[0], values[0]),
                xytext=(8, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                color=colour,
            )
    _bounded_axis(ax, np.concatenate([changed, nmi_previous]))
    _epoch_axis(ax, x, "epoch (compared with the one before)")
    ax.set_title("stability from one epoch to the next", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


#: The smallest fraction a cell of the flow matrix writes as a number.
FLOW_TEXT_MIN = 0.1


def flow_heatmap(
    matrix: np.ndarray, clusters: np.ndarray, matched: np.ndarray, epochs: tuple[int, int]
) -> Figure:
    """Where the images of the largest clusters of the later epoch were the epoch before.

    Cells of at least ``FLOW_TEXT_MIN`` carry their percentage, in a readable size; the
    smaller ones only their colour."""
    earlier, later = epochs
    figure = Figure(figsize=(8.5, 6), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    columns = [f"{c}" if c >= 0 else "none" for c in matched] + ["other"]
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=8)
    ax.set_yticks(range(len(clusters)), [str(c) for c in clusters], fontsize=8)
    ax.set_xlabel(f"matched cluster at epoch {earlier}")
    ax.set_ylabel(f"cluster at epoch {later} (largest first)")
    # About 0.5 inch per cell at 13 columns: "100%" fits at 9 pt; more columns, smaller text
    # down to 7 pt, and no text at all where even that would not fit.
    fontsize = min(9.0, 9.0 * 13 / max(matrix.shape))
    if fontsize >= 7:
        for (row, column), value in np.ndenumerate(matrix):
            if value >= FLOW_TEXT_MIN:
                colour = "white" if value > 0.6 else "black"
                ax.text(
                    column,
                    row,
                    f"{value:.0%}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color=colour,
                )
    figure.colorbar(image, ax=ax, label="fraction of the cluster's images", fraction=0.04)
    ax.set_title(
        f"where the images of epoch {later}'s clusters were at epoch {earlier}", fontsize=11
    )
    return figure


#: Pixels on each side of a Sobel output computed from the zero padding (3x3 kernel,
#: padding 1): a normalised black background is far from 0, so these are strong red and
#: blue stripes that the image does not have.
SOBEL_BORDER = 1


def sobel_inside(sobel: np.ndarray) -> np.ndarray:
    """(2, S, S) Sobel output without its ``SOBEL_BORDER`` (what a valid convolution
    gives): only the gradients of the image itself."""
    b = SOBEL_BORDER
    return sobel[..., b:-b, b:-b] if min(sobel.shape[-2:]) > 2 * b else sobel


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
            inside = sobel_inside(explored.sobel)
            limit = float(np.quantile(np.abs(inside), 0.99)) or 1.0
            panels += [(g, {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}) for g in inside]
        panels += [(view, {}) for view in explored.training_views]
        for ax, (pixels, style) in zip(row, panels, strict=True):
            ax.imshow(pixels, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(explored.caption, fontsize=8)
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title, fontsize=9)
    return figure
