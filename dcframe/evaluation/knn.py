"""Weighted k-nearest-neighbour classification on frozen, L2-normalised features.

The protocol of the common self-supervised benchmarks (InstDisc, DINO): every row is
L2-normalised, so the dot product is the cosine similarity; each query takes its ``k``
most similar training rows, a neighbour of similarity ``s`` votes ``exp(s / T)`` for its
class, and classes are ranked by their summed votes (k = 20, T = 0.07 by default).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dcframe.evaluation.accuracy import topk_accuracy
from dcframe.evaluation.data import EvalData
from dcframe.evaluation.features import FrozenFeatures, extract
from dcframe.evaluation.options import KnnOptions
from dcframe.evaluation.runtime import Runtime
from dcframe.transforms import clustering_transform

#: Queries scored at once, bounding the (queries x training rows) similarity matrix.
QUERY_CHUNK = 1024


def knn_votes(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Summed neighbour votes per class, (num_queries, num_classes).

    Args:
        train_features: (N, D) features of the labelled rows.
        train_labels: (N,) their class ids.
        queries: (M, D) features to classify.
        num_classes: Number of classes.
        k: Neighbours per query (at most N are used).
        temperature: A neighbour of cosine similarity s votes exp(s / temperature).
    """
    memory = F.normalize(train_features.float(), dim=1)
    k = min(k, len(memory))
    votes = []
    for chunk in F.normalize(queries.float(), dim=1).split(QUERY_CHUNK):
        similarity, index = (chunk @ memory.T).topk(k, dim=1)
        weights = (similarity / temperature).exp()
        scores = torch.zeros(len(chunk), num_classes, dtype=weights.dtype)
        votes.append(scores.scatter_add_(1, train_labels[index], weights))
    return torch.cat(votes)


def evaluate_knn(
    features: FrozenFeatures, data: EvalData, options: KnnOptions, runtime: Runtime
) -> dict[str, dict[str, Any]]:
    """kNN top-1 (and top-5) of every layer: training images vote for validation images.

    Both splits go through the deterministic centre-crop view.
    """
    view = clustering_transform(features.backbone.input_size)
    train = extract(features, data.train, view, runtime, "train features")
    val = extract(features, data.val, view, runtime, "val features")
    train_labels = torch.as_tensor(data.train.labels)
    val_labels = torch.as_tensor(data.val.labels)
    results = {}
    for name in features.layers:
        votes = knn_votes(
            train[name], train_labels, val[name], data.num_classes, options.k, options.temperature
        )
        results[name] = {
            "dim": features.dims[name],
            "pooling": features.pooling[name],
            **topk_accuracy(votes, val_labels),
        }
    return results
