"""PIC against dcframe's faiss k-means: NMI with the true labels and wall time.

Two feature sets, each PCA-whitened and L2-normalised with dcframe's own ``pca`` and
``l2`` preprocessors, as the engine does before clustering:

* **digits**: scikit-learn's 1,797 8x8 digits, raw pixels (64-d) -> PCA-32 + L2.
* **cifar10**: the 10,000 CIFAR-10 test images, fc7 features (before its ReLU, the
  clustering feature) of a randomly initialised dcframe AlexNet (small-input layout,
  Sobel input, 32 px, torch seed 0) -> PCA-256 + L2. An untrained net is the state
  DeepCluster starts from, and it needs no download.

The CIFAR-10 images are read from JPEG class folders (``<root>/test/<class>/*.jpg``); with
``--cifar-archive`` they are first extracted to a temporary folder (never into the repo).

    python plugins/dcframe-pic/benchmarks/pic_vs_kmeans.py
    python plugins/dcframe-pic/benchmarks/pic_vs_kmeans.py --skip-cifar
"""

from __future__ import annotations

import argparse
import logging
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from dcframe_pic import PIC, PICParams
from PIL import Image
from sklearn.metrics import normalized_mutual_info_score

from dcframe import registries
from dcframe.plugin import Clusterer, Clustering

DEFAULT_ARCHIVE = Path("/work/shared/data/cifar10_jpg.tar.gz")


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    data: str
    method: str
    params: str
    found: str
    clusters: int
    nmi: float
    seconds: float


def whitened(features: np.ndarray, dim: int) -> np.ndarray:
    """PCA-``dim`` whitening then L2 normalisation, with dcframe's own preprocessors."""
    pca = registries.preprocessors.get("pca").cls(
        registries.preprocessors.get("pca").params_model(dim=dim)
    )
    pca.fit(features)
    l2 = registries.preprocessors.get("l2").cls(registries.preprocessors.get("l2").params_model())
    return l2.transform(pca.transform(features))


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return whitened(data.data.astype(np.float32), 32), data.target


def cifar_test_images(root: Path) -> tuple[list[Path], np.ndarray]:
    classes = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted((root / "test" / name).glob("*.jpg"))
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels)


def random_alexnet_features(paths: list[Path], batch: int = 250) -> np.ndarray:
    from dcframe.data.transforms import clustering_transform

    entry = registries.backbones.get("alexnet")
    torch.manual_seed(0)
    net = entry.cls(entry.params_model(small_input=True)).eval()
    view = clustering_transform(net.input_size)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(paths), batch):
            images = [view(Image.open(p).convert("RGB")) for p in paths[start : start + batch]]
            chunks.append(net.embed(torch.stack(images)).numpy())
    return np.concatenate(chunks)


def cifar10(root: Path | None, archive: Path) -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as scratch:
        if root is None:
            root = Path(scratch)
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if m.name.startswith("test/")]
                tar.extractall(root, members=members, filter="data")
        paths, labels = cifar_test_images(root)
        started = time.perf_counter()
        features = random_alexnet_features(paths)
        print(f"cifar10: {len(paths)} images, features in {time.perf_counter() - started:.0f} s")
    return whitened(features, 256), labels


def timed(clusterer: Clusterer, x: np.ndarray) -> tuple[Clustering, float]:
    started = time.perf_counter()
    result = clusterer.cluster(x, seed=0, device="cpu")
    return result, time.perf_counter() - started


def compare(name: str, x: np.ndarray, labels: np.ndarray, ks: list[int]) -> list[Row]:
    """PIC (defaults) and faiss k-means at each k, plus k-means at PIC's own cluster count."""
    rows: list[Row] = []

    def add(method: str, params: str, found: str, result: Clustering, seconds: float) -> None:
        score = normalized_mutual_info_score(labels, result.assignments)
        clusters = len(np.unique(result.assignments))
        rows.append(Row(name, method, params, found, clusters, score, seconds))

    kmeans_entry = registries.clusterers.get("faiss-kmeans")
    kmeans: Callable[[int], Clusterer] = lambda k: kmeans_entry.cls(  # noqa: E731
        kmeans_entry.params_model(k=k)
    )
    natural = PIC(PICParams(k=len(x))).run(x).found  # PIC's own count, nothing merged
    defaults = PICParams(k=2)
    pic_params = f"nn={defaults.neighbors} sigma={defaults.sigma} alpha={defaults.alpha}"
    for k in [*ks, natural]:
        result, seconds = timed(kmeans(k), x)
        add("faiss-kmeans", f"k={k} iter=20", "-", result, seconds)
        pic = PIC(PICParams(k=k))
        started = time.perf_counter()
        mapped = pic.run(x)
        seconds = time.perf_counter() - started
        clustering = Clustering(mapped.assignments.numpy(), mapped.objective, mapped.centroids)
        add("pic", f"k={k} {pic_params}", str(mapped.found), clustering, seconds)
    return rows


def print_table(rows: list[Row]) -> None:
    """A Markdown table, ready to paste into the README."""
    print("| data | method | params | PIC found | clusters | NMI | seconds |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.data} | {r.method} | {r.params} | {r.found} | {r.clusters} "
            f"| {r.nmi:.3f} | {r.seconds:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-root", type=Path, help="folder holding test/<class>/*.jpg")
    parser.add_argument("--cifar-archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("dcframe_pic").setLevel(logging.ERROR)  # empty-id warnings: expected here
    import faiss

    faiss.omp_set_num_threads(args.threads)

    rows = compare("digits", *digits(), ks=[10, 100])
    if not args.skip_cifar:
        rows += compare("cifar10", *cifar10(args.cifar_root, args.cifar_archive), ks=[10, 100])
    print(f"\n{args.threads} threads")
    print_table(rows)


if __name__ == "__main__":
    main()
