"""``dcframe report``: one self-contained HTML page about a run, from its saved files.

The page shows the metrics over epochs, the cluster sizes, galleries of clusters, a
searchable index of all clusters, clusters against labels, stability between epochs, the
transform explorer and the evaluation results. It embeds every image and plot as a data
URI and loads nothing, so it opens offline and as an e-mail attachment. It reads only
finished epochs and never takes the run's lock, so it can be made while the run goes on.

Modules: :mod:`~dcframe.report.run_data` (reading a run directory),
:mod:`~dcframe.report.clusters` (cluster sizes, purities, matching between epochs),
:mod:`~dcframe.engine.galleries` (which clusters and images are shown),
:mod:`~dcframe.report.explorer` (images through the run's transforms),
:mod:`~dcframe.report.figures` (the matplotlib plots), :mod:`~dcframe.report.embed`
(data URIs), :mod:`~dcframe.report.sections` and :mod:`~dcframe.report.page` (the HTML).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcframe.core.errors import UserError
from dcframe.core.files import atomic_write_bytes
from dcframe.report import sections
from dcframe.report.clusters import cluster_sizes, label_stats
from dcframe.report.page import document
from dcframe.report.run_data import RunData, load_run

REPORT_FILE = "report.html"


def choose_epoch(run: RunData, epoch: int | None) -> int:
    """The epoch to show: ``epoch`` if it is finished, by default the last finished one.

    Raises:
        UserError: ``epoch`` is not a finished epoch of the run.
    """
    finished = run.epochs
    if epoch is None:
        return finished[-1]
    if epoch not in finished:
        raise UserError(
            f"--epoch {epoch}: the run has finished epochs {finished[0]} to {finished[-1]} "
            f"(of {run.planned_epochs} planned); choose one of those, or leave --epoch out "
            "for the last"
        )
    return epoch


def render(run: RunData, epoch: int) -> str:
    """The report page of ``run`` showing the clusters of ``epoch``."""
    assignment = run.assignment(epoch)
    labels = run.dataset.labels
    stats = None
    if labels is not None:
        names = run.dataset.class_names
        classes = len(names) if names else int(labels.max()) + 1
        stats = label_stats(assignment, np.asarray(labels, dtype=np.int64), run.k, classes)
    context = sections.Context(
        run=run,
        epoch=epoch,
        assignment=assignment,
        distances=run.distances(epoch),
        sizes=cluster_sizes(assignment, run.k),
        labels=stats,
        rng=np.random.default_rng([int(run.recipe.run.seed), epoch]),
    )
    parts = [
        sections.overview(context),
        sections.curves(context),
        sections.sizes(context),
        sections.galleries(context),
        sections.cluster_index(context),
        sections.labels(context),
        sections.stability(context),
        sections.transforms(context),
        sections.evaluation(context),
    ]
    title = f"dcframe report: {run.recipe.run.name}"
    subtitle = (
        f"epoch {epoch} of {run.path}; {len(run.epochs)} of {run.planned_epochs} epochs finished"
    )
    return document(title, subtitle, parts)


def write_report(run_dir: Path, epoch: int | None = None, out: Path | None = None) -> Path:
    """Write the report of the run in ``run_dir``; returns the file written.

    Args:
        run_dir: The run directory.
        epoch: Epoch whose clusters are shown (default: the last finished).
        out: The HTML file (default: ``run_dir/report.html``), written atomically.

    Raises:
        UserError: ``run_dir`` holds no run or no finished epoch, ``epoch`` is not finished,
            a file of the run is damaged, or ``out`` cannot be written.
    """
    run = load_run(run_dir)
    shown = choose_epoch(run, epoch)
    target = out if out is not None else run_dir / REPORT_FILE
    if target.is_dir():
        raise UserError(f"--out: {str(target)!r} is a folder; give a file name, e.g. report.html")
    if not target.parent.is_dir():
        raise UserError(
            f"--out: the folder {str(target.parent)!r} does not exist; create it or choose another"
        )
    page = render(run, shown).encode("utf-8")
    atomic_write_bytes(target, lambda f: f.write(page), elsewhere="--out")
    return target
