"""Issue 24, findings 4 and 7: damaged tar shards and malformed dataset files.

Every test goes through the real command line (``dcframe data check`` or ``dcframe run``,
in this process) and asserts exit code 2 with a message naming the file and the fix,
where the code before the fix counted a cut shard as whole or crashed with a traceback.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import CliResult, data_recipe, invoke

SAMPLES = 36


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def write_shard(path: Path, samples: int = SAMPLES, label: bytes | None = None) -> Path:
    """A shard of ``samples`` samples (``NNN.png`` + ``NNN.cls``), as tarfile writes one."""
    with tarfile.open(path, "w") as tar:
        for i in range(samples):
            for name, data in (
                (f"{i:03d}.png", png(i)),
                (f"{i:03d}.cls", label or b"%d" % (i % 3)),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def member_offset(path: Path, name: str) -> int:
    """Where the header of member ``name`` starts."""
    with tarfile.open(path) as tar:
        return tar.getmember(name).offset


def check(folder: Path, data: str) -> CliResult:
    """``dcframe data check`` on the tiny recipe with this data section."""
    return invoke("data", "check", str(data_recipe(folder, data)), "--workers", "1")


def toml(path: Path) -> str:
    return json.dumps(str(path))


def assert_refused(result: CliResult, *parts: str) -> None:
    assert result.code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


# ---------------------------------------------------------------- finding 4: tar shards


def test_r3_finding_4_cut_at_a_member_boundary_is_damage_not_20_of_36(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "train-0.tar")
    cut = member_offset(shard, "020.png")  # samples 0..19 whole, then nothing
    shard.write_bytes(shard.read_bytes()[:cut])
    result = check(tmp_path, f'name = "webdataset"\nshards = {toml(shard)}')
    assert_refused(result, "train-0.tar", "damaged", "last good member is '019.cls'", "again")
    assert "20 images checked" not in result.stdout


def test_r3_finding_4_cut_inside_a_member_names_it_not_gunzip(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "train-0.tar")
    cut = member_offset(shard, "007.png") + 512 + 10  # inside the image's bytes
    shard.write_bytes(shard.read_bytes()[:cut])
    result = check(tmp_path, f'name = "webdataset"\nshards = {toml(shard)}')
    assert_refused(result, "train-0.tar", "ends inside member '007.png'", "'006.cls'")
    assert "gunzip" not in result.stderr


def test_r3_finding_4_data_check_names_every_damaged_shard(tmp_path: Path) -> None:
    for i in range(3):
        write_shard(tmp_path / f"train-{i}.tar")
    whole = (tmp_path / "train-1.tar").read_bytes()
    end = member_offset(tmp_path / "train-1.tar", "035.cls") + 1024  # header + data block
    (tmp_path / "train-1.tar").write_bytes(whole[:end])  # only the end blocks are missing
    (tmp_path / "train-2.tar").write_bytes(
        whole[: member_offset(tmp_path / "train-1.tar", "001.png")]
    )
    result = check(tmp_path, f'name = "webdataset"\nshards = {toml(tmp_path / "train-{0..2}.tar")}')
    assert_refused(result, "2 of 3 shard(s) damaged", "train-1.tar", "'035.cls'", "'000.cls'")
    assert "train-0.tar" not in result.stderr


def test_shards_of_tarfile_webdataset_and_gnu_tar_are_whole(tmp_path: Path) -> None:
    """Record padding after the end-of-archive blocks, as every writer adds, is fine."""
    import subprocess

    import webdataset

    write_shard(tmp_path / "a-0.tar", samples=3)
    with webdataset.TarWriter(str(tmp_path / "a-1.tar")) as sink:
        for i in range(4):
            sink.write({"__key__": f"w{i}", "png": png(i), "cls": b"1"})
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(5):
        (folder / f"g{i}.png").write_bytes(png(i))
        (folder / f"g{i}.cls").write_text("2")
    subprocess.run(["tar", "-cf", str(tmp_path / "a-2.tar"), "-C", str(folder), "."], check=True)
    result = check(tmp_path, f'name = "webdataset"\nshards = {toml(tmp_path / "a-{0..2}.tar")}')
    assert result.code == 0, result.stderr
    assert "12 images checked, 12 readable, 0 bad" in result.stdout


# ------------------------------------------------------ finding 7: malformed dataset files


def cifar_batch(folder: Path, batch: object, meta: object = None) -> Path:
    """A CIFAR-10 folder whose test batch pickles ``batch`` (raw bytes: written as is)."""
    folder.mkdir(exist_ok=True)
    raw = batch if isinstance(batch, bytes) else pickle.dumps(batch, protocol=2)
    (folder / "test_batch").write_bytes(raw)
    if meta is not None:
        (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def good_batch(count: int, labels: object = None) -> dict[bytes, object]:
    pixels = np.random.default_rng(0).integers(0, 256, (count, 3072), dtype=np.uint8)
    return {
        b"data": pixels,
        b"labels": labels if labels is not None else [i % 3 for i in range(count)],
    }


def check_cifar(folder: Path) -> CliResult:
    return check(folder.parent, f'name = "cifar10"\nroot = {toml(folder)}\nsplit = "test"')


def test_r3_finding_7_cifar_pickle_with_a_missing_codec(tmp_path: Path) -> None:
    # _codecs.encode("x", "no-such-codec"): how a damaged protocol-2 bytes object looks.
    raw = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x0d\x00\x00\x00no-such-codec\x86R."
    result = check_cifar(cifar_batch(tmp_path / "c", raw))
    assert_refused(result, "test_batch", "not a CIFAR python batch", "no-such-codec", "extract it")


def test_r3_finding_7_cifar_data_that_is_a_string(tmp_path: Path) -> None:
    result = check_cifar(cifar_batch(tmp_path / "c", {b"data": "abc", b"labels": [0]}))
    assert_refused(result, "test_batch", "b'data' entry", "is str", "extract it again")


def test_r3_finding_7_cifar_label_names_not_utf8(tmp_path: Path) -> None:
    meta = {b"label_names": [b"cat", b"\xff\xfedog", b"cow"]}
    result = check_cifar(cifar_batch(tmp_path / "c", good_batch(6), meta))
    assert_refused(result, "batches.meta", "class name 2", "not UTF-8", "extract it again")


def test_r3_finding_7_cifar_negative_label_stops_the_run(tmp_path: Path) -> None:
    labels = [i % 3 for i in range(40)]
    labels[4] = -5
    folder = cifar_batch(tmp_path / "c", good_batch(40, labels))
    recipe = data_recipe(tmp_path, f'name = "cifar10"\nroot = {toml(folder)}\nsplit = "test"')
    result = invoke("run", str(recipe), "--quiet")
    assert_refused(result, "label 5 of", "test_batch", "class id -5 is outside 0..999,999")


def test_r3_finding_7_cifar_labels_that_are_dicts(tmp_path: Path) -> None:
    result = check_cifar(cifar_batch(tmp_path / "c", good_batch(3, [{}, {}, {}])))
    assert_refused(result, "label 1 of", "test_batch", "(a dict) is not a class id", "extract")


def labelled_list(folder: Path, labels: list[str]) -> Path:
    for i in range(len(labels)):
        (folder / f"{i}.png").write_bytes(png(i))
    path = folder / "list.txt"
    path.write_text("".join(f"{i}.png\t{label}\n" for i, label in enumerate(labels)), "utf-8")
    return path


def test_r3_finding_7_filelist_label_superscript_two(tmp_path: Path) -> None:
    path = labelled_list(tmp_path, ["0", "1", "²"])
    result = check(tmp_path, f'name = "filelist"\npath = {toml(path)}')
    assert_refused(result, "image 3 ('2.png')", "list.txt", "digits 0-9")


def test_r3_finding_7_filelist_label_of_10_to_the_12(tmp_path: Path) -> None:
    path = labelled_list(tmp_path, ["0", str(10**12)])
    result = check(tmp_path, f'name = "filelist"\npath = {toml(path)}')
    assert_refused(result, "image 2 ('1.png')", "list.txt", "outside 0..999,999", "renumber")


def test_r3_finding_7_cls_member_of_10_to_the_12(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "s.tar", samples=2, label=str(10**12).encode())
    result = check(tmp_path, f'name = "webdataset"\nshards = {toml(shard)}')
    assert_refused(result, "s.tar:000.cls", "outside 0..999,999", "data.label_extension")
