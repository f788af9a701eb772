"""Datasets in the formats people have: nested class folders, file lists, tar shards, and
local copies of CIFAR and MNIST (tiny fake files in the real formats; nothing downloads)."""

from __future__ import annotations

import gzip
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcframe.components.datasets import (
    Cifar10,
    Cifar100,
    CifarParams,
    FashionMnist,
    FileList,
    FileListParams,
    ImageFolder,
    ImageFolderParams,
    Mnist,
    MnistParams,
    WebDataset,
    WebDatasetParams,
)
from dcframe.core.contract import check_component
from dcframe.core.errors import BadImageError, UserError
from tests.conftest import invoke, save_png, write_shard


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------------------ imagefolder


def test_imagefolder_reads_images_at_any_depth_in_torchvision_order(tmp_path: Path) -> None:
    save_png(tmp_path / "cat" / "b.png", 1)
    save_png(tmp_path / "cat" / "indoor" / "a.png", 2)
    save_png(tmp_path / "cat" / "indoor" / "deeper" / "c.png", 3)
    save_png(tmp_path / "ant" / "x" / "z.png", 4)
    data = ImageFolder(ImageFolderParams(root=str(tmp_path)))
    relative = [str(Path(p).relative_to(tmp_path)) for p in data.paths]
    assert relative == ["ant/x/z.png", "cat/b.png", "cat/indoor/a.png", "cat/indoor/deeper/c.png"]
    assert data.labels is not None and data.labels.tolist() == [0, 1, 1, 1]
    assert data.class_names == ["ant", "cat"]


def test_imagefolder_refuses_a_link_back_to_a_class_folder(tmp_path: Path) -> None:
    save_png(tmp_path / "cat" / "a.png", 1)
    (tmp_path / "cat" / "again").symlink_to(tmp_path / "cat")
    with pytest.raises(UserError, match=r"data.root: .*again.* symbolic link loop"):
        ImageFolder(ImageFolderParams(root=str(tmp_path)))


# --------------------------------------------------------------------------- filelist


def test_filelist_lines_relative_to_the_list_with_labels(tmp_path: Path) -> None:
    save_png(tmp_path / "img" / "a.png", 10)
    save_png(tmp_path / "img" / "b.png", 20)
    absolute = save_png(tmp_path / "elsewhere" / "c.png", 30)
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text(f"# comment\n../img/b.png\tdog\n\n../img/a.png\tcat\n{absolute}\tdog\n")
    data = FileList(FileListParams(path=str(listing)))
    assert len(data) == 3 and data.class_names == ["cat", "dog"]
    assert data.labels is not None and data.labels.tolist() == [1, 0, 1]
    assert np.asarray(data.image(0))[0, 0, 0] == 20 and data.image(2).mode == "RGB"
    (tmp_path / "plain.txt").write_text("img/a.png\nimg/b.png\n")
    assert FileList(FileListParams(path=str(tmp_path / "plain.txt"))).labels is None


def test_filelist_csv_columns_and_integer_labels(tmp_path: Path) -> None:
    save_png(tmp_path / "a.png", 1)
    save_png(tmp_path / "b.png", 2)
    (tmp_path / "list.csv").write_text('file,class,note\na.png,3,x\nb.png,0,"y, z"\n')
    data = FileList(FileListParams(path=str(tmp_path / "list.csv"), path_column="file",
                                   label_column="class"))  # fmt: skip
    assert data.labels is not None and data.labels.tolist() == [3, 0]
    assert data.class_names == ["0", "1", "2", "3"]
    with pytest.raises(UserError, match="data.label_column: no column 'label' .*'file', 'class'"):
        FileList(FileListParams(path=str(tmp_path / "list.csv"), path_column="file",
                                label_column="label"))  # fmt: skip
    with pytest.raises(UserError, match="data.path_column: no column 'path'"):
        FileList(FileListParams(path=str(tmp_path / "list.csv")))


def test_filelist_bad_input_names_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data.path: file .* does not exist"):
        FileList(FileListParams(path=str(tmp_path / "none.txt")))
    with pytest.raises(UserError, match="data.path: .* is a folder, not a file"):
        FileList(FileListParams(path=str(tmp_path)))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UserError, match="lists no images"):
        FileList(FileListParams(path=str(tmp_path / "empty.txt")))
    (tmp_path / "mixed.txt").write_text("a.png\tcat\nb.png\n")
    with pytest.raises(UserError, match="line 2 .* has no label and earlier lines do"):
        FileList(FileListParams(path=str(tmp_path / "mixed.txt")))
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(UserError, match="not UTF-8 text"):
        FileList(FileListParams(path=str(tmp_path / "binary.txt")))
    (tmp_path / "gone.txt").write_text("missing.png\n")
    data = FileList(FileListParams(path=str(tmp_path / "gone.txt")))
    with pytest.raises(BadImageError, match="missing.png"):
        data.image(0)  # the run's bad-image policy decides what happens next


def test_filelist_errors_exit_2_without_traceback(tiny_recipe: Path, tmp_path: Path) -> None:
    text = tiny_recipe.read_text().replace(
        'name = "sklearn-digits"\nsplit = "test"', f'name = "filelist"\npath = "{tmp_path}/x.csv"'
    )
    tiny_recipe.write_text(text)
    result = invoke("run", str(tiny_recipe), "--quiet")
    assert result.code == 2 and "data.path: file" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------- webdataset


def test_webdataset_reads_members_by_offset_with_labels(tmp_path: Path) -> None:
    for shard in range(2):
        members = []
        for i in range(3):
            key = f"s{shard}/img_{i:03d}"
            members += [(f"{key}.png", png_bytes(np.full((4, 5, 3), 10 * i + shard, np.uint8))),
                        (f"{key}.cls", str(i).encode())]  # fmt: skip
        write_shard(tmp_path / f"train-{shard:04d}.tar", members)
    braces = WebDataset(WebDatasetParams(shards=str(tmp_path / "train-{0000..0001}.tar")))
    globbed = WebDataset(WebDatasetParams(shards=str(tmp_path / "train-*.tar")))
    assert braces.paths == globbed.paths and len(braces) == 6
    assert braces.labels is not None and braces.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert braces.class_names == ["0", "1", "2"]
    assert np.asarray(braces.image(4))[0, 0].tolist() == [11, 11, 11]
    assert braces.paths[4].endswith("train-0001.tar:s1/img_001.png")
    clone = pickle.loads(pickle.dumps(braces))  # a spawned DataLoader worker's copy
    assert np.asarray(clone.image(5)).tolist() == np.asarray(braces.image(5)).tolist()


def test_webdataset_bad_input_names_the_parameter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="data.shards: no file matches"):
        WebDataset(WebDatasetParams(shards=str(tmp_path / "*.tar")))
    with tarfile.open(tmp_path / "zipped.tar", "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("a.png"), io.BytesIO(b""))
    with pytest.raises(UserError, match="not a plain tar file.*uncompressed"):
        WebDataset(WebDatasetParams(shards=str(tmp_path / "zipped.tar")))
    write_shard(tmp_path / "meta.tar", [("a.json", b"{}")])
    with pytest.raises(UserError, match="data.image_extensions: sample 'a' .* has no image"):
        WebDataset(WebDatasetParams(shards=str(tmp_path / "meta.tar")))
    good = png_bytes(np.zeros((2, 2, 3), np.uint8))
    write_shard(tmp_path / "half.tar", [("a.png", good), ("a.cls", b"1"), ("b.png", good)])
    with pytest.raises(UserError, match="1 of 2 samples have no .cls member"):
        WebDataset(WebDatasetParams(shards=str(tmp_path / "half.tar")))
    write_shard(tmp_path / "bad.tar", [("a.png", b"not a png")])
    with pytest.raises(BadImageError, match=r"bad.tar:a.png"):
        WebDataset(WebDatasetParams(shards=str(tmp_path / "bad.tar"))).image(0)
    monkeypatch.setitem(sys.modules, "webdataset", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"pip install 'dcframe\[webdataset\]'"):
        WebDataset(WebDatasetParams(shards=str(tmp_path / "bad.tar")))


# ----------------------------------------------------------------------- CIFAR, MNIST


def fake_cifar(
    root: Path, files: dict[str, int], label_key: bytes, meta: tuple[str, bytes]
) -> None:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, count in files.items():
        batch = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 label_key: [int(x) for x in rng.integers(0, 3, count)]}  # fmt: skip
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    (root / meta[0]).write_bytes(pickle.dumps({meta[1]: [b"apple", b"bee", b"cow"]}))


def test_cifar10_and_cifar100_from_python_batches(tmp_path: Path) -> None:
    files = {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 3}
    fake_cifar(tmp_path / "c10", files, b"labels", ("batches.meta", b"label_names"))
    train = Cifar10(CifarParams(root=str(tmp_path / "c10")))
    test = Cifar10(CifarParams(root=str(tmp_path / "c10"), split="test"))
    assert (len(train), len(test)) == (10, 3) and train.class_names == ["apple", "bee", "cow"]
    raw = pickle.loads((tmp_path / "c10" / "data_batch_1").read_bytes())[b"data"][0]
    pixels = np.asarray(train.image(0))  # the red plane first, then green, then blue
    assert (
        pixels.shape == (32, 32, 3) and pixels[0, 1, 0] == raw[1] and pixels[0, 0, 2] == raw[2048]
    )
    fake_cifar(
        tmp_path / "c100", {"train": 4, "test": 2}, b"fine_labels", ("meta", b"fine_label_names")
    )
    assert len(Cifar100(CifarParams(root=str(tmp_path / "c100")))) == 4
    with pytest.raises(UserError, match="data.root: .*data_batch_1.* does not exist"):
        Cifar10(CifarParams(root=str(tmp_path / "c100")))


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(
        UserError, match="not a CIFAR python batch .*refusing to load builtins.print"
    ):
        Cifar10(CifarParams(root=str(tmp_path), split="test"))


def idx(values: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, values.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in values.shape
    )
    return header + values.astype(np.uint8).tobytes()


def test_mnist_idx_files_gzipped_or_not(tmp_path: Path) -> None:
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx(images))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(np.array([7, 0, 9]))))
    data = Mnist(MnistParams(root=str(tmp_path)))
    assert len(data) == 3 and data.labels.tolist() == [7, 0, 9]
    assert np.asarray(data.image(1))[0, 2].tolist() == [(28 * 28 + 2) % 256] * 3
    assert FashionMnist(MnistParams(root=str(tmp_path))).class_names[9] == "Ankle boot"
    with pytest.raises(UserError, match="no t10k-images-idx3-ubyte .or t10k-images-idx3-ubyte.gz"):
        Mnist(MnistParams(root=str(tmp_path), split="test"))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx(images)[:-5])
    with pytest.raises(UserError, match="truncated"):
        Mnist(MnistParams(root=str(tmp_path)))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03rest")
    with pytest.raises(UserError, match="not an idx file"):
        Mnist(MnistParams(root=str(tmp_path)))


def test_every_format_passes_the_dataset_contract(tmp_path: Path) -> None:
    save_png(tmp_path / "a.png", 5)
    (tmp_path / "list.txt").write_text("a.png\t0\n")
    write_shard(tmp_path / "s.tar", [("a.png", (tmp_path / "a.png").read_bytes())])
    fake_cifar(tmp_path / "c10", {"test_batch": 2}, b"labels", ("batches.meta", b"label_names"))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx(np.zeros((2, 28, 28))))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx(np.array([1, 2])))
    check_component("dataset", "filelist", {"path": str(tmp_path / "list.txt")})
    check_component("dataset", "webdataset", {"shards": str(tmp_path / "s.tar")})
    check_component("dataset", "cifar10", {"root": str(tmp_path / "c10"), "split": "test"})
    for name in ("mnist", "fashion-mnist"):
        check_component("dataset", name, {"root": str(tmp_path), "split": "test"})


# ------------------------------------------------- the same images, the same clustering


@pytest.mark.slow
def test_webdataset_filelist_and_folder_give_the_same_assignments(
    format_runs: dict[str, Path],
) -> None:
    found = {
        name: np.load(run / "assignments" / "epoch_0000.npy") for name, run in format_runs.items()
    }
    assert len(found["imagefolder"]) == 360
    np.testing.assert_array_equal(found["webdataset"], found["imagefolder"])
    np.testing.assert_array_equal(found["filelist"], found["imagefolder"])
