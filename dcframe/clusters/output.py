"""Images and their clusters written out: a table file, or one folder per cluster."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import IO, Any

import numpy as np

from dcframe.clusters.listing import ImageClusters
from dcframe.core.errors import UserError
from dcframe.core.files import atomic_write_bytes, user_error_for

FORMATS = {".csv": "CSV", ".jsonl": "JSON Lines", ".parquet": "Parquet"}
PARQUET_HINT = "pip install 'dcframe[parquet]'"


def check_table_file(out: Path, force: bool) -> None:
    """Refuse, before any work, a table file that cannot be written as asked.

    Raises:
        UserError: an unknown extension, Parquet without pyarrow, or an existing file
            without ``force``.
    """
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(f"{s} ({name})" for s, name in FORMATS.items())
        raise UserError(f"--out {out}: the extension says the format; use one of {known}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError(f"--out {out}: Parquet needs pyarrow; {PARQUET_HINT}") from None
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name, e.g. {out / 'clusters.csv'}")
    if out.exists() and not force:
        raise UserError(f"--out {out} exists; choose another name, or --force to replace it")


def write_table(table: ImageClusters, out: Path) -> None:
    """``table`` as the format ``out``'s extension names (checked by
    :func:`check_table_file`), written atomically."""
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        data = _parquet(table)
    else:
        text = io.StringIO()
        (write_csv if suffix == ".csv" else _write_jsonl)(table, text)
        data = text.getvalue().encode()
    try:
        atomic_write_bytes(out, lambda f: f.write(data), elsewhere="--out")
    except FileNotFoundError:
        raise UserError(f"--out {out}: the folder {out.parent} does not exist") from None


def write_csv(table: ImageClusters, stream: IO[str]) -> None:
    writer = csv.DictWriter(stream, table.columns(), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table.rows())


def _write_jsonl(table: ImageClusters, stream: IO[str]) -> None:
    for row in table.rows():
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")


def _parquet(table: ImageClusters) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(table.rows())
    columns = {name: [row[name] for row in rows] for name in table.columns()}
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


# ----------------------------------------------------------------- folders


def check_folders(folder: Path, force: bool) -> None:
    """Refuse, before any work, to write into a non-empty folder unless ``force``.

    Raises:
        UserError: ``folder`` is a file, or holds something and ``force`` is not given.
    """
    if folder.is_file():
        raise UserError(f"--folders {folder} is a file; give a folder to create")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UserError(
            f"--folders {folder} is not empty; choose a new folder, or --force to write into "
            "it (files of the same names are replaced, nothing else is touched)"
        )


def sort_into_folders(table: ImageClusters, folder: Path, copy: bool = False) -> list[Path]:
    """One folder per non-empty cluster of the first head, the largest first (named
    ``001-cluster-17-342-images``), each holding its images nearest to the centroid first
    in name order (``001-<name>``: the rank, as many digits as the cluster's size has):
    links to the files, copies with ``copy``, and PNG files
    of the images that have no file of their own (arrays, tar shards). Images left out as
    unreadable are in no folder. Returns the folders, in order.

    Raises:
        UserError: the folder cannot be written, or links cannot be made (use ``copy``).
    """
    clusters, ranks = table.clusters[0], table.ranks()
    placed = clusters >= 0
    ids, sizes = np.unique(clusters[placed], return_counts=True)
    order = np.lexsort((ids, -sizes))
    width = len(str(len(order)))
    made = []
    try:
        for position, j in enumerate(order, start=1):
            cluster, size = int(ids[j]), int(sizes[j])
            target = folder / f"{position:0{width}d}-cluster-{cluster}-{size}-images"
            target.mkdir(parents=True, exist_ok=True)
            members = np.flatnonzero(clusters == cluster)
            digits = len(str(size))
            for i in members[np.argsort(ranks[members], kind="stable")]:
                _place(table, int(i), target, f"{ranks[i]:0{digits}d}-", copy)
            made.append(target)
    except OSError as error:
        problem = user_error_for(error, f"writing into {folder}", "--folders")
        if problem is None:
            raise
        raise problem from error
    return made


def _place(table: ImageClusters, i: int, folder: Path, prefix: str, copy: bool) -> None:
    """Image ``i`` into ``folder``: a link to its file, a copy, or a PNG of its pixels."""
    file = table.files[i]
    if file is None:
        name = _safe_name(Path(table.ids[i]).name or str(i))
        table.image(i).save(folder / f"{prefix}{Path(name).stem}.png")
        return
    destination = folder / f"{prefix}{Path(file).name}"
    if destination.is_symlink() or destination.exists():
        destination.unlink()
    if copy:
        shutil.copyfile(file, destination)
        return
    try:
        os.symlink(os.path.abspath(file), destination)
    except OSError as error:
        raise UserError(
            f"--folders: cannot make the link {destination} ({error.strerror or error}); "
            "use --copy to copy the files instead"
        ) from error


def _safe_name(text: str) -> str:
    """``text`` as a file name: path separators and the like become '_'."""
    return re.sub(r"[^\w.+-]", "_", text)[:100]


def describe(table: ImageClusters) -> dict[str, Any]:
    """Counts for a one-line summary."""
    placed = table.clusters[0] >= 0
    return {
        "images": len(table),
        "clusters": len(np.unique(table.clusters[0][placed])),
        "left_out": int((~placed).sum()),
    }
