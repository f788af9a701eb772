"""Issue 9, findings 10 to 12: hostile image files and folder layouts give clear errors.

Each test is named after the finding it proves; the data is a few tiny images in tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcframe.components.datasets import ImageFolder, ImageFolderParams
from dcframe.core.errors import BadImageError, UserError
from dcframe.data.images import to_rgb


def save_png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)
    return path


def folder(root: Path) -> ImageFolder:
    return ImageFolder(ImageFolderParams(root=str(root)))


# ------------------------------------------------------------------ finding 11: decoding


def test_finding_11_sixteen_bit_png_keeps_its_levels(tmp_path: Path) -> None:
    levels = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as raw:
        assert raw.mode == "I;16"  # what PIL makes of it, clipped to 2 levels by convert()
    image = folder(tmp_path).image(0)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8
    assert np.unique(pixels).size == 64  # every level kept
    assert pixels.min() == 0 and pixels.max() == 255  # scaled by the 0..65535 range
    np.testing.assert_array_equal(pixels[..., 0], np.round(levels / 257).astype(np.uint8))


def test_finding_11_float_tiff_is_not_black(tmp_path: Path) -> None:
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "float.tif")
    pixels = np.asarray(folder(tmp_path).image(0))
    assert pixels.min() == 0 and pixels.max() == 255 and np.unique(pixels).size == 64
    # Values outside every standard range stretch over their own min..max.
    wide = to_rgb(Image.fromarray(np.array([[-3.0, 1e6]], dtype=np.float32)))
    assert np.asarray(wide)[0, :, 0].tolist() == [0, 255]


def test_finding_11_other_modes_convert_as_pil_does() -> None:
    for mode in ("RGBA", "LA", "P", "CMYK", "1", "L", "I;16B", "I"):
        assert to_rgb(Image.new(mode, (3, 2))).mode == "RGB"
    eight_bit_in_i = to_rgb(Image.fromarray(np.array([[0, 200]], dtype=np.int32)))
    assert np.asarray(eight_bit_in_i)[0, :, 0].tolist() == [0, 200]


def test_finding_11_decompression_bomb_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_png(tmp_path / "huge.png")  # 64 pixels
    data = folder(tmp_path)
    # Over the limit (where PIL only warns) and over twice the limit (where it raises).
    for limit in (40, 10):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(BadImageError) as caught:
            data.image(0)
        assert caught.value.path.endswith("huge.png")
        assert f"64 pixels, over the limit of {limit}" in caught.value.reason
        assert "MAX_IMAGE_PIXELS" in caught.value.reason


def test_finding_11_every_decoding_failure_is_a_bad_image_error(tmp_path: Path) -> None:
    good = save_png(tmp_path / "a_good.png").read_bytes()
    (tmp_path / "b_truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "c_garbage.jpg").write_bytes(os.urandom(300))
    (tmp_path / "d_empty.tif").write_bytes(b"")
    (tmp_path / "e_text.webp").write_text("not an image")
    data = folder(tmp_path)
    assert data.image(0).size == (8, 8)
    for index in range(1, len(data)):
        with pytest.raises(BadImageError) as caught:
            data.image(index)
        assert caught.value.path == data.paths[index] and caught.value.reason
    os.remove(data.paths[0])  # gone since the scan
    with pytest.raises(BadImageError, match="No such file"):
        data.image(0)


def test_finding_11_symlink_loop_at_root(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(UserError, match=r"data.root: .*loop.* is a symbolic link loop"):
        folder(loop)


def test_finding_11_symlink_loop_in_a_class_folder(tmp_path: Path) -> None:
    save_png(tmp_path / "cat" / "a.png")
    (tmp_path / "dog").symlink_to(tmp_path / "dog")
    with pytest.raises(UserError, match=r"data.root: .*dog.* is a symbolic link loop"):
        folder(tmp_path)


def test_finding_11_unreadable_folder_names_path_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_png(tmp_path / "cat" / "a.png")
    real_scandir = os.scandir

    def scandir(path: str | Path) -> object:  # chmod does not stop root, so simulate it
        if str(path).endswith("cat"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UserError, match=r"permission denied reading .*cat.*chmod"):
        folder(tmp_path)


# ------------------------------------------------------------------ finding 12: layout


def test_finding_12_root_images_beside_class_folders_are_refused(tmp_path: Path) -> None:
    save_png(tmp_path / "cat" / "a.png")
    save_png(tmp_path / "dog" / "b.png")
    for name in ("loose1.png", "loose2.jpg", "loose3.png"):
        save_png(tmp_path / name)
    (tmp_path / "README.txt").write_text("not an image, no problem")
    with pytest.raises(UserError) as caught:
        folder(tmp_path)
    message = str(caught.value)
    assert "3 image(s) at the top of" in message and "'loose1.png'" in message
    assert "2 class folder(s)" in message and "move them into a class folder" in message


def test_finding_12_root_is_a_file(tmp_path: Path) -> None:
    path = save_png(tmp_path / "single.png")
    with pytest.raises(UserError) as caught:
        folder(path)
    assert "is a file, not a folder; point data.root at the folder that holds the images" in (
        str(caught.value)
    )
    assert "does not exist" not in str(caught.value)


def test_finding_12_broken_link_root_says_so(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(UserError, match="does not exist .a symbolic link to a missing target"):
        folder(tmp_path / "link")


# ------------------------------------------------------------------ finding 10: data check

CHECK_RECIPE = """
schema_version = 1
[run]
name = "check"
output_dir = "{output_dir}"
[data]
name = "imagefolder"
root = "{root}"
[backbone]
name = "alexnet"
[clusterer]
name = "faiss-kmeans"
k = 2
[sampler]
name = "uniform"
"""


def check_recipe(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "check.toml"
    path.write_text(CHECK_RECIPE.format(output_dir=tmp_path / "runs", root=root))
    return path


def image_tree(root: Path, good: int, bad: list[str]) -> list[str]:
    """``good`` tiny PNGs in two classes, plus corrupt files at ``bad``; returns their paths."""
    for i in range(good):
        save_png(root / f"class{i % 2}" / f"img{i:03d}.png", i)
    for name in bad:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(40)))
    return [str(root / name) for name in bad]


def test_finding_10_data_check_reports_every_bad_file(tmp_path: Path) -> None:
    from tests.conftest import invoke

    bad = image_tree(
        tmp_path / "images", 30, ["class0/zz_bad.png", "class1/broken.jpg", "class1/x.tif"]
    )
    listing = tmp_path / "bad.tsv"
    recipe = check_recipe(tmp_path, tmp_path / "images")
    result = invoke("data", "check", str(recipe), "--workers", "3", "--out", str(listing))
    output = result.stdout + result.stderr
    assert result.code == 2, output
    assert "Traceback" not in output
    assert "33 images checked, 30 readable, 3 bad" in result.stdout
    assert "sizes: 8x8 (30)" in result.stdout
    for path in bad:
        assert path in result.stdout
    assert "3 of 33 images cannot be read" in result.stderr
    rows = listing.read_text().splitlines()
    assert rows[0] == "index\tpath\treason" and sorted(
        r.split("\t")[1] for r in rows[1:]
    ) == sorted(bad)


def test_finding_10_data_check_caps_the_console_list(tmp_path: Path) -> None:
    from tests.conftest import invoke

    bad = image_tree(tmp_path / "images", 2, [f"c/bad{i:02d}.png" for i in range(25)])
    result = invoke("data", "check", str(check_recipe(tmp_path, tmp_path / "images")))
    assert result.code == 2 and "... and 5 more (--out FILE lists them all)" in result.stdout
    assert bad[19] in result.stdout and bad[20] not in result.stdout


def test_finding_10_data_check_on_a_clean_folder_exits_0(tmp_path: Path) -> None:
    from tests.conftest import invoke

    image_tree(tmp_path / "images", 12, [])
    result = invoke("data", "check", str(check_recipe(tmp_path, tmp_path / "images")))
    assert result.code == 0, result.stdout + result.stderr
    assert "12 images checked, 12 readable, 0 bad" in result.stdout


def test_finding_10_data_check_survives_a_plugin_that_throws(tmp_path: Path) -> None:
    from dcframe.cli.data_cmd import check_all

    class Flaky(ImageFolder):
        def image(self, index: int) -> Image.Image:
            if index == 1:
                raise ZeroDivisionError("plugin bug")
            if index == 2:
                return None  # type: ignore[return-value]
            return super().image(index)

    image_tree(tmp_path, 4, [])
    outcomes = sorted(
        check_all(Flaky(ImageFolderParams(root=str(tmp_path))), 2), key=lambda o: o.index
    )
    assert [o.reason is None for o in outcomes] == [True, False, False, True]
    assert outcomes[1].reason == "unexpected error ZeroDivisionError: plugin bug"
    assert outcomes[1].path.endswith(".png")
    assert "returned NoneType" in (outcomes[2].reason or "")


def test_data_check_threads_never_share_a_dataset_object(tmp_path: Path) -> None:
    """A dataset keeping open files (webdataset seeks in one handle per shard) must not be
    read by two threads at once: each thread reads through its own copy."""
    import threading
    from collections import defaultdict

    from dcframe.cli.data_cmd import check_all

    readers: defaultdict[int, set[int]] = defaultdict(set)

    class Recording(ImageFolder):
        def image(self, index: int) -> Image.Image:
            readers[id(self)].add(threading.get_ident())
            return super().image(index)

    image_tree(tmp_path, 24, [])
    original = Recording(ImageFolderParams(root=str(tmp_path)))
    outcomes = list(check_all(original, 3))
    assert len(outcomes) == 24 and all(o.reason is None for o in outcomes)
    assert id(original) not in readers
    assert all(len(threads) == 1 for threads in readers.values())
