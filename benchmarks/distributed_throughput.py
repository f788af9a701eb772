"""Images per second per process: one process against several on this machine (torchrun).

Runs one epoch of a recipe in one process and in ``--nproc`` processes, interleaved,
``--repeat`` times, and prints the median throughput of extraction and training per
process and in total, with the ratios. Each configuration runs as a user would start it
(torchrun gives each process one thread unless OMP_NUM_THREADS is set).

    python benchmarks/distributed_throughput.py recipes/quickstart.toml --nproc 2 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def one_epoch(recipe: str, nproc: int, output_dir: Path, name: str) -> dict[str, float]:
    """Seconds of extraction and training, and the images each handled, in one epoch."""
    command = [sys.executable, "-m", "dcframe", "run", recipe, "--quiet", f"--nproc={nproc}"]
    settings = ["run.epochs=1", f"run.name={name}", f'run.output_dir="{output_dir}"']
    done = subprocess.run(
        [*command, *(f"--set={s}" for s in settings)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{nproc}-process run failed:\n{done.stderr[-3000:]}")
    rundir = output_dir / name
    record = json.loads((rundir / "metrics.jsonl").read_text().splitlines()[0])
    return {
        "extract": record["seconds"]["extract"],
        "train": record["seconds"]["train"],
        "extract_images": len(np.load(rundir / "assignments" / "epoch_0000.npy")),
        "train_images": record["train_samples"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/quickstart.toml")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[int, list[dict[str, float]]] = {1: [], args.nproc: []}
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.repeat):
            for nproc in runs:  # interleaved, so drift on a shared machine hits both alike
                runs[nproc].append(one_epoch(args.recipe, nproc, Path(scratch), f"p{nproc}-{i}"))
    print(f"{args.recipe}: median of {args.repeat} one-epoch runs")
    print(f"{'stage':<10}{'processes':>10}{'img/s total':>14}{'img/s per process':>20}")
    rates: dict[tuple[str, int], float] = {}
    for stage in ("extract", "train"):
        for nproc, results in runs.items():
            count = results[0][f"{stage}_images"]
            rate = count / statistics.median(r[stage] for r in results)
            rates[stage, nproc] = rate
            print(f"{stage:<10}{nproc:>10}{rate:>14.1f}{rate / nproc:>20.1f}")
    for stage in ("extract", "train"):
        total = rates[stage, args.nproc] / rates[stage, 1]
        print(
            f"{stage}: {args.nproc} processes give {total:.2f}x the images/s of one "
            f"({total / args.nproc:.2f} per process)"
        )


if __name__ == "__main__":
    main()
