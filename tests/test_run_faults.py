"""Issue 9, findings 1-8 and 10 at run time: the run directory, the lock, damaged files, full
disks, diverging numbers and unreadable images. Each test is named after its finding."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcframe import engine, recipe
from dcframe.core.errors import UserError
from dcframe.core.files import atomic_write_bytes
from dcframe.core.metrics_file import json_line
from dcframe.core.progress import Reporter
from dcframe.engine.epoch_features import check_features
from dcframe.engine.extraction import COLLAPSE, collapse_notes
from dcframe.store.lock import locked
from tests.conftest import REPO, TINY_RECIPE, invoke

QUIET = Reporter(quiet=True)


def run(path: Path, *overrides: str, resume: bool = False) -> Path:
    return engine.run(recipe.load(path, list(overrides)), resume=resume, reporter=QUIET).path


def cli_run(path: Path, *args: str) -> tuple[int, str]:
    result = invoke("run", str(path), "--quiet", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.code, result.stderr


def unfinished_run(rundir: Path) -> None:
    """What a run killed (or failed) during epoch 0 leaves: files, but no checkpoint."""
    (rundir / "assignments").mkdir(parents=True)
    (rundir / "recipe.toml").write_text("schema_version = 1\n")
    (rundir / "metrics.jsonl").write_text('{"epoch": 0, "train_loss": 1.0}\n')
    np.save(rundir / "assignments" / "epoch_0000.npy", np.zeros(3, dtype=np.int64))
    (rundir / ".checkpoint.pt.123.abcd.tmp").write_bytes(b"half a checkpoint")


# ------------------------------------------------------------ run directory, resume


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_finding_1_run_without_finished_epoch_restarts(tiny_recipe: Path, resume: bool) -> None:
    rundir = tiny_recipe.parent / "runs" / "tiny"
    unfinished_run(rundir)
    code, err = cli_run(tiny_recipe, "--set", "run.epochs=1", *(["--resume"] if resume else []))
    assert code == 0, err
    records = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0] and "kmeans_objective" in records[0]
    assert np.load(rundir / "assignments" / "epoch_0000.npy").shape == (360,)


def test_finding_1_failed_first_epoch_restarts_with_fixed_recipe(tiny_recipe: Path) -> None:
    code, err = cli_run(tiny_recipe, "--set", "optimizer.lr=1e6", "--set", "run.epochs=1")
    assert code == 2 and "diverged" in err
    code, err = cli_run(tiny_recipe, "--set", "run.epochs=1")
    assert code == 0, err


def test_finding_1_resume_of_nothing_is_refused(tiny_recipe: Path) -> None:
    code, err = cli_run(tiny_recipe, "--resume")
    assert code == 2 and "no run in" in err and "start without --resume" in err


def test_finding_2_a_held_lock_refuses_a_second_run_naming_the_holder(tiny_recipe: Path) -> None:
    rundir = tiny_recipe.parent / "runs" / "tiny"
    rundir.mkdir(parents=True)
    with locked(rundir):
        code, err = cli_run(tiny_recipe, "--set", "run.epochs=1")
    assert code == 2
    assert "in use by another dcframe run" in err and f"pid {os.getpid()} on host" in err
    assert not (rundir / "checkpoint.pt").exists()
    code, err = cli_run(tiny_recipe, "--set", "run.epochs=1")  # released: free again
    assert code == 0, err


def test_finding_2_a_failed_run_releases_its_lock_at_once(tiny_recipe: Path) -> None:
    # The loader's forked workers inherit the lock's file; a failed run must stop them, or
    # a retry from the same Python session is refused as "in use by another dcframe run".
    # The error is kept, as a notebook keeps the last one (its traceback holds the loader).
    failing = ("run.workers=2", "optimizer.lr=1e6")
    with pytest.raises(UserError, match="the loss is nan") as failure:
        run(tiny_recipe, *failing)
    with locked(tiny_recipe.parent / "runs" / "tiny"):
        assert failure.traceback


@pytest.mark.slow
def test_finding_2_two_simultaneous_runs_exactly_one_proceeds(tiny_recipe: Path) -> None:
    command = [sys.executable, "-m", "dcframe", "run", str(tiny_recipe), "--quiet"]
    runs = [
        subprocess.Popen(
            [*command, "--set", f"optimizer.lr={lr}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lr in (0.05, 0.01)
    ]
    outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in runs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    refused = next(err for code, err in outcomes if code == 2)
    assert "in use by another dcframe run" in refused or "already holds a run" in refused
    assert "Traceback" not in refused
    rundir = tiny_recipe.parent / "runs" / "tiny"
    lines = (rundir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]  # one run's records only


@pytest.fixture
def finished_run(tiny_recipe: Path) -> Path:
    return run(tiny_recipe, "run.epochs=1")


def test_finding_3_resume_a_run_saved_before_fields_were_added(
    tiny_recipe: Path, finished_run: Path
) -> None:
    # A run started by an older dcframe has no line for a field added since (with its
    # default); an upgrade alone must not make --resume refuse it as "a different recipe".
    saved = finished_run / "recipe.toml"
    lines = saved.read_text().splitlines()
    older = [line for line in lines if not line.startswith(("color_jitter", "top_init"))]
    assert len(older) == len(lines) - 2
    saved.write_text("\n".join(older) + "\n")
    code, err = cli_run(tiny_recipe, "--resume", "--set", "run.epochs=2")
    assert code == 0, err


def resume_error(tiny_recipe: Path) -> str:
    code, err = cli_run(tiny_recipe, "--resume", "--set", "run.epochs=2")
    assert code == 2
    return " ".join(err.split())


def test_finding_3_resume_random_bytes_checkpoint(tiny_recipe: Path, finished_run: Path) -> None:
    (finished_run / "checkpoint.pt").write_bytes(os.urandom(4096))
    err = resume_error(tiny_recipe)
    assert "checkpoint.pt is not a PyTorch checkpoint" in err and "restore it" in err
    assert "weights_only" not in err


def test_finding_3_resume_truncated_checkpoint(tiny_recipe: Path, finished_run: Path) -> None:
    data = (finished_run / "checkpoint.pt").read_bytes()
    (finished_run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    err = resume_error(tiny_recipe)
    assert "checkpoint.pt is truncated or damaged" in err and "restore it" in err


def test_finding_3_resume_checkpoint_of_wrong_structure(
    tiny_recipe: Path, finished_run: Path
) -> None:
    torch.save({"model": [1, 2, 3]}, finished_run / "checkpoint.pt")
    assert "not a dcframe run checkpoint (missing epoch" in resume_error(tiny_recipe)


def test_finding_3_resume_without_recipe_toml(tiny_recipe: Path, finished_run: Path) -> None:
    (finished_run / "recipe.toml").unlink()
    err = resume_error(tiny_recipe)
    assert "recipe.toml is missing" in err and "restore it" in err


def test_finding_3_torn_last_metrics_line_is_dropped_on_resume(
    tiny_recipe: Path, finished_run: Path
) -> None:
    metrics = finished_run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 1, "kmeans_obj')
    code, err = cli_run(tiny_recipe, "--resume", "--set", "run.epochs=2")
    assert code == 0, err
    assert [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()] == [0, 1]


def test_finding_3_torn_middle_metrics_line_is_named(tiny_recipe: Path, finished_run: Path) -> None:
    metrics = finished_run / "metrics.jsonl"
    metrics.write_text('{"epoch": 0, "kmeans\n' + metrics.read_text())
    err = resume_error(tiny_recipe)
    assert "metrics.jsonl, line 1: not a JSON epoch record" in err and "delete that line" in err


def test_finding_4_stray_temporaries_removed_and_umask_respected(tiny_recipe: Path) -> None:
    rundir = tiny_recipe.parent / "runs" / "tiny"
    unfinished_run(rundir)
    old = os.umask(0o022)
    try:
        run(tiny_recipe, "run.epochs=1")
    finally:
        os.umask(old)
    assert not list(rundir.rglob("*.tmp"))
    for name in ("checkpoint.pt", "metrics.jsonl", "recipe.toml", "assignments/epoch_0000.npy"):
        assert (rundir / name).stat().st_mode & 0o777 == 0o644, name


def test_finding_5_full_disk_is_named_and_keeps_the_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous")

    def fill(handle: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UserError, match=r"no space left on device while writing .*checkpoint.pt"):
        atomic_write_bytes(target, fill)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A real, tiny file system (tmpfs); needs root, as on CI and the dev machines."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_finding_5_full_disk_during_checkpoint_write(
    tiny_recipe: Path, finished_run: Path, small_disk: Path
) -> None:
    size = sum(p.stat().st_size for p in finished_run.rglob("*") if p.is_file())
    # Room for the finished run plus a little: the next checkpoint cannot fit beside it.
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size + 64 * 1024}", "tmpfs", str(small_disk)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    shutil.copytree(finished_run, small_disk / "tiny")
    before = (small_disk / "tiny" / "checkpoint.pt").read_bytes()
    code, err = cli_run(
        tiny_recipe, "--resume", "--set", "run.epochs=2", "--set", f'run.output_dir="{small_disk}"'
    )
    message = " ".join(err.split())
    assert code == 2 and "no space left on device while writing" in message, err
    assert (small_disk / "tiny" / "checkpoint.pt").read_bytes() == before
    assert not list(small_disk.rglob("*.tmp"))


# ------------------------------------------------------------------ numbers


def test_finding_6_diverging_loss_stops_the_run_naming_epoch_and_stage(tiny_recipe: Path) -> None:
    run(tiny_recipe, "run.epochs=1", "run.name=good")
    code, err = cli_run(tiny_recipe, "--set", "optimizer.lr=1e6")
    message = " ".join(err.split())
    assert code == 2
    assert "epoch 0, train: training step" in message and "the loss is nan" in message
    assert "lower optimizer.lr (now 1e+06)" in message


def test_finding_6_divergence_after_a_finished_epoch_keeps_its_checkpoint(
    tiny_recipe: Path,
) -> None:
    # lr 1e4 survives epoch 0 on this recipe and its loss is NaN from epoch 1's first step.
    code, err = cli_run(tiny_recipe, "--set", "optimizer.lr=1e4", "--set", "run.epochs=3")
    message = " ".join(err.split())
    assert code == 2 and "epoch 1, train: training step 0: the loss is nan" in message
    assert "checkpoint.pt keeps epoch 0" in message
    rundir = tiny_recipe.parent / "runs" / "tiny"
    state = torch.load(rundir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    lines = (rundir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0]


def test_finding_2_stale_lock_of_a_dead_run_does_not_block(tiny_recipe: Path) -> None:
    rundir = tiny_recipe.parent / "runs" / "tiny"
    rundir.mkdir(parents=True)
    (rundir / ".lock").write_text('{"pid": 999999, "host": "gone", "started": "yesterday"}')
    code, err = cli_run(tiny_recipe, "--set", "run.epochs=1")
    assert code == 0, err


def test_finding_6_collapse_is_a_warning_and_metrics_stay_json() -> None:
    same = np.ones((5, 4), dtype=np.float32)
    with pytest.raises(UserError, match="NaN or infinite"):
        check_features(np.full((4, 3), np.nan, dtype=np.float32))
    assert collapse_notes(same) == [COLLAPSE]
    rounding = same + np.float32(1e-7) * np.arange(5, dtype=np.float32)[:, None]
    assert collapse_notes(rounding) == [COLLAPSE]  # batch-to-batch rounding is no variance
    assert collapse_notes(np.eye(5, 4, dtype=np.float32)) == []
    line = json_line({"epoch": 0, "train_loss": float("nan"), "seconds": {"x": float("inf")}})
    assert json.loads(line) == {"epoch": 0, "train_loss": None, "seconds": {"x": None}}
    assert "NaN" not in line


@pytest.mark.parametrize("chain", ["pca, l2", "none"])
def test_finding_6_collapsed_run_warns_in_console_and_metrics(tmp_path: Path, chain: str) -> None:
    # Seen on the raw features: whitening turns the rounding between batches into variance.
    for path in image_folder(tmp_path / "images"):  # forty copies of one picture
        Image.new("RGB", (16, 16), (90, 30, 200)).save(path)
    recipe = folder_recipe(tmp_path, tmp_path / "images")
    if chain == "none":
        text = recipe.read_text()
        steps = '[[preprocess]]\nname = "pca"\ndim = 8\n[[preprocess]]\nname = "l2"\n'
        assert steps in text
        text = text.replace(steps, "").replace(
            "schema_version = 1", "preprocess = []\nschema_version = 1"
        )
        recipe.write_text(text)
    result = invoke("run", str(recipe), "--set", "run.epochs=1")
    assert result.code == 0, result.stderr
    assert "warning: epoch 0: feature collapse" in " ".join(result.stderr.split())
    record = json.loads((tmp_path / "runs" / "folder" / "metrics.jsonl").read_text())
    assert any("collapse" in w for w in record["warnings"]), record


def test_finding_7_output_dir_too_long_for_the_file_system(tiny_recipe: Path) -> None:
    deep = tiny_recipe.parent / ("x" * 300)
    code, err = cli_run(tiny_recipe, "--set", f'run.output_dir="{deep}"')
    assert code == 2 and "run.output_dir: cannot write to" in err and "name too long" in err


# --------------------------------------------------------------------- images


def image_folder(root: Path, count: int = 40) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = root / f"class{i % 2}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return sorted(paths, key=lambda p: (p.parent.name, p.name))


def folder_recipe(tmp_path: Path, root: Path) -> Path:
    """The tiny recipe on an image folder (40 images: k 4, PCA 8, batches of 8)."""
    text = TINY_RECIPE.format(output_dir=tmp_path / "runs")
    for old, new in (
        ('name = "tiny"', 'name = "folder"'),
        ('name = "sklearn-digits"\nsplit = "test"', f'name = "imagefolder"\nroot = "{root}"'),
        ("dim = 16", "dim = 8"),
        ("k = 20", "k = 4"),
        ("batch_size = 64", "batch_size = 8"),
    ):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "folder.toml"
    path.write_text(text)
    return path


def outside_preflight(num_images: int, seed: int = 5) -> int:
    """An index the engine's preflight check does not open (so the pass itself meets it)."""
    picks = {0, num_images - 1, *np.random.default_rng(seed).integers(0, num_images, 8).tolist()}
    return min(set(range(num_images)) - picks)


@pytest.mark.parametrize("workers", [0, 2])
def test_finding_10_fail_policy_names_the_file_without_traceback(
    tmp_path: Path, workers: int
) -> None:
    paths = image_folder(tmp_path / "images")
    broken = paths[outside_preflight(len(paths))]
    broken.write_bytes(b"not a png")
    code, err = cli_run(
        folder_recipe(tmp_path, tmp_path / "images"), "--set", f"run.workers={workers}"
    )
    message = " ".join(err.split())
    assert code == 2
    assert f"cannot read image '{broken}'" in message and "epoch 0, extract" in message
    assert 'data.on_bad_image = "skip"' in message
    assert "worker" not in message.lower()


def test_finding_10_skip_policy_leaves_images_out_and_lists_them(tmp_path: Path) -> None:
    paths = image_folder(tmp_path / "images")
    index = outside_preflight(len(paths))
    paths[index].write_bytes(b"not a png")
    recipe_path = folder_recipe(tmp_path, tmp_path / "images")
    result = invoke(
        "run",
        str(recipe_path),
        "--set",
        "data.on_bad_image=skip",
        "--set",
        "data.max_bad_fraction=0.1",
    )
    assert result.code == 0, result.stderr
    assert f"skipping unreadable image '{paths[index]}'" in " ".join(result.stderr.split())
    rundir = tmp_path / "runs" / "folder"
    listed = (rundir / "skipped_images.tsv").read_text().splitlines()
    assert listed[0] == "index\tpath\treason" and listed[1].startswith(f"{index}\t{paths[index]}\t")
    for epoch in (0, 1):
        labels = np.load(rundir / "assignments" / f"epoch_{epoch:04d}.npy")
        assert labels[index] == -1 and (np.delete(labels, index) >= 0).all()
    records = [json.loads(x) for x in (rundir / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_images"] for r in records] == [1, 1]


def test_finding_10_skip_policy_stops_when_too_many_are_bad(tmp_path: Path) -> None:
    paths = image_folder(tmp_path / "images")
    for path in paths[::4]:
        path.write_bytes(b"not a png")
    code, err = cli_run(
        folder_recipe(tmp_path, tmp_path / "images"), "--set", "data.on_bad_image=skip"
    )
    message = " ".join(err.split())
    assert code == 2 and "are unreadable (e.g. '" in message
    assert "more than data.max_bad_fraction = 0.01 allows" in message
    assert "dcframe data check RECIPE" in message
