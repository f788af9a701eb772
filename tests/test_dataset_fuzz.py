"""Property-based fuzzing of every built-in dataset format through ``dcframe data check``.

Each example writes a dataset of one format into a fresh folder: CIFAR batches and their
metadata (structured and byte-mutated), idx files (headers and bodies), file lists (text,
CSV, TSV; odd labels and paths), tar shards (members of every type and odd names, the file
cut anywhere) and image folders with odd names. The test knows what it wrote, so it knows
the answer:

* a valid dataset must be counted exactly (``N images checked, R readable, B bad``: the
  images written, and the undecodable ones among them), exit 0 when none is bad, else 2;
* an invalid one must be refused when the dataset is built: exit 2 and an ``error:``
  message, no count;
* never a traceback (exit 1), never a count that differs from what was written (a silent
  drop).

The quick profile runs in the default suite (derandomized); the long one
(``python -m pytest -m long tests/test_dataset_fuzz.py -s``) tries thousands of inputs and
prints its counts, also written to ``dataset_fuzz_counts.json`` in pytest's temporary folder.
"""

from __future__ import annotations

import collections
import gzip
import io
import json
import pickle
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import data_recipe, invoke

COUNTS: collections.Counter[str] = collections.Counter()
COUNTED = re.compile(r"([\d,]+) images checked, ([\d,]+) readable, ([\d,]+) bad")

QUICK = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LONG = settings(
    max_examples=350,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MAX_CLASS_ID = 999_999
WANTED = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")  # webdataset's default


def png_bytes(value: int = 7) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((3, 2, 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


PNG = png_bytes()
# Member or file contents: a decodable image, or bytes that are not one.
CONTENTS = {"png": PNG, "garbage": b"\x89PNG\r\n\x1a\nbroken", "empty": b"", "text": b"3"}
ODD_LABELS = ["0", "1", "2", " 7 ", "cat", "²", "٣", "-5", "1e3", str(10**12), "999999", ""]


@dataclass(frozen=True)
class Expect:
    """What ``data check`` must say: ``total`` images counted with ``bad`` unreadable ones.

    ``certain=False``: the input may also be refused when built (a mutation the test cannot
    judge), but a count, when there is one, must still be ``total``.
    """

    total: int
    bad: int = 0
    certain: bool = True


REFUSED = None  # the dataset must be refused when it is built
ANY = Expect(-1, certain=False)  # bytes the test cannot judge: only exit 0 or 2, no traceback


def check_data(folder: Path, data: str, expect: Expect | None) -> None:
    """Run ``dcframe data check`` on ``data`` and assert the property; count the outcome."""
    result = invoke("data", "check", str(data_recipe(folder, data)), "--workers", "1")
    COUNTS["inputs"] += 1
    output = result.stdout + result.stderr
    if result.code not in (0, 2) or "Traceback" in output:
        COUNTS["tracebacks"] += 1
    assert result.code in (0, 2) and "Traceback" not in output, output[-3000:]
    COUNTS[f"exit {result.code}"] += 1
    counted = COUNTED.search(result.stdout)
    if result.code == 2:
        assert result.stderr.startswith("error: ") and len(result.stderr) > 40, result.stderr
    if expect is None or (not expect.certain and counted is None):
        assert result.code == 2 and counted is None, output[-3000:]
        return
    assert counted is not None, output[-3000:]
    total, readable, bad = (int(g.replace(",", "")) for g in counted.groups())
    if expect is ANY:
        return
    if total != expect.total:
        COUNTS["silent drops"] += 1
    assert (total, bad) == (expect.total, expect.bad), output[-3000:]
    assert readable == total - bad and result.code == (2 if bad else 0), output[-3000:]
    COUNTS["counted exactly"] += 1


def toml(value: Path | str) -> str:
    return json.dumps(str(value))


@pytest.fixture(scope="module", autouse=True)
def report_counts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Print and record how many inputs were tried and how they ended."""
    COUNTS.clear()
    yield
    keys = ("inputs", "exit 0", "exit 2", "counted exactly", "tracebacks", "silent drops")
    counts = {key: COUNTS[key] for key in keys}
    path = tmp_path_factory.getbasetemp() / "dataset_fuzz_counts.json"
    path.write_text(json.dumps(counts))
    print(f"\ndataset fuzz: {counts} (also in {path})")


def in_fresh_folder(body: Callable[[Path], None]) -> None:
    """Run one example in its own folder (hypothesis reuses a test's tmp_path)."""
    with tempfile.TemporaryDirectory(prefix="dsfuzz-") as folder:
        body(Path(folder))


# ---------------------------------------------------------------------------- bytes


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes flipped, inserted or deleted, or cut short."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if action == "flip" and data:
            data[where] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del data[where : where + draw(st.integers(1, 8))]
        else:
            del data[where:]
    return bytes(data)


# ---------------------------------------------------------------------------- CIFAR

DATA_KINDS = {
    "ok": lambda n: np.zeros((n, 3072), np.uint8),
    "string": lambda n: "abc",
    "float": lambda n: np.zeros((n, 3072), np.float32),
    "shape": lambda n: np.zeros((n, 3071), np.uint8),
    "flat": lambda n: np.zeros(n * 3072, np.uint8),
    "list": lambda n: [[0] * 3072] * n,
    "none": lambda n: None,
}
LABEL_KINDS: dict[str, Callable[[int], Any]] = {
    "ok": lambda n: [i % 3 for i in range(n)],
    "numpy": lambda n: np.arange(n, dtype=np.uint8) % 3,
    "negative": lambda n: [-5] * n,
    "dict": lambda n: [{}] * n,
    "float": lambda n: [1.5] * n,
    "bool": lambda n: [True] * n,
    "huge": lambda n: [10**12] * n,
    "bigger": lambda n: [2**70] * n,
    "text": lambda n: ["1"] * n,
    "short": lambda n: [0] * max(0, n - 1),
    "scalar": lambda n: 3,
    "nested": lambda n: [[0, 1]] * n,
}
CODEC = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00nopeq\x86R."
META_KINDS: dict[str, Any] = {
    "absent": None,
    "ok": {b"label_names": [b"c%d" % i for i in range(10)]},
    "str": {b"label_names": [f"é{i}" for i in range(10)]},
    "non-utf8": {b"label_names": [b"\xff\xfe"] * 10},
    "ints": {b"label_names": list(range(10))},
    "few": {b"label_names": []},
    "not-a-list": {b"label_names": "abc"},
    "no-key": {b"other": 1},
    "not-a-dict": [1, 2],
    "codec": CODEC,
    "random": b"\x00\x01garbage",
}
META_REFUSED = {"non-utf8", "ints", "not-a-dict", "codec", "random"}


def mostly(good: Any, choices: list[Any]) -> st.SearchStrategy[Any]:
    """``good`` half of the time, else any of ``choices``: valid inputs stay common."""
    return st.one_of(st.just(good), st.sampled_from(choices))


def pickled(value: Any) -> bytes:
    return value if isinstance(value, bytes) else pickle.dumps(value, protocol=2)


@st.composite
def cifar_cases(draw: st.DrawFn) -> tuple[bytes, bytes | None, Expect | None]:
    """A test batch, a meta file (None: none), and the verdict."""
    n = draw(st.integers(0, 4))
    data = draw(mostly("ok", sorted(DATA_KINDS)))
    labels = draw(mostly("ok", sorted(LABEL_KINDS)))
    meta = draw(mostly("ok", sorted(META_KINDS)))
    batch: dict[bytes, Any] = {b"data": DATA_KINDS[data](n), b"labels": LABEL_KINDS[labels](n)}
    if draw(st.booleans()) and draw(st.booleans()):
        del batch[draw(st.sampled_from([b"data", b"labels"]))]
    raw = pickled(batch) if draw(st.integers(0, 9)) else CODEC
    valid = (
        raw != CODEC
        and len(batch) == 2
        and (data, labels) in {("ok", "ok"), ("ok", "numpy")}
        and n > 0
        and meta not in META_REFUSED
    )
    meta_raw = None if META_KINDS[meta] is None else pickled(META_KINDS[meta])
    return raw, meta_raw, Expect(n) if valid else REFUSED


def write_cifar(folder: Path, batch: bytes, meta: bytes | None) -> str:
    root = folder / "cifar"
    root.mkdir()
    (root / "test_batch").write_bytes(batch)
    if meta is not None:
        (root / "batches.meta").write_bytes(meta)
    return f'name = "cifar10"\nroot = {toml(root)}\nsplit = "test"'


VALID_BATCH = pickled({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]})


def fuzz_cifar(case: tuple[bytes, bytes | None, Expect | None]) -> None:
    batch, meta, expect = case
    in_fresh_folder(lambda folder: check_data(folder, write_cifar(folder, batch, meta), expect))


def fuzz_cifar_bytes(batch: bytes) -> None:
    # A mutation that still loads holds the same three images (it cannot change the data's
    # shape and the labels' count together): anything else must be refused.
    expect = Expect(3, certain=False)
    in_fresh_folder(lambda folder: check_data(folder, write_cifar(folder, batch, None), expect))


# ---------------------------------------------------------------------------- MNIST


def idx_bytes(header: bytes, dims: list[int], body: bytes) -> bytes:
    return header + b"".join(d.to_bytes(4, "big") for d in dims) + body


@st.composite
def mnist_cases(draw: st.DrawFn) -> tuple[bytes, bytes, bool, Expect | None]:
    """The images file, the labels file, whether they are gzipped, and the verdict."""
    n, rows, cols = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    labels = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    if not draw(st.integers(0, 3)):  # a label beyond the digits, or one too many or few
        labels = draw(st.lists(st.integers(0, 255), min_size=0, max_size=4))
    image_head = draw(
        st.sampled_from(
            [b"\0\0\x08\x03"] * 4 + [b"\0\0\x08\x01", b"\0\0\x0d\x03", b"\x01\0\x08\x03", b""]
        )
    )
    label_head = draw(
        st.sampled_from([b"\0\0\x08\x01"] * 4 + [b"\0\0\x08\x03", b"\0\0\x09\x01", b"\0"])
    )
    image_dims = [n, rows, cols] if draw(st.integers(0, 5)) else [n, rows, 2**32 - 1]
    body = bytes(n * rows * cols) + (b"\x01" if not draw(st.integers(0, 5)) else b"")
    images = idx_bytes(image_head, image_dims, body)
    label_file = idx_bytes(label_head, [len(labels)], bytes(labels))
    valid = (
        image_head == b"\0\0\x08\x03"
        and label_head == b"\0\0\x08\x01"
        and image_dims[2] == cols
        and len(body) == n * rows * cols
        and n * rows * cols > 0
        and len(labels) == n
        and all(label < 10 for label in labels)
    )
    return images, label_file, draw(st.booleans()), Expect(n) if valid else REFUSED


def fuzz_mnist(case: tuple[bytes, bytes, bool, Expect | None]) -> None:
    images, labels, zipped, expect = case

    def body(folder: Path) -> None:
        suffix, pack = (".gz", gzip.compress) if zipped else ("", bytes)
        (folder / f"t10k-images-idx3-ubyte{suffix}").write_bytes(pack(images))
        (folder / "t10k-labels-idx1-ubyte").write_bytes(labels)
        check_data(folder, f'name = "mnist"\nroot = {toml(folder)}\nsplit = "test"', expect)

    in_fresh_folder(body)


# ------------------------------------------------------------------------ file lists

# name -> what the file is: an image, a corrupt one, or missing.
LIST_FILES = {
    "ok.png": "png",
    "é x.png": "png",
    "a,b.png": "png",
    'q"uote.png': "png",
    "sub/../ok.png": "png",
    "日本/深い.png": "png",
    "bad.png": "garbage",
    "empty.jpg": "empty",
    "missing.png": None,
    "nul\x00.png": None,
    "sub": None,  # a folder
}


def list_verdict(rows: list[tuple[str, str]], labelled: bool) -> Expect | None:
    """What a list of (path, label) rows must give."""
    if labelled:
        labels = [label.strip() for _, label in rows]
        if "" in labels:
            return REFUSED
        ascii_ids = [label.isascii() and label.isdigit() for label in labels]
        if all(ascii_ids):
            if max(int(label) for label in labels) > MAX_CLASS_ID:
                return REFUSED
        elif any(label.isdigit() and not ok for label, ok in zip(labels, ascii_ids, strict=True)):
            return REFUSED
    bad = sum(LIST_FILES[name] not in ("png",) for name, _ in rows)
    return Expect(len(rows), bad)


@st.composite
def filelist_cases(draw: st.DrawFn) -> tuple[str, bytes, Expect | None]:
    """A list's format, its bytes and the verdict."""
    form = draw(st.sampled_from(["lines", "csv", "tsv"]))
    labelled = draw(st.booleans())
    names = sorted(LIST_FILES)
    row = st.tuples(mostly("ok.png", names), mostly(str(draw(st.integers(0, 9))), ODD_LABELS))
    rows = draw(st.lists(row, min_size=0, max_size=5))
    if form == "lines":
        if "nul\x00.png" in (name for name, _ in rows):  # NUL ends nothing in a text line
            rows = [(n, label) for n, label in rows if n != "nul\x00.png"]
        text = "".join(f"{name}\t{label}\n" if labelled else f"{name}\n" for name, label in rows)
        if labelled and any(not label.strip() for _, label in rows):
            expect: Expect | None = REFUSED  # 'PATH<TAB>' with no label is a malformed line
        else:
            expect = list_verdict(rows, labelled) if rows else REFUSED
        return form, text.encode(), expect
    out = io.StringIO()
    import csv

    writer = csv.writer(out, delimiter="," if form == "csv" else "\t", lineterminator="\n")
    writer.writerow(["path", "label"] if labelled else ["path"])
    writer.writerows([[name, label] if labelled else [name] for name, label in rows])
    expect = list_verdict(rows, labelled) if rows else REFUSED
    return form, out.getvalue().encode(), expect


def write_list_files(folder: Path) -> None:
    for name, kind in LIST_FILES.items():
        if kind is not None:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(CONTENTS[kind])
    (folder / "sub").mkdir(exist_ok=True)


def list_section(folder: Path, form: str, text: bytes) -> str:
    path = folder / f"list.{'txt' if form == 'lines' else form}"
    path.write_bytes(text)
    label = (
        '\nlabel_column = "label"' if form != "lines" and b"label" in text.split(b"\n")[0] else ""
    )
    return f'name = "filelist"\npath = {toml(path)}{label}'


def fuzz_filelist(case: tuple[str, bytes, Expect | None]) -> None:
    form, text, expect = case

    def body(folder: Path) -> None:
        write_list_files(folder)
        check_data(folder, list_section(folder, form, text), expect)

    in_fresh_folder(body)


def fuzz_filelist_bytes(form: str, text: bytes) -> None:
    """Mutated list bytes: whatever they hold, exit 0 or 2 with a message."""

    def body(folder: Path) -> None:
        write_list_files(folder)
        check_data(folder, list_section(folder, form, text), ANY)

    in_fresh_folder(body)


# ---------------------------------------------------------------------------- shards

MEMBER_KINDS = ["file"] * 6 + ["dir", "symlink", "hardlink", "fifo"]
KEYS = ["a", "b", "x y", "é", "日本/深い", "../up", "./c", "d/e", "A", "a.b", "-", "k" * 120]
EXTS = ["png", "PNG", "jpg", "cls", "json", "txt", "", "png.cls"]


@st.composite
def shard_members(draw: st.DrawFn) -> list[tuple[str, str, bytes]]:
    """(kind, name, content) of each member of a shard."""
    members = []
    for i in range(draw(st.integers(0, 4))):  # whole samples: an image and maybe a label
        members.append(("file", f"s{i}.png", PNG))
        members += [("file", f"s{i}.cls", b"%d" % i)] * draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        key, ext = draw(st.sampled_from(KEYS)), draw(st.sampled_from(EXTS))
        name = f"{key}.{ext}" if ext else key
        content = draw(st.sampled_from(sorted(CONTENTS)))
        if ext == "cls" and draw(st.booleans()):
            content = draw(st.sampled_from(ODD_LABELS))
        data = CONTENTS[content] if content in CONTENTS else content.encode()
        members.append((draw(st.sampled_from(MEMBER_KINDS)), name, data))
    return draw(st.permutations(members))


def write_tar(path: Path, members: list[tuple[str, str, bytes]]) -> None:
    types = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
             "fifo": tarfile.FIFOTYPE}  # fmt: skip
    with tarfile.open(path, "w") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = types[kind]
            info.linkname = "a.png"
            tar.addfile(info)


def shard_verdict(path: Path) -> tuple[Expect | None, int]:
    """What a whole shard must give (read back as tar sees it), and where its members end."""
    import webdataset

    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        end = tar.offset
        for member in members:
            if member.isdir():
                continue
            key, ext = webdataset.tariterators.base_plus_ext(member.name)
            if key is None:
                continue
            fields = samples.setdefault(key, {})
            if not member.isfile() or ext.lower() in fields:
                return REFUSED, end
            file = tar.extractfile(member)
            fields[ext.lower()] = file.read() if file is not None else b""
    return samples_verdict(samples), end


def samples_verdict(samples: dict[str, dict[str, bytes]]) -> Expect | None:
    bad = 0
    for fields in samples.values():
        image = next((fields[e] for e in WANTED if e in fields), None)
        if image is None:
            return REFUSED
        bad += image != PNG
        text = fields["cls"].decode("utf-8", "replace").strip() if "cls" in fields else "0"
        if not (text.isascii() and text.isdigit() and int(text) <= MAX_CLASS_ID):
            return REFUSED
    if not samples or 0 < sum("cls" in f for f in samples.values()) < len(samples):
        return REFUSED
    return Expect(len(samples), bad)


def fuzz_shard(members: list[tuple[str, str, bytes]], cut: float | None) -> None:
    def body(folder: Path) -> None:
        path = folder / "shard-0.tar"
        write_tar(path, members)
        expect, end = shard_verdict(path)
        if cut is not None:
            whole = path.read_bytes()
            keep = int(cut * len(whole))
            path.write_bytes(whole[:keep])
            # Cut before the two end-of-archive blocks: damaged, whatever the samples.
            expect = REFUSED if keep < end + 1024 else expect
        check_data(folder, f'name = "webdataset"\nshards = {toml(path)}', expect)

    in_fresh_folder(body)


# ---------------------------------------------------------------------- image folders

FOLDER_NAMES = ["cat", "é x", ".hidden", "a.png", "日本", "-", "x" * 100]
FILE_KINDS = ["png"] * 5 + ["garbage", "text", "nested", "nested", "link", "broken-link"]
FILE_NAMES = ["1.png", "2.JPG", "é.jpeg", ".h.png", "3.txt", "noext", "4.tif", "sp ace.bmp"]


@st.composite
def folder_layouts(draw: st.DrawFn) -> dict[str, list[tuple[str, str]]]:
    """Class folder name ("" for the root itself) -> (file name, kind) in it."""
    classes = draw(st.lists(st.sampled_from(FOLDER_NAMES), unique=True, max_size=3))
    places = classes or [""]
    if classes and not draw(st.integers(0, 5)):
        places = [*classes, ""]  # images beside class folders
    files = st.tuples(st.sampled_from(FILE_NAMES), st.sampled_from(FILE_KINDS))
    return {place: draw(st.lists(files, unique_by=lambda f: f[0], max_size=3)) for place in places}


def write_folder(root: Path, layout: dict[str, list[tuple[str, str]]]) -> Expect | None:
    """Write the layout; what imagefolder must make of it."""
    from dcframe.components.datasets import IMAGE_EXTENSIONS

    total = bad = 0
    for place, files in layout.items():
        folder = root / place
        folder.mkdir(parents=True, exist_ok=True)
        for name, kind in files:
            kind = "png" if kind == "nested" and not place else kind  # a root sub-folder is a class
            path = folder / ("deep" if kind == "nested" else "") / name
            path.parent.mkdir(exist_ok=True)
            if kind == "link":
                path.symlink_to(root.parent / "target.png")
            elif kind == "broken-link":
                path.symlink_to(root.parent / "gone.png")
            else:
                path.write_bytes(CONTENTS["png" if kind == "nested" else kind])
            if name.lower().endswith(IMAGE_EXTENSIONS):
                total += 1
                bad += kind in ("garbage", "text", "broken-link")
    loose = [name for name, _ in layout.get("", []) if name.lower().endswith(IMAGE_EXTENSIONS)]
    classes = [place for place in layout if place]
    if (classes and loose) or total == 0:
        return REFUSED
    return Expect(total, bad)


def fuzz_folder(layout: dict[str, list[tuple[str, str]]]) -> None:
    def body(folder: Path) -> None:
        (folder / "target.png").write_bytes(PNG)
        expect = write_folder(folder / "root", layout)
        check_data(folder, f'name = "imagefolder"\nroot = {toml(folder / "root")}', expect)

    in_fresh_folder(body)


# ------------------------------------------------------------------------------ tests

LIST_FORMS = st.sampled_from(["lines", "csv", "tsv"])
LIST_BYTES = st.sampled_from([b"ok.png\t1\nbad.png\t2\n", b"path,label\nok.png,1\nbad.png,2\n"])
CUTS = st.one_of(st.none(), st.floats(0, 1))


def fuzz_any(data: st.DataObject, fuzzer: str) -> None:
    """Draw one input for ``fuzzer`` and check it."""
    if fuzzer == "cifar":
        fuzz_cifar(data.draw(cifar_cases()))
    elif fuzzer == "cifar-bytes":
        fuzz_cifar_bytes(data.draw(mutated(VALID_BATCH)))
    elif fuzzer == "mnist":
        fuzz_mnist(data.draw(mnist_cases()))
    elif fuzzer == "filelist":
        fuzz_filelist(data.draw(filelist_cases()))
    elif fuzzer == "filelist-bytes":
        fuzz_filelist_bytes(data.draw(LIST_FORMS), data.draw(mutated(data.draw(LIST_BYTES))))
    elif fuzzer == "shard":
        fuzz_shard(data.draw(shard_members()), data.draw(CUTS))
    else:
        fuzz_folder(data.draw(folder_layouts()))


FUZZERS = ["cifar", "cifar-bytes", "mnist", "filelist", "filelist-bytes", "shard", "folder"]


@pytest.mark.parametrize("fuzzer", FUZZERS)
@QUICK
@given(data=st.data())
def test_dataset_fuzz_quick(fuzzer: str, data: st.DataObject) -> None:
    fuzz_any(data, fuzzer)


@pytest.mark.long
@pytest.mark.parametrize("fuzzer", FUZZERS)
@LONG
@given(data=st.data())
def test_dataset_fuzz_long(fuzzer: str, data: st.DataObject) -> None:
    fuzz_any(data, fuzzer)
