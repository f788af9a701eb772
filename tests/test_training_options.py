"""Issue 14, item 4: the opt-in training options (lr schedule, top layer from the clusters,
colour jitter), each off by default so the paper's behaviour stays what a recipe gets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcframe import engine, recipe
from dcframe.core.distributed import World
from dcframe.core.progress import Reporter
from dcframe.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainingView
from dcframe.engine.schedule import LearningRate
from dcframe.engine.top_init import HeadInputs

QUIET = Reporter(quiet=True)


def train(path: Path, *overrides: str) -> Path:
    return engine.run(recipe.load(path, list(overrides)), reporter=QUIET).path


def losses(rundir: Path) -> list[float]:
    lines = (rundir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines]


# ------------------------------------------------------------------ schedule


def test_defaults_are_the_papers(tiny_recipe: Path) -> None:
    loaded = recipe.load(tiny_recipe, [])
    opt = loaded.optimizer
    assert (opt.schedule, opt.warmup_epochs, opt.top_init) == ("constant", 0.0, "normal")
    assert loaded.augment.color_jitter == 0.0
    assert LearningRate.from_recipe(opt, 500, 10).is_constant


def test_cosine_schedule_with_warm_up() -> None:
    rate = LearningRate(base=0.1, schedule="cosine", total_steps=100, warmup_steps=10)
    assert [rate.at(s) for s in (0, 4, 9)] == pytest.approx([0.01, 0.05, 0.1])
    assert rate.at(10) == pytest.approx(0.1)
    assert rate.at(55) == pytest.approx(0.05)  # half way through the cosine
    assert rate.at(99) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert rate.at(150) == 0.0  # past the end: stays at 0
    values = [rate.at(s) for s in range(10, 100)]
    assert values == sorted(values, reverse=True)


def test_constant_schedule_with_warm_up_only() -> None:
    rate = LearningRate(base=0.05, schedule="constant", total_steps=100, warmup_steps=4)
    assert not rate.is_constant
    assert [rate.at(s) for s in (0, 3, 4, 99)] == pytest.approx([0.0125, 0.05, 0.05, 0.05])


def test_a_run_follows_the_schedule_to_its_last_step(tiny_recipe: Path) -> None:
    rundir = train(tiny_recipe, "optimizer.schedule=cosine", "optimizer.lr=0.1")
    state = torch.load(rundir / "checkpoint.pt", weights_only=False)
    groups = state["body_optimizer"]["param_groups"]
    record = json.loads((rundir / "metrics.jsonl").read_text().splitlines()[-1])
    steps = -(-record["train_samples"] // 64)  # batches of 64, two epochs
    expected = LearningRate(0.1, "cosine", 2 * steps).at(2 * steps - 1)
    assert groups[0]["lr"] == pytest.approx(expected)


# ----------------------------------------------------------- top layer init


def test_head_inputs_give_the_cluster_means_as_cosine_logits() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8, dtype=np.float32) * 5
    assignment = np.repeat(np.arange(4), 25)
    assignment[:5] = -1  # unreadable images count for no cluster
    rows = centres[np.clip(assignment, 0, None)] + rng.normal(0, 0.3, (100, 8)).astype(np.float32)
    inputs = HeadInputs()
    for start in range(0, 100, 30):  # in batches, out of order like a sharded pass
        index = np.arange(start, min(start + 30, 100))[::-1]
        inputs.add(index, rows[index])
    weight, bias = inputs.top_layer(assignment, 6, 8, torch.relu, World())
    assert weight.shape == (6, 8) and bias.shape == (6,)
    assert torch.equal(weight[4:], torch.zeros(2, 8)) and torch.equal(bias[4:], torch.zeros(2))
    relu = np.maximum(rows, 0)
    kept = assignment >= 0
    centre = relu[kept].mean(axis=0)
    for c in range(4):
        offset = relu[assignment == c].mean(axis=0) - centre
        expected = offset / np.linalg.norm(offset) * 0.01 * np.sqrt(8)  # the paper's scale
        # float16 storage: three significant digits
        np.testing.assert_allclose(weight[c].numpy(), expected, rtol=2e-3, atol=1e-5)
        assert float(bias[c]) == pytest.approx(-expected @ centre, rel=2e-3, abs=1e-4)
    logits = torch.from_numpy(relu) @ weight.T + bias
    assert (logits.argmax(1).numpy()[kept] == assignment[kept]).all()


def test_centroid_init_trains(tiny_recipe: Path) -> None:
    paper = losses(train(tiny_recipe, "run.name=normal"))
    centroids = losses(train(tiny_recipe, "run.name=centroids", "optimizer.top_init=centroids"))
    assert all(math.isfinite(loss) for loss in centroids)
    assert centroids != paper


# ------------------------------------------------------------- colour jitter


def picture() -> Image.Image:
    pixels = np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_colour_jitter_is_drawn_from_the_image_seed() -> None:
    image = picture()
    plain, jittered = TrainingView(32), TrainingView(32, color_jitter=0.5)
    assert torch.equal(jittered(image, 7), jittered(image, 7))  # same seed, same view
    assert torch.equal(TrainingView(32, color_jitter=0.0)(image, 7), plain(image, 7))
    changed = [not torch.equal(jittered(image, s), plain(image, s)) for s in range(20)]
    assert sum(changed) >= 12  # jittered with probability 0.8 (or made gray)
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    views = [jittered(image, s) * std + mean for s in range(40)]
    gray = [v for v in views if torch.allclose(v[0], v[1], atol=1e-5)]
    assert 1 <= len(gray) <= 20  # grayscale with probability 0.2


def test_colour_jitter_trains(tiny_recipe: Path) -> None:
    rundir = train(tiny_recipe, "augment.color_jitter=0.5", "backbone.sobel=false")
    assert len(losses(rundir)) == 2
