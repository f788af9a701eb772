"""Weighted k-nearest-neighbour classification on frozen, L2-normalised features.

The protocol of the common self-supervised benchmarks (InstDisc, DINO): every row is
L2-normalised, so the dot product is the cosine similarity; each query takes its ``k``
most similar training rows, a neighbour of similarity ``s`` votes ``exp(s / T)`` for its
class, and classes are ranked by their summed votes (k = 20, T = 0.07 by default).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from dcframe.data.transforms import clustering_transform
from dcframe.engine.metrics import most_similar, weighted_votes
from dcframe.evaluation.accuracy import topk_accuracy
from dcframe.evaluation.data import EvalData
from dcframe.evaluation.features import FrozenFeatures
from dcframe.evaluation.options import KnnOptions
from dcframe.evaluation.runtime import Runtime
from dcframe.evaluation.store import FeatureCache

#: Queries scored at once, bounding the (queries x training rows) similarity matrix.
QUERY_CHUNK = 1024
#: Training rows moved to the device and compared at once.
TRAIN_CHUNK = 8192


def knn_votes(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    *,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Summed neighbour votes per class, (num_queries, num_classes), on the CPU.

    Args:
        train_features: (N, D) features of the labelled rows.
        train_labels: (N,) their class ids.
        queries: (M, D) features to classify.
        num_classes: Number of classes.
        k: Neighbours per query (at most N are used).
        temperature: A neighbour of cosine similarity s votes exp(s / temperature).
        device: Where the similarities are computed (default: that of ``queries``).
    """
    return chunked_knn_votes(
        train_features.split(TRAIN_CHUNK),
        train_labels,
        queries,
        num_classes,
        k,
        temperature,
        device=device,
    )


def chunked_knn_votes(
    train_chunks: Iterable[torch.Tensor],
    train_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    *,
    device: torch.device | None = None,
) -> torch.Tensor:
    """:func:`knn_votes` with the training rows given as consecutive chunks (e.g. read from
    disk), so that only one chunk is on ``device`` at a time.

    Each chunk is compared with every query and merged into a running top-k per query;
    the result is the top-k over all rows (the same neighbours as one big ``topk``, up to
    the order of exactly equal similarities).
    """
    device = queries.device if device is None else device
    k = min(k, len(train_labels))
    best, best_index, rows = most_similar(
        train_chunks, queries, k, device=device, query_chunk=QUERY_CHUNK
    )
    if rows != len(train_labels):
        raise ValueError(f"{rows} training rows for {len(train_labels)} labels")
    labels = train_labels.to(device)[best_index]
    return weighted_votes(best, labels, num_classes, temperature).cpu()


def evaluate_knn(
    features: FrozenFeatures, data: EvalData, options: KnnOptions, runtime: Runtime
) -> dict[str, dict[str, Any]]:
    """kNN top-1 (and top-5) of every layer: training images vote for validation images.

    Both splits go through the deterministic centre-crop view into an on-disk
    :class:`~dcframe.evaluation.store.FeatureCache`; similarities are computed on the
    runtime's device, one chunk of training rows at a time.
    """
    view = clustering_transform(features.backbone.input_size)
    train_labels = torch.as_tensor(data.train.labels)
    val_labels = torch.as_tensor(data.val.labels)
    results = {}
    with FeatureCache(runtime.cache_dir) as cache:
        train = cache.extract(features, data.train, view, runtime, "train features")
        val = cache.extract(features, data.val, view, runtime, "val features")
        for name in features.layers:
            votes = chunked_knn_votes(
                train[name].chunks(TRAIN_CHUNK),
                train_labels,
                val[name].read(),
                data.num_classes,
                options.k,
                options.temperature,
                device=runtime.device,
            )
            results[name] = {
                "dim": features.dims[name],
                "pooling": features.pooling[name],
                **topk_accuracy(votes, val_labels),
            }
    return results
