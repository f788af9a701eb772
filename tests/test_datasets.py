"""Datasets on real files: class folders, flat folders, broken input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcframe.components.datasets import (
    ImageFolder,
    ImageFolderParams,
    SklearnDigits,
    SklearnDigitsParams,
)
from dcframe.core.errors import UserError


def save_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 5, 3), value, dtype=np.uint8)).save(path)


def test_class_folders_give_sorted_labels(tmp_path: Path) -> None:
    save_image(tmp_path / "cat" / "b.png", 10)
    save_image(tmp_path / "cat" / "a.jpg", 20)
    save_image(tmp_path / "ant" / "z.png", 30)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = ImageFolder(ImageFolderParams(root=str(tmp_path)))
    assert len(data) == 3
    assert data.class_names == ["ant", "cat"]
    assert data.labels is not None and data.labels.tolist() == [0, 1, 1]
    assert [Path(p).name for p in data.paths] == ["z.png", "a.jpg", "b.png"]
    image = data.image(0)
    assert image.mode == "RGB" and image.size == (5, 6)


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    save_image(tmp_path / "one.png", 1)
    save_image(tmp_path / "two.png", 2)
    data = ImageFolder(ImageFolderParams(root=str(tmp_path)))
    assert len(data) == 2 and data.labels is None


def test_missing_empty_and_corrupt_data_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data.root: folder .* does not exist"):
        ImageFolder(ImageFolderParams(root=str(tmp_path / "nowhere")))
    with pytest.raises(UserError, match="data.root: no images"):
        ImageFolder(ImageFolderParams(root=str(tmp_path)))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    data = ImageFolder(ImageFolderParams(root=str(tmp_path)))
    with pytest.raises(UserError, match="cannot read image .*broken.jpg.*remove or replace"):
        data.image(0)


def test_digits_fixed_split() -> None:
    full = SklearnDigits(SklearnDigitsParams())
    train = SklearnDigits(SklearnDigitsParams(split="train"))
    test = SklearnDigits(SklearnDigitsParams(split="test"))
    assert (len(full), len(train), len(test)) == (1797, 1437, 360)
    assert test.labels.tolist() == full.labels[::5].tolist()
    assert full.image(0).size == (8, 8) and full.image(0).mode == "RGB"
    from sklearn.datasets import load_digits

    expected = np.round(load_digits().images[0] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(full.image(0))[..., 0], expected)
