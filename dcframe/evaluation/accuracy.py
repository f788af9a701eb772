"""Top-k accuracy of class scores, in percent (as the paper's tables)."""

from __future__ import annotations

import torch


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) accuracy in percent.

    Args:
        scores: (N, C) class scores (probabilities, votes, logits: only the order counts).
        labels: (N,) true class ids.

    Returns:
        ``{"top1": ...}`` or ``{"top1": ..., "top5": ...}``.
    """
    ks = (1, 5) if scores.shape[1] > 5 else (1,)
    ranked = scores.topk(max(ks), dim=1).indices
    hits = ranked == labels.view(-1, 1)
    return {f"top{k}": 100.0 * hits[:, :k].any(dim=1).float().mean().item() for k in ks}
