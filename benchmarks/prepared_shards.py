"""Decode-and-augment images per second per core: large original JPEGs against the same
images prepared by ``dcframe data prepare`` as resized JPEG shards.

The images are made here, nothing is downloaded: scikit-learn's two bundled photographs
(``load_sample_images``: china.jpg and flower.jpg, 640x427) give ``--images`` distinct
files, each a random crop (40-100% of the area), an optional mirror, per-channel gains of
0.8-1.2 and a gamma of 0.8-1.25, enlarged (bicubic) to a random width in ``--width``
(2000-4000 px: phone and DSLR photographs), with Gaussian grain (sigma 4 levels) so that
the files carry a real photograph's detail rather than an enlargement's smoothness, saved
at JPEG quality 92 (a camera's). ``--width 400 500`` makes ImageNet-sized files instead
(ILSVRC-2012's training images average about 400x350 px and 110 kB).

"Decode-and-augment" is what a training step does per image, on one core (one thread, torch
on one thread): the dataset's ``image(i)`` (open, decode at the reduced scale a run allows:
``decode_at_least(smallest_side_used(224, 0.08))``, as the engine sets it), then
``TrainingView(224)``: RandomResizedCrop(224, scale (0.08, 1), ratio (3/4, 4/3)), flip,
ToTensor, Normalize. The originals are read through ``imagefolder``, the shards through
``webdataset``. Variants take turns, round after round (A B C A B C ...), so a machine that
gets busier mid-run slows them alike; the table gives each variant's median rate over the
rounds and the median of the per-round ratios to the originals.

    python benchmarks/prepared_shards.py                       # 200 images, 2000-4000 px
    python benchmarks/prepared_shards.py --width 400 500 --max-side 256 512
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcframe.components.builtin_params import ImageFolderParams, WebDatasetParams
from dcframe.components.datasets.folder import ImageFolder
from dcframe.components.datasets.shards import WebDataset
from dcframe.core.interfaces import Dataset
from dcframe.data.transforms import TrainingView, smallest_side_used
from dcframe.tools import prepare as tool

INPUT_SIZE, CROP_SCALE_MIN = 224, 0.08


def make_photographs(folder: Path, count: int, widths: tuple[int, int], seed: int) -> None:
    """``count`` photograph-like JPEGs in two class folders (china, flower); kept between runs."""
    from sklearn.datasets import load_sample_images

    if len(list(folder.glob("*/*.jpg"))) == count:
        return
    rng = np.random.default_rng(seed)
    bases = load_sample_images()
    for i in range(count):
        which = i % 2
        base = bases.images[which].astype(np.float32)
        h, w = base.shape[:2]
        keep = np.sqrt(rng.uniform(0.4, 1.0))  # side fraction of a crop of 40-100% area
        ch, cw = int(h * keep), int(w * keep)
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = base[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = 255 * (crop * rng.uniform(0.8, 1.2, 3) / 255).clip(0, 1) ** rng.uniform(0.8, 1.25)
        width = int(rng.integers(widths[0], widths[1] + 1))
        height = round(width * ch / cw)
        big = Image.fromarray(crop.astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        grain = rng.normal(0, 4, (height, width, 3)).astype(np.float32)
        pixels = (np.asarray(big, np.float32) + grain).clip(0, 255).astype(np.uint8)
        target = folder / bases.filenames[which].split("/")[-1][:-4] / f"{i:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target, quality=92)


def images_per_second(dataset: Dataset, view: TrainingView, decode_only: bool) -> float:
    """One pass over ``dataset`` on this thread: images per second."""
    started = time.perf_counter()
    for i in range(len(dataset)):
        image = dataset.image(i)
        if not decode_only:
            view(image, seed=i)
    return len(dataset) / (time.perf_counter() - started)


def describe(folder: Path) -> str:
    files = sorted(folder.glob("*/*.jpg"))
    sizes = [Image.open(f).size for f in files]
    mean_bytes = statistics.mean(f.stat().st_size for f in files)
    pixels = statistics.mean(w * h for w, h in sizes)
    return (
        f"{len(files)} JPEGs, {min(w for w, _ in sizes)}-{max(w for w, _ in sizes)} px wide, "
        f"mean {pixels / 1e6:.1f} Mpx, {mean_bytes / 1e6:.2f} MB ({8 * mean_bytes / pixels:.2f} "
        "bits per pixel)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--width", type=int, nargs=2, default=(2000, 4000), metavar=("MIN", "MAX"))
    parser.add_argument("--max-side", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # per core: ToTensor and Normalize on one thread too
    scratch = args.scratch or Path(tempfile.gettempdir()) / "dcframe-prepared-bench"
    originals = scratch / f"originals-{args.images}-{args.width[0]}-{args.width[1]}"
    started = time.perf_counter()
    make_photographs(originals, args.images, tuple(args.width), args.seed)
    print(f"originals: {describe(originals)} (made in {time.perf_counter() - started:.0f}s)")

    source = tool.open_source(originals)
    datasets: dict[str, Dataset] = {
        "original JPEGs": ImageFolder(ImageFolderParams(root=str(originals)))
    }
    for side in args.max_side:
        out = scratch / f"{originals.name}-prepared-{side}"
        started = time.perf_counter()
        summary = tool.prepare(source, out, tool.Settings(max_side=side), os.cpu_count() or 1)
        seconds = time.perf_counter() - started
        megabytes, smaller = summary.bytes_out / 1e6, (summary.bytes_in or 0) / summary.bytes_out
        print(
            f"prepared --max-side {side}: {summary.images} images, {megabytes:.1f} MB "
            f"({smaller:.1f}x smaller); "
            + (
                f"{summary.images / seconds:.1f} images/s on {os.cpu_count()} threads"
                if summary.written_now
                else "kept from an earlier run"
            )
        )
        datasets[f"shards, --max-side {side}"] = WebDataset(
            WebDatasetParams(shards=summary.pattern())
        )
    for dataset in datasets.values():  # as the engine does before training
        dataset.decode_at_least(smallest_side_used(INPUT_SIZE, CROP_SCALE_MIN))
    view = TrainingView(INPUT_SIZE, CROP_SCALE_MIN)

    rates: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for decode_only in (False, True):
            for name, dataset in datasets.items():
                rates.setdefault((name, decode_only), []).append(
                    images_per_second(dataset, view, decode_only)
                )
    base = "original JPEGs"
    print(f"\nimages/s on one core, median of {args.rounds} alternating rounds")
    print("(ratio: median of the per-round ratios to the original JPEGs)")
    print(f"| {'images':<26} | decode+augment |  ratio | decode only |  ratio |")
    print(f"|{'-' * 28}|---------------:|-------:|------------:|-------:|")
    for name in datasets:
        cells = []
        for decode_only in (False, True):
            mine, theirs = rates[(name, decode_only)], rates[(base, decode_only)]
            ratio = statistics.median(a / b for a, b in zip(mine, theirs, strict=True))
            cells += [f"{statistics.median(mine):.1f}", f"{ratio:.2f}x"]
        print(f"| {name:<26} | {cells[0]:>14} | {cells[1]:>6} | {cells[2]:>11} | {cells[3]:>6} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
