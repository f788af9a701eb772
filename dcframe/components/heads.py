"""Heads a method puts on the trunk besides its classifier: the projection head.

DeepCluster-v2 (like SimCLR and SwAV) clusters and classifies a small L2-normalised
projection of the trunk's feature rather than the feature itself; the head is trained with
the trunk and left out of evaluation and export, which use the trunk alone.
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """``Linear-BatchNorm-ReLU-Linear`` (or one ``Linear`` when ``hidden_dim`` is 0) from the
    trunk's feature to a unit-length ``out_dim`` vector."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        if hidden_dim:
            self.layers: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden_dim),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, out_dim),
            )
        else:
            self.layers = nn.Linear(in_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # float32 before normalising: a bf16 norm of 128 values loses the unit length
        return nn.functional.normalize(self.layers(features).float(), dim=1)
