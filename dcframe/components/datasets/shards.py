"""``webdataset``: images in tar shards, in WebDataset's layout, read by random access."""

from __future__ import annotations

import glob
import io
import json
import os
import shlex
import tarfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from dcframe.components.builtin_params import WebDatasetParams
from dcframe.components.datasets._files import (
    MAX_CLASS_ID,
    ascii_class_id,
    class_id_problem,
    shorten,
)
from dcframe.components.datasets._image_files import ImageFiles
from dcframe.core.errors import BadImageError, UserError
from dcframe.data.images import open_rgb

INSTALL_HINT = "pip install 'dcframe[webdataset]'"


def _webdataset() -> Any:
    try:
        import webdataset
    except ImportError:
        raise UserError(
            f"data.name: the 'webdataset' dataset needs the webdataset package; {INSTALL_HINT}"
        ) from None
    return webdataset


def _shard_files(pattern: str) -> list[str]:
    """The shard paths of ``pattern``: braces expanded as WebDataset does, then globs."""
    files: list[str] = []
    for expanded in _webdataset().shardlists.expand_urls(pattern):
        path = os.path.expanduser(expanded)
        if glob.has_magic(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise UserError(
                    f"data.shards: no file matches {path!r}; point it at your .tar shards, e.g. "
                    "--set data.shards='/data/train-{000000..000099}.tar'"
                )
            files += matches
        else:
            files.append(path)
    return files


# The first bytes of the compressed files people mistake for tar shards.
_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_DECOMPRESS = {"gzip": "gunzip", "bzip2": "bunzip2", "xz": "unxz", "zstd": "unzstd"}
# A tar archive ends with two zero blocks (writers then pad to a whole record; tar
# ignores whatever follows them, and so does dcframe).
_END_OF_ARCHIVE = 2 * tarfile.BLOCKSIZE


_NAMED = 10  # damaged shards named in one message


class _DamagedShard(Exception):
    """A shard whose members stop before tar's end-of-archive blocks: its message says where."""


def _members(shard: str) -> list[tarfile.TarInfo]:
    """The headers of every member of ``shard``, checked to end with end-of-archive blocks.

    Python's tarfile stops quietly at a cut between members or at a damaged header, as if
    the archive ended there; only the missing end-of-archive blocks tell that it did not.
    """
    try:
        with open(shard, "rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            head = raw.read(6)
            raw.seek(0)
            try:
                with tarfile.open(fileobj=raw, mode="r:") as tar:
                    return _read_headers(tar, raw, size)
            except tarfile.ReadError as error:  # the first header already is not one
                raise UserError(_not_a_tar(shard, head, size, error)) from error
    except FileNotFoundError:
        raise UserError(
            f"data.shards: shard {shard!r} does not exist; check the pattern in data.shards"
        ) from None
    except IsADirectoryError:
        raise UserError(
            f"data.shards: {shard!r} is a folder, not a tar shard; point data.shards at the "
            "shard files (e.g. '/data/train-{000000..000099}.tar')"
        ) from None
    except OSError as error:
        raise UserError(
            f"data.shards: cannot read {shard!r} ({error.strerror or error})"
        ) from error


def _read_headers(tar: tarfile.TarFile, raw: IO[bytes], size: int) -> list[tarfile.TarInfo]:
    """Every member's header; raises :class:`_DamagedShard` if the shard stops short."""
    members: list[tarfile.TarInfo] = []
    try:
        while (member := tar.next()) is not None:
            members.append(member)
    except tarfile.ReadError:  # the shard ends inside a member's data
        raise _DamagedShard(_damage(members, size)) from None
    raw.seek(tar.offset)
    tail = raw.read(_END_OF_ARCHIVE)
    if len(tail) < _END_OF_ARCHIVE or tail.count(0) != _END_OF_ARCHIVE:
        raise _DamagedShard(_damage(members, size))
    return members


def _damage(members: list[tarfile.TarInfo], size: int) -> str:
    """Where a shard stops short, naming its last complete member."""
    whole = [m for m in members if m.offset_data + m.size <= size]
    if len(whole) < len(members):
        where = f"it ends inside member {members[len(whole)].name!r}"
    else:
        where = "its members stop (cut or damaged) before tar's end-of-archive blocks"
    last = f"the last good member is {whole[-1].name!r}" if whole else "no member is whole"
    return f"{where}; {last}"


def _not_a_tar(shard: str, head: bytes, size: int, error: tarfile.ReadError) -> str:
    """Why ``shard`` is not read as a tar file at all."""
    compressed = next((kind for magic, kind in _COMPRESSED.items() if head.startswith(magic)), "")
    if compressed:
        return (
            f"data.shards: {shard!r} is not a plain tar file (it is {compressed}-compressed); "
            "random access needs uncompressed .tar shards (decompress it first, e.g. "
            f"{_DECOMPRESS[compressed]})"
        )
    if size == 0:
        return f"data.shards: shard {shard!r} is empty (0 bytes); write it again or leave it out"
    return (
        f"data.shards: {shard!r} is not a tar file ({error}); it is damaged or of another "
        "format: write it again as an uncompressed .tar, or leave it out of data.shards"
    )


def _damaged_report(damaged: list[str], total: int) -> str:
    """One message for every damaged shard (the first few named), with the fix."""
    more = f"\n  ... and {len(damaged) - _NAMED:,} more" if len(damaged) > _NAMED else ""
    return (
        f"data.shards: {len(damaged):,} of {total:,} shard(s) damaged (truncated or corrupt); "
        "the samples after their last good member would be missing. Write each again (or "
        "copy it again from its source), or leave it out of data.shards:\n  "
        + "\n  ".join(damaged[:_NAMED])
        + more
    )


def _samples(shard: str) -> dict[str, dict[str, tarfile.TarInfo]]:
    """The members of ``shard`` by sample key, then by lower-case extension.

    Directories and members without a key are not samples. A link or special member with
    a key is refused: its bytes are elsewhere, so it cannot be read at an offset; so is a
    second member with a sample's key and extension, which would hide the first.
    """
    base_plus_ext = _webdataset().tariterators.base_plus_ext
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    for member in _members(shard):
        if member.isdir():
            continue
        key, ext = base_plus_ext(member.name)
        if key is None:
            continue
        if not member.isfile():
            raise UserError(
                f"data.shards: member {member.name!r} of {shard!r} is a {_kind(member)}, not "
                "a file; a shard must hold each file's bytes (write it with tar --dereference "
                "--hard-dereference, or dcframe data prepare)"
            )
        fields = samples.setdefault(key, {})
        if ext.lower() in fields:
            raise UserError(
                f"data.shards: {shard!r} holds two members for sample {key!r} with extension "
                f".{ext.lower()} ({fields[ext.lower()].name!r} and {member.name!r}); one "
                "would hide the other: give each sample its own key"
            )
        fields[ext.lower()] = member
    return samples


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    return "hard link" if member.islnk() else "special file (device or FIFO)"


def _label(raw: IO[bytes], shard: str, member: tarfile.TarInfo | None) -> int | None:
    """The class id in a sample's label member (None: it has none)."""
    if member is None:
        return None
    raw.seek(member.offset_data)
    text = raw.read(member.size).decode("utf-8", "replace").strip()
    value = ascii_class_id(text)
    problem = class_id_problem(value) if value is not None else "it is not a class id"
    if problem is not None:
        raise UserError(
            f"data.label_extension: {shard}:{member.name} holds {shorten(text)}: {problem} "
            f"(a whole number from 0 to {MAX_CLASS_ID:,}, one per class counted from 0); fix "
            'it, or set data.label_extension = ""'
        )
    return value


class WebDataset(ImageFiles):
    """Images in tar shards laid out as WebDataset writes them, for collections too big for
    a folder tree.

    A sample is the members of a shard sharing a key (``n01440764_10026.jpg`` and
    ``n01440764_10026.cls`` are sample ``n01440764_10026``, split as WebDataset splits
    names: at the first dot of the file name). Its image is the member with the first of
    ``image_extensions`` it has, its label the integer in its ``label_extension`` member.

    dcframe needs random access (``image(i)``), which a stream of samples does not give, so
    the shards are indexed once, when the dataset is built: their tar headers are read
    (one header a member, the image data is skipped) and each image's offset and size are
    kept; ``image(i)`` then reads exactly those bytes. Shards must be plain ``.tar``
    (a compressed shard cannot be read at an offset). Samples are ordered by shard, in the
    order of ``shards``, then as stored in the shard.

    In a distributed run every process builds the same index (each reads the headers of
    every shard, so every process sees every shard) and then opens only the shards holding
    the images it is asked for, lazily and once; DataLoader workers receive the index with
    the dataset and open their own file handles, never one shared across a fork.
    """

    Params = WebDatasetParams
    params: WebDatasetParams

    def __init__(self, params: WebDatasetParams) -> None:
        super().__init__(params)
        self.shards = _shard_files(params.shards)
        wanted = [ext.lower().lstrip(".") for ext in params.image_extensions]
        self._index: list[tuple[int, int, int]] = []  # (shard, offset, size) of each image
        self.paths = []
        labels: list[int | None] = []
        damaged: list[str] = []
        for shard_id, shard in enumerate(self.shards):
            try:
                samples = _samples(shard)
            except _DamagedShard as damage:  # the others are still read, to name them all
                damaged.append(f"{shard!r}: {damage}")
                continue
            with open(shard, "rb") as raw:
                self._index_samples(shard_id, shard, raw, samples, wanted, labels)
        if damaged:
            raise UserError(_damaged_report(damaged, len(self.shards)))
        if not self.paths:
            raise UserError(f"data.shards: no samples in {len(self.shards)} shard(s)")
        where = np.asarray(self._index, dtype=np.int64).reshape(-1, 3)
        del self._index
        self._shard_of, self._offsets, self._sizes = where[:, 0], where[:, 1], where[:, 2]
        self._labels, self._class_names = self._labelling(labels)
        self._open: dict[int, IO[bytes]] = {}
        self._pid = os.getpid()

    def _index_samples(
        self,
        shard_id: int,
        shard: str,
        raw: IO[bytes],
        samples: dict[str, dict[str, tarfile.TarInfo]],
        wanted: list[str],
        labels: list[int | None],
    ) -> None:
        """Append the image location, name and label of every sample of one shard."""
        for key, fields in samples.items():
            image = next((fields[e] for e in wanted if e in fields), None)
            if image is None:
                raise UserError(
                    f"data.image_extensions: sample {key!r} of {shard!r} has no image "
                    f"member (it has {', '.join(sorted(fields))}; looked for "
                    f"{', '.join(wanted)}){self._extensions_advice(wanted, fields)}"
                )
            self._index.append((shard_id, image.offset_data, image.size))
            self.paths.append(f"{shard}:{image.name}")
            label = self.params.label_extension
            labels.append(_label(raw, shard, fields.get(label)) if label else None)

    def _extensions_advice(self, wanted: list[str], fields: dict[str, Any]) -> str:
        """How to add a sample's other members' extensions, as a --set that validates."""
        others = [e for e in sorted(fields) if e not in wanted and e != self.params.label_extension]
        if not others:
            return ""
        # A JSON array of strings is also a TOML array: the value --set reads.
        setting = f"data.image_extensions={json.dumps([*wanted, *others], ensure_ascii=False)}"
        return f"; add its extension to data.image_extensions: --set {shlex.quote(setting)}"

    def _labelling(self, labels: list[int | None]) -> tuple[np.ndarray | None, list[str] | None]:
        given = [label is not None for label in labels]
        if not any(given):
            return None, None
        if not all(given):
            missing = self.paths[given.index(False)]
            raise UserError(
                f"data.label_extension: {given.count(False)} of {len(labels)} samples have no "
                f".{self.params.label_extension} member (e.g. {missing!r}); label every sample "
                'or set data.label_extension = ""'
            )
        ids = np.asarray(labels, dtype=np.int64)
        return ids, [str(c) for c in range(int(ids.max()) + 1)]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}  # open files stay with the process that opened them
        return state

    def _shard(self, shard_id: int) -> IO[bytes]:
        if self._pid != os.getpid():  # a forked worker: its parent's handles are not its own
            self._open, self._pid = {}, os.getpid()
        if shard_id not in self._open:
            self._open[shard_id] = Path(self.shards[shard_id]).open("rb")  # noqa: SIM115 - kept open
        return self._open[shard_id]

    def _bytes(self, index: int) -> bytes:
        try:
            file = self._shard(int(self._shard_of[index]))
            file.seek(int(self._offsets[index]))
            return file.read(int(self._sizes[index]))
        except OSError as error:  # the shard moved or went away since it was indexed
            raise BadImageError(self.paths[index], str(error.strerror or error)) from error

    def image_file(self, index: int) -> str | None:
        return None  # a member of a shard ("shard.tar:key.jpg", the image's id)

    def image(self, index: int) -> Image.Image:
        """Image ``index`` in 8-bit RGB; raises :class:`~dcframe.core.errors.BadImageError`."""
        data = self._bytes(index)
        return open_rgb(io.BytesIO(data), self._min_side, name=self.paths[index])
