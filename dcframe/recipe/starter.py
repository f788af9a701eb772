"""``dcframe recipe init``: a commented starter recipe chosen from a look at a folder of images.

For users who do not know DeepCluster's knobs yet: the folder is scanned (image count,
class sub-folders, the typical image size from a sample of headers), and every size the
recipe needs follows from that by a rule written next to it in the file:

* k: 10 clusters per class when the folder has class sub-folders (the paper over-segments
  ImageNet's 1,000 classes into 10,000), else one per 100 images; 10 to 10,000, and at
  most one per 5 images.
* input size: the 32x32 small-input variant when the median image's shorter side is at
  most 64 pixels; the paper's 224x224 from 224 pixels on; in between, the shorter side
  rounded down to a multiple of 32 (64 to 192) with the small-input stem, whose stride
  brings it to 32-pixel maps, so mid-sized photos are neither shrunk to 32 nor blown up.
* PCA dim: the paper's 256, at most one tenth of the images (a multiple of 8, at least 8).
* epochs: 50 up to 10,000 images, 100 up to 200,000, else 200 (the paper: 500 on ImageNet);
  small folders sample 3x their size per epoch.
* network width: a quarter of the paper's AlexNet channels up to 5,000 images, half up to
  100,000, the paper's full width beyond (the cost of a step grows with the square of the
  width; a small folder cannot use the capacity of the full network anyway).
* caches: the clustering views and the decoded training images are kept in the run folder
  when together they take at most 2 GiB (then later epochs decode nothing).
* bf16 autocast on a CPU that computes bf16 natively (on a GPU, ``run.amp = "auto"`` picks
  it already).
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dcframe.core.errors import UserError
from dcframe.core.machine import cpu_has_bf16

#: Image headers read to find the typical size (spread evenly over the folder).
SIZE_SAMPLE = 200
#: Shorter sides up to this many pixels train on 32x32 inputs (the small-input variant).
SMALL_IMAGE_SIDE = 64
#: The most memory the starter's caches may take (clustering views + decoded images).
CACHE_LIMIT_GIB = 2.0
#: ``augment.crop_scale_min``'s default: the smallest crop the training view takes.
CROP_SCALE_MIN = 0.08


@dataclass(frozen=True)
class FolderSurvey:
    """What a folder of images holds.

    Attributes:
        root: The folder.
        images: Number of image files.
        classes: Class sub-folder names (empty for a flat, unlabelled folder).
        median_size: Median (width, height) of a sample of the images.
    """

    root: Path
    images: int
    classes: tuple[str, ...]
    median_size: tuple[int, int]


@dataclass(frozen=True)
class StarterChoices:
    """The sizes of a starter recipe (see the module docstring for the rules)."""

    k: int
    small_input: bool
    input_size: int
    pca_dim: int
    epochs: int
    reassign: float
    batch_size: int
    width: float
    fc_dim: int
    cache_gib: float
    bf16: bool


def survey(root: Path) -> FolderSurvey:
    """Count the images of ``root`` (class sub-folders or flat) and sample their sizes.

    Raises:
        UserError: ``root`` is missing, not a folder, or holds no images.
    """
    from dcframe.components.datasets import IMAGE_EXTENSIONS

    if not root.exists():
        raise UserError(f"{str(root)!r} does not exist; give a folder of images")
    if not root.is_dir():
        raise UserError(f"{str(root)!r} is not a folder; give a folder of images")
    top = sorted(os.scandir(root), key=lambda e: e.name)
    class_dirs = [e for e in top if e.is_dir()]
    loose = [e.path for e in top if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    if class_dirs and loose:
        raise UserError(
            f"{str(root)!r} holds both class sub-folders and {len(loose)} image(s) beside "
            "them (the imagefolder dataset refuses that); move the images into a class folder"
        )
    paths = loose or [
        os.path.join(where, file)
        for class_dir in class_dirs
        for where, _, files in os.walk(class_dir.path)
        for file in files
        if file.lower().endswith(IMAGE_EXTENSIONS)
    ]
    if not paths:
        raise UserError(
            f"no images in {str(root)!r} (looked for {', '.join(IMAGE_EXTENSIONS)} files, "
            "in class sub-folders or at the top); give a folder of images"
        )
    step = max(1, len(paths) // SIZE_SAMPLE)
    sizes = [_size(p) for p in sorted(paths)[::step][:SIZE_SAMPLE]]
    readable = [s for s in sizes if s is not None]
    if not readable:
        raise UserError(f"none of the sampled images of {str(root)!r} can be read")
    width = int(statistics.median(w for w, _ in readable))
    height = int(statistics.median(h for _, h in readable))
    classes = tuple(e.name for e in class_dirs)
    return FolderSurvey(root, len(paths), classes, (width, height))


def _size(path: str) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def choose(found: FolderSurvey) -> StarterChoices:
    """The starter sizes for the images ``found`` (rules in the module docstring)."""
    n = found.images
    k = 10 * len(found.classes) if found.classes else n // 100
    k = max(2, min(max(k, 10), 10_000, n // 5))
    pca_dim = max(8, min(256, n // 10) // 8 * 8)
    epochs = 50 if n <= 10_000 else 100 if n <= 200_000 else 200
    batch_size = min(256, 2 ** max(3, (n // 8).bit_length() - 1))  # a power of 2, <= n / 8
    side = min(found.median_size)
    input_size = 32 if side <= SMALL_IMAGE_SIDE else 224 if side >= 224 else side // 32 * 32
    width = 0.25 if n <= 5_000 else 0.5 if n <= 100_000 else 1.0
    return StarterChoices(
        k=k,
        small_input=input_size < 224,
        input_size=input_size,
        pca_dim=pca_dim,
        epochs=epochs,
        reassign=3.0 if n < 5_000 else 1.0,
        batch_size=batch_size,
        width=width,
        fc_dim=4096 if width == 1.0 else int(2048 * width),
        cache_gib=_cache_gib(n, input_size, side),
        bf16=cpu_has_bf16(),
    )


def _cache_gib(images: int, input_size: int, side: int) -> float:
    """The caches' budget in GiB (0: off): the clustering views (input_size squared) and
    the decoded images (their shorter side capped at what the training view uses), with a
    quarter to spare, when that stays within :data:`CACHE_LIMIT_GIB`."""
    from dcframe.data.transforms import smallest_side_used

    decoded = min(side, smallest_side_used(input_size, CROP_SCALE_MIN))
    need = images * 3 * (input_size**2 + decoded**2) * 1.25 / 2**30
    return math.ceil(need * 10) / 10 if need <= CACHE_LIMIT_GIB else 0.0


def starter_recipe(found: FolderSurvey, choices: StarterChoices, name: str) -> str:
    """The commented TOML text of the starter recipe."""
    n, classes = found.images, found.classes
    labels = (
        f"{len(classes)} class sub-folders: labels feed the metrics (NMI, kNN), never training"
        if classes
        else "no class sub-folders: unlabelled"
    )
    k_rule = (
        f"10 per class ({len(classes)} classes)" if classes else "one per 100 images"
    ) + ", 10 to 10,000, at most one per 5 images"
    w, h = found.median_size
    size_rule = f"median image {w}x{h}: " + (
        "the 32x32 small-input variant"
        if choices.input_size == 32
        else "the paper's 224x224 input"
        if not choices.small_input
        else "its shorter side to a multiple of 32, the small-input stem"
    )
    root = str(found.root.resolve())
    return f"""\
# Starter recipe written by `dcframe recipe init` for {n:,} images ({labels}).
# Every size below follows from the folder by the rule in its comment; change any of them,
# then check the file with `dcframe recipe check` and start with `dcframe run`.
# The recipe reference lists every parameter: dcframe recipe schema, or the docs.
schema_version = 1

[run]
name = {_toml_string(name)}
epochs = {choices.epochs}          # 50 up to 10k images, 100 up to 200k, else 200 (paper: 500)
output_dir = "runs"
device = "auto"       # CUDA when present, else the CPU
seed = 31
{_run_speed(choices)}
[data]
name = "imagefolder"
root = {_toml_string(root)}

[backbone]
name = "alexnet"      # the paper's backbone, with BatchNorm
sobel = true          # the paper's fixed Sobel gradients of the grey image
small_input = {str(choices.small_input).lower()}
input_size = {choices.input_size}      # {size_rule}
width = {choices.width}          # channels vs the paper's: 1/4 up to 5k images, 1/2 up to 100k
fc_dim = {choices.fc_dim}          # the paper's 4096 at full width

# Features are PCA-whitened then L2-normalised before k-means, as in the paper.
[[preprocess]]
name = "pca"
dim = {choices.pca_dim}             # the paper's 256, at most one tenth of the images

[[preprocess]]
name = "l2"

[clusterer]
name = "faiss-kmeans"
k = {choices.k}               # {k_rule}

[sampler]
name = "uniform"      # as many images from every cluster (the paper's sampler)
reassign = {choices.reassign}        # images per epoch as a multiple of {n:,}: 3 for small folders

[optimizer]
lr = 0.05             # the paper's SGD: constant learning rate, momentum 0.9
batch_size = {choices.batch_size}
"""


def _run_speed(choices: StarterChoices) -> str:
    """The ``[run]`` lines of the caches and the precision, with why."""
    lines = []
    if choices.cache_gib:
        lines += [
            f"view_cache_gib = {choices.cache_gib}   # the views and decoded images fit: decoded "
            "once, then read back",
            'augment_on = "device"  # augment batches from the cached decoded images',
        ]
    if choices.bf16:
        lines.append('amp = "bf16"          # this CPU computes bf16 natively')
    return "".join(line + "\n" for line in lines)


def _toml_string(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a valid TOML basic string


def write_starter_recipe(folder: Path, out: Path) -> tuple[FolderSurvey, StarterChoices]:
    """Survey ``folder``, write the starter recipe to ``out``, validate it by loading it back.

    Raises:
        UserError: a bad folder (see :func:`survey`), an existing ``out``, or a missing
            folder for ``out``.
    """
    from dcframe.recipe.model import load

    if out.exists():
        raise UserError(f"--out {str(out)!r} exists already; remove it or choose another file")
    if not out.parent.is_dir():
        raise UserError(f"--out {str(out)!r}: the folder {str(out.parent)!r} does not exist")
    found = survey(folder)
    choices = choose(found)
    name = found.root.resolve().name or "deepcluster"
    text = starter_recipe(found, choices, name)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UserError(f"--out {str(out)!r}: cannot write ({error.strerror or error})") from None
    try:
        load(out)
    except Exception:
        out.unlink(missing_ok=True)  # never leave a recipe behind that does not validate
        raise
    return found, choices
