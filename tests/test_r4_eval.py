"""Evaluation finds its way (issue 26, point 2): a random-init result lands with the run it
is compared to, and every data hint names the run's own data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcframe.evaluation.hints import data_flags
from tests.conftest import TINY_RECIPE, invoke

#: Small enough for a second: 40 training and 20 validation digits, 5 neighbours.
FAST = ["--data", "sklearn-digits", "--limit-train", "40", "--limit-val", "20", "-k", "5", "-q"]


def fake_run(folder: Path, recipe: str = TINY_RECIPE, **fields: str) -> Path:
    """A folder that holds a run as far as evaluation looks: recipe.toml + metrics.jsonl."""
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(recipe.format(output_dir=folder.parent, **fields))
    (folder / "metrics.jsonl").write_text('{"epoch": 0}\n')
    return folder


def random_knn(recipe: Path, *extra: str) -> tuple[int, str, str]:
    result = invoke(
        "eval", "knn", "--random-init", "alexnet", "--recipe", str(recipe), *FAST, *extra
    )
    return result.code, result.stdout, result.stderr


def only_result(folder: Path) -> Path:
    (file,) = folder.glob("knn-random-alexnet-*.json")
    assert json.loads(file.read_text())["model"]["source"] == "random-init"
    return file


def test_a_runs_own_recipe_puts_the_result_in_its_eval_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path / "elsewhere" / "mine")  # its [run] names another folder
    code, stdout, stderr = random_knn(run / "recipe.toml")
    assert code == 0, stderr
    file = only_result(run / "eval")
    assert f"results: {file}" in stdout
    assert not (tmp_path / "eval").exists() and "note:" not in stderr


def test_b_a_source_recipe_finds_its_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "quick.toml"  # as in the README: output_dir relative to the folder
    source.write_text(TINY_RECIPE.format(output_dir="runs"))
    run = fake_run(tmp_path / "runs" / "tiny")
    code, stdout, stderr = random_knn(source)
    assert code == 0, stderr
    assert "results: runs/tiny/eval/knn-random-alexnet-" in stdout
    only_result(run / "eval")
    assert not (tmp_path / "eval").exists() and "note:" not in stderr


def test_c_without_a_run_the_result_stays_here_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "quick.toml"
    source.write_text(TINY_RECIPE.format(output_dir="runs"))
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "recipe.toml").write_text(source.read_text())  # no epoch yet
    code, stdout, stderr = random_knn(source, "--json")
    assert code == 0, stderr
    file = only_result(tmp_path / "eval")
    assert json.loads(stdout)["tag"] == "random-alexnet"  # the note stays off stdout
    assert f"results: eval/{file.name}" in stderr
    (note,) = [line for line in stderr.splitlines() if line.startswith("note:")]
    assert str(tmp_path / "eval") in note and "--output RUN/eval" in note
    assert f"no run of {source} in runs/tiny" in note


def test_d_output_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path / "runs" / "tiny")
    code, stdout, stderr = random_knn(run / "recipe.toml", "--output", str(tmp_path / "chosen"))
    assert code == 0, stderr
    file = only_result(tmp_path / "chosen")
    assert f"results: {file}" in stdout and "note:" not in stderr
    assert not (run / "eval").exists()


def test_a_run_without_data_is_told_its_own(tmp_path: Path) -> None:
    digits = fake_run(tmp_path / "runs" / "digits")
    result = invoke("eval", "knn", str(digits))
    assert result.code == 2
    assert f"the run's own ({digits}) is --data sklearn-digits;" in result.stderr
    assert "split" not in result.stderr  # evaluation reads its own train/test splits
    folder_recipe = TINY_RECIPE.replace(
        'name = "sklearn-digits"\nsplit = "test"', 'name = "imagefolder"\nroot = "/data/my photos"'
    )
    photos = fake_run(tmp_path / "runs" / "photos", folder_recipe)
    for source in (photos, photos / "checkpoint.pt"):  # the run, or a checkpoint inside it
        result = invoke("eval", "linear-probe", str(source))
        assert result.code == 2
        assert "--train-dir '/data/my photos' --val-dir VAL_DIR" in result.stderr
        assert "sklearn-digits" not in result.stderr


def test_a_random_init_is_told_the_data_of_its_recipe(tmp_path: Path) -> None:
    source = tmp_path / "cifar.toml"
    source.write_text(
        TINY_RECIPE.format(output_dir="runs").replace(
            'name = "sklearn-digits"\nsplit = "test"', 'name = "cifar10"\nroot = "/data/cifar"'
        )
    )
    result = invoke("eval", "clusters", "--random-init", "alexnet", "--recipe", str(source))
    assert result.code == 2
    assert f"that of {source} is --data cifar10 --data-set root=/data/cifar;" in result.stderr
    result = invoke("eval", "knn", "--random-init", "alexnet")  # nothing to go by
    assert result.code == 2 and "e.g. --data sklearn-digits" in result.stderr


def test_data_flags_of_recipe_tables() -> None:
    assert data_flags({"name": "sklearn-digits", "split": "all", "on_bad_image": "skip"}) == (
        "--data sklearn-digits"
    )
    assert data_flags({"name": "imagefolder", "root": "/d", "reduced_decoding": False}) == (
        "--train-dir /d --val-dir VAL_DIR --data-set reduced_decoding=false"
    )
    assert data_flags({"name": "filelist", "path": "a.csv", "label_column": "y"}) == (
        "--data filelist --data-set path=a.csv --data-set label_column=y --val-set KEY=VALUE"
    )
    assert data_flags({"name": "not-installed", "x": 1}) == "--data not-installed"
    assert data_flags({}) is None
