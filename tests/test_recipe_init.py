"""dcframe recipe init: a starter recipe from a look at a folder of images."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from PIL import Image

from dcframe import recipe
from dcframe.recipe.starter import FolderSurvey, choose
from tests.conftest import invoke


def _images(folder: Path, count: int, size: tuple[int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", size, (i * 20 % 256, 0, 0)).save(folder / f"{i}.png")


def test_labelled_folder_gets_a_valid_commented_recipe(tmp_path: Path) -> None:
    for name in ("ant", "bee", "cat"):
        _images(tmp_path / "data" / name / "nested", 20, (48, 40))
    out = tmp_path / "starter.toml"
    result = invoke("recipe", "init", str(tmp_path / "data"), "--out", str(out))
    assert result.code == 0, result.stderr
    assert "60 images, 3 classes, median size 48x40" in result.stdout
    text = out.read_text()
    assert "# " in text and "10 per class (3 classes)" in text
    loaded = recipe.load(out)
    assert loaded.data.name == "imagefolder"
    assert Path(loaded.data.root) == (tmp_path / "data").resolve()
    assert loaded.backbone.small_input is True
    assert loaded.clusterer.k == 12  # 30 (10 per class), capped at one per 5 images
    assert loaded.preprocess[0].dim == 8
    assert tomllib.loads(text)["run"]["epochs"] == 50
    checked = invoke("recipe", "check", str(out))
    assert checked.code == 0, checked.stderr


def test_flat_folder_of_large_images_is_unlabelled_and_full_size(tmp_path: Path) -> None:
    _images(tmp_path / "flat", 6, (320, 240))
    out = tmp_path / "r.toml"
    result = invoke("recipe", "init", str(tmp_path / "flat"), "--out", str(out))
    assert result.code == 0, result.stderr
    assert "no class sub-folders" in result.stdout
    loaded = recipe.load(out)
    assert loaded.backbone.small_input is False
    assert "unlabelled" in out.read_text()


def test_choices_follow_the_documented_rules() -> None:
    big = choose(FolderSurvey(Path("x"), 1_281_167, (), (500, 375)))
    assert (big.k, big.pca_dim, big.epochs, big.small_input) == (10_000, 256, 200, False)
    assert big.batch_size == 256
    cifar = choose(FolderSurvey(Path("x"), 50_000, tuple("abcdefghij"), (32, 32)))
    assert (cifar.k, cifar.pca_dim, cifar.epochs, cifar.small_input) == (100, 256, 100, True)
    assert cifar.reassign == 1.0
    assert (big.input_size, cifar.input_size) == (224, 32)
    mid = [choose(FolderSurvey(Path("x"), 5_000, (), (w, w))) for w in (65, 96, 150, 223)]
    assert [(c.input_size, c.small_input) for c in mid] == [
        (64, True),
        (96, True),
        (128, True),
        (192, True),
    ]


def test_mid_sized_images_keep_their_size(tmp_path: Path) -> None:
    _images(tmp_path / "mid", 6, (120, 100))
    out = tmp_path / "r.toml"
    result = invoke("recipe", "init", str(tmp_path / "mid"), "--out", str(out))
    assert result.code == 0, result.stderr
    assert "input 96x96" in result.stdout
    loaded = recipe.load(out)
    assert (loaded.backbone.input_size, loaded.backbone.small_input) == (96, True)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("file", "is not a folder"),
        ("empty", "no images in"),
        ("mixed", "both class sub-folders"),
        ("existing-out", "exists already"),
    ],
)
def test_bad_input_is_a_clear_message_and_exit_code_2(
    tmp_path: Path, setup: str, message: str
) -> None:
    folder, out = tmp_path / "data", tmp_path / "out.toml"
    if setup == "file":
        folder.write_text("not a folder")
    elif setup == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("no images here")
    elif setup == "mixed":
        _images(folder / "cls", 2, (8, 8))
        _images(folder, 1, (8, 8))
    elif setup == "existing-out":
        _images(folder, 3, (8, 8))
        out.write_text("keep")
    result = invoke("recipe", "init", str(folder), "--out", str(out))
    assert result.code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_text() == "keep" if setup == "existing-out" else not out.exists()
