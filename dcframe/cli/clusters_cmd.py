"""``dcframe clusters`` and ``dcframe assign``: a run's clusters as a table or as folders,
and new images placed in them (:mod:`dcframe.clusters`)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from dcframe.core.errors import UserError
from dcframe.core.registry import plugin_output_to_stderr

if TYPE_CHECKING:
    from dcframe.clusters.listing import ImageClusters
    from dcframe.core.interfaces import Dataset

RunDir = Annotated[
    Path,
    typer.Argument(
        metavar="RUN_DIR",
        help="Run directory (the folder `dcframe run` printed).",
        show_default=False,
    ),
]
RunOrClustering = Annotated[
    Path,
    typer.Argument(
        metavar="RUN_DIR",
        help="Run directory (the folder `dcframe run` printed), or a clusters/epoch_NNNN.npz "
        "file of one.",
        show_default=False,
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Table to write: .csv, .jsonl or .parquet (pip install 'dcframe\\[parquet]'). "
        "Without --out and --folders, CSV on standard output.",
        show_default=False,
    ),
]
Folders = Annotated[
    Path | None,
    typer.Option(
        "--folders",
        help="Also make one folder per cluster here, largest first, each holding links to "
        "its images, nearest to the centroid first.",
        show_default=False,
    ),
]
Copy = Annotated[
    bool, typer.Option("--copy", help="With --folders: copy the image files instead of linking.")
]
Force = Annotated[
    bool,
    typer.Option(
        "--force", help="Replace an existing --out file; write into a non-empty --folders."
    ),
]
Epoch = Annotated[
    int | None,
    typer.Option("--epoch", min=0, help="The epoch's clustering (default: the last finished)."),
]


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class BadImage(StrEnum):
    fail = "fail"
    skip = "skip"


def clusters(
    run_dir: RunDir,
    out: Out = None,
    folders: Folders = None,
    copy: Copy = False,
    force: Force = False,
    epoch: Epoch = None,
) -> None:
    """List every image of a run with its cluster: path (or id), cluster, distance to the
    centroid, rank in the cluster (1: nearest), label, and the extra heads' clusters."""
    from dcframe.clusters.listing import run_clusters

    _check_outputs(out, folders, force)
    with plugin_output_to_stderr():
        table = run_clusters(run_dir, epoch)
    _write(table, out, folders, copy)


def assign(
    run_dir: RunOrClustering,
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="IMAGES",
            help="Image files, or folders (searched recursively).",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="DATASET",
            help="Instead of IMAGES: a registered dataset (`dcframe plugins list`).",
        ),
    ] = None,
    data_set: Annotated[
        list[str] | None,
        typer.Option(
            "--data-set",
            metavar="KEY=VALUE",
            help="A parameter of the --data dataset (repeat), e.g. root=/data/new.",
        ),
    ] = None,
    out: Out = None,
    folders: Folders = None,
    copy: Copy = False,
    force: Force = False,
    epoch: Epoch = None,
    device: Annotated[
        Device,
        typer.Option("--device", help="Where the trunk runs: auto is a GPU when torch sees one."),
    ] = Device.auto,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")] = 128,
    workers: Annotated[int, typer.Option("--workers", min=0, max=64, help="Loader processes.")] = 0,
    on_bad_image: Annotated[
        BadImage,
        typer.Option(
            "--on-bad-image",
            help="fail at the first unreadable image, or skip it (listed without a cluster).",
        ),
    ] = BadImage.fail,
) -> None:
    """Place new images in a run's clusters: each through the trunk, the preprocessing and
    the centroids of the run's epoch; the output is as for `dcframe clusters`."""
    from dcframe.clusters.model import load_clustering
    from dcframe.core.progress import Reporter
    from dcframe.evaluation.data import named_dataset

    if bool(images) == (data is not None):
        raise UserError(
            "give the new images either as IMAGES (files or folders) or as --data DATASET "
            "--data-set KEY=VALUE, not both"
            if images
            else "give the images to assign: IMAGES (files or folders), or --data DATASET "
            "--data-set KEY=VALUE"
        )
    _check_outputs(out, folders, force)
    with plugin_output_to_stderr():
        model = load_clustering(run_dir, epoch)
        source: list[str] | Dataset = (
            [str(path) for path in images] if images else named_dataset(str(data), data_set or [])
        )
        table = model.assign(
            source,
            device=device.value,
            batch_size=batch_size,
            workers=workers,
            on_bad_image=on_bad_image.value,
            reporter=Reporter(),  # on stderr: the CSV may be on stdout
        )
    _write(table, out, folders, copy)


def _check_outputs(out: Path | None, folders: Path | None, force: bool) -> None:
    from dcframe.clusters.output import check_folders, check_table_file

    if out is not None:
        check_table_file(out, force)
    if folders is not None:
        check_folders(folders, force)


def _write(table: ImageClusters, out: Path | None, folders: Path | None, copy: bool) -> None:
    """The table to ``out`` (stdout without ``out`` and ``folders``), the folders to
    ``folders``, and a summary on stderr."""
    from dcframe.clusters.output import describe, sort_into_folders, write_csv, write_table

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if out is None and folders is None:
        write_csv(table, sys.stdout)
        return
    counts = describe(table)
    left_out = f", {counts['left_out']} left out as unreadable" if counts["left_out"] else ""
    summary = f"{_count(counts['images'], 'image')} in {_count(counts['clusters'], 'cluster')}"
    summary += left_out
    if out is not None:
        write_table(table, out)
        err.print(f"wrote {escape(str(out))}: {summary}")
    if folders is not None:
        made = sort_into_folders(table, folders, copy)
        how = "copies" if copy else "links"
        err.print(f"sorted into {len(made)} folders of {how} in {escape(str(folders))}: {summary}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
