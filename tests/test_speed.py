"""Issue 11: the clustering-view cache, `dcframe bench`, and the data-path settings.

Nothing here times anything: speed is measured by `dcframe bench`, a benchmark."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcframe import engine, recipe
from dcframe.components.datasets import ImageFolder, ImageFolderParams
from dcframe.core.progress import Reporter
from dcframe.data.transforms import PixelsOfClusteringView, smallest_side_used
from dcframe.engine.training import loader_workers
from tests.conftest import invoke

QUIET = Reporter(quiet=True)


def run(path: Path, *overrides: str) -> Path:
    return engine.run(recipe.load(path, list(overrides)), reporter=QUIET).path


def test_view_cache_gives_bit_identical_runs(tiny_recipe: Path) -> None:
    plain = run(tiny_recipe, "run.name=plain", "run.epochs=3")
    cached = run(tiny_recipe, "run.name=cached", "run.epochs=3", "run.view_cache_gib=1")
    for epoch in range(3):
        name = f"assignments/epoch_{epoch:04d}.npy"
        np.testing.assert_array_equal(np.load(plain / name), np.load(cached / name))
    a = torch.load(plain / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(cached / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    filled = np.load(cached / "cache" / "clustering_view_32px.0.filled.npy")
    assert filled.shape == (360,) and filled.all()
    pixels = np.memmap(cached / "cache" / "clustering_view_32px.0.u8", dtype=np.uint8)
    assert pixels.size == 360 * 32 * 32 * 3 and pixels.any()
    assert not (plain / "cache").exists()


def test_view_cache_over_its_budget_is_left_off(tiny_recipe: Path) -> None:
    result = invoke(
        "run", str(tiny_recipe), "--set", "run.epochs=1", "--set", "run.view_cache_gib=0.0001"
    )
    assert result.code == 0, result.stderr
    message = " ".join(result.stderr.split())
    assert "need 0.00 GiB, more than the 0.0001 GiB allowed: not cached" in message
    assert not (tiny_recipe.parent / "runs" / "tiny" / "cache").exists()


def test_bench_reports_every_stage_against_its_floor(tiny_recipe: Path) -> None:
    result = invoke("bench", str(tiny_recipe), "--images", "60", "--repeat", "1", "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 60 and report["dataset_images"] == 360
    stages = [row["stage"] for row in report["rows"]]
    assert stages == [
        "extraction",
        "extraction",
        "PCA + k-means (k=20)",
        "training, PIL in workers",
        "training, batched on cpu",
    ]
    for row in report["rows"]:
        assert row["dcframe_s"] > 0 and row["floor_s"] > 0 and row["floor"]
        assert row["ratio"] == row["floor_s"] / row["dcframe_s"]
    assert set(report["epoch_projection_s"]) == {"extract", "cluster", "train", "total"}
    assert report["decode_images_per_s"] > 0


def test_bench_times_cached_extraction_when_the_recipe_caches(tiny_recipe: Path) -> None:
    result = invoke(
        "bench",
        str(tiny_recipe),
        "--images",
        "40",
        "--repeat",
        "1",
        "--json",
        "--set",
        "run.view_cache_gib=1",
    )
    assert result.code == 0, result.stderr
    stages = [row["stage"] for row in json.loads(result.stdout)["rows"]]
    assert stages[0] == "extraction (views cached)"
    assert stages[-1] == "training, batched on cpu (images cached)"


def test_workers_auto_leaves_a_core_to_the_main_process() -> None:
    cores = len(os.sched_getaffinity(0))
    assert loader_workers("auto") == max(0, min(8, cores - 1))
    assert loader_workers(3) == 3


def test_checkpoint_keeps_the_loss_scaler(tiny_recipe: Path) -> None:
    rundir = run(tiny_recipe, "run.epochs=1")
    assert "grad_scaler" in torch.load(rundir / "checkpoint.pt", weights_only=True)


def _photo(path: Path) -> None:
    """A 640 x 480 JPEG with gradients, a pattern and noise: something like a photograph."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    pixels = np.stack([xx / 640 * 255, yy / 480 * 255, (xx + yy) % 97 / 97 * 255], -1)
    noisy = (pixels + rng.normal(0, 20, pixels.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path, quality=90)


def test_reduced_jpeg_decoding_keeps_the_clustering_view_within_tolerance(tmp_path: Path) -> None:
    """Stated tolerance: on the 0-255 scale, mean absolute difference <= 2, largest <= 16."""
    (tmp_path / "images").mkdir()
    _photo(tmp_path / "images" / "photo.jpg")
    view = PixelsOfClusteringView(32)
    reduced = ImageFolder(ImageFolderParams(root=str(tmp_path / "images")))
    full = ImageFolder(ImageFolderParams(root=str(tmp_path / "images"), reduced_decoding=False))
    for data in (reduced, full):
        data.decode_at_least(smallest_side_used(32, 0.5))
    assert reduced.image(0).size == (80, 60) and full.image(0).size == (640, 480)
    difference = np.abs(
        view(reduced.image(0)).numpy().astype(float) - view(full.image(0)).numpy().astype(float)
    )
    assert difference.mean() <= 2 and difference.max() <= 16


def test_reduced_decoding_never_goes_below_what_a_view_uses() -> None:
    assert smallest_side_used(224, 0.08) == 792  # the paper's smallest crop: no reduction
    assert smallest_side_used(32, 0.5) == 46
    assert smallest_side_used(224, 1.0) == 256  # the clustering view's resize


def test_bench_takes_a_recipe_with_extra_clusterings(tiny_recipe: Path) -> None:
    """``clusterer.extra_k`` values above the slice's size are not a reason to refuse: bench
    times the clustering with k and projects the extra ones from it."""
    args = ["--images", "40", "--repeat", "1", "--json", "--set", "clusterer.extra_k=[300]"]
    result = invoke("bench", str(tiny_recipe), *args)
    assert result.code == 0, result.stderr
    stages = [row["stage"] for row in json.loads(result.stdout)["rows"]]
    assert "PCA + k-means (k=20)" in stages
