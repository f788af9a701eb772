"""``dcframe data prepare``: a dataset rewritten as small JPEGs in tar shards.

A run at ImageNet scale spends most of its CPU time decoding full-size photographs, only to
crop and shrink them to 224 pixels. Preparing the images once, each resized so that its
longer side is at most ``max_side`` and stored as a baseline JPEG in WebDataset's layout
(``<key>.jpg`` and, for labelled data, ``<key>.cls``), lets every later epoch decode a small
file instead; the ``webdataset`` dataset reads the shards back.

Design:

* **Deterministic shards.** Image ``i`` of the source goes to shard ``i // images_per_shard``
  under the key ``i`` (zero-padded), with fixed tar metadata, so a shard's bytes depend only
  on its images and settings: however often a prepare is interrupted, and with any number
  of workers, the result is the same.
* **Resumable.** Each shard is written through a temporary file that replaces it only once
  complete (:func:`~dcframe.core.files.atomic_write_bytes`), then recorded in
  ``prepare.json`` (also written atomically). A shard recorded there, whose file still has
  the recorded size, is finished and skipped by the next session; anything else is
  rewritten.
* **Threads, not processes.** PIL releases the GIL while it decodes, resizes and encodes,
  which is nearly all of the work, so threads use every core without pickling the dataset
  (plugin datasets, open shard files) or importing dcframe again in each worker. Each thread
  reads through its own copy of the dataset (:class:`~dcframe.data.threads.DatasetPerThread`).
* **Bad images** are skipped and listed (console, ``prepare.json`` and
  ``skipped_images.tsv`` in the run directory's format), never dropped silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tarfile
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from dcframe.core.errors import BadImageError, UserError
from dcframe.core.files import atomic_write_bytes, remove_temporaries
from dcframe.core.interfaces import Dataset
from dcframe.core.progress import Reporter
from dcframe.core.version import __version__
from dcframe.data.threads import DatasetPerThread, image_name

MANIFEST = "prepare.json"
SKIPPED_LIST = "skipped_images.tsv"
FORMAT = 1
# Fixed tar metadata (2000-01-01): a shard's bytes then depend only on its images.
MTIME = 946684800
DEFAULT_MAX_SIDE = 512
DEFAULT_QUALITY = 90
DEFAULT_PER_SHARD = 1000


@dataclass(frozen=True)
class Settings:
    """How the images are rewritten; a resumed prepare must use the same."""

    max_side: int = DEFAULT_MAX_SIDE
    quality: int = DEFAULT_QUALITY
    images_per_shard: int = DEFAULT_PER_SHARD
    prefix: str = "train"


@dataclass
class Source:
    """The dataset to prepare and what identifies it across sessions."""

    dataset: Dataset
    name: str
    params: dict[str, Any]

    def identity(self) -> dict[str, Any]:
        """What must not change between an interrupted prepare and its continuation."""
        paths = getattr(self.dataset, "paths", None)
        digest = None
        if isinstance(paths, list):  # a file list that gained, lost or reordered files
            digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()
        return {
            "dataset": self.name,
            "params": self.params,
            "images": len(self.dataset),
            "paths_sha256": digest,
        }

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items() if k in ("root", "path"))
        return f"{self.name} ({shown})" if shown else self.name


@dataclass(frozen=True)
class Encoded:
    """Image ``index`` as JPEG bytes, with the size of the file it came from (if a file)."""

    index: int
    jpeg: bytes
    bytes_in: int | None


@dataclass(frozen=True)
class Skipped:
    """Image ``index`` could not be read."""

    index: int
    path: str
    reason: str


@dataclass
class ShardRecord:
    """A finished shard, as ``prepare.json`` keeps it."""

    images: int
    bytes_out: int
    bytes_in: int | None
    skipped: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass
class Summary:
    """What a prepare did, for the report and the recipe snippet."""

    out: Path
    settings: Settings
    source: str
    total: int
    shards: dict[str, ShardRecord]
    written_now: int
    class_names: list[str] | None

    @property
    def images(self) -> int:
        return sum(r.images for r in self.shards.values())

    @property
    def skipped(self) -> list[tuple[int, str, str]]:
        return sorted(s for r in self.shards.values() for s in r.skipped)

    @property
    def bytes_out(self) -> int:
        return sum(r.bytes_out for r in self.shards.values())

    @property
    def bytes_in(self) -> int | None:
        """Bytes of the source files, or None when some images are not files (arrays)."""
        sizes = [r.bytes_in for r in self.shards.values()]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)

    def pattern(self) -> str:
        """The brace pattern of every shard, as ``data.shards`` takes it."""
        prefix, names = f"{self.settings.prefix}-", sorted(self.shards)
        first, last = (n.removeprefix(prefix).removesuffix(".tar") for n in (names[0], names[-1]))
        return str(self.out.resolve() / f"{prefix}{{{first}..{last}}}.tar")

    def snippet(self) -> str:
        """The recipe lines that read the prepared shards."""
        return f'[data]\nname = "webdataset"\nshards = "{self.pattern()}"\n'


# --------------------------------------------------------------------------- sources


def open_source(src: Path, overrides: list[str] | None = None) -> Source:
    """An image folder (class sub-folders or flat), or the ``[data]`` section of a recipe."""
    from dcframe.core import kinds

    if src.is_file() and src.suffix.lower() == ".toml":
        from dcframe import recipe as recipes

        section: Any = recipes.load(src, overrides).data
        entry = kinds.datasets.get(section.name)
        # The dataset's own parameters: the bad-image policy does not change the images.
        params = {k: getattr(section, k) for k in entry.params_model.model_fields}
        return Source(entry.cls(section), section.name, _plain(params))
    if overrides:
        raise UserError("--set changes a recipe; SRC is a folder, not a recipe (.toml)")
    if not src.is_dir():
        raise UserError(
            f"SRC: {str(src)!r} is neither a folder of images nor a recipe (.toml); give an "
            "image folder (one sub-folder per class, or a flat folder) or a recipe whose [data] "
            "section names the images"
        )
    entry = kinds.datasets.get("imagefolder")
    folder = entry.params_model.model_validate({"root": str(src.resolve())})
    return Source(entry.cls(folder), "imagefolder", _plain(folder.model_dump()))


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values (tuples become lists), so a reloaded manifest compares equal."""
    return dict(json.loads(json.dumps(values, default=str)))


# ------------------------------------------------------------------------- one image


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` scaled so its longer side is at most ``max_side``; never enlarged."""
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Lanczos filters over the whole footprint of each output pixel: no aliasing.
    return image.resize(size, Image.Resampling.LANCZOS)


def encode(dataset: Dataset, index: int, settings: Settings) -> Encoded | Skipped:
    """Image ``index`` read, shrunk and encoded; a bad image comes back as :class:`Skipped`."""
    path = image_name(dataset, index)
    try:
        image = dataset.image(index)
    except BadImageError as error:
        return Skipped(index, error.path, error.reason)
    except MemoryError:
        raise
    except Exception as error:  # a plugin's own failure is still one bad image, as data check
        return Skipped(index, path, f"unexpected error {type(error).__name__}: {error}")
    small = shrink(image.convert("RGB"), settings.max_side)
    buffer = io.BytesIO()
    # Baseline (not progressive) with 4:2:0 chroma: the fastest JPEG to decode, and the form
    # whose draft mode (decoding at 1/2, 1/4, 1/8 scale) works best.
    small.save(buffer, "JPEG", quality=settings.quality)
    return Encoded(index, buffer.getvalue(), _file_size(path))


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except (OSError, ValueError):  # not a file: an array dataset, a tar member
        return None


# ------------------------------------------------------------------------ the threads


def encode_in_order(
    dataset: Dataset, indices: list[int], settings: Settings, workers: int
) -> Generator[Encoded | Skipped, None, None]:
    """``encode`` of every index by ``workers`` threads, yielded in the order of ``indices``.

    At most a few images per thread are in flight, so memory stays flat however big the
    dataset, and an interruption waits only for those.
    """
    copies = DatasetPerThread(dataset)
    window = 4 * workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare") as pool:
        pending: deque[Future[Encoded | Skipped]] = deque()
        try:
            for index in indices:
                pending.append(pool.submit(lambda i: encode(copies.get(), i, settings), index))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


# ------------------------------------------------------------------------- one shard


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shard(
    path: Path,
    results: Iterator[Encoded | Skipped],
    count: int,
    labels: Any,
    key_width: int,
) -> ShardRecord:
    """Write the next ``count`` results as one shard at ``path``, atomically."""
    record = ShardRecord(images=0, bytes_out=0, bytes_in=0)

    def write(handle: BinaryIO) -> None:
        # Stream mode ("w|") needs nothing of the file but write(); USTAR keeps headers fixed.
        with tarfile.open(fileobj=handle, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
            for _ in range(count):
                result = next(results)
                if isinstance(result, Skipped):
                    record.skipped.append((result.index, result.path, result.reason))
                    continue
                key = f"{result.index:0{key_width}d}"
                _member(tar, f"{key}.jpg", result.jpeg)
                if labels is not None:
                    _member(tar, f"{key}.cls", str(int(labels[result.index])).encode())
                record.images += 1
                if record.bytes_in is not None and result.bytes_in is not None:
                    record.bytes_in += result.bytes_in
                else:
                    record.bytes_in = None

    atomic_write_bytes(path, write)
    record.bytes_out = path.stat().st_size
    return record


# --------------------------------------------------------------------- the manifest


def _load_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(
            f"OUT: {str(path)!r} cannot be read ({error}); it is not a dcframe prepare in "
            "progress, so choose a new or empty folder for OUT, or delete this one"
        ) from error
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
        raise UserError(
            f"OUT: {str(path)!r} is not a prepare.json this dcframe writes; choose a new or "
            "empty folder for OUT, or delete this one"
        )
    return loaded


def _save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1).encode()
    atomic_write_bytes(out / MANIFEST, lambda handle: handle.write(text))


def _differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between the prepare recorded in OUT and this one, for the message."""
    problems = []
    for key, value in wanted["settings"].items():
        if found.get("settings", {}).get(key) != value:
            problems.append(f"{key} {found.get('settings', {}).get(key)!r}, not {value!r}")
    old, new = found.get("source", {}), wanted["source"]
    if old.get("dataset") != new["dataset"] or old.get("params") != new["params"]:
        problems.append(f"source {old.get('dataset')} {old.get('params')}")
    elif old.get("images") != new["images"] or old.get("paths_sha256") != new["paths_sha256"]:
        problems.append(
            f"a source of {old.get('images')} images (it now has {new['images']}, or its "
            "files changed)"
        )
    return problems


def check_out(out: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of an earlier prepare of the same data into ``out``, or None when ``out``
    is new or empty; refuses any other content rather than overwrite it."""
    if out.exists() and not out.is_dir():
        raise UserError(f"OUT: {str(out)!r} is a file; give a folder (new or empty)")
    if not out.exists():
        return None
    manifest = _load_manifest(out)
    if manifest is None:
        # A session killed while writing its first manifest leaves only that temporary.
        others = sorted(p.name for p in out.iterdir() if not p.name.startswith(f".{MANIFEST}."))
        if not others:
            return None
        raise UserError(
            f"OUT: {str(out)!r} already holds {len(others)} file(s) (e.g. {others[0]!r}) and no "
            f"{MANIFEST}, so it is not a prepare to continue; choose a new or empty folder for "
            "OUT, or delete this one"
        )
    problems = _differences(manifest, wanted)
    if problems:
        raise UserError(
            f"OUT: {str(out)!r} holds a prepare with other settings or data ("
            + "; ".join(problems)
            + "); repeat that command to continue it, or choose a new or empty folder for OUT"
        )
    return manifest


# --------------------------------------------------------------------------- prepare


def _finished(out: Path, manifest: dict[str, Any]) -> dict[str, ShardRecord]:
    """Shards an earlier session finished whose files are still whole."""
    done = {}
    for name, saved in manifest.get("done", {}).items():
        path = out / name
        if path.is_file() and path.stat().st_size == saved["bytes_out"]:
            skipped = [(int(i), str(p), str(r)) for i, p, r in saved["skipped"]]
            done[name] = ShardRecord(
                saved["images"], saved["bytes_out"], saved["bytes_in"], skipped
            )
    return done


def plan(total: int, settings: Settings) -> list[tuple[str, range]]:
    """(file name, source indices) of every shard."""
    shards = max(1, math.ceil(total / settings.images_per_shard))
    width = max(6, len(str(shards - 1)))
    per = settings.images_per_shard
    return [
        (f"{settings.prefix}-{k:0{width}d}.tar", range(k * per, min(total, (k + 1) * per)))
        for k in range(shards)
    ]


def prepare(
    source: Source,
    out: Path,
    settings: Settings,
    workers: int,
    reporter: Reporter | None = None,
) -> Summary:
    """Write ``source`` into ``out`` as shards, continuing an interrupted prepare of the same
    data and settings; returns what was done. Raises :class:`UserError` rather than touch a
    folder that holds anything else."""
    reporter = reporter or Reporter(quiet=True)
    dataset, total = source.dataset, len(source.dataset)
    labels, names = dataset.labels, dataset.class_names
    wanted = {
        "format": FORMAT,
        "tool": "dcframe data prepare",
        "dcframe": __version__,
        "source": source.identity(),
        "settings": asdict(settings),
        "class_names": names,
    }
    manifest = check_out(out, wanted)
    out.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out)  # what a killed session was writing; its shard is redone
    done = _finished(out, manifest) if manifest else {}
    shards = plan(total, settings)
    todo = [(name, indices) for name, indices in shards if name not in done]
    _save_manifest(out, _manifest(wanted, done, shards))

    dataset.decode_at_least(settings.max_side)  # a JPEG may decode at 1/2..1/8 scale
    indices = [i for _, r in todo for i in r]
    key_width = max(8, len(str(total - 1)))
    left = f" ({len(done)} of {len(shards)} shards done before)" if done else ""
    encoded = encode_in_order(dataset, indices, settings, workers)
    results = reporter.track(encoded, total=len(indices), description=f"preparing{left}")
    try:
        for name, shard_indices in todo:
            done[name] = write_shard(out / name, results, len(shard_indices), labels, key_width)
            _save_manifest(out, _manifest(wanted, done, shards))
    finally:  # the bar goes and the threads stop before anything is printed
        if isinstance(results, Generator):
            results.close()
        encoded.close()
    summary = Summary(out, settings, source.describe(), total, done, len(todo), names)
    _write_skipped(out, summary.skipped)
    if summary.images == 0:
        raise UserError(
            f"SRC: none of the {total:,} images can be read (e.g. {summary.skipped[0][1]!r}: "
            f"{summary.skipped[0][2]}); listed in {out / SKIPPED_LIST}"
        )
    return summary


def _manifest(
    wanted: dict[str, Any], done: dict[str, ShardRecord], shards: list[tuple[str, range]]
) -> dict[str, Any]:
    return {
        **wanted,
        "shards": len(shards),
        "complete": len(done) == len(shards),
        "done": {name: asdict(done[name]) for name, _ in shards if name in done},
    }


def _write_skipped(out: Path, skipped: list[tuple[int, str, str]]) -> None:
    """The skipped images in the run directory's format; no file when there are none."""
    path = out / SKIPPED_LIST
    if not skipped:
        path.unlink(missing_ok=True)
        return
    from dcframe.data.bad_images import unreadable_tsv  # imports torch: only when needed

    text = unreadable_tsv(skipped).encode()
    atomic_write_bytes(path, lambda handle: handle.write(text))
