"""The same CIFAR-10 images read through ``filelist`` and through ``imagefolder`` give the
same clustering.

Takes the first ``--per-class`` images of every class of an extracted CIFAR-10 JPEG train
folder (``../shared/data/cifar10_jpg.tar.gz``: ``train/<class>/*.jpg``), links them into
a class-folder tree and writes a list of the same files (paths relative to the list,
labels as class names), both in a scratch folder outside the repository; then runs
``recipes/cifar10_paper.toml`` (shortened) on each and compares the assignments of every epoch.

    python benchmarks/filelist_vs_imagefolder.py --cifar /tmp/cifar/train

Exits 0 when every epoch's assignments are identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from dcframe import engine, recipe
from dcframe.core.progress import Reporter

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cifar/train"))
    parser.add_argument("--per-class", type=int, default=200, help="images per class")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=None, help="default: a temp folder")
    args = parser.parse_args()
    if not args.cifar.is_dir():
        print(f"no CIFAR-10 train folder at {args.cifar}; extract ../shared/data/"
              "cifar10_jpg.tar.gz and give --cifar", file=sys.stderr)  # fmt: skip
        return 2
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="dcframe-filelist-"))
    folder = scratch / "folder"
    lines = []
    for class_dir in sorted(p for p in args.cifar.iterdir() if p.is_dir()):
        for image in sorted(class_dir.glob("*.jpg"))[: args.per_class]:
            link = folder / class_dir.name / image.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(image)
            lines.append(f"{os.path.relpath(image, scratch)}\t{class_dir.name}\n")
    (scratch / "list.txt").write_text("".join(lines))
    tables = {
        "imagefolder": [f"data.root={folder}"],
        "filelist": [f"data.path={scratch / 'list.txt'}"],
    }
    found: dict[str, list[np.ndarray]] = {}
    for name, data in tables.items():
        overrides = [
            f"run.name={name}", f"run.output_dir={scratch / 'runs'}", f"run.epochs={args.epochs}",
            "run.device=cpu", "run.view_cache_gib=0", "backbone.width=0.25", "backbone.fc_dim=256",
            "preprocess.0.dim=32", "clusterer.k=50",
        ]  # fmt: skip
        recipe_text = (REPO / "recipes" / "cifar10_paper.toml").read_text()
        if name == "filelist":
            recipe_text = recipe_text.replace('name = "imagefolder"\nroot = "data/cifar10/train"',
                                              'name = "filelist"\npath = "list.txt"')  # fmt: skip
        path = scratch / f"{name}.toml"
        path.write_text(recipe_text)
        started = time.perf_counter()
        run = engine.run(recipe.load(path, overrides + data), reporter=Reporter(quiet=True))
        seconds = time.perf_counter() - started
        files = sorted((run.path / "assignments").glob("epoch_*.npy"))
        found[name] = [np.load(f) for f in files]
        print(f"{name}: {len(found[name][0])} images, {len(files)} epochs, {seconds:.1f} s")
    same = True
    for epoch, (a, b) in enumerate(zip(found["imagefolder"], found["filelist"], strict=True)):
        equal = bool(np.array_equal(a, b))
        same &= equal
        nmi = normalized_mutual_info_score(a, b)
        print(f"epoch {epoch}: assignments identical: {equal} (NMI between them {nmi:.4f})")
    print(f"scratch folder: {scratch}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
