"""Issue 9: real processes killed with SIGKILL at every stage of an epoch, then resumed (or,
before the first checkpoint, started again), end bit-identical to an uninterrupted run, with
no stray files. ``tests/kill_child.py`` is the process that kills itself."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO, run_cli

CHILD = str(Path(__file__).with_name("kill_child.py"))

NO_REPORT = "--no-report"  # these tests never look at the page, which takes seconds to draw

# (stage, which call of it dies): epoch 1 of 2 for every stage, and epoch 0's training,
# which dies before any checkpoint exists.
KILLS = [
    ("extract", 3),  # epoch 1 (each epoch has a fit-sample pass and an empty rest pass)
    ("cluster", 2),
    ("train", 2),
    ("checkpoint", 2),
    ("train", 1),  # before the first checkpoint
]
# The default suite kills in training (DeepCluster here, DeepCluster-v2 in
# test_deepcluster_v2.py); every stage is the long profile's (-m long), which keeps the
# default suite inside its 15 minutes on 2 cores.
DEFAULT_KILLS = {("train", 2)}


def files(rundir: Path) -> set[str]:
    return {str(p.relative_to(rundir)) for p in rundir.rglob("*") if p.is_file()}


def same_run(left: Path, right: Path) -> None:
    assert files(left) == files(right)
    for name in sorted(files(left)):
        if name.startswith("assignments/"):
            np.testing.assert_array_equal(np.load(left / name), np.load(right / name), name)
    a = torch.load(left / "checkpoint.pt", weights_only=True)
    b = torch.load(right / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["body_optimizer"]["state"].items():
        assert torch.equal(
            value["momentum_buffer"], b["body_optimizer"]["state"][key]["momentum_buffer"]
        )
    assert records(left) == records(right)


def records(rundir: Path) -> list[dict[str, object]]:
    """The epoch records without their timings, which differ from run to run."""
    lines = (rundir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    from tests.conftest import TINY_RECIPE

    folder = tmp_path_factory.mktemp("straight")
    text = TINY_RECIPE.format(output_dir=folder / "runs")
    (folder / "tiny.toml").write_text(text)
    result = run_cli("run", str(folder / "tiny.toml"), "--quiet", NO_REPORT)
    assert result.code == 0, result.stderr
    return text, folder / "runs" / "tiny"


def killed_run(recipe: Path, stage: str, call: int, *args: str) -> None:
    killed = subprocess.run(
        [sys.executable, CHILD, stage, str(call), "run", str(recipe), "--quiet", *args, NO_REPORT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def resume_and_compare(recipe: Path, straight: Path) -> None:
    resumed = run_cli("run", str(recipe), "--resume", "--quiet", NO_REPORT)
    assert resumed.code == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    rundir = recipe.parent / "runs" / "tiny"
    same_run(straight, rundir)
    assert not list(rundir.rglob("*.tmp"))


def local_recipe(tmp_path: Path, uninterrupted: tuple[str, Path]) -> Path:
    text, straight = uninterrupted
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(text.replace(str(straight.parent), str(tmp_path / "runs")))
    return recipe


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "call"),
    [
        pytest.param(*kill, marks=() if kill in DEFAULT_KILLS else pytest.mark.long)
        for kill in KILLS
    ],
    ids=[f"{s}-{c}" for s, c in KILLS],
)
def test_sigkill_then_resume_equals_uninterrupted(
    tmp_path: Path, uninterrupted: tuple[str, Path], stage: str, call: int
) -> None:
    recipe = local_recipe(tmp_path, uninterrupted)
    killed_run(recipe, stage, call)
    resume_and_compare(recipe, uninterrupted[1])


# A kill before the first checkpoint, then one during epoch 1 of the restarted process (which
# starts again at epoch 0, so the call numbers are those of a fresh run); and two kills in epoch
# 1 (the resumed process starts at epoch 1: its first training pass is epoch 1's).
TWICE = [(KILLS[-1], kill) for kill in KILLS[:-1]] + [(("cluster", 2), ("train", 1))]


@pytest.mark.long
@pytest.mark.parametrize(
    ("first", "second"), TWICE, ids=[f"{a[0]}{a[1]}-then-{b[0]}{b[1]}" for a, b in TWICE]
)
def test_killed_twice_then_resumed_equals_uninterrupted(
    tmp_path: Path,
    uninterrupted: tuple[str, Path],
    first: tuple[str, int],
    second: tuple[str, int],
) -> None:
    """Long profile (-m long): a kill in epoch 0, then the resumed run killed again in epoch 1."""
    recipe = local_recipe(tmp_path, uninterrupted)
    killed_run(recipe, *first)
    killed_run(recipe, *second, "--resume")
    resume_and_compare(recipe, uninterrupted[1])
