"""The sections of the report, each built from the run's saved files (nothing recomputed:
no features, no clustering; only counting over the saved assignments)."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np

from dcframe.engine.galleries import CLOSEST, RANDOM_MEMBERS, Shown, pick_clusters, shown_members
from dcframe.evaluation.hints import VAL_DIR, data_flags
from dcframe.report import figures
from dcframe.report.clusters import LabelStats, cluster_sizes, flow_matrix, match_clusters
from dcframe.report.embed import png_uri, svg_uri, thumbnail_uri
from dcframe.report.explorer import TRAINING_SEEDS, explore, pick_images
from dcframe.report.page import Section, figure, note, table
from dcframe.report.run_data import RunData
from dcframe.store import clusterings

GALLERY_SIDE = 52
INDEX_SIDE = 32
INDEX_MEMBERS = 4
#: Clusters whose index row has thumbnails (the largest); the others are numbers only, so a
#: run with 10,000 clusters still gives a file one can e-mail.
INDEX_THUMBNAIL_CLUSTERS = 1000
#: Epochs read for the curves computed from assignments (evenly spread over the run).
SCANNED_EPOCHS = 100
FLOW_CLUSTERS = 12
EXPLORED_IMAGES = 6


@dataclass
class Context:
    """What every section works from: the run and the chosen epoch's clusters."""

    run: RunData
    epoch: int
    assignment: np.ndarray
    distances: np.ndarray | None
    sizes: np.ndarray
    labels: LabelStats | None
    rng: np.random.Generator
    _thumbnails: dict[tuple[int, int], str] = field(default_factory=dict)

    def class_name(self, label: int) -> str:
        names = self.run.dataset.class_names
        return names[label] if names and 0 <= label < len(names) else str(label)

    def thumbnail(self, index: int, side: int) -> str:
        """An ``<img>`` of dataset image ``index`` (each one encoded once)."""
        key = (index, side)
        if key not in self._thumbnails:
            self._thumbnails[key] = thumbnail_uri(self.run.dataset.image(index), side)
        return self._thumbnails[key]

    def caption(self, cluster: int) -> str:
        """Size, and with labels purity and majority class, of a cluster."""
        text = f"cluster {cluster}: {int(self.sizes[cluster])} images"
        if self.labels is not None and self.labels.majority[cluster] >= 0:
            majority = self.class_name(int(self.labels.majority[cluster]))
            text += f", purity {self.labels.purity[cluster]:.0%}, majority {majority!r}"
        return text


def _percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.0%}"


# ------------------------------------------------------------------------ overview


def overview(ctx: Context) -> Section:
    run = ctx.run
    recipe = run.recipe
    finished = len(run.epochs)
    status = f"{finished} of {run.planned_epochs} epochs finished"
    if run.holder:
        status += f"; the run is in progress ({run.holder})"
    elif finished < run.planned_epochs:
        status += "; the run is stopped (continue it with dcframe run RECIPE --resume)"
    labels = run.dataset.labels
    rows = [
        ["run directory", escape(str(run.path))],
        ["status", escape(status)],
        ["dataset", escape(f"{recipe.data.name}: {len(run.dataset):,} images")],
        [
            "labels",
            escape(
                f"{len(run.dataset.class_names or np.unique(labels))} classes (used for the "
                "measures only, never for training)"
                if labels is not None
                else "none (the label sections are empty)"
            ),
        ],
        ["backbone", escape(f"{recipe.backbone.name}, input {run.backbone.input_size} px")],
        ["clusterer", escape(f"{recipe.clusterer.name}, k = {run.k}")],
        ["epoch shown", escape(f"{ctx.epoch} (choose another with --epoch)")],
    ]
    body = table(None, rows, text_columns=2)
    warnings = [(r["epoch"], w) for r in run.metrics for w in r.get("warnings") or []]
    if warnings:
        body += "<h3>Warnings</h3>" + table(
            ["epoch", "warning"], [[str(e), escape(str(w))] for e, w in warnings]
        )
    return Section("overview", "Overview", body)


# -------------------------------------------------------------------------- curves


def curves(ctx: Context) -> Section:
    left_out = figures.curve_panels(ctx.run.metrics).sentences()
    body = figure(svg_uri(figures.metric_curves(ctx.run.metrics)), "metrics over epochs")
    if left_out:
        body += f'<p class="note"><strong>{escape(" ".join(left_out))}</strong></p>'
    body += note(
        "The fields of metrics.jsonl over the finished epochs; a count that stayed 0 in every "
        "epoch gets a sentence above instead of a flat line. The loss starts near ln(k) "
        "every epoch because the top layer is new; NMI(t-1, t) near 1 means stable clusters; "
        "NMI(labels) and the kNN accuracy use the labels, which never train anything. Axes "
        f"of measures in [0, 1] span at least {figures.BOUNDED_MIN_SPAN:g}, so that noise "
        "does not look like a cliff."
    )
    return Section("curves", "Curves", body)


# ----------------------------------------------------------------- sizes over time


def scanned_epochs(epochs: list[int], chosen: int, limit: int = SCANNED_EPOCHS) -> list[int]:
    """At most ``limit`` (+1) finished epochs spread evenly, always with ``chosen``."""
    if len(epochs) <= limit:
        return epochs
    picks = {epochs[round(i)] for i in np.linspace(0, len(epochs) - 1, limit)}
    return sorted(picks | {chosen})


def sizes(ctx: Context) -> Section:
    run = ctx.run
    body = figure(svg_uri(figures.size_distribution(ctx.sizes, ctx.epoch)), "cluster sizes")
    epochs = scanned_epochs(run.epochs, ctx.epoch)
    quantiles = np.array(
        [
            np.quantile(cluster_sizes(run.assignment(e), run.k), figures.SIZE_QUANTILES)
            for e in epochs
        ]
    )
    body += figure(
        svg_uri(figures.size_evolution(epochs, quantiles, ctx.epoch)), "sizes over epochs"
    )
    empty = int(np.count_nonzero(ctx.sizes == 0))
    text = (
        f"Epoch {ctx.epoch}: {run.k - empty} non-empty clusters of {run.k}, "
        f"{int(ctx.sizes.sum()):,} images; equal sizes would be {ctx.sizes.sum() / run.k:.1f}."
    )
    if len(epochs) < len(run.epochs):
        text += f" Over epochs: {len(epochs)} of the {len(run.epochs)} epochs, evenly spread."
    return Section("sizes", "Cluster sizes", body + note(text))


# ------------------------------------------------------------------------ galleries


def _card(ctx: Context, shown: Shown) -> str:
    labels = ctx.run.dataset.labels
    images = []
    for position, index in enumerate(shown.members):
        near = position < shown.closest
        title = f"image {index}"
        if labels is not None:
            title += f", class {ctx.class_name(int(labels[index]))}"
        if ctx.distances is not None:
            title += f", squared distance {ctx.distances[index]:.4g}"
        title += " (near the centroid)" if near else " (random member)"
        source = ctx.thumbnail(int(index), GALLERY_SIDE)
        images.append(
            f'<img class="{"near" if near else "other"}" src="{source}"'
            f' width="{GALLERY_SIDE}" height="{GALLERY_SIDE}" alt="image {index}"'
            f' title="{escape(title)}" data-index="{index}">'
        )
    return (
        f'<div class="card" id="cluster-{shown.cluster}" data-cluster="{shown.cluster}">'
        f"<h4>{escape(ctx.caption(shown.cluster))}</h4>"
        f'<div class="thumbs">{"".join(images)}</div></div>'
    )


def _export_commands(ctx: Context) -> str:
    """A line naming the commands that export the clusters shown: every image's cluster,
    one folder per cluster, new images placed in them (:mod:`dcframe.clusters`)."""
    run = shlex.quote(str(ctx.run.path))
    last = ctx.run.epochs[-1]
    shown = f" --epoch {ctx.epoch}" if ctx.epoch != last else ""
    assign, where = "", "new images"
    if ctx.epoch != last and ctx.epoch in clusterings.kept_epochs(ctx.run.path):
        assign = shown
    elif ctx.epoch != last:
        where = f"new images, in the clusters of epoch {last} (epoch {ctx.epoch}'s were not kept)"

    def code(command: str) -> str:
        return f"<code>{escape(command)}</code>"

    return (
        f'<p class="note">Every image\'s cluster: '
        f"{code(f'dcframe clusters {run}{shown} --out clusters.csv')}; one folder per cluster: "
        f"{code(f'dcframe clusters {run}{shown} --folders by-cluster')}; {escape(where)}: "
        f"{code(f'dcframe assign {run}{assign} IMAGES... --out new.csv')}.</p>"
    )


def galleries(ctx: Context) -> Section:
    picked = pick_clusters(ctx.sizes, ctx.rng)
    if ctx.distances is not None:
        legend = (
            f'<p class="note">Each cluster: its <span class="legend-near">{CLOSEST} images '
            f"nearest to the centroid</span> (nearest first), then "
            f'<span class="legend-other">{RANDOM_MEMBERS} random other members</span>. '
            "Hover an image for its index, class and distance.</p>"
        )
    else:
        legend = note(
            f"This run saved no centroid distances (distances/epoch_{ctx.epoch:04d}.npy; "
            "runs of older dcframe versions), so each cluster shows random members, not the "
            "nearest ones.",
            warn=True,
        )
    body = legend
    for title, clusters in (
        ("Largest clusters", picked.largest),
        ("Smallest clusters", picked.smallest),
        ("Random clusters", picked.random),
    ):
        cards = "".join(
            _card(ctx, shown_members(ctx.assignment, ctx.distances, int(c), ctx.rng))
            for c in clusters
        )
        body += f'<h3>{title}</h3><div class="cards">{cards}</div>'
    return Section("galleries", "Cluster galleries", body + _export_commands(ctx))


def cluster_index(ctx: Context) -> Section:
    filled = np.flatnonzero(ctx.sizes > 0)
    order = filled[np.argsort(-ctx.sizes[filled], kind="stable")]
    with_thumbnails = set(order[:INDEX_THUMBNAIL_CLUSTERS].tolist())
    has_labels = ctx.labels is not None
    rows = []
    for cluster in order.tolist():
        name, purity = "", math.nan
        if ctx.labels is not None:
            name = ctx.class_name(int(ctx.labels.majority[cluster]))
            purity = float(ctx.labels.purity[cluster])
        thumbs = ""
        if cluster in with_thumbnails:
            shown = shown_members(ctx.assignment, ctx.distances, cluster, ctx.rng, INDEX_MEMBERS, 0)
            thumbs = "".join(
                f'<img src="{ctx.thumbnail(int(i), INDEX_SIDE)}" width="{INDEX_SIDE}" '
                f'height="{INDEX_SIDE}" alt="image {i}" title="image {i}">'
                for i in shown.members
            )
        cells = [f"{cluster}", f"{int(ctx.sizes[cluster])}"]
        if has_labels:
            cells += [f'<td class="text">{escape(name)}</td>', f"{_percent(purity)}"]
        row_cells = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
        rows.append(
            f'<tr id="index-{cluster}" data-cluster="{cluster}" data-size="{ctx.sizes[cluster]}"'
            f' data-purity="{purity if has_labels else ""}" data-name="{escape(name.lower())}">'
            f'{row_cells}<td class="text"><div class="thumbs">{thumbs}</div></td></tr>'
        )
    headers = ["cluster", "size", *(["majority class", "purity"] if has_labels else []), "images"]
    head = "".join(f"<th>{h}</th>" for h in headers)
    hint = "a cluster id, size>20, size<5" + (", a class name, purity<0.5" if has_labels else "")
    body = (
        f'<p><input id="cluster-filter" type="search" placeholder="{hint}" '
        f'aria-label="filter the clusters"> <span id="filter-count"></span></p>'
        f'<div class="index-wrap"><table id="cluster-index"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    empty = len(ctx.sizes) - len(filled)
    text = f"All {len(filled)} non-empty clusters of epoch {ctx.epoch}, largest first"
    text += f" ({empty} empty clusters are not listed)." if empty else "."
    if len(filled) > INDEX_THUMBNAIL_CLUSTERS:
        text += f" Images for the {INDEX_THUMBNAIL_CLUSTERS} largest only, to keep the file small."
    text += " Words narrow the list; every word must match."
    return Section("index", "Cluster index", note(text) + body + _export_commands(ctx))


# --------------------------------------------------------------------------- labels


def labels(ctx: Context) -> Section:
    if ctx.labels is None:
        return Section(
            "labels",
            "Clusters and labels",
            note("The dataset has no labels: there is no class to compare the clusters with."),
        )
    names = [ctx.class_name(c) for c in range(ctx.labels.contingency.shape[1])]
    body = figure(png_uri(figures.contingency_heatmap(ctx.labels, names)), "clusters x classes")
    body += note(
        "Each column is a cluster, each row a class: the fraction of the cluster's images in "
        "each class. Clusters are ordered by their majority class, purest first, so a good "
        "clustering shows a staircase of bright cells."
    )
    body += figure(svg_uri(figures.class_purity(ctx.labels, names)), "purity per class")
    body += note(
        "Purity of a class: of the images in clusters whose majority is the class, the "
        "fraction of that class. Coverage: of the class's images, the fraction in such "
        "clusters. A class no cluster has as majority has no purity bar."
    )
    return Section("labels", "Clusters and labels", body)


# ------------------------------------------------------------------------ stability


def stability(ctx: Context) -> Section:
    run = ctx.run
    later = [e for e in scanned_epochs(run.epochs, ctx.epoch) if e - 1 in run.epochs]
    if not later:
        return Section(
            "stability",
            "Stability",
            note("One epoch only: stability compares an epoch with the one before."),
        )
    changed = np.array(
        [match_clusters(run.assignment(e - 1), run.assignment(e), run.k).changed for e in later]
    )
    nmi = {int(r["epoch"]): r.get("nmi_vs_previous") for r in run.metrics}
    nmi_previous = np.array([nmi.get(e) if nmi.get(e) is not None else np.nan for e in later])
    body = figure(
        svg_uri(figures.stability_curve(later, changed, nmi_previous)), "stability over epochs"
    )
    body += note(
        "Cluster ids are arbitrary in every epoch, so the clusters of two consecutive epochs "
        "are matched one to one, largest overlap first; an image changed cluster when it is "
        "not in the counterpart of its earlier cluster."
    )
    shown = ctx.epoch if ctx.epoch - 1 in run.epochs else later[-1]
    current = run.assignment(shown)
    top = np.argsort(-cluster_sizes(current, run.k), kind="stable")[:FLOW_CLUSTERS]
    matched, matrix = flow_matrix(run.assignment(shown - 1), current, run.k, top)
    flow = figures.flow_heatmap(matrix, top, matched, (shown - 1, shown))
    body += figure(png_uri(flow), "cluster flow")
    body += note(
        f"The {len(top)} largest clusters of epoch {shown} (rows) and where their images were "
        f"at epoch {shown - 1}: in the matched cluster (diagonal), in another shown cluster, "
        "or elsewhere (last column)."
    )
    return Section("stability", "Stability", body)


# ----------------------------------------------------------------------- transforms


def transforms(ctx: Context) -> Section:
    run = ctx.run
    readable = ctx.assignment >= 0
    indices = pick_images(readable, run.dataset.labels, EXPLORED_IMAGES, ctx.rng)
    augment = run.recipe.augment
    explored = explore(run.dataset, run.backbone, indices, augment)
    body = figure(png_uri(figures.transform_grid(explored)), "transform explorer")
    size = run.backbone.input_size
    text = (
        f"Each row is one image as the network receives it. Clustering view: resize to "
        f"{round(size * 256 / 224)} px, centre crop {size} px (feature extraction). Training "
        f"views: random resized crop ({augment.crop_scale_min:g} to 1 of the area, aspect "
        f"3/4 to 4/3) to {size} px"
        + (", random horizontal flip" if augment.horizontal_flip else ", no flip")
        + (f", colour jitter {augment.color_jitter:g}" if augment.color_jitter else "")
        + f", drawn from seeds {', '.join(map(str, TRAINING_SEEDS))}."
    )
    if explored and explored[0].sobel is not None:
        text += (
            " Sobel Gx and Gy: the backbone's frozen Sobel layer applied to the normalised "
            "clustering view (mean of RGB, then the two gradient kernels); these two channels, "
            "not the colours, reach the first convolution. Red is positive, blue negative; "
            f"the outer {figures.SOBEL_BORDER} px, computed from the zero padding, are cropped."
        )
    else:
        text += " The backbone has no Sobel layer: the normalised RGB view is its input."
    return Section("transforms", "Transform explorer", body + note(text))


# ----------------------------------------------------------------------- evaluation


def _headline(command: str, scores: dict[str, Any]) -> str:
    """The main numbers of one layer's result."""

    def number(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, int | float) else "-"

    if command == "knn":
        return f"top-1 {number(scores.get('top1'), '.2f')}"
    if command == "linear-probe":
        best = scores.get("best") or {}
        last = scores.get("last") or {}
        return (
            f"best top-1 {number(best.get('top1'), '.2f')}, last {number(last.get('top1'), '.2f')}"
        )
    if command == "clusters":
        nmi, accuracy = scores.get("nmi"), scores.get("accuracy")
        return f"NMI {number(nmi, '.3f')}, accuracy {number(accuracy, '.3f')}"
    return escape(json.dumps(scores)[:80])


def eval_data_flags(data: dict[str, Any]) -> tuple[str, str | None]:
    """The ``dcframe eval`` flags naming a run's own images, from its recipe's ``[data]``
    (:func:`dcframe.evaluation.hints.data_flags`), and what the user must still supply
    (None when nothing)."""
    flags = data_flags(data) or ""
    if f"--val-dir {VAL_DIR}" in flags:
        return flags, (
            f"{VAL_DIR} is your folder of labelled validation images, one subfolder per "
            "class like the training folder (the recipe names the training images only)."
        )
    if "--val-set KEY=VALUE" in flags:
        return flags, (
            f"{data.get('name')} has no train/test split: give the validation images with "
            "--val-set KEY=VALUE (the same parameters, pointing at them)."
        )
    return flags, None


def eval_hints(ctx: Context) -> tuple[list[str], str | None]:
    """The commands that evaluate the run and its random-init baseline on the run's own
    data, writing into ``RUN/eval`` where the report finds them; and what is left to the
    user."""
    run = ctx.run
    flags, supply = eval_data_flags(run.recipe.data.model_dump())
    path = shlex.quote(str(run.path))
    output = shlex.quote(str(run.path / "eval"))
    recipe_file = shlex.quote(str(run.path / "recipe.toml"))
    commands = [
        f"dcframe eval knn {path} {flags}",
        f"dcframe eval knn --random-init {shlex.quote(run.recipe.backbone.name)} "
        f"--recipe {recipe_file} {flags} --output {output}",
    ]
    if run.dataset.labels is None:
        unlabelled = (
            "The run's images have no labels; kNN and linear probes need labelled "
            "training and validation images."
        )
        supply = f"{supply} {unlabelled}" if supply else unlabelled
    return commands, supply


def _hint_html(lead: str, commands: list[str], supply: str | None) -> str:
    lines = "".join(f"<pre><code>{escape(c)}</code></pre>" for c in commands)
    return note(lead) + lines + (note(supply) if supply else "")


def evaluation(ctx: Context) -> Section:
    found = ctx.run.evals
    commands, supply = eval_hints(ctx)
    if not found:
        return Section(
            "evaluation",
            "Evaluation",
            _hint_html(
                f"No results in {ctx.run.path / 'eval'}. Evaluate the run on its own data, "
                "and a random init of the same network for comparison:",
                commands,
                supply,
            ),
        )
    body = ""
    for command in sorted({r.command for r in found}):
        results = sorted(
            (r for r in found if r.command == command), key=lambda r: (r.random_init, r.tag)
        )
        layers = list(dict.fromkeys(layer for r in results for layer in r.payload["results"]))
        headers = [
            "layer",
            *(escape(r.tag + (" (random init)" if r.random_init else "")) for r in results),
        ]
        rows = [
            [
                escape(layer),
                *(
                    _headline(command, r.payload["results"][layer])
                    if isinstance(r.payload["results"].get(layer), dict)
                    else "-"
                    for r in results
                ),
            ]
            for layer in layers
        ]
        body += f"<h3>{escape(command)}</h3>" + table(headers, rows)
    if not any(r.random_init for r in found):
        body += _hint_html("No random-init result to compare with:", commands[1:], supply)
    body += note("Scores in percent for kNN and linear probes; NMI and accuracy in [0, 1].")
    return Section("evaluation", "Evaluation", body)
