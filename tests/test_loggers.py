"""Loggers, the sixth component kind: the jsonl record, csv, TensorBoard, and plugins."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dcframe import engine, recipe
from dcframe.core.errors import RecipeError
from dcframe.core.progress import Reporter
from tests.conftest import make_distribution

QUIET = Reporter(quiet=True)
ALL_THREE = 'loggers=[{name="jsonl"}, {name="csv"}, {name="tensorboard", every_steps=1}]'


def run(path: Path, *overrides: str, resume: bool = False) -> Path:
    return engine.run(recipe.load(path, list(overrides)), resume=resume, reporter=QUIET).path


def events(folder: Path) -> object:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_the_record_logger_comes_first(tiny_recipe: Path) -> None:
    assert [logger.name for logger in recipe.load(tiny_recipe).loggers] == ["jsonl"]
    for wrong in ('loggers=[{name="csv"}]', 'loggers=[{name="csv"}, {name="jsonl"}]', "loggers=[]"):
        with pytest.raises(RecipeError, match="the first logger must be"):
            recipe.load(tiny_recipe, [wrong])
    with pytest.raises(RecipeError, match="once"):
        recipe.load(tiny_recipe, ['loggers=[{name="jsonl"}, {name="csv"}, {name="csv"}]'])
    with pytest.raises(RecipeError, match="unknown"):
        recipe.load(tiny_recipe, ['loggers=[{name="jsonl"}, {name="wandb"}]'])


def test_csv_and_tensorboard_hold_every_epoch_and_resume_cleanly(tiny_recipe: Path) -> None:
    """Two epochs, then a resume to three: each logger holds each epoch exactly once, the
    steps, and a gallery image per epoch."""
    rundir = run(tiny_recipe, ALL_THREE, "run.epochs=2")
    run(tiny_recipe, ALL_THREE, "run.epochs=3", resume=True)
    record = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    with (rundir / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for row, epoch in zip(rows, record, strict=True):
        assert float(row["train_loss"]) == pytest.approx(epoch["train_loss"])
        assert float(row["seconds_total"]) == pytest.approx(epoch["seconds"]["total"])
    by_epoch = events(rundir / "tensorboard" / "epochs")
    losses = by_epoch.Scalars("epoch/train_loss")  # type: ignore[attr-defined]
    assert [e.step for e in losses] == [0, 1, 2]
    assert [e.value for e in losses] == pytest.approx([r["train_loss"] for r in record])
    assert [e.step for e in by_epoch.Images("clusters/largest")] == [0, 1, 2]  # type: ignore[attr-defined]
    steps = events(rundir / "tensorboard" / "steps")
    per_step = steps.Scalars("train/loss")  # type: ignore[attr-defined]
    # 180 samples per epoch in batches of 64: 3 steps, logged after each step.
    assert [e.step for e in per_step] == list(range(1, 4)) + list(range(4, 7)) + list(range(7, 10))
    assert {"train/lr", "train/images_per_s"} <= set(steps.Tags()["scalars"])  # type: ignore[attr-defined]


def test_a_plugin_logger_receives_the_run_and_cannot_break_it(
    tiny_recipe: Path, plugin_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Third-party loggers enter through `dcframe.loggers`; one that fails is left out with a
    warning while the run and the record go on."""
    make_distribution(
        plugin_path,
        "dcframe-memo",
        "0.1",
        {"dcframe.loggers": {"memo": "memo_logger:Memo", "broken": "memo_logger:Broken"}},
        {
            "memo_logger": """
            import json
            from dcframe.core.interfaces import Logger

            class Memo(Logger):
                '''Remembers what it was given, in a file.'''

                def open(self, run):
                    self.file = run.run_dir / "memo.jsonl"
                    self.file.write_text(json.dumps({"start": run.start_epoch,
                                                     "steps": run.steps_per_epoch}) + "\\n")

                def step(self, epoch, step, global_step, values):
                    with self.file.open("a") as f:
                        f.write(json.dumps({"global_step": global_step, **values}) + "\\n")

                def epoch(self, record):
                    with self.file.open("a") as f:
                        f.write(json.dumps({"epoch": record.metrics["epoch"],
                                            "images": len(record.assignment)}) + "\\n")

            class Broken(Logger):
                '''Fails at its first epoch.'''

                def epoch(self, record):
                    raise RuntimeError("the tracker's server is down")
            """
        },
    )
    overrides = 'loggers=[{name="jsonl"}, {name="broken"}, {name="memo"}]'
    rundir = engine.run(recipe.load(tiny_recipe, [overrides]), reporter=Reporter())
    lines = [json.loads(x) for x in (rundir.path / "memo.jsonl").read_text().splitlines()]
    assert lines[0] == {"start": 0, "steps": 3}
    assert [x["epoch"] for x in lines if "epoch" in x] == [0, 1]
    assert all(x["images"] == 360 for x in lines if "epoch" in x)
    assert [x["global_step"] for x in lines if "global_step" in x] == [1, 2, 3, 4, 5, 6]
    assert len((rundir.path / "metrics.jsonl").read_text().splitlines()) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "logger 'broken' failed (RuntimeError: the tracker's server is down)" in err


def test_gallery_shows_the_largest_clusters_nearest_first() -> None:
    from dcframe.engine.galleries import gallery_grid

    assignment = np.array([0, 0, 0, 1, 1, 2, -1])
    distances = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 0.0, np.nan], dtype=np.float32)

    def pixels_of(index: int) -> object:
        import torch

        return torch.full((4, 4, 3), index * 10, dtype=torch.uint8)

    grid = gallery_grid(pixels_of, assignment, distances, seed=0, clusters=2, per_cluster=3)
    # Two rows (clusters 0 then 1) of three 4-pixel cells with 2-pixel padding.
    assert grid.shape == (2 + 2 * (4 + 2), 2 + 3 * (4 + 2), 3) and grid.dtype == np.uint8
    cells = [[int(grid[2 + r * 6, 2 + c * 6, 0]) for c in range(3)] for r in range(2)]
    assert cells == [[10, 20, 0], [40, 30, 0]]  # nearest first; a missing image is blank
