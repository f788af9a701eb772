"""Time ``dcframe assign`` (``ClusterModel.assign``) against its floor, the raw embedding
loop over the same images, in the same process.

The floor decodes the images with the same clustering view, in the same batches and
loader processes, and runs the trunk's ``embed`` with nothing else: no bad-image policy,
no preprocessing, no placing in clusters, no table. The ratio is what assign adds to the
one forward pass every image needs anyway. Each is timed ``--repeat`` times; the best
is kept. The agreement line compares assign's clusters with the run's own clustering of
the epoch (when the images are the run's).

Example::

    python benchmarks/assign_speed.py runs/cifar10 --data imagefolder --data-set root=DIR
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from dcframe.clusters.listing import run_clusters
from dcframe.clusters.model import load_clustering
from dcframe.core.errors import UserError
from dcframe.data.transforms import clustering_transform, smallest_side_used
from dcframe.evaluation.data import ImageSubset, named_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--data", required=True)
    parser.add_argument("--data-set", action="append", default=[])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    model = load_clustering(args.run)
    dataset = named_dataset(args.data, args.data_set)
    dataset.decode_at_least(
        smallest_side_used(model.backbone.input_size, model.recipe.augment.crop_scale_min)
    )

    def floor() -> None:
        items = ImageSubset(dataset, clustering_transform(model.backbone.input_size),
                            np.arange(len(dataset)))  # fmt: skip
        loader = DataLoader(items, batch_size=args.batch_size, num_workers=args.workers)
        with torch.no_grad():
            for images, _ in loader:
                model.backbone.embed(images)

    def assign() -> None:
        model.assign(dataset, device="cpu", batch_size=args.batch_size, workers=args.workers)

    best = {}
    for name, step in (("floor (embed only)", floor), ("assign", assign)):
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    n = len(dataset)
    for name, seconds in best.items():
        print(f"{name:20s} {seconds:7.2f} s  {n / seconds:8.0f} images/s")
    print(f"assign / floor       {best['assign'] / best['floor (embed only)']:.2f}")
    placed = model.assign(dataset, device="cpu", batch_size=args.batch_size, workers=args.workers)
    try:
        saved = run_clusters(args.run, model.epoch)
    except UserError:  # not a run's own images: nothing to compare
        return
    if saved.clusters.shape == placed.clusters.shape:
        same = (saved.clusters == placed.clusters).mean(axis=1)
        print("agreement with the run's epoch", model.epoch, "per head:", same.round(6).tolist())


if __name__ == "__main__":
    main()
