"""The report's figures on their edge cases (one epoch, constant series, no labels) and the
evaluation hints naming the run's own data; figures built directly from small numbers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from dcframe.report import figures, sections
from dcframe.report.explorer import ExploredImage


def record(epoch: int, **fields: Any) -> dict[str, Any]:
    """One epoch of metrics.jsonl, nothing gone wrong, without labels unless given."""
    return {
        "epoch": epoch,
        "train_loss": 4.6 - 0.1 * epoch,
        "kmeans_objective": 100.0 - epoch,
        "nmi_vs_previous": None if epoch == 0 else 0.7,
        "nmi_vs_labels": None,
        "empty_clusters": 0,
        "cluster_size_min": 5,
        "cluster_size_median": 18.0,
        "cluster_size_max": 40,
        "skipped_images": 0,
        "seconds": {"extract": 1.0, "cluster": 0.5, "train": 2.0, "total": 3.5},
        **fields,
    }


def titles(figure: Figure) -> list[str]:
    return [ax.get_title() for ax in figure.axes]


def panel(figure: Figure, title: str) -> Any:
    return next(ax for ax in figure.axes if ax.get_title().startswith(title))


def assert_integer_ticks(ax: Any) -> None:
    ticks = ax.get_xticks()
    low, high = ax.get_xlim()
    shown = [t for t in ticks if low <= t <= high]
    assert shown and all(float(t).is_integer() for t in shown), ticks


def test_one_epoch_without_labels_draws_only_what_carries_information() -> None:
    metrics = [record(0)]
    figure = figures.metric_curves(metrics)
    # No NMI (no previous epoch, no labels), no kNN, no flat zero counters.
    assert titles(figure) == [
        "train loss",
        "k-means objective",
        "cluster size",
        "seconds per stage",
    ]
    for ax in figure.axes:
        assert_integer_ticks(ax)
        assert list(ax.get_xticks()) == [0]
        assert ax.get_xlim() == (-0.5, 0.5)
    sentences = figures.curve_panels(metrics).sentences()
    assert sentences[0] == "No empty clusters and no skipped images in any epoch."
    assert "NMI, not recorded" in sentences[1] and "kNN accuracy, not measured" in sentences[1]


def test_a_counter_that_moved_keeps_its_panel() -> None:
    metrics = [record(e, empty_clusters=[0, 2, 0][e]) for e in range(3)]
    figure = figures.metric_curves(metrics)
    assert "empty clusters" in titles(figure) and "skipped images" not in titles(figure)
    assert figures.curve_panels(metrics).quiet == ["no skipped images"]


def test_bounded_measures_get_an_axis_a_reader_can_trust() -> None:
    knn = [0.978, 0.966, 0.962]
    metrics = [
        record(e, knn_accuracy=knn[e], knn_k=20, nmi_vs_labels=0.61 + 0.001 * e) for e in range(3)
    ]
    figure = figures.metric_curves(metrics)
    assert len(figure.axes) == 6  # two rows of three, no empty slot
    for title in ("kNN accuracy (k=20)", "NMI"):
        low, high = panel(figure, title).get_ylim()
        assert high - low >= figures.BOUNDED_MIN_SPAN - 1e-9
        assert low >= -0.02 - 1e-9 and high <= 1.02 + 1e-9
    # Constant, at the bounds, and in percent.
    low, high = figures.bounded_limits(np.array([0.97, 0.97, np.nan]))
    assert high - low == pytest.approx(0.2) and high <= 1.02
    assert figures.bounded_limits(np.array([0.0, 0.01])) == pytest.approx((-0.02, 0.18))
    assert figures.bounded_limits(np.array([1.0])) == pytest.approx((0.82, 1.02))
    low, high = figures.bounded_limits(np.array([55.0, 56.0]))
    assert low < 55 and high > 56  # a measure in percent is not pulled into [0, 1]


def test_a_constant_unbounded_series_reads_as_a_level() -> None:
    metrics = [record(e, train_loss=4.0) for e in range(3)]
    low, high = panel(figures.metric_curves(metrics), "train loss").get_ylim()
    assert low == 0 and high == pytest.approx(5.0)


def test_many_epochs_get_a_few_integer_ticks() -> None:
    metrics = [record(e) for e in range(50)]
    figure = figures.metric_curves(metrics)
    for ax in figure.axes:
        assert_integer_ticks(ax)
    evolution = figures.size_evolution(list(range(50)), np.tile(np.linspace(1, 30, 7), (50, 1)), 49)
    assert_integer_ticks(evolution.axes[0])


def test_stability_of_a_single_pair_of_epochs() -> None:
    figure = figures.stability_curve([1], np.array([0.6]), np.array([0.7]))
    (ax,) = figure.axes
    assert list(ax.get_xticks()) == [1] and ax.get_xlim() == (0.5, 1.5)
    assert sorted(t.get_text() for t in ax.texts) == ["0.60", "0.70"]
    low, high = ax.get_ylim()
    assert high - low >= figures.BOUNDED_MIN_SPAN - 1e-9


def test_size_evolution_of_one_epoch_is_drawn() -> None:
    quantiles = np.array([[1.0, 5, 10, 18, 25, 30, 40]])
    (ax,) = figures.size_evolution([0], quantiles, 0).axes
    assert list(ax.get_xticks()) == [0]
    assert len(ax.patches) == 3  # the three bands as boxes, not fills of no width
    assert ax.get_ylim()[1] >= 40


def test_flow_numbers_only_where_readable() -> None:
    matrix = np.array([[0.7, 0.05, 0.25], [0.0, 0.92, 0.08]])
    figure = figures.flow_heatmap(matrix, np.array([3, 7]), np.array([1, 2]), (1, 2))
    texts = figure.axes[0].texts
    assert sorted(t.get_text() for t in texts) == ["25%", "70%", "92%"]
    assert all(t.get_fontsize() >= 7 for t in texts)
    wide = np.full((12, 41), 0.5)
    crowded = figures.flow_heatmap(wide, np.arange(12), np.arange(40), (1, 2))
    assert len(crowded.axes[0].texts) == 0  # too many columns to write in: colour only


def test_sobel_tiles_lose_their_padding_border() -> None:
    rng = np.random.default_rng(0)
    sobel = rng.normal(0, 0.1, (2, 16, 16))
    sobel[:, 0, :] = sobel[:, -1, :] = 9.0  # what zero padding does next to a dark image
    sobel[:, :, 0] = sobel[:, :, -1] = -9.0
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    explored = ExploredImage(0, "image 0", pixels, pixels, [pixels / 255.0], sobel)
    figure = figures.transform_grid([explored])
    shown = [im for ax in figure.axes for im in ax.get_images() if isinstance(im, AxesImage)]
    gx, gy = shown[2], shown[3]
    for image in (gx, gy):
        assert image.get_array().shape == (14, 14)
        assert np.abs(image.get_array()).max() < 1
        assert max(abs(v) for v in image.get_clim()) < 1  # colours scaled to the image


# ----------------------------------------------------------------- evaluation hints


def test_eval_flags_name_the_runs_own_data() -> None:
    flags = sections.eval_data_flags
    assert flags({"name": "sklearn-digits", "split": "all", "on_bad_image": "fail"}) == (
        "--data sklearn-digits",
        None,
    )
    images, supply = flags({"name": "imagefolder", "root": "/data/my photos"})
    assert images == "--train-dir '/data/my photos' --val-dir VAL_DIR"
    assert supply is not None and "VAL_DIR is your folder" in supply
    assert flags({"name": "cifar10", "root": "/data/c10", "split": "train"}) == (
        "--data cifar10 --data-set root=/data/c10",
        None,
    )
    listed, supply = flags({"name": "filelist", "path": "/data/list.csv", "format": "auto"})
    assert listed == "--data filelist --data-set path=/data/list.csv --val-set KEY=VALUE"
    assert supply is not None and "--val-set" in supply


@pytest.mark.parametrize("labelled", [True, False])
def test_eval_hints_of_an_image_folder_run(labelled: bool) -> None:
    data = SimpleNamespace(model_dump=lambda: {"name": "imagefolder", "root": "/photos"})
    run = SimpleNamespace(
        path=Path("/runs/photos"),
        recipe=SimpleNamespace(data=data, backbone=SimpleNamespace(name="vgg16")),
        dataset=SimpleNamespace(labels=np.zeros(3) if labelled else None),
    )
    commands, supply = sections.eval_hints(SimpleNamespace(run=run))  # type: ignore[arg-type]
    assert commands == [
        "dcframe eval knn /runs/photos --train-dir /photos --val-dir VAL_DIR",
        "dcframe eval knn --random-init vgg16 --recipe /runs/photos/recipe.toml "
        "--train-dir /photos --val-dir VAL_DIR --output /runs/photos/eval",
    ]
    assert all("sklearn-digits" not in c for c in commands)
    assert supply is not None and "VAL_DIR" in supply
    assert ("have no labels" in supply) is not labelled
