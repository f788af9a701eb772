"""Top-k accuracy of class scores, in percent (as the paper's tables).

:func:`topk_hits` counts the hits of one batch, so that scores can be streamed batch by
batch (:func:`hits_to_accuracy` turns the summed counts into percentages);
:func:`topk_accuracy` does both for scores held at once.
"""

from __future__ import annotations

import torch


def topk_hits(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
    """Rows whose true class is among the top 1 (and top 5 when there are more than 5
    classes) of ``scores`` (N, C); ``labels`` (N,) on the same device."""
    ks = (1, 5) if scores.shape[1] > 5 else (1,)
    ranked = scores.topk(max(ks), dim=1).indices
    hits = ranked == labels.view(-1, 1)
    return {f"top{k}": int(hits[:, :k].any(dim=1).sum().item()) for k in ks}


def hits_to_accuracy(hits: dict[str, int], rows: int) -> dict[str, float]:
    """Hit counts of ``rows`` rows to percentages."""
    return {key: 100.0 * count / rows for key, count in hits.items()}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) accuracy in percent.

    Args:
        scores: (N, C) class scores (probabilities, votes, logits: only the order counts).
        labels: (N,) true class ids.

    Returns:
        ``{"top1": ...}`` or ``{"top1": ..., "top5": ...}``.
    """
    return hits_to_accuracy(topk_hits(scores, labels), len(labels))
