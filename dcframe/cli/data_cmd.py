"""``dcframe data``: vet a recipe's images before a long run, or prepare them as small shards.

``dcframe data check`` decodes every image once, through the dataset's own ``image()``
(so it tests exactly what a run reads), in a pool of threads (PIL releases the GIL while
decoding), and reports every file that cannot be read. ``dcframe data prepare`` rewrites a
dataset as resized JPEGs in tar shards (:mod:`dcframe.tools.prepare`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from PIL import Image
from rich.console import Console
from rich.markup import escape

from dcframe.cli.recipe_cmd import Overrides, RecipePath
from dcframe.core.errors import BadImageError, UserError
from dcframe.data.threads import DatasetPerThread, image_name

if TYPE_CHECKING:
    from dcframe.core.interfaces import Dataset

app = typer.Typer(
    no_args_is_help=True,
    help="Check a recipe's data before running it, or prepare it as small shards.",
)

SHOWN = 20  # bad files listed in the console; --out gets them all


@dataclass(frozen=True)
class Outcome:
    """What opening image ``index`` gave: its size, or the reason it cannot be read."""

    index: int
    path: str
    size: tuple[int, int] | None = None
    reason: str | None = None


def check_one(dataset: Dataset, index: int) -> Outcome:
    """Decode image ``index``; never raises for a bad image, whatever the dataset throws."""
    try:
        image = dataset.image(index)
    except BadImageError as error:
        return Outcome(index, error.path, reason=error.reason)
    except MemoryError:
        raise
    except Exception as error:  # a plugin's own failure is still one bad file, not a crash
        reason = f"unexpected error {type(error).__name__}: {error}"
        return Outcome(index, image_name(dataset, index), reason=reason)
    if not isinstance(image, Image.Image):
        reason = f"image() returned {type(image).__name__}, not a PIL image"
        return Outcome(index, image_name(dataset, index), reason=reason)
    if image.mode != "RGB":
        reason = f"image() returned mode {image.mode!r}, not 'RGB'"
        return Outcome(index, image_name(dataset, index), reason=reason)
    return Outcome(index, image_name(dataset, index), size=image.size)


def check_all(dataset: Dataset, workers: int) -> Iterator[Outcome]:
    """Every image's outcome, in completion order, from ``workers`` threads.

    Only a few images per thread are in flight at once, so memory stays flat on a
    folder of millions and Ctrl-C does not wait for the whole queue.
    """
    window = 4 * workers
    copies = DatasetPerThread(dataset)  # no two threads seek one open file
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="data-check") as pool:
        pending: set[Future[Outcome]] = set()
        try:
            for index in range(len(dataset)):
                pending.add(pool.submit(lambda i: check_one(copies.get(), i), index))
                if len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        finally:
            for future in pending:
                future.cancel()


def _write_list(path: Path, bad: list[Outcome]) -> None:
    """The full list of unreadable images, in the run directory's skipped_images.tsv format."""
    from dcframe.data.bad_images import unreadable_tsv  # imports torch

    text = unreadable_tsv((o.index, o.path, o.reason or "") for o in bad)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UserError(f"--out: cannot write {str(path)!r} ({error.strerror or error})") from error


def _sizes(sizes: Counter[tuple[int, int]]) -> str:
    common = ", ".join(f"{w}x{h} ({n:,})" for (w, h), n in sizes.most_common(3))
    more = len(sizes) - 3
    return common + (f" and {more:,} other sizes" if more > 0 else "")


@app.command("check")
def check(
    recipe: RecipePath,
    overrides: Overrides = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Threads decoding images (default: one per CPU core)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write every unreadable image (index, path, reason) to this TSV file."
        ),
    ] = None,
) -> None:
    """Open every image of the recipe's dataset once (exit code 0 if all are readable, else 2)."""
    # Imported here, not at the top, so that `dcframe --help` stays fast.
    from dcframe import recipe as recipes
    from dcframe.core import kinds
    from dcframe.core.progress import Reporter

    resolved: Any = recipes.load(recipe, overrides)
    section = resolved.data
    dataset: Dataset = kinds.datasets.get(section.name).cls(section)
    total = len(dataset)
    threads = workers or os.cpu_count() or 1
    bad: list[Outcome] = []
    sizes: Counter[tuple[int, int]] = Counter()
    outcomes = check_all(dataset, threads)
    for outcome in Reporter().track(outcomes, total=total, description="checking"):
        if outcome.size is None:
            bad.append(outcome)
        else:
            sizes[outcome.size] += 1
    bad.sort(key=lambda o: o.index)
    if out is not None:
        _write_list(out, bad)

    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"[bold]{escape(section.name)}[/bold]: {total:,} images checked, "
        f"{total - len(bad):,} readable, {len(bad):,} bad"
    )
    if sizes:
        console.print(f"sizes: {_sizes(sizes)}")
    for outcome in bad[:SHOWN]:
        console.print(f"  [red]bad[/red] {escape(outcome.path)}: {escape(outcome.reason or '')}")
    if len(bad) > SHOWN:
        where = f"all listed in {out}" if out is not None else "--out FILE lists them all"
        console.print(f"  ... and {len(bad) - SHOWN:,} more ({escape(where)})")
    if bad:
        raise UserError(
            f"data check: {len(bad):,} of {total:,} images cannot be read; remove or replace "
            'them, or set data.on_bad_image = "skip" to leave them out of a run'
        )


def _bytes(count: int) -> str:
    """A byte count in decimal units, as disks are sold."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


def _report(summary: Any, seconds: float) -> None:
    """Sizes before and after, the skipped images, and the recipe lines that read the shards."""
    console = Console(highlight=False, soft_wrap=True)
    settings = summary.settings
    earlier = len(summary.shards) - summary.written_now
    console.print(
        f"[bold]prepared[/bold] {escape(summary.source)}: {summary.images:,} of "
        f"{summary.total:,} images in {len(summary.shards):,} shards ({summary.written_now:,} "
        f"written now in {seconds:.1f}s, {earlier:,} by an earlier session), "
        f"{len(summary.skipped):,} skipped"
    )
    console.print(
        f"longer side at most {settings.max_side} px, JPEG quality {settings.quality}, "
        f"{settings.images_per_shard:,} images per shard"
    )
    out, per_image = summary.bytes_out, summary.bytes_out / max(1, summary.images)
    if summary.bytes_in is None:
        console.print(f"bytes: {_bytes(out)} out ({_bytes(round(per_image))} per image)")
    else:
        ratio = summary.bytes_in / max(1, out)
        console.print(
            f"bytes: {_bytes(summary.bytes_in)} in -> {_bytes(out)} out ({ratio:.1f}x smaller; "
            f"{_bytes(round(per_image))} per image)"
        )
    for index, path, reason in summary.skipped[:SHOWN]:
        console.print(f"  [yellow]skipped[/yellow] #{index} {escape(path)}: {escape(reason)}")
    if summary.skipped:
        more = len(summary.skipped) - SHOWN
        also = f"... and {more:,} more; " if more > 0 else ""
        console.print(f"  {also}all listed in {escape(str(summary.out / 'skipped_images.tsv'))}")
    console.print("read them with these recipe lines:")
    console.print(escape(summary.snippet()), end="")


@app.command("prepare")
def prepare(
    src: Annotated[
        Path,
        typer.Argument(
            help="Image folder (class sub-folders or flat), or a recipe (.toml) whose data "
            "section names the images (--set changes it).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Argument(
            help="Folder for the shards: new, empty, or an interrupted prepare to continue.",
            show_default=False,
        ),
    ],
    max_side: Annotated[
        int,
        typer.Option("--max-side", min=16, help="Longer side in pixels at most (never enlarged)."),
    ] = 512,
    quality: Annotated[
        int, typer.Option("--quality", min=1, max=100, help="JPEG quality of the shards.")
    ] = 90,
    per_shard: Annotated[
        int, typer.Option("--per-shard", min=1, help="Images per tar shard.")
    ] = 1000,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Shard names: PREFIX-000000.tar, ...")
    ] = "train",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Threads decoding images (default: one per CPU core)."
        ),
    ] = None,
    overrides: Overrides = None,
) -> None:
    """Write a dataset as resized JPEGs in tar shards (the webdataset layout), so that runs
    decode small files; run it again to continue an interrupted prepare."""
    import time

    from dcframe.core.progress import Reporter
    from dcframe.tools import prepare as tool

    if not prefix or not all(c.isalnum() or c in "_-" for c in prefix):
        raise UserError(f"--prefix: {prefix!r} must be letters, digits, '-' or '_' (no dots)")
    settings = tool.Settings(max_side, quality, per_shard, prefix)
    source = tool.open_source(src, overrides)
    started = time.perf_counter()
    try:
        summary = tool.prepare(source, out, settings, workers or os.cpu_count() or 1, Reporter())
    except KeyboardInterrupt:
        Console(stderr=True).print(
            "[red]interrupted[/red]: finished shards are kept; run the same command again "
            "to continue"
        )
        raise typer.Exit(130) from None
    _report(summary, time.perf_counter() - started)
