"""Peak memory (RSS) of ``dcframe eval linear-probe``, cached mode and augment + ten-crop.

Each configuration runs the real command line in a fresh child process on a synthetic
image folder (random 32x32 images, small-input AlexNet at width 1, whose pooled taps
conv1..conv5 have the same widths as the paper's AlexNet at 224: 47,232 dims in all), and
the child's peak resident set size is read from ``os.wait4`` (``ru_maxrss``). A
``baseline`` run on 20 + 20 images gives the part that does not grow with the data
(Python, torch, the model and the heads).

``--tree`` runs another checkout of the repository (put first on ``PYTHONPATH``), so the
same script measures a tree before and after a change:

    git worktree add /tmp/eval_before <commit>
    python benchmarks/eval_memory.py --tree /tmp/eval_before
    python benchmarks/eval_memory.py

Next to each measurement the script prints the storage the formulas of
docs/evaluation.md ("Memory at ImageNet scale") predict for feature rows kept in RAM.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: Pooled widths of AlexNet's conv1..conv5 (paper's table at 224, the general rule at 32).
ALEXNET_DIMS = (9600, 9216, 9600, 9600, 9216)
FLOAT = 4  # bytes per stored feature value (float32)
MIB = 2**20


@dataclass(frozen=True)
class Config:
    name: str
    args: tuple[str, ...]
    train: int | None  # None: every image of the folder
    val: int | None
    crops: int


def make_folder(root: Path, images: int, classes: int, seed: int) -> None:
    """``images`` random 32x32 RGB PNGs spread over ``classes`` sub-folders of ``root``."""
    rng = np.random.default_rng(seed)
    for i in range(images):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png")


def peak_rss(command: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run ``command`` in ``cwd`` and return its peak resident set size in bytes (Linux:
    ru_maxrss is in KiB)."""
    child = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert child.stderr is not None
    errors = child.stderr.read()  # read before waiting so a full pipe cannot block the child
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{' '.join(command)}\nfailed ({child.returncode}):\n{errors.decode()}")
    return int(usage.ru_maxrss) * 1024


def predicted_rows(train: int, val: int, crops: int, cached: bool, dims: tuple[int, ...]) -> int:
    """Bytes of feature rows kept in RAM by the in-memory linear probe (before the change):
    the validation features (val x crops x D) and, in cached mode, the training features."""
    total = sum(dims)
    return FLOAT * total * (val * crops + (train if cached else 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="checkout to measure (default: this one)")
    parser.add_argument("--train", type=int, default=2000, help="training images")
    parser.add_argument("--val", type=int, default=400, help="validation images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    # The child runs in the tree's root: the current folder comes first on sys.path, before
    # PYTHONPATH and the editable install, so that tree's dcframe is the one imported.
    tree = (args.tree or Path(__file__).resolve().parents[1]).resolve()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])
    )
    where = subprocess.run(
        [sys.executable, "-c", "import dcframe; print(dcframe.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    configs = [
        Config("baseline (20 + 20 images)", ("--mode", "cached"), 20, 20, 1),
        Config("cached", ("--mode", "cached"), None, None, 1),
        Config("augment --ten-crop", ("--mode", "augment", "--ten-crop"), None, None, 10),
    ]
    with tempfile.TemporaryDirectory(prefix="eval-memory-") as scratch:
        root = Path(scratch)
        make_folder(root / "train", args.train, classes=10, seed=0)
        make_folder(root / "val", args.val, classes=10, seed=1)
        common = [
            sys.executable, "-m", "dcframe", "eval", "linear-probe",
            "--random-init", "alexnet", "--set", "backbone.small_input=true",
            "--train-dir", str(root / "train"), "--val-dir", str(root / "val"),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--output", str(root / "out"), "--quiet", "--device", "cpu",
        ]  # fmt: skip
        print(f"dcframe from {where}")
        print(
            f"{args.train} train / {args.val} val images, batch {args.batch_size}, "
            f"layers conv1..conv5 ({sum(ALEXNET_DIMS)} dims), {args.epochs} epoch(s), "
            f"{os.cpu_count()} CPUs"
        )
        print(f"{'configuration':<28}{'peak RSS MiB':>14}{'rows in RAM before (formula) MiB':>34}")
        for config in configs:
            limits: list[str] = []
            if config.train is not None:
                limits += ["--limit-train", str(config.train)]
            if config.val is not None:
                limits += ["--limit-val", str(config.val)]
            peak = peak_rss([*common, *config.args, *limits], env, tree)
            rows = predicted_rows(
                config.train or args.train,
                config.val or args.val,
                config.crops,
                config.args[1] == "cached",
                ALEXNET_DIMS,
            )
            print(f"{config.name:<28}{peak / MIB:>14.0f}{rows / MIB:>34.0f}")


if __name__ == "__main__":
    main()
