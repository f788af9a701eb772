"""``dcframe data prepare``: resized JPEG shards that the ``webdataset`` dataset reads back,
resumable, refusing to overwrite, skipping and listing bad images."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcframe.components.builtin_params import ImageFolderParams, WebDatasetParams
from dcframe.components.datasets.folder import ImageFolder
from dcframe.components.datasets.shards import WebDataset
from dcframe.data.images import open_rgb
from dcframe.tools import prepare as tool
from tests.conftest import invoke

# (width, height) of each class's images: larger than --max-side 64, one smaller, one tall.
SIZES = {"cat": [(200, 150), (90, 120), (40, 30)], "dog": [(160, 160), (64, 20), (33, 300)]}


def smooth(width: int, height: int, seed: int) -> Image.Image:
    """A photograph-like (smooth) image, so JPEG's error stays small and comparable."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    phase = np.random.default_rng(seed).uniform(0, 6, 3)
    channels = [np.sin(3 * x + 2 * y + p) for p in phase]
    pixels = (np.stack(channels, axis=-1) * 100 + 128).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for c, (name, sizes) in enumerate(SIZES.items()):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            image = smooth(w, h, 10 * c + i)
            if i == 1:  # formats other than RGB JPEG come out as RGB JPEG too
                image.convert("L").save(root / name / f"{i}.png")
            else:
                image.save(root / name / f"{i}.jpg", quality=95)
    return root


def shards_of(stdout: str) -> str:
    """The ``shards = "..."`` pattern of the recipe lines the command prints."""
    found = re.search(r'^shards = "(.+)"$', stdout, re.MULTILINE)
    assert found, stdout
    return found.group(1)


def prepare(src: Path, out: Path, *options: str) -> tuple[str, str]:
    result = invoke("data", "prepare", str(src), str(out), "--max-side", "64", *options)
    assert result.code == 0, result.stderr
    return result.stdout, result.stderr


def test_shards_read_back_with_labels_and_resized_pixels(folder: Path, tmp_path: Path) -> None:
    stdout, _ = prepare(folder, tmp_path / "out", "--per-shard", "4")
    assert '[data]\nname = "webdataset"' in stdout
    pattern = shards_of(stdout)
    assert pattern == str((tmp_path / "out").resolve() / "train-{000000..000001}.tar")
    shards = WebDataset(WebDatasetParams(shards=pattern))
    source = ImageFolder(ImageFolderParams(root=str(folder)))
    assert len(shards) == len(source) == 6
    np.testing.assert_array_equal(shards.labels, source.labels)
    for i, path in enumerate(source.paths):
        original = open_rgb(path)
        expected = tool.shrink(original, 64)
        got = shards.image(i)
        assert got.size == expected.size
        assert max(got.size) <= 64
        if max(original.size) <= 64:  # never enlarged
            assert got.size == original.size
        difference = np.abs(np.asarray(got, np.int16) - np.asarray(expected, np.int16))
        assert difference.mean() < 3, (path, difference.mean())  # JPEG quality 90
    assert "6 of 6 images in 2 shards" in stdout
    assert re.search(r"bytes: .+ in -> .+ out \(.+x smaller", stdout)
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert manifest["complete"] and manifest["class_names"] == ["cat", "dog"]


def test_an_interrupted_prepare_continues_to_the_same_shards(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, part = tmp_path / "whole", tmp_path / "part"
    prepare(folder, whole, "--per-shard", "2")

    # Interrupt the second session at its fifth image, as Ctrl-C would.
    encode, calls, lock = tool.encode, [0], threading.Lock()

    def interrupted(*args: object) -> object:
        with lock:
            calls[0] += 1
            if calls[0] == 5:
                raise KeyboardInterrupt
        return encode(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(tool, "encode", interrupted)
    result = invoke(
        "data", "prepare", str(folder), str(part), "--max-side", "64", "--per-shard", "2"
    )
    assert result.code == 130 and "run the same command again" in result.stderr
    monkeypatch.setattr(tool, "encode", encode)
    manifest = json.loads((part / "prepare.json").read_text())
    assert not manifest["complete"] and list(manifest["done"]) == [
        "train-000000.tar",
        "train-000001.tar",
    ]
    assert not list(part.glob(".*.tmp"))  # the shard under way was not left half written

    # What a kill -9 leaves: a writer's temporary and a shard never recorded as finished.
    (part / ".train-000002.tar.999.abcd.tmp").write_bytes(b"half a shard")
    (part / "train-000002.tar").write_bytes(b"not a whole shard")
    first = (part / "train-000000.tar").stat()
    stdout, _ = prepare(folder, part, "--per-shard", "2", "--workers", "1")
    assert "2 by an earlier session" in stdout
    assert (part / "train-000000.tar").stat().st_mtime_ns == first.st_mtime_ns  # not redone
    assert not list(part.glob(".*.tmp"))
    for shard in sorted(whole.glob("*.tar")):
        assert (part / shard.name).read_bytes() == shard.read_bytes(), shard.name
    assert json.loads((part / "prepare.json").read_text()) == json.loads(
        (whole / "prepare.json").read_text()
    )


def test_refuses_an_out_that_holds_something_else(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = invoke("data", "prepare", str(folder), str(out))
    assert result.code == 2
    assert "already holds 1 file(s) (e.g. 'notes.txt') and no prepare.json" in result.stderr
    assert "choose a new or empty folder for OUT" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1

    (tmp_path / "file").write_text("x")
    result = invoke("data", "prepare", str(folder), str(tmp_path / "file"))
    assert result.code == 2 and "is a file" in result.stderr

    prepare(folder, tmp_path / "done")
    result = invoke("data", "prepare", str(folder), str(tmp_path / "done"), "--max-side", "32")
    assert result.code == 2 and "max_side 64, not 32" in result.stderr

    result = invoke("data", "prepare", str(tmp_path / "missing"), str(tmp_path / "o"))
    assert result.code == 2 and "neither a folder of images nor a recipe" in result.stderr


def test_bad_images_are_skipped_and_listed(folder: Path, tmp_path: Path) -> None:
    (folder / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    data = (folder / "cat" / "0.jpg").read_bytes()
    (folder / "cat" / "9-truncated.jpg").write_bytes(data[: len(data) // 3])
    stdout, _ = prepare(folder, tmp_path / "out")
    assert "6 of 8 images in 1 shards" in stdout and "2 skipped" in stdout
    assert "skipped #3" in stdout and "broken.jpg" in stdout
    listed = (tmp_path / "out" / "skipped_images.tsv").read_text().splitlines()
    assert listed[0] == "index\tpath\treason" and len(listed) == 3
    assert "9-truncated.jpg" in listed[1] and "broken.jpg" in listed[2]
    assert len(WebDataset(WebDatasetParams(shards=shards_of(stdout)))) == 6

    flat = tmp_path / "bad"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(b"nothing")
    result = invoke("data", "prepare", str(flat), str(tmp_path / "none"))
    assert result.code == 2 and "none of the 1 images can be read" in result.stderr


def test_a_recipe_names_the_source(tiny_recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "digits"
    result = invoke("data", "prepare", str(tiny_recipe), str(out), "--set", "data.split=test")
    assert result.code == 0, result.stderr
    assert "sklearn-digits: 360 of 360 images in 1 shards" in result.stdout
    assert "bytes: " in result.stdout and " in -> " not in result.stdout  # not files
    shards = WebDataset(WebDatasetParams(shards=shards_of(result.stdout)))
    assert len(shards) == 360 and shards.image(0).size == (8, 8)  # never enlarged
    result = invoke("data", "prepare", str(tmp_path), str(out), "--set", "data.split=test")
    assert result.code == 2 and "--set changes a recipe" in result.stderr


def test_help() -> None:
    result = invoke("data", "prepare", "--help")
    assert result.code == 0
    for option in ("--max-side", "--quality", "--per-shard", "--workers", "--prefix"):
        assert option in result.stdout
