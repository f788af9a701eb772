"""Peak memory of the clustering features: PCA fitted on a sample vs. on every feature.

The paper holds the whole N x 4096 feature matrix before PCA. dcframe fits the PCA on a
random sample and keeps only the N x 256 projected rows. This script runs the real
extraction (ImageFolder + small-input AlexNet with the paper's 4096-d fc7) both ways on
the same images and prints the peak bytes of feature storage seen by ``tracemalloc``
(numpy arrays are traced; torch's transient batches are not part of feature storage),
next to the floor of holding all features at full width, computed for the same N.

    python benchmarks/feature_memory.py --root /tmp/cifar/train --fit-sample 5000
"""

from __future__ import annotations

import argparse
import contextlib
import time
import tracemalloc

import numpy as np
import torch

from dcframe.components.backbones import AlexNet, AlexNetParams
from dcframe.components.datasets import ImageFolder, ImageFolderParams
from dcframe.components.preprocessors import L2Normalize, PCAParams, PCAWhitening
from dcframe.core.params import NoParams
from dcframe.core.progress import Reporter
from dcframe.data.loading import RunLoader, run_views
from dcframe.data.transforms import TrainingView
from dcframe.engine.extraction import extract_features


def measure(data: ImageFolder, net: AlexNet, fit_sample: int, batch_size: int) -> tuple[int, float]:
    """Peak traced bytes and seconds of one extraction with this PCA sample size."""
    chain = [PCAWhitening(PCAParams(dim=256, fit_sample=fit_sample)), L2Normalize(NoParams())]
    tracemalloc.start()
    start = time.perf_counter()
    features = extract_features(
        net,
        RunLoader(data, run_views(net.input_size, TrainingView(net.input_size)), workers=0),
        chain,
        sample_rng=np.random.default_rng(0),
        batch_size=batch_size,
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
        reporter=Reporter(quiet=True),
    )
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert features.shape == (len(data), 256)
    return peak, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="ImageFolder root, e.g. CIFAR-10 train")
    parser.add_argument("--fit-sample", type=int, default=5000, help="rows the sampled PCA fits")
    parser.add_argument("--width", type=float, default=0.25, help="AlexNet channel multiplier")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    data = ImageFolder(ImageFolderParams(root=args.root))
    torch.manual_seed(0)
    net = AlexNet(AlexNetParams(small_input=True, width=args.width, fc_dim=4096))
    n, d = len(data), net.feature_dim
    floor = n * d * 4
    print(f"N = {n} images, feature dim {d}, PCA 256")
    print(f"floor (the N x {d} float32 matrix alone): {floor / 2**20:.0f} MiB")
    all_peak, all_s = measure(data, net, fit_sample=n, batch_size=args.batch_size)
    sampled_peak, sampled_s = measure(data, net, args.fit_sample, args.batch_size)
    print(f"{'mode':<26}{'peak MiB':>10}{'vs floor':>10}{'seconds':>10}")
    for label, peak, seconds in (
        ("fit on all rows (paper)", all_peak, all_s),
        (f"fit on {args.fit_sample} sampled rows", sampled_peak, sampled_s),
    ):
        print(f"{label:<26}{peak / 2**20:>10.0f}{peak / floor:>10.2f}{seconds:>10.1f}")
    print(f"sampled / all peak: {sampled_peak / all_peak:.3f}")


if __name__ == "__main__":
    main()
