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


def _members(shard: str) -> list[tarfile.TarInfo]:
    try:
        with tarfile.open(shard, mode="r:") as tar:
            return [m for m in tar.getmembers() if m.isfile()]
    except FileNotFoundError:
        raise UserError(
            f"data.shards: shard {shard!r} does not exist; check the pattern in data.shards"
        ) from None
    except tarfile.ReadError as error:
        raise UserError(
            f"data.shards: {shard!r} is not a plain tar file ({error}); random access needs "
            "uncompressed .tar shards (gunzip a .tar.gz shard first)"
        ) from error
    except OSError as error:
        raise UserError(
            f"data.shards: cannot read {shard!r} ({error.strerror or error})"
        ) from error


def _label(raw: IO[bytes], shard: str, member: tarfile.TarInfo | None) -> int | None:
    """The class id in a sample's label member (None: it has none)."""
    if member is None:
        return None
    raw.seek(member.offset_data)
    text = raw.read(member.size).decode("utf-8", "replace").strip()
    if not text.isdigit():
        raise UserError(
            f"data.label_extension: {shard}:{member.name} holds {text[:40]!r}, not a class id "
            '(a non-negative integer); fix it, or set data.label_extension = ""'
        )
    return int(text)


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
        base_plus_ext = _webdataset().tariterators.base_plus_ext
        self.shards = _shard_files(params.shards)
        wanted = [ext.lower().lstrip(".") for ext in params.image_extensions]
        self._index: list[tuple[int, int, int]] = []  # (shard, offset, size) of each image
        self.paths = []
        labels: list[int | None] = []
        for shard_id, shard in enumerate(self.shards):
            samples: dict[str, dict[str, tarfile.TarInfo]] = {}
            for member in _members(shard):
                key, ext = base_plus_ext(member.name)
                if key is not None:
                    samples.setdefault(key, {})[ext.lower()] = member
            with open(shard, "rb") as raw:
                self._index_samples(shard_id, shard, raw, samples, wanted, labels)
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

    def image(self, index: int) -> Image.Image:
        """Image ``index`` in 8-bit RGB; raises :class:`~dcframe.core.errors.BadImageError`."""
        data = self._bytes(index)
        return open_rgb(io.BytesIO(data), self._min_side, name=self.paths[index])
